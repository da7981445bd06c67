"""The worker's own error answers (pwp/workers.py: ThreadWorker's ErrorAnswers part), with the
app's headers (the security headers as configured, no-store), JSON on the API's paths as the
app's own errors, plain text otherwise, never the client's input: the 503 and 413 of bodies the
main loop refuses, the requests gunicorn refuses (400, 414, 431...), their status gunicorn's,
and plain HTTP sent to the TLS port (nginx's 400: refuse_plain).

Loaded by gunicorn's master process (with pwp.workers): gunicorn's own modules only.
"""
import socket

from gunicorn.http.errors import InvalidProxyHeader, InvalidProxyLine
from gunicorn.util import close_graceful, write_nonblock
from gunicorn.workers.sync import SyncWorker

from pwp.worker_heads import RecordingUnreader, head_limits, is_api

# The headers the app puts on every answer (pwp.factory.SecurityHeaders: the security headers
# as configured, and no-store), on the worker's own answers too: set by ThreadWorker.run.
ANSWER_HEADERS = b"Cache-Control: no-store\r\n"


def set_answer_headers(security):
    """The app's headers, as configured (its security headers: name, value pairs), on the worker's answers."""
    global ANSWER_HEADERS
    ANSWER_HEADERS = b"Cache-Control: no-store\r\n" + b"".join(
        b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")) for name, value in security)


def error_answer(status: int, reason: str, api: bool, fields=b"", text=None, error=None) -> bytes:
    """An answer of the worker's own that closes the connection, with the app's headers:
    JSON for the API, as the app's own errors (the 413: {"status": 413, "error": "Request
    Entity Too Large"}; error, where given, for the reason), plain text otherwise (text, or
    the reason alone: never the client's input, which a browser would show as this site's)."""
    if api:
        from pwp.errors import JSON_TYPE, json_body

        content_type, body = JSON_TYPE.encode(), json_body({"status": status, "error": error or reason})
    else:
        content_type, body = b"text/plain; charset=utf-8", text or reason.encode() + b"\n"
    return (b"HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s"
            % (status, reason.encode(), content_type, len(body), fields, ANSWER_HEADERS, body))


class PlainRequest(Exception):
    """A plain HTTP request sent to the TLS port (its start: what came of it)."""

    def __init__(self, start: bytes):
        super().__init__("plain HTTP request sent to the TLS port")
        self.start = start


def refuse_plain(sock, keep: int):
    """(A thread, before a TLS connection's handshake.) Raise PlainRequest where the client's
    first byte starts no TLS record (a handshake's 0x16, SSLv2's hello's high bit) but a request
    line (an upper-case method), as nginx tells plain HTTP on its TLS port: its start (up to
    `keep` bytes, what is there) read. Never waits: gthread reads a connection once it is readable."""
    try:
        first = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # (nothing yet, or a failed connection: the handshake says so)
        return
    if first.isupper():
        try:
            start = sock.recv(keep, socket.MSG_DONTWAIT)
        except OSError:
            start = first
        raise PlainRequest(start)


# nginx's words for it (its 400 page: "The plain HTTP request was sent to HTTPS port").
PLAIN_REQUEST = b"The plain HTTP request was sent to HTTPS port\n"


class ErrorAnswers:
    """ThreadWorker's part that answers the requests gunicorn refuses."""

    def handle_error(self, req, client, addr, exc):
        """gunicorn's answer to a request it refuses (a header name it does not take, a request
        line or head past its limits: 400, 414, 431...), with its status and its log line, but
        the worker's own body (error_answer): gunicorn's is an HTML page without the app's
        headers that echoes the client's input (a header's name and value: a credential, maybe)."""
        api, conn, text = False, getattr(getattr(self, "serving", None), "conn", None), None
        if type(exc) is PlainRequest:  # (gunicorn's: a 403 written to a TLS socket never made, unread)
            ip = (addr or ("",))[0]
            if exc.start.startswith(b"PROXY "):  # (v1's line: a proxy's, sent before its TLS)
                self.log.info("A PROXY protocol header before TLS (not supported: gunicorn reads it inside TLS) "
                              "from ip=%s: answered 400", ip)
            else:
                self.log.info("Plain HTTP request from ip=%s sent to the TLS port: answered 400", ip)
            status, reason, api, text = 400, "Bad Request", is_api(exc.start), PLAIN_REQUEST
        else:
            status, reason = self.gunicorns_status(req, addr, exc)
        if text is None and conn is not None and conn.head is None:  # (served as gthread: what its reader kept)
            api = type(getattr(conn.parser, "unreader", None)) is RecordingUnreader and is_api(conn.parser.unreader.seen)
        elif text is None and conn is not None:  # (its head: handed to the parser, or already read for it: past the limits, spooled)
            api = is_api(conn.request) if conn.request else (conn.over or conn.spool is not None) and conn.api
        try:
            write_nonblock(client, error_answer(status, reason, api, text=text))
        except Exception:
            self.log.debug("Failed to send error message.")

    def gunicorns_status(self, req, addr, exc) -> tuple[int, str]:
        """The status gunicorn's handle_error answers `exc` with, and its log lines: what it
        writes to the client it is given (its contract), an end of a socket pair here, the
        status line read back from the other end (its page, which echoes the client's input,
        sent to no one)."""
        try:
            ours, theirs = socket.socketpair()
        except OSError as error:  # (out of files: not gunicorn's status, nor its log line)
            self.log.warning("A request gunicorn refuses answered 400 (%s: no socket for its answer)",
                             error.strerror or type(error).__name__)
            return 400, "Bad Request"
        if type(exc) is InvalidProxyHeader:  # (v2's: not among gunicorn 27.0.1's client errors, its 500)
            exc = InvalidProxyLine(exc.msg)  # (v1's: a 400, its warning line)
        with ours, theirs:
            super().handle_error(req, theirs, addr, exc)
            ours.setblocking(False)
            try:
                line = ours.recv(1024).partition(b"\r\n")[0].decode("latin-1")
            except OSError:  # (nothing written)
                line = ""
        _version, _, status_reason = line.partition(" ")
        status, _, reason = status_reason.partition(" ")
        return (int(status), reason) if status.isdigit() and reason else (500, "Internal Server Error")


def answer_as_ours(worker):
    """(gunicorn.conf.py's post_worker_init, in the worker.) A worker of gunicorn's own classes
    (`-k sync`) answers the requests gunicorn refuses as ThreadWorker does (ErrorAnswers):
    gunicorn's status, the app's headers, only the status's reason, in plain text (its
    request's head is gone when gunicorn refuses it, so not the API's JSON)."""
    if isinstance(worker, ErrorAnswers):
        return
    parts = (ErrorAnswers, type(worker))
    if worker.cfg.is_ssl and isinstance(worker, SyncWorker):
        parts = (SyncPlainRefusal, *parts)
        worker.plain_keep = head_limits(worker.cfg)[3]
    worker.__class__ = type(type(worker).__name__, parts, {})
    use_app_headers(worker.wsgi)


class SyncPlainRefusal:
    """(answer_as_ours: `-k sync` serving TLS.) Plain HTTP sent to the TLS port gets nginx's 400,
    as ThreadWorker's (refuse_plain in its _Connection.init): gunicorn's handshake failed and its
    answer went to the socket the failed SSLSocket had taken, nothing sent."""

    def handle(self, listener, client, addr):
        try:
            client.recv(1, socket.MSG_PEEK)  # (its first byte: the handshake would wait for it too)
            refuse_plain(client, self.plain_keep)
        except PlainRequest as request:
            self.handle_error(None, client, addr, request)
            close_graceful(client)  # (its rest read and dropped, up to 64 KiB: no reset for the 400)
            return
        except OSError:  # (a failed connection: the handshake says so)
            pass
        super().handle(listener, client, addr)


def use_app_headers(wsgi):
    """(The worker, its app loaded.) The app's headers, as configured (the CSP's logo sites,
    HSTS with FORCE_SSL), on the worker's own answers."""
    security = getattr(getattr(wsgi, "wsgi_app", None), "security", None)
    if security is None:  # (an app without pwp.factory's middleware: its fixed headers)
        from pwp.factory import SECURITY_HEADERS as security
    set_answer_headers(security)
