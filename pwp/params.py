"""Request parameters: nested bodies (JSON or `push[...]` form fields) and Rails-style casting,
and the app's Request class, which reads forms within limits and strictly as UTF-8 and keeps
uploaded files encrypted while they wait.

Malformed input becomes BadParameter (400) or ValidationFailed (422), never a 500.
"""
import codecs
import functools
import json
import math
import mimetypes
import os
import re

from flask import Flask, request
from werkzeug import formparser
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio import multipart

from . import crypto
from .errors import BadParameter, BodyTooLarge, ValidationFailed
from .models import file_name
from .pushes import TEXT_MAX, Changes, NewPush, Upload

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_TRUE_WORDS = {"on", "yes", "checked", "true", "1"}
# Ruby's to_i reads ASCII digits only, single underscores between them skipped.
_LEADING_INT = re.compile(r"\s*([+-]?\d+(?:_\d+)*)", re.ASCII)
_DURATION = re.compile(r"\d{1,5}", re.ASCII)
_MIME_TYPE = re.compile(r"[\w.+-]{1,100}/[\w.+-]{1,100}", re.ASCII)
NAME_MAX = 255
# Attributes that JSON bodies may send at the top level (upstream's wrap_parameters).
PUSH_ATTRIBUTES = ("payload", "kind", "expire_after_days", "expire_after_duration",
                   "expire_after_views", "deletable_by_viewer", "retrieval_step",
                   "passphrase", "name", "note")


# Rack's param_depth_limit: a deeper name is a 400 (Rack::QueryParser::ParamsTooDeepError).
# Unbounded, one 12.5 MB URL-encoded field named a[x][x][x]... (4 million levels) made 4
# million nested dicts: an anonymous POST took a worker from 125 MB to 921 MB and 6.7 s of CPU.
PARAM_DEPTH_MAX = 32


def _subkeys(key: str, start: int) -> list[str]:
    """The bracketed names after key[:start] ("[b][c]": b, c), each from a "[" to the next
    "]", as Rack reads them. (A regex tried each of 200 000 "[" to the end of a name that had
    no "]": one 200 KB form took a worker's 30 s.) BadParameter past PARAM_DEPTH_MAX names."""
    keys = []
    while (opening := key.find("[", start)) != -1 and (closing := key.find("]", opening + 1)) != -1:
        if len(keys) >= PARAM_DEPTH_MAX:
            raise BadParameter(f"A parameter name is nested more than {PARAM_DEPTH_MAX} levels deep.")
        keys.append(key[opening + 1:closing])
        start = closing + 1
    return keys


def _assign(tree: dict, key: str, value):
    """Put value into tree at a Rails-style key: a[b][c], a[b][] (list)."""
    head = key.split("[", 1)[0]
    parts = [head] + _subkeys(key, len(head)) if "[" in key else [key]
    node = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt = None if last else parts[i + 1]
        if part == "":  # an empty name ("[x]", ""): nothing to assign ("a[]" is nxt == "" below)
            return
        if last:
            node[part] = value
        elif nxt == "":
            existing = node.get(part)
            if not isinstance(existing, list):
                existing = node[part] = []
            existing.append(value)
            return
        else:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child


def body_params() -> dict:
    """Return query, form and JSON parameters merged into one nested dict."""
    tree: dict = {}
    if request.environ.get("QUERY_STRING"):
        for key, value in request.args.items(multi=True):
            _assign(tree, key, value)
    if request.is_json:
        data = json_data()
        body = request.get_data(cache=True)
        if data is None and body and body.strip(b" \t\r\n") != b"null":
            raise BadParameter("The request body is not valid JSON.")
        if isinstance(data, dict):  # (Rails keeps any other JSON value under `_json`: no parameter)
            tree.update(data)
        return tree
    for key, value in request.form.items(multi=True):
        _assign(tree, key, value)
    for key, upload in request.files.items(multi=True):
        _assign(tree, key, upload)
    return tree


# What a form holds besides its longest field: a note of 10 000 characters, a name, addresses.
OTHER_FIELDS_MAX = 64 * 1024

# A JSON body holds at most JSON_MAX: a 1 048 576-character payload escaped as the pwpush CLI
# (Python's json.dumps) sends it, an emoji as "\ud83d\ude00", is 12 MiB, and the other text
# a multipart form may hold (OTHER_FIELDS_MAX, a 10 000-emoji note is 120 000 bytes escaped)
# three times over. Parsed, JSON takes up to ~25 times its size in small values ("[{},{},...]",
# '["ab","ab",...]'), so a body holds at most JSON_CONTAINERS_MAX objects and arrays, and one
# over JSON_SHORT, which only a long payload makes, at most JSON_LONG_VALUES values besides its
# strings' text: ~1-2 times its size.
JSON_MAX = 12 * TEXT_MAX + 3 * OTHER_FIELDS_MAX
JSON_SHORT = 1024 * 1024
JSON_LONG_VALUES = 1000
JSON_CONTAINERS_MAX = 100_000
PARSED = "pwp.json"  # environ key: the body as the hot path parsed it


def json_data():
    """The request's JSON body; None when it is absent or not JSON (as get_json(silent=True),
    but by loads' rules); 413 over JSON_MAX or loads' value limits."""
    if not request.is_json:
        return None
    if PARSED in request.environ:
        return request.environ[PARSED]
    # (Not the upload limit, MAX_CONTENT_LENGTH: JSON holds no files.) A chunked body (no
    # Content-Length) werkzeug reads up to the limit and cuts there silently: a byte more is read
    # to tell one past it, a 413 as a declared one's.
    chunked = request.content_length is None
    request.max_content_length = JSON_MAX + chunked
    try:
        body = request.get_data(cache=True)
        if len(body) > JSON_MAX:
            raise RequestEntityTooLarge()
        data = loads(body)
    except TooManyValues as exc:
        raise BodyTooLarge(str(exc)) from None
    except (ValueError, RecursionError):
        data = None
    request.environ[PARSED] = data
    return data


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")


def _finite(text):
    value = float(text)
    if math.isinf(value):  # 1e400: no JSON value either
        raise ValueError(f"{text} is out of range")
    return value


# One decoder, made once (json.loads with an option makes one per call).
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)


class TooManyValues(ValueError):
    """Too many JSON values in a body (see loads)."""


# A JSON string literal, or one never closed (to the end): each search then moves past what
# it read. (Requiring the closing quote made a body of unclosed strings quadratic: every
# quote was tried to the end, and a 400 KB body took 218 s of CPU.)
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"?', re.S)


def _bare_count(text: str, marks: str) -> int:
    """How many of marks' characters text holds outside its JSON strings (seldom asked)."""
    bare = _STRING.sub("", text)
    return sum(map(bare.count, marks))


def loads(body: bytes):
    """Parse a JSON body as json.loads does (UTF-8, -16 or -32): ValueError (or RecursionError,
    nested deeper than Python's parser recurses) unless it is JSON. Python's parser alone
    also takes NaN and Infinity. TooManyValues for more than JSON_CONTAINERS_MAX objects and
    arrays, or over JSON_SHORT with more than JSON_LONG_VALUES values, counted before parsing
    (brackets and commas inside strings are text: a secret may hold any)."""
    text = body.decode(json.detect_encoding(body), "surrogatepass")
    if len(body) > JSON_SHORT:  # a long payload: few values (a comma or colon each)
        if sum(map(body.count, b",:[{")) > JSON_LONG_VALUES and _bare_count(text, ",:[{") > JSON_LONG_VALUES:
            raise TooManyValues(f"A request body over {JSON_SHORT >> 20} MiB holds a long payload"
                                f" and at most {JSON_LONG_VALUES} other JSON values.")
    elif body.count(b"{") + body.count(b"[") > JSON_CONTAINERS_MAX and _bare_count(text, "[{") > JSON_CONTAINERS_MAX:
        raise TooManyValues(f"The request body holds more than {JSON_CONTAINERS_MAX} JSON objects and arrays.")
    return _DECODER.decode(text)


def root(params: dict, key: str, wrap=False) -> dict:
    """Return the nested parameters under key (push, password, ...); 400 when missing.

    wrap: a JSON body's top-level push attributes stand in for a missing root key.
    """
    value = params.get(key)
    if key not in params and wrap:  # (Rails wraps only when the body has no such key, even a null one)
        wrapped = {k: params[k] for k in PUSH_ATTRIBUTES if k in params}
        value = wrapped or None
    if not isinstance(value, dict) or not value:
        raise BadParameter(f"param is missing or the value is empty or invalid: {key}")
    return value


def cast_int(value):
    """Cast like Rails: 3, "3", 2.9 and "2.9" give ints; "abc" gives 0; "" and None give None."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) < 1e18 else None
    text = str(value)
    if not text.strip():
        return None
    match = _LEADING_INT.match(text)
    if not match or len(match.group(1)) > 18:
        return 0 if not match else None
    return int(match.group(1).replace("_", ""))


# HTML's valid floating-point number, what a number box sends ("1e1", "2.9", "-.5").
_BROWSER_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def form_number(value):
    """A web form's number box as the browser (and app.js's words) read it: "1e1" is 10,
    "2.9" rounded to 3 (Math.round), a number too big for a bound still past it; anything
    else as cast_int reads it. (The API keeps Rails' to_i: "1e1" is 1 there.)"""
    if isinstance(value, str) and _BROWSER_NUMBER.fullmatch(value.strip()):
        return math.floor(max(-1e18, min(float(value), 1e18)) + 0.5)  # ("1e999" is inf)
    return cast_int(value)


def form_numbers(fields: dict, errors: dict, left="", required=True) -> dict:
    """The days and views number boxes of a web form (new push, edit), as form_number reads
    them. A box sent empty (a browser sends letters typed in one as nothing) is an error put in
    errors, said, never taken as a default; a box not sent is one too when required, else None
    (a script's form, as the API: the kind's default)."""
    numbers = {}
    for what in ("days", "views"):
        key = f"expire_after_{what}"
        numbers[what] = form_number(fields.get(key))
        if numbers[what] is None and (required or key in fields):
            errors[key] = [f"Enter the {what}{left} as a whole number (the box was sent empty: it shows the "
                           "form's first number again)."]
    return numbers


def cast_bool(value, absent=None):
    """Cast like upstream (`to_s.downcase`): on/yes/checked/true/1 (any case) are true,
    anything else false (" true" too: nothing is trimmed)."""
    if value is None:
        return absent
    if isinstance(value, bool):
        return value
    return str(value).lower() in _TRUE_WORDS


def _flag(fields: dict, key: str, absent):
    """A checkbox-like option: absent takes `absent` (None: the kind's default); present,
    even as a JSON null, is cast as upstream's `to_s.downcase` ("" is false). An array or
    object is absent: upstream permits these keys as scalars, and Rails drops any other."""
    value = fields.get(key)
    if key not in fields or isinstance(value, (list, dict)):
        return absent
    return cast_bool(value, absent=False)


def _string(errors, field, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        errors[field] = ["must be a string"]
        return None
    text = str(value)
    if not is_utf8(text):
        errors[field] = ["must be valid UTF-8 text"]
        return None
    return text


def is_utf8(text: str) -> bool:
    """Tell whether text is UTF-8 text: JSON can spell lone surrogates, which it is not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _duration(errors, value):
    if value is None or isinstance(value, str) and not value.strip():  # (not `.present?`: not given)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        return int(value.strip())
    errors["expire_after_duration"] = ["is not included in the list"]
    return None


def _uploads(errors, value) -> list[Upload]:
    items = value if isinstance(value, list) else [value]
    uploads = []
    for item in items:
        if isinstance(item, FileStorage):
            if not item.filename:
                continue  # an empty file input
            # The type is the client's word, kept for the file list: a plain type/subtype, else
            # the name's (the pwpush CLI sends none; upstream's storage detects one).
            filename = file_name(item.filename)
            content_type = item.mimetype if _MIME_TYPE.fullmatch(item.mimetype or "") else ""
            uploads.append(Upload(filename=filename,
                                  content_type=content_type or _type_of_name(filename),
                                  data=item.stream))  # (an UploadSpool: read in parts)
        elif item not in ("", None):
            errors["files"] = ["must be file uploads (multipart/form-data)"]
    return uploads


# Compressed files are their compression's type ("x.tar.gz" is not a tar file to open).
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz",
               "compress": "application/x-compress", "br": "application/x-brotli"}


@functools.cache
def _types() -> mimetypes.MimeTypes:
    """Python's own table, not the host's /etc/mime.types: the same answer on every server."""
    return mimetypes.MimeTypes()


def _type_of_name(filename: str) -> str:
    """A file's type from its name's last extension (only: the name is never read as a URL)."""
    extension = os.path.splitext(filename.rpartition("/")[2])[1]
    guessed, encoding = _types().guess_type("file" + extension, strict=False) if extension else (None, None)
    guessed = _COMPRESSED.get(encoding, "") if encoding else guessed
    return guessed if guessed and _MIME_TYPE.fullmatch(guessed) else "application/octet-stream"


def _name(errors: dict, fields: dict) -> str:
    name = (_string(errors, "name", fields.get("name")) or "").replace("\x00", "")
    if len(name) > NAME_MAX:
        errors["name"] = [f"is too long (maximum is {NAME_MAX} characters)"]
    return name


def new_push(fields: dict, kind=None, form=False) -> NewPush:
    """Build a NewPush from a push's parameters; 422 for values of the wrong type.

    kind forces the kind (v1 /f.json, /r.json); form=True reads absent checkboxes as false,
    days and views as number boxes (form_number).
    """
    errors: dict = {}
    # A null `files` is no files key (Rails' permit(files: []) drops it); an array, even
    # empty, is one.
    files_given = fields.get("files") is not None
    files = _uploads(errors, fields["files"]) if files_given else []
    requested = _string(errors, "kind", fields.get("kind"))
    if kind is None:  # a blank kind is none; any other is taken as sent (upstream's enum of four names)
        kind = requested if requested and requested.strip() else ("file" if files else "text")
    # (An emptied number box, None here, is the form's error: web.create says it with the rest.)
    absent, number = (False, form_number) if form else (None, cast_int)
    name = _name(errors, fields)
    new = NewPush(
        kind=kind, payload=_string(errors, "payload", fields.get("payload")),
        files=files, files_given=files_given,
        expire_after_days=number(fields.get("expire_after_days")),
        expire_after_duration=_duration(errors, fields.get("expire_after_duration")),
        expire_after_views=number(fields.get("expire_after_views")),
        deletable_by_viewer=_flag(fields, "deletable_by_viewer", absent),
        retrieval_step=_flag(fields, "retrieval_step", absent),
        passphrase=_string(errors, "passphrase", fields.get("passphrase")),
        name=name,
        note=_string(errors, "note", fields.get("note")))
    if errors:
        raise ValidationFailed(errors)
    return new


def push_changes(fields: dict) -> Changes:
    """Build an owner's Changes from the edit form's push[...] fields; 422 for a value of
    the wrong type or a name too long (absent checkboxes are false). The days and views are
    read as number boxes, None when missing: the caller says that (form_numbers). Files to
    add come as a new push's (push[files][]), with the push's passphrase."""
    errors: dict = {}
    name = _name(errors, fields)
    files = tuple(_uploads(errors, fields["files"])) if fields.get("files") is not None else ()
    passphrase = _string(errors, "passphrase", fields.get("passphrase"))
    note = _string(errors, "note", fields.get("note")) or ""
    if errors:
        raise ValidationFailed(errors)
    return Changes(days_left=form_number(fields.get("expire_after_days")),
                   views_left=form_number(fields.get("expire_after_views")),
                   retrieval_step=cast_bool(fields.get("retrieval_step"), False),
                   deletable_by_viewer=cast_bool(fields.get("deletable_by_viewer"), False),
                   name=name, note=note, days_shown=shown(fields, "days"), views_shown=shown(fields, "views"),
                   files=files, passphrase=passphrase)


def shown(fields: dict, what: str) -> int | None:
    """The edit form's hidden record of the days or views left when it was opened."""
    return cast_int(fields.get(f"{what}_shown"))


def sent_value(name: str):
    """A top-level parameter from the query, else the JSON body or the form; None when absent."""
    environ = request.environ
    if not environ.get("QUERY_STRING") and not environ.get("CONTENT_LENGTH") \
            and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", ""):
        return None  # nothing sent (the usual GET): no parsing
    value = request.args.get(name)
    if value is None and request.is_json:
        data = json_data()
        value = data.get(name) if isinstance(data, dict) else None
    elif value is None and request.mimetype in _FORM_TYPES:
        value = request.form.get(name)
    return value


def passphrase_param() -> str | None:
    """The passphrase a retrieval carries, from the query or the body."""
    value = sent_value("passphrase")
    return value if isinstance(value, str) and value and is_utf8(value) else None


# Ruby's Integer(): a sign, a base prefix (0x, 0b, 0o, 0d) or a leading 0 (octal), digits
# with single underscores between them; Ruby's ISSPACE (ASCII) around it.
_RUBY_INTEGER = re.compile(r"([+-]?)(0[xXbBoOdD])?([0-9a-fA-F](?:_?[0-9a-fA-F])*)")
_RUBY_BASES = {"x": 16, "b": 2, "o": 8, "d": 10}


def page_param(limit: int | None = 200) -> int:
    """Parse ?page= as Ruby's Integer() would; below 1 means 1; above the limit (the API's
    200) or junk is a 400."""
    raw = request.args.get("page")
    if raw is None:
        return 1
    match = _RUBY_INTEGER.fullmatch(raw.strip(" \t\n\v\f\r"))
    if match is None:
        raise BadParameter("Invalid page parameter")
    sign, prefix, digits = match.groups()
    base = _RUBY_BASES[prefix[1].lower()] if prefix else 8 if digits[0] == "0" else 10
    try:
        page = int(sign + digits.replace("_", ""), base)
    except ValueError:  # a digit outside the base ("08", "1e3")
        raise BadParameter("Invalid page parameter") from None
    if limit is not None and page > limit:
        raise BadParameter("Invalid page parameter")
    return max(page, 1)


# A codec that decodes UTF-8 strictly whatever errors= it is given (see _MultiPartParser).
_STRICT_UTF8 = "pwpush_strict_utf_8"
codecs.register(lambda name: codecs.CodecInfo(
    codecs.utf_8_encode, lambda data, errors="strict": codecs.utf_8_decode(data, "strict", True),
    name=_STRICT_UTF8) if name == _STRICT_UTF8 else None)
_NOT_UTF8 = "The form is not valid UTF-8."


class _MultiPartParser(formparser.MultiPartParser):
    """Werkzeug decodes a multipart text field with errors="replace", so a secret that is not
    UTF-8 (a Latin-1 file sent with `curl -F 'password[payload]=<file'`) was stored with
    U+FFFD in place of its bytes, unannounced; it asks this method which codec to use."""

    def get_part_charset(self, headers):
        charset = super().get_part_charset(headers)  # utf-8, ascii, us-ascii or iso-8859-1
        return charset if charset == "iso-8859-1" else _STRICT_UTF8  # (ASCII is UTF-8)


# A multipart part's header block (its Content-Disposition name and filename, a type): a
# name of 255 characters sent as filename*=UTF-8''%XX... is under 2.5 KB. Werkzeug parses
# each block with parse_options_header, a Python loop over its characters: an anonymous 9 MB
# form of 998 parts with 9 KB names took a worker 2.5-3.6 s of CPU (0.4 s a MB).
PART_HEADERS_MAX = 8 * 1024


class _BoundedDecoder(formparser.MultipartDecoder):
    """Werkzeug's decoder, 413 past PART_HEADERS_MAX in a part's headers, and past the longest
    field (max_form_memory_size) and OTHER_FIELDS_MAX in all text parts together: werkzeug caps
    each field, so a 25 MiB body of six 4 MiB text fields was all held as text, 32 MiB in
    all (files stream to UploadSpool, uncounted)."""

    _text_size, _in_text = 0, False

    def _parse_headers(self, data):
        if len(data) > PART_HEADERS_MAX:
            raise RequestEntityTooLarge()
        return super()._parse_headers(data)

    def next_event(self):
        event = super().next_event()
        if isinstance(event, (multipart.Field, multipart.File)):
            self._in_text = isinstance(event, multipart.Field)
        elif isinstance(event, multipart.Data) and self._in_text and self.max_form_memory_size is not None:
            self._text_size += len(event.data)
            if self._text_size > self.max_form_memory_size + OTHER_FIELDS_MAX:
                raise RequestEntityTooLarge()
        return event


formparser.MultipartDecoder = _BoundedDecoder  # (formparser.MultiPartParser.parse makes one)


def urlencoded_limit(max_form_memory_size: int) -> int:
    """The largest URL-encoded form read: the text a multipart form may hold (a field of
    max_form_memory_size bytes and OTHER_FIELDS_MAX), each byte sent as "%XX"."""
    return 3 * (max_form_memory_size + OTHER_FIELDS_MAX)


class FormDataParser(formparser.FormDataParser):
    """Werkzeug's form parser, with two changes. Text that is not UTF-8 is a 400 (upstream's
    answer too), not a secret silently changed: werkzeug keeps a URL-encoded field's invalid
    "%E9" as those three characters and replaces a multipart field's invalid bytes. And
    URL-encoded bodies have limits: werkzeug caps multipart forms only, and a 25 MiB body of
    empty fields (`a0=&a1=&...`, three million of them) took a worker 1 GiB to parse; one
    holds at most a multipart form's text percent-encoded (three bytes a byte) and as many fields
    as a multipart form may have parts, past either a 413 before it is parsed."""

    def _parse_urlencoded(self, stream, mimetype, content_length, options):
        limit = urlencoded_limit(self.max_form_memory_size)
        body = stream.read(limit + 1)
        if len(body) > limit or body.count(b"&") >= self.max_form_parts:
            raise RequestEntityTooLarge()
        try:
            items = form_items(body)
        except UnicodeDecodeError:
            raise BadParameter(_NOT_UTF8) from None
        return stream, self.cls(items), self.cls()

    def _parse_multipart(self, stream, mimetype, content_length, options):
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")  # (as werkzeug's: an empty form)
        parser = _MultiPartParser(stream_factory=self.stream_factory, cls=self.cls,
                                  max_form_memory_size=self.max_form_memory_size,
                                  max_form_parts=self.max_form_parts)
        try:
            form, files = parser.parse(stream, boundary, content_length)
        except UnicodeDecodeError:
            raise BadParameter(_NOT_UTF8) from None
        return stream, form, files


def form_items(body: bytes) -> list[tuple[str, str]]:
    """What `parse_qsl(body.decode(), keep_blank_values=True, errors="strict")` returns, each
    value percent-decoded 64 KiB at a time: urllib's unquote splits a value at every "%", and
    a 12 MB field took 1-2 GiB that way (each window in C: _percent_decoded). UnicodeDecodeError
    for text that is not UTF-8."""
    return [(_unquote(name), _unquote(value))
            for name, _, value in (field.partition(b"=") for field in body.split(b"&") if field)]


def _unquote(data: bytes) -> str:
    data = data.replace(b"+", b" ")
    pieces, start = [], 0
    while start < len(data):
        end = min(start + 65536, len(data))
        cut = data.rfind(b"%", end - 2, end)  # a piece never ends inside a "%XX"
        if cut > start and end < len(data):
            end = cut
        pieces.append(_percent_decoded(data[start:end]))
        start = end
    return b"".join(pieces).decode()


_LONE_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _percent_decoded(data: bytes) -> bytes:
    """unquote_to_bytes(data) in C: each "%XX" made a "\\xXX" escape for codecs.escape_decode
    (a lone "%" spelled "%25" first, backslashes doubled). unquote_to_bytes decodes in a
    Python loop, an exception for each lone "%": the longest secret of CJK text sent as a
    form (9 MiB encoded) took 0.43 s of CPU (now 0.10), 12 MB of "%" 2.5 s (now 0.85)."""
    escaped = _LONE_PERCENT.sub(b"%25", data.replace(b"\\", b"\\\\")).replace(b"%", b"\\x")
    return codecs.escape_decode(escaped)[0]


class Request(Flask.request_class):
    """Werkzeug's request, keeping uploaded files encrypted while they wait (crypto.UploadSpool),
    its forms parsed within limits (FormDataParser)."""

    form_data_parser_class = FormDataParser

    @property
    def is_json(self) -> bool:
        """Whether the body is JSON: werkzeug's types (application/json, application/*+json),
        and the other names Rails reads a body as JSON under (Mime::JSON's synonyms)."""
        return super().is_json or self.mimetype in ("text/x-json", "application/jsonrequest")

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return crypto.UploadSpool()
