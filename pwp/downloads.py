"""File downloads: a granted view's short-lived file links, whole or one byte range.

A range (RFC 9110 §14) lets a download that was cut off resume where it stopped (a phone
that lost its network, `curl -C -`, download managers); only the parts the range is in
are read and decrypted. One range of the forms `bytes=a-b`, `bytes=a-` and `bytes=-n` is a
206; a range past the end a 416; several ranges or a malformed header are ignored (the
whole file, as RFC 9110 allows). `If-Range` is honoured only with the ETag sent, a strong
validator that tells nothing of the content (pwp.crypto.file_tag).
"""
import re
import unicodedata
from urllib.parse import quote

from flask import Response, render_template, request

from . import pushes

UNSATISFIABLE = "unsatisfiable"
_ONE_RANGE = re.compile(r"bytes=(?:(\d+)-(\d*)|-(\d+))", re.IGNORECASE | re.ASCII)  # (ASCII: RFC 9110's DIGIT; "ſ" no "s")
_HUGE = 10 ** 19  # any position past the largest file


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The bytes (start, stop) one Range header asks of a file of size bytes; UNSATISFIABLE
    when none of them exists; None when there is no header, several ranges or a malformed
    one (then the whole file)."""
    match = _ONE_RANGE.fullmatch((header or "").strip(" \t"))
    if match is None:
        return None
    first, last, suffix = (_number(g) for g in match.groups())
    if suffix is not None:
        return (max(0, size - suffix), size) if suffix and size else UNSATISFIABLE
    if last is not None and last < first:
        return None
    if first >= size:
        return UNSATISFIABLE
    return first, size if last is None else min(last + 1, size)


def _number(digits: str | None) -> int | None:
    """A position as written (any number of digits, none: None)."""
    if not digits:
        return None
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 19 else _HUGE  # (int() refuses 4301 digits: a 500)


def _wants_page() -> bool:
    """Tell a browser's navigation: Accept likes text/html better than JSON (curl's */*, an API
    client's "application/json, text/html" like both as well: JSON). Not Accept's "best",
    which for werkzeug is the most specific type: Chromium's application/signed-exchange."""
    return request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html"


def download_file(token, _filename):
    """Download one decrypted file of a granted view, or a byte range of it, within the
    link's short window."""
    try:
        download = pushes.open_file(token, pushes.utcnow())
    except pushes.NotFound:
        if _wants_page():  # a browser: a page saying what happened
            return render_template("web/file_link_expired.html",
                                   minutes=pushes.FILE_LINK_SECONDS // 60), 404
        raise
    try:
        return _respond(download)
    except BaseException:
        download.close()
        raise


def _respond(download: pushes.FileDownload) -> Response:
    """The file's response: whole (200), the range asked for (206) or none (416)."""
    size, if_range = download.size, request.headers.get("If-Range")
    span = byte_range(request.headers.get("Range"), size)
    start, stop = span if isinstance(span, tuple) else (0, size)
    if span != UNSATISFIABLE or if_range is not None:
        download.select(start, stop)  # (sets the validator If-Range is compared with)
    if span is not None and if_range is not None and if_range.strip(" \t") != (download.etag or ""):
        span = None  # another validator (or a date, weak, none sent): the whole file, as it is now
        if (start, stop) != (0, size):
            start, stop = 0, size
            download.select(start, stop)
    if span == UNSATISFIABLE:
        download.close()
        return Response(status=416, headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"})
    response = Response(download, status=206 if span else 200, mimetype="application/octet-stream")
    response.content_length = stop - start  # (read as it is sent)
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    response.headers["Accept-Ranges"] = "bytes"
    if download.etag:
        response.headers["ETag"] = download.etag
    response.headers["Content-Disposition"] = content_disposition(download.row.filename)
    return response


def content_disposition(name: str) -> str:
    """attachment with the name twice, as upstream's Rails: filename*, which browsers read,
    and an ASCII filename= for the clients that read only that (curl -OJ), accents dropped
    and each other character outside ASCII, and a quote, made "_"."""
    fallback = "".join(map(_ascii, name))
    return f'attachment; filename="{fallback}"; filename*=UTF-8\'\'' + quote(name, safe="")


def _ascii(char: str) -> str:
    """A character of a name in ASCII: itself, without its accents (é: e), else "_"."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    return plain if plain and plain.isascii() and plain.isprintable() and not set(plain) & set('"\\') else "_"
