"""Keep secrets out of server logs: url_tokens, file links and query values are redacted.

A request line such as ``GET /api/v2/pushes/<url_token>?passphrase=... HTTP/1.1``
carries everything needed to read a push, so gunicorn's access log and its error
log (which quotes request lines of failed requests) go through `redact` first.
gunicorn.conf.py installs `GunicornLogger`.
"""
import logging
import re

from gunicorn.glogging import Logger

FILTERED = "[FILTERED]"
# /p/<t>, /f/<t>, /r/<t> (v1 and web, also under a locale prefix) and /api/v2/pushes/<t>.
_TOKEN_SEGMENT = re.compile(r"(/(?:p|f|r|pushes|requests)/)([^/?#\s\"']+?)(\.json)?(?=[/?#\s\"']|$)")
# Not secrets: collection routes that share those prefixes.
_ROUTE_WORDS = {"active", "expired", "new"}
# /pfb/<encrypted file link>/<file name>: all of it.
_FILE_LINK = re.compile(r"/pfb/[^?#\s\"']*")
# Query values (passphrase=...), except harmless paging and tab parameters.
_QUERY_VALUE = re.compile(r"([?&](?!(?:page|tab|locale)=)[^=&#\s\"']*=)[^&#\s\"']*")
# gunicorn quotes the offending client input of a malformed request (a header line
# "Authorization Bearer <token>", the rest of a request line): drop the quoted part.
_INVALID_REQUEST = re.compile(r"^(Invalid request from ip=[^:]*: [^']*)'.*'", re.DOTALL)
# Header and environ atoms that hold credentials.
_CREDENTIALS = re.compile(r"\{(?:authorization|x-user-token|cookie|set-cookie|http_authorization|"
                          r"http_x_user_token|http_cookie)\}[ieo]")


def _segment(match):
    if match.group(2) in _ROUTE_WORDS:
        return match.group(0)
    return match.group(1) + FILTERED + (match.group(3) or "")


def redact(text: str) -> str:
    """Replace url_tokens in paths, file links, query values and quoted bad input with [FILTERED]."""
    text = _INVALID_REQUEST.sub(r"\1'" + FILTERED + "'", text)
    text = _FILE_LINK.sub("/pfb/" + FILTERED, text)
    text = _TOKEN_SEGMENT.sub(_segment, text)
    return _QUERY_VALUE.sub(r"\1" + FILTERED, text)


def redact_query(query: str) -> str:
    """Redact a bare query string (no leading '?')."""
    return redact("?" + query)[1:] if query else query


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


class GunicornLogger(Logger):
    """gunicorn's logger with redacted request lines, paths, referrers and credentials."""

    def setup(self, cfg):
        """Set up as gunicorn does, then filter the error and access logs."""
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, RedactFilter) for f in log.filters):
                log.addFilter(RedactFilter())

    def atoms(self, resp, req, environ, request_time):
        """Access-log atoms (%(r)s, %(U)s, %(q)s, %(f)s, headers...) without secrets."""
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if _CREDENTIALS.fullmatch(key):
                atoms[key] = FILTERED
            elif key in ("q", "{query_string}e"):
                atoms[key] = redact_query(value)
            elif isinstance(value, str):
                atoms[key] = redact(value)
        return atoms
