"""Keep secrets out of server logs: url_tokens, file links and query values are redacted.

A request line such as ``GET /api/v2/pushes/<url_token>?passphrase=... HTTP/1.1``
carries everything needed to read a push, so gunicorn's access log and its error
log (which quotes request lines of failed requests) go through `redact` first.
gunicorn.conf.py installs `GunicornLogger`.
"""
import logging
import re
from urllib.parse import quote, unquote

from gunicorn.glogging import Logger

FILTERED = "[FILTERED]"
# A path, or the path of a URL: from a slash (or an encoded one) up to the query or fragment.
# Matching runs on each segment percent-decoded, not on the raw spelling: gunicorn decodes
# PATH_INFO (%70 is "p", %2F a slash) and the app routes a path with doubled or trailing
# slashes as the path without them (hotpath.HotPath), so "/%70/<t>/r", "/p//<t>",
# "/p%2F<t>" and "/api/v2/%70ushes/<t>" all reach a push.
# A quote is no boundary where a path goes on after it (gunicorn takes "/x/'<t>"; in a log line
# a field's closing quote comes before a space, a comma, a bracket or the end).
_QUOTE_IN = r"[\"'](?![\s,;)\]}>]|$)"
_PATH = re.compile(r"(?:/|%2[fF])[^?#\s\"']*(?:" + _QUOTE_IN + r"[^?#\s\"']*)*")
# A fragment (gunicorn takes one in a request line), redacted where it holds a url_token's shape.
_FRAGMENT = re.compile(r"#[^\s\"']*(?:" + _QUOTE_IN + r"[^\s\"']*)*")
# /p/<t>, /f/<t>, /r/<t> (v1 and web, also under a locale prefix) and /api/v2/pushes/<t>:
# the segment after one of these names (compared in lower case) is a url_token.
_TOKEN_PARENTS = frozenset({"p", "f", "r", "pushes", "requests"})
# A url_token wherever it is (pushes.new_url_token's shape, in a segment): under a path no
# route takes too (a typo, "/x/<t>.json", "/p/<t>.json%": a 404, but the token works), in
# any case: lookups are case-sensitive, so "/X/<T>" or a capitalized "<T>" finds no push,
# but lowered it is the token. (Words that long are rare; shorter names stay readable.)
_TOKEN_SHAPE = re.compile(r"[a-zA-Z0-9]{24}")
# /pfb/<encrypted file link>/<file name>: all of it.
_FILE_LINK = "pfb"
# Not secrets: collection routes that share those prefixes (with or without ".json").
_ROUTE_WORDS = frozenset({"active", "expired", "new"})
# Characters a decoded segment may keep when it is written back (RFC 3986 pchar, no quote).
_SEGMENT_SAFE = "!$&()*+,;=:@-._~"
# A query item: "name=value" (the value is redacted, except simple paging, tab and locale
# values) or a bare item (all of it). A fragment is not a boundary: it may hold the rest of
# a value a client forgot to encode. Nor is a quote, which a passphrase may hold (curl sends
# it raw): in a log line only one before a space or the end closes a field ("GET ...");
# in one access-log atom (no quotes around it: ATOM), none does.
_QUERY_ITEM = re.compile(r"([?&])(?!(?:page|tab|locale)=[\w-]*(?:[&\s\"']|$))"
                         r"((?:[^=&\s\"']|[\"'](?!\s|$))*=)?(?:[^&\s\"']|[\"'](?!\s|$))*")
_QUERY_ITEM_ATOM = re.compile(r"([?&])(?!(?:page|tab|locale)=[\w-]*(?:[&\s]|$))([^=&\s]*=)?[^&\s]*")
# gunicorn quotes the offending client input of a malformed request (a header line
# "Authorization Bearer <token>", the rest of a request line; repr()'s quotes: double ones
# around a value that holds a single one), and at debug level the head a client cut short
# (-k sync's "No more data after: b'...'"): drop the quoted part. (An IPv6 client's ip holds
# colons; a Unix socket's is empty.)
_CLIENT_INPUT = re.compile(r"^(Invalid request from ip=\S*?: [^'\"]*|.*?No more data after: b?)(['\"]).*\2",
                           re.DOTALL)
# Header and environ atoms that hold credentials, and answers' headers that hold a push's
# content: a download's file name (Content-Disposition).
_CREDENTIALS = re.compile(r"\{(?:authorization|x-user-token|cookie|set-cookie|http_authorization|"
                          r"http_x_user_token|http_cookie)\}[ieo]|\{content-disposition\}o")
# An answer's Location: the app's own redirects name a path on this site (redacted as paths
# are); any other (another site's: a URL push's 303 to its URL, the push's secret) is hidden.
_LOCATION = "{location}o"


def _decode(segment: str) -> str:
    """Percent-decode a path segment (twice more for double encoding); never raises."""
    for _ in range(3):
        if "%" not in segment:
            break
        decoded = unquote(segment, errors="replace")
        if decoded == segment:
            break
        segment = decoded
    return segment


def _hidden(segments):
    """Indexes of the url_token segments, and the index where a file link starts (or None)."""
    hidden, parent = set(), False
    for i, segment in enumerate(segments):
        if segment in ("", "."):
            continue  # "//" is merged (hotpath.HotPath); "." hides nothing
        stem = segment[:-5] if segment.endswith(".json") else segment
        if (parent and stem not in _ROUTE_WORDS) or _TOKEN_SHAPE.search(segment):
            hidden.add(i)
        lower = segment.lower().partition(";")[0]  # ("p;x": a path parameter, to some parsers)
        if lower == _FILE_LINK:
            if any(segments[i + 1:]):
                return hidden, i + 1
            return hidden, None
        # After "..", the next segment's parent is one before: it may be a token's.
        parent = lower in _TOKEN_PARENTS or segment == ".."
    return hidden, None


def _redact_path(match) -> str:
    raw = match.group(0)
    try:
        if "%" in raw:
            # Keep each raw segment's spelling; one holding an encoded slash becomes several.
            segments, spellings = [], []
            for piece in raw.split("/"):
                decoded = _decode(piece).split("/")
                segments += decoded
                spellings += [piece] if len(decoded) == 1 else [None] * len(decoded)
        else:
            segments = spellings = raw.split("/")
        hidden, file_link = _hidden(segments)
        if not hidden and file_link is None:
            return raw
        out = []
        for i, (segment, spelling) in enumerate(zip(segments, spellings)):
            if i == file_link:
                out.append(FILTERED)
                break
            if i in hidden:
                out.append(FILTERED + (".json" if segment.endswith(".json") else ""))
            elif spelling is not None:
                out.append(spelling)
            else:
                out.append(quote(segment, safe=_SEGMENT_SAFE, errors="backslashreplace"))
        return "/".join(out)
    except Exception:  # never let odd input stop a log line, nor pass it through
        return "/" + FILTERED


def _redact_query_item(match) -> str:
    separator, name = match.group(1), match.group(2)
    if name is not None and not _TOKEN_SHAPE.search(_decode(name)):
        return separator + name + FILTERED
    return separator + FILTERED if len(match.group(0)) > 1 else separator


def redact(text: str, atom: bool = False) -> str:
    """Replace url_tokens in paths, file links, query values and quoted bad input with
    [FILTERED]; atom: text is one access-log field, not a line of them."""
    # (It runs on every access-log atom: skip the patterns that cannot match.)
    if text.startswith("Invalid request from ip=") or "No more data after: " in text:
        text = _CLIENT_INPUT.sub(r"\1\2" + FILTERED + r"\2", text)
    if "/" in text or "%" in text:
        text = _PATH.sub(_redact_path, text)
    if "?" in text or "&" in text:
        text = (_QUERY_ITEM_ATOM if atom else _QUERY_ITEM).sub(_redact_query_item, text)
    if "#" in text:
        text = _FRAGMENT.sub(_redact_fragment, text)
    return text


def _redact_fragment(match) -> str:
    return "#" + FILTERED if _TOKEN_SHAPE.search(_decode(match.group(0))) else match.group(0)


def redact_query(query: str) -> str:
    """Redact a bare query string (no leading '?')."""
    return redact("?" + query, atom=True)[1:] if query else query


def _on_this_site(location) -> bool:
    """Whether a Location header names a path on this site ("/...", not "//host/...")."""
    return isinstance(location, str) and location.startswith("/") and not location.startswith(("//", "/\\"))


class RedactFilter(logging.Filter):
    """Rewrite a record's rendered message (and traceback) through `redact`."""

    def filter(self, record):
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_RAW_ENV = re.compile(r"^(\s*raw_env: ).*$", re.MULTILINE)


class ConfigDumpFilter(logging.Filter):
    """Hide the values of `gunicorn -e NAME=VALUE` (SECRET_KEY, PWPUSH_MASTER_KEY...) in the
    configuration gunicorn logs at debug level."""

    def filter(self, record):
        message = record.getMessage()
        if message.startswith("Current configuration:"):
            record.msg, record.args = _RAW_ENV.sub(r"\1" + FILTERED, message), None
        return True


class GunicornLogger(Logger):
    """gunicorn's logger with redacted request lines, paths, referrers and credentials."""

    def setup(self, cfg):
        """Set up as gunicorn does, then filter the error and access logs."""
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, RedactFilter) for f in log.filters):
                log.addFilter(RedactFilter())
        if not any(isinstance(f, ConfigDumpFilter) for f in self.error_log.filters):
            self.error_log.addFilter(ConfigDumpFilter())
        if not (cfg.logconfig or cfg.logconfig_dict or cfg.logconfig_json):  # (else the admin's)
            self._route_app_log()

    def _route_app_log(self):
        """Send the app's logger (`pwp`) to the error log at its level: left alone, its INFO
        lines went nowhere (Python's default level is WARNING) and its warnings to stderr
        without gunicorn's format. Its handlers are replaced, not added to: a configuration
        reload runs this again. (The app adds its RedactFilter to that logger.)"""
        app_log = logging.getLogger("pwp")
        app_log.setLevel(self.error_log.level)
        app_log.handlers = list(self.error_log.handlers)
        app_log.propagate = False  # (no second copy through a handler on the root logger)

    def atoms(self, resp, req, environ, request_time):
        """Access-log atoms (%(r)s, %(U)s, %(q)s, %(f)s, headers...) without secrets."""
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if _CREDENTIALS.fullmatch(key) or (key == _LOCATION and not _on_this_site(value)):
                atoms[key] = FILTERED
            elif key in ("q", "{query_string}e"):
                atoms[key] = redact_query(value)
            elif isinstance(value, str):
                atoms[key] = redact(value, atom=True)
        return atoms
