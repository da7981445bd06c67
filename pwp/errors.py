"""Domain exceptions, and the one place that turns errors into responses.

API requests get upstream's JSON bodies; web requests get a friendly page.
A missing push and an expired push look the same to a visitor.
"""
import json
import logging
import re
from http import HTTPStatus

from flask import Response, current_app, render_template, request, url_for
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest, HTTPException, TooManyRequests
from werkzeug.exceptions import NotFound as NoRoute

from .logfilter import RedactFilter, redact
from .words import human_size, plural

try:  # gunicorn parses a chunked body as the app reads it, and raises what it refuses there
    from gunicorn.http.errors import ParseException as UnreadableBody
except ImportError:  # (another server)
    UnreadableBody = None


class PushError(Exception):
    """Base of the lifecycle's named failures."""

    status = 400
    message = "Bad request"

    def body(self):
        """Return upstream's JSON body for this failure."""
        return {"error": self.message}

    @property
    def name(self) -> str:
        """The status's name: the error page's heading, as werkzeug's errors have."""
        return HTTPStatus(self.status).phrase


class NotFound(PushError):
    """No push with that token (or it was purged)."""

    status = 404
    message = "not-found"


class Forbidden(PushError):
    """The push belongs to someone else."""

    status = 403
    message = "That push doesn't belong to you."


class NotDeletable(PushError):
    """A viewer tried to delete a push that is not deletable by viewers."""

    status = 401
    message = "That push is not deletable by viewers."


class PassphraseIncorrect(PushError):
    """The passphrase is missing or wrong."""

    status = 401
    message = "That passphrase is incorrect."

    def body(self):
        """Return upstream's 401 body for a passphrase failure."""
        return {
            "error": self.message,
            "message": "This push requires a passphrase. Please provide it using the "
                       "'passphrase' parameter (e.g. ?passphrase=mysecret)",
            "status": "unauthorized",
        }


class TooManyAttempts(PushError):
    """More than five passphrase attempts on one push within a minute."""

    status = 429
    message = "Too many passphrase attempts. Please try again in a minute."


class TooManyNotifyRequests(PushError):
    """More than 5 notify-by-email requests in a minute by one user (429)."""

    status = 429
    message = "Too many email notification requests. Please try again in a minute."


class KeysOutOfDate(PushError):
    """This instance's master keys do not open a stored secret: instances whose
    PWPUSH_MASTER_KEY differ (a step of the key rotation skipped). 503: another may open it."""

    status = 503
    message = ("This server's encryption keys are out of date: secrets cannot be opened or made here "
               "right now. Try again in a few minutes.")


class SignInRequired(PushError):
    """This action needs an authenticated user."""

    status = 401
    message = "You need to sign in or sign up before continuing."


class BadParameter(PushError):
    """A request parameter is missing or malformed (400 with a message)."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class BodyTooLarge(BadParameter):
    """A request body too large to take (413 with a message)."""

    status = 413


class ValidationFailed(PushError):
    """The push does not pass validation: a field -> messages hash (422)."""

    status = 422

    def __init__(self, errors):
        super().__init__("validation failed")
        self.errors = errors

    def body(self):
        """Return the errors hash, as upstream."""
        return self.errors


def wants_json():
    """Tell whether this request is an API request (JSON answers)."""
    return is_api_path(request.path) or request.accept_mimetypes.best == "application/json"


def is_api_path(path: str) -> bool:
    """Tell whether a path is the API's (or a file link's): its errors are JSON."""
    return path.startswith("/api/") or path.endswith(".json") or path.startswith("/pfb/")


def json_response(data, status=200) -> Response:
    """Return data as JSON (json_body), without jsonify's per-call settings lookups: API
    answers are the hot path."""
    return Response(json_body(data), status=status, content_type=JSON_TYPE)


def json_body(data) -> bytes:
    """The body of every JSON answer (the app's, the hot path's, the worker's own) as
    upstream's Rails writes it: compact, keys in order, text in UTF-8 (not \\u escapes) but
    for <, >, & and the line separators U+2028 / U+2029 (ActiveSupport's escapes), and
    nothing after the document (Flask's jsonify adds a "\\n", which the pwpush CLI shows
    inside the error text of a refusal)."""
    try:
        return _escaped(_dumps(data)).encode()
    except UnicodeEncodeError:  # (a lone surrogate, which no UTF-8 holds: as JSON escapes it)
        return _escaped(_dumps_ascii(data)).encode()


def _escaped(text: str) -> str:
    """JSON text with ActiveSupport's escapes (_RAILS_ESCAPES)."""
    for character, escape in _RAILS_ESCAPES:
        if character in text:  # (a search each, ~200 instructions: str.translate's ~100 a character)
            text = text.replace(character, escape)
    return text


class JSONProvider(DefaultJSONProvider):
    """The app's JSON (app.json): keys in order, compact, and its answers (jsonify, a view's
    dict) json_response's, so every JSON answer is written by json_body."""

    sort_keys = False
    compact = True

    def response(self, *args, **kwargs) -> Response:
        """Return the arguments as a JSON answer (json_response)."""
        return json_response(self._prepare_response_obj(args, kwargs))


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_dumps_ascii = json.JSONEncoder(separators=(",", ":")).encode
# What ActiveSupport's JSON escapes beyond JSON's own (escape_html_entities_in_json, on by
# default, and the line separators JavaScript once refused): only ever inside strings.
_RAILS_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                  ("\u2029", "\\u2029"))
JSON_TYPE = "application/json; charset=utf-8"  # as upstream (Rails) labels every JSON answer
INTERNAL_ERROR = {"status": 500, "error": "Internal Server Error"}


def api_error(status, body=None):
    """Return a JSON error response; an empty body for upstream's bare 401s, labelled as
    Rails' `head` labels them on a JSON request: `application/json`, no charset."""
    if body is None:
        return Response(b"", status=status, content_type="application/json")
    return json_response(body, status)


# A push's API paths that anyone may call, as upstream's router matches them (a token is any
# segment without "." or "/"; audit paths ask for a token first).
_PUSH_PATH = re.compile(r"/api/v2/pushes/[^/.]+(?:/preview)?|/[pfr]/[^/.]+(?:/preview)?\.json")


def _http_error(exc: HTTPException):
    # Allow (405) and Retry-After (429, 503) as werkzeug gives them.
    headers = [(name, value) for name, value in exc.get_headers() if name in ("Allow", "Retry-After")]
    if exc.code == 405 and getattr(exc, "valid_methods", None) and not is_api_path(request.path):
        # A page answers OPTIONS with its methods (200, Allow), as Flask's automatic OPTIONS
        # would: that is off app-wide (PROVIDE_AUTOMATIC_OPTIONS) so that the API's paths answer
        # as upstream's router (404), and no view ever runs for OPTIONS. Routing, not a
        # lookup, decides it: a token's existence never shows.
        headers = [("Allow", ", ".join(sorted({*exc.valid_methods, "OPTIONS"})))]
        if request.method == "OPTIONS":
            return Response(status=200, headers=headers)
    if exc.code == 404 and request.endpoint is None and request.method in ("GET", "HEAD") \
            and _TOKEN_PAGE.fullmatch(request.path):
        # A token our converter refuses (too long, odd characters), which upstream's router (a
        # public gateway's too) takes as a token: the expired page, as for any token without
        # a push, whatever the Accept header (as _push_error). (Not a view's own 404.)
        return render_template("web/expired.html"), 200
    if wants_json():
        if exc.code == 404 and request.method in ("GET", "HEAD", "DELETE") and _PUSH_PATH.fullmatch(request.path) \
                and not current_app.config["PWP_PUBLIC_GATEWAY"]:
            # A token our converter refuses (too long, odd characters) that upstream's router
            # takes as a token: its controller finds no push. (A public gateway has no such
            # routes: no route, whatever the token.)
            return api_error(404, NotFound().body())
        if exc.code in (404, 405):  # (upstream's router: a method a path lacks is no route, 404)
            return api_error(404, {"status": 404, "error": "Not Found"})
        response = api_error(exc.code or 500, {"status": exc.code, "error": exc.name})
        response.headers.extend(headers)
        return response
    back = None
    if exc.code == 413 and for_recipient():  # (the passphrase form's: no files or secrets sent here)
        exc = _RecipientTooLarge()
        if request.endpoint == "web.access":
            back = (url_for("web.passphrase", **request.view_args), "Back to the passphrase form")
    elif exc.code == 413:  # (a body over MAX_CONTENT_LENGTH, unread: the form cannot be shown again)
        exc = _TooLargePage(current_app.config["PWP__FILES__MAX_TOTAL_BYTES"])
        if request.endpoint == "owner.update":  # (files added on a push's edit page: back there)
            exc.description = (f"A push's files can be up to {human_size(exc.max_files, limit=True)} in all, "
                               "counting the files it has. Go back and choose fewer or smaller files.")
            back = (url_for("owner.edit", **request.view_args), "Back to the edit page")
    elif exc.code == 404 and exc.description == NoRoute.description and current_app.config["PWP_PUBLIC_GATEWAY"]:
        exc = NoRoute(GATEWAY_NOT_FOUND)
    elif exc.code == 429:
        wait = exc.retry_after if isinstance(getattr(exc, "retry_after", None), int) else None
        exc = TooManyRequests(f"Too many requests came from your address. Try again in {plural(wait, 'second')}."
                              if wait else "Too many requests came from your address. Try again in a minute.")
    return error_page(exc, back=back), exc.code, headers


def for_recipient() -> bool:
    """Tell whether this request is a link recipient's (the pages of a push's link, a public
    gateway's every page): its error page is then bare as their pages (web/_recipient.html),
    with no way into the sender's service (the start page, the sign-in)."""
    from .gateway import RECIPIENT_ENDPOINTS  # (the gateway imports this module)

    if current_app.config["PWP_PUBLIC_GATEWAY"] or request.endpoint in RECIPIENT_ENDPOINTS:
        return True
    return request.endpoint is None and _RECIPIENT_PATH.fullmatch(request.path) is not None


def error_page(error, back=None) -> str:
    """The error page (errors/http.html), a recipient's bare one."""
    return render_template("errors/http.html", error=error, back=back, recipient=for_recipient())


# A link's pages as upstream's router matches them (a token is any segment without "." or
# "/"), and the paths a recipient's mistyped or cut link takes.
_TOKEN_PAGE = re.compile(r"/[pfr]/[^/.]+(?:/r|/passphrase)?")
_RECIPIENT_PATH = re.compile(r"/[pfr]/[^/]+(?:/r|/passphrase|/access|/expire)?")


# A public gateway's 404 page (pwp/gateway.py), for its visitors: recipients of a link.
GATEWAY_NOT_FOUND = ("There is nothing at this address. This site opens the secret links people send; "
                     "check that you opened the whole link you were given.")


class _TooLargePage:
    """A 413 said in a page (werkzeug's words: "The data value transmitted exceeds the capacity limit.")."""
    code, name = 413, "Too large to send"

    def __init__(self, max_files: int):
        from .pushes import TEXT_MAX  # (pushes imports this module)
        self.max_files = max_files
        chars = f"{TEXT_MAX:,}".replace(",", " ")
        self.description = (f"Files can be up to {human_size(max_files, limit=True)} in total, and a secret "
                            f"up to {chars} characters. Go back and send less.")


class _RecipientTooLarge:
    """A 413 on a recipient's page (a passphrase form's body over the app's limit)."""
    code, name = 413, "Too large to send"
    description = "That was more than this page takes. Go back and try again."


class FormNotSent(BadRequest):
    """A form whose CSRF token is missing or not this session's, said as a person can act on it."""
    name = "This form could not be sent"
    description = ("This browser's session with the site has ended (it was closed, or you signed in or out "
                   "in another tab), or it does not keep the site's cookies. Go back, reload the page and "
                   "send it again.")


def _push_error(exc: PushError):
    if isinstance(exc, NotFound) and not is_api_path(request.path):
        # A page's unknown push: the expired page, whatever the Accept header (a JSON 404
        # would tell an unknown token from an expired one, which gets the page).
        return render_template("web/expired.html"), 200
    if wants_json():
        return api_error(exc.status, exc.body())
    return error_page(exc), exc.status


def log_unexpected(logger, path: str, method: str, exc: Exception):
    """Log an unexpected exception, the path redacted (it may carry a url_token)."""
    logger.error("Exception on %s [%s]", redact(path), method, exc_info=exc)


def _unexpected(exc: Exception):
    # Flask logs nothing for an exception that a handler answers: log it here. The
    # client learns nothing about it.
    log_unexpected(current_app.logger, request.path, request.method, exc)
    if wants_json():
        return api_error(500, INTERNAL_ERROR)
    return error_page(None), 500


def _undecryptable(_exc):
    # A stored secret (a note, a file, a two-factor secret) the master keys do not open: the
    # instances' keys differ. (A payload's failure says more: pwp.pushes._keys_out_of_date.)
    from .pushes import log_undecryptable

    log_undecryptable(f"{request.method} {redact(request.path)}: a stored secret",
                      "another instance encrypts with a key this one lacks, or rotate-key moved the database to "
                      "one (README, Key rotation); answered 503")
    return _push_error(KeysOutOfDate())


def init_app(app):
    """Register the error handlers and the app's JSON; redact url_tokens in what the app logs."""
    from .crypto import InvalidToken

    app.json = JSONProvider(app)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(PushError, _push_error)
    app.register_error_handler(InvalidToken, _undecryptable)
    app.register_error_handler(Exception, _unexpected)
    if UnreadableBody is not None:  # (a malformed request, as werkzeug's own 400s: nothing logged)
        app.register_error_handler(UnreadableBody, lambda _exc: _http_error(BadRequest()))
    # The app's own log, and the request lines of `flask run`'s development server.
    for logger in (app.logger, logging.getLogger("werkzeug")):
        if not any(isinstance(f, RedactFilter) for f in logger.filters):
            logger.addFilter(RedactFilter())
