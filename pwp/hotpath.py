"""The API's two commonest requests, answered before Flask's per-request machinery.

A secret-sharing server mostly creates pushes and reads them once. For an anonymous
`POST /api/v2/pushes` with a JSON body, and an anonymous `GET /api/v2/pushes/<url_token>`
of a live push without passphrase or files, Flask's request and response objects, URL
adapter, sessions, hooks and signals cost about a hundred microseconds of the request's
four hundred (bench/PROFILE.md). This WSGI layer answers exactly those requests in an
app context, with the same handlers as the Flask views (api.store_push,
pushes.retrieve_open, api.push_json): byte-for-byte the same answer.

Everything else goes to Flask untouched, and so does any of these requests that is not
plainly valid: a token header, a cookie, a query string, a body to a read, input the API
refuses, a push that needs the general retrieval. The fall-through happens before
anything is written, so Flask's views and error handlers answer it as if this layer did
not exist. Per-IP throttling counts in front of it (pwp/throttling.py). A public gateway
(pwp/gateway.py) has no API: there this layer answers nothing.

First of all, for every request, this layer refuses a Host header that links cannot be
built from (400): the answers to creates and views carry links, built after the write. And
it routes a path with a trailing or doubled slash as the path without them
(`/api/v2/pushes/`, `//api/v2/pushes` from a base URL ending in a slash), as upstream's
router does: scripts written against it work unchanged.
"""
import io
import re

from flask import Flask

from . import api, gateway, params, pushes
from .auth import actor_from
from .errors import INTERNAL_ERROR, JSON_TYPE, KeysOutOfDate, PushError, is_api_path, json_body, log_unexpected

PREFIX = "/api/v2/pushes"
_TOKEN = re.compile(api.TokenConverter.regex)
# /api/v2/pushes/<name>: static routes that the token rule does not serve
_OTHER_ROUTES = frozenset({"active", "expired"})
_CREDENTIALS = ("HTTP_COOKIE", "HTTP_AUTHORIZATION", "HTTP_X_USER_TOKEN")
_STATUS = {200: "200 OK", 201: "201 CREATED", 500: "500 INTERNAL SERVER ERROR", 503: "503 SERVICE UNAVAILABLE"}


class HotPath:
    """WSGI layer in front of Flask's own wsgi_app (inside ProxyFix and SecurityHeaders)."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app
        self.links_use_host = not app.config["PWP__OVERRIDE_BASE_URL"]  # (settings are read at start)
        # A public gateway has no API: every request goes to Flask, whose map lacks its routes.
        self.handler = (lambda _environ: None) if gateway.enabled(app) else self._handler

    def __call__(self, environ, start_response):
        if not api.host_is_valid(environ, self.links_use_host):
            return _bad_host(environ, start_response)
        path = environ.get("PATH_INFO", "")
        if (path[-1:] == "/" and path != "/") or "//" in path:
            environ["PATH_INFO"] = routed_path(path)
        handler = self.handler(environ)
        if handler is None:
            return self.wsgi_app(environ, start_response)
        try:
            with self.app.app_context():
                answer = handler(environ)
        except KeysOutOfDate as exc:  # (after its view was given back: Flask's would count another)
            answer = exc.status, exc.body()
        except Exception as exc:  # as errors._unexpected answers in Flask
            log_unexpected(self.app.logger, environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"], exc)
            answer = 500, INTERNAL_ERROR
        if answer is None:
            return self.wsgi_app(environ, start_response)
        status, data = answer
        body = json_body(data)
        start_response(_STATUS[status], [("Content-Type", JSON_TYPE),
                                         ("Content-Length", str(len(body)))])
        return [body]

    def _handler(self, environ):
        """The handler for a request this layer answers, else None (before any reading)."""
        method = environ["REQUEST_METHOD"]
        if method not in ("GET", "POST") or environ.get("QUERY_STRING") \
                or "HTTP_TRANSFER_ENCODING" in environ \
                or any(name in environ for name in _CREDENTIALS) \
                or not self.app.config["PWP__ALLOW_ANONYMOUS"]:
            return None
        path = environ.get("PATH_INFO", "")
        if method == "POST":
            if path not in (PREFIX, PREFIX + ".json") \
                    or environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json":
                return None
            length = environ.get("CONTENT_LENGTH", "")
            if not length.isdigit() or not 0 < int(length) <= params.JSON_MAX:
                return None
            return self._create
        if not path.startswith(PREFIX + "/") or environ.get("CONTENT_LENGTH", "0") != "0":
            return None
        return self._retrieve

    def _create(self, environ):
        stream = environ["wsgi.input"]
        length = int(environ["CONTENT_LENGTH"])
        body = stream.read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # for Flask, if it answers after all
        if len(body) != length:
            return None  # the client went away: Flask's 400
        try:
            data = params.loads(body)
        except params.TooManyValues:
            return None  # Flask's 413
        except (ValueError, RecursionError):
            data = None
        environ[params.PARSED] = data  # Flask's view, if it answers after all, need not parse again
        if not isinstance(data, dict):
            return None
        try:
            fields = params.root(data, "push", wrap=True)
            push, now, _asked = api.store_push(fields, None, actor_from(environ))
        except PushError:
            return None  # refused input: Flask's view answers it the same way
        return 201, api.push_json(push, now, owner_fields=True, base=api.base_url_for(environ),
                                  locale=api.link_locale(data.get("push_locale")))

    def _retrieve(self, environ):
        token = environ["PATH_INFO"][len(PREFIX) + 1:]
        if token.endswith(".json"):
            token = token[:-5]
        if token in _OTHER_ROUTES or not _TOKEN.fullmatch(token):
            return None
        now = pushes.utcnow()
        result = pushes.retrieve_open(token, actor_from(environ), now)
        if result is None:
            environ[api.OPEN_TRIED] = True  # the view's general path need not try again
            return None
        return 200, api.push_json(result.push, now, retrieval=result, base=api.base_url_for(environ),
                                  locale="")  # (no query, no body: no push_locale)


def routed_path(path: str) -> str:
    """The path a request is routed by: without a trailing slash or doubled ones."""
    return "/" + "/".join(segment for segment in path.split("/") if segment)


def _bad_host(environ, start_response):
    """400 for a Host header that cannot be bound or linked to (checked before anything
    else: Flask cannot route it, and links to new or viewed pushes could not be built)."""
    if is_api_path(environ.get("PATH_INFO", "")):
        content_type, body = JSON_TYPE, json_body({"status": 400, "error": "Bad Request"})
    else:
        content_type, body = "text/plain; charset=utf-8", b"Bad Request: the Host header is not a valid host name.\n"
    start_response("400 BAD REQUEST", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def init_app(app: Flask):
    """Put the hot path in front of Flask's wsgi_app."""
    app.wsgi_app = HotPath(app, app.wsgi_app)
