"""gunicorn's threaded worker with a bound on how long a client may keep a thread waiting.

gunicorn's gthread worker reads a request's headers and body with blocking reads that never
time out: a client that sends part of a request and stops (a phone that lost its network
mid-upload, or anyone on purpose) holds a thread for good, and the default setting has two.
Here each read waits at most gunicorn's `timeout` (30 s), as sync workers are bounded by it and
nginx's client_header_timeout and client_body_timeout bound each read; the client is then
taken as gone, as if it had closed the connection (body: the app's 400 for a body shorter
than its Content-Length), for good. A write gives up once the client took nothing of the
answer for `timeout`, as nginx's send_timeout. A request's head takes no thread at all: the
worker's main loop reads it (ThreadWorker below), and it must come whole within `timeout`.
A client that keeps sending a byte of a body now and then still holds its thread: in front
of the open internet, a reverse proxy that buffers requests is still the answer.

The bounds are the kernel's (SO_RCVTIMEO, SO_SNDTIMEO), set once per connection: Python's
own socket timeouts poll before every read and write, and in a process whose threads share
one core those extra system calls cost 6-9 % of the throughput (bench/RESULTS.md, stop 25).

Loaded by gunicorn's master process (gunicorn.conf.py's worker_class): gunicorn's own modules only.
"""
import errno
import fcntl
import selectors
import socket
import struct
import termios
import time
from collections import deque
from functools import partial

from gunicorn.http.body import Body
from gunicorn.http.errors import LimitRequestHeaders, ParseException
from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE, MAX_HEADERS, MAX_REQUEST_LINE
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

# The most bytes of heads the main loop holds, all connections together, unfinished or whole
# and waiting for a thread (counted until their request is done): a head may be as long as
# gunicorn's limits (823 KB by default), and 1000 connections (its worker_connections) of
# them would take 800 MB. Real heads are a few KB.
HEADS_HELD = 32 * 1024 * 1024
# How long, and for how many bytes, a closed connection waits for the client's end of it
# (gunicorn's util.close_graceful's: ThreadWorker.linger).
LINGER_SECONDS = 2.0
LINGER_BYTES = 65536


def bound(sock: socket.socket, seconds: float):
    """Make each read and write of a blocking client socket wait at most `seconds`."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    sock.__class__ = _Socket


class _Socket(socket.socket):
    """A client's socket whose reads and writes the kernel bounds (a blocking socket's EAGAIN):
    a read that runs out reads as the end of the stream, for good (_Gone: else gunicorn,
    draining a body the app left unread or short, took its late rest as the next request on
    the kept-alive connection); a write that runs out while the client took nothing of the
    answer since the last one ran out, as a client that went away (EPIPE, which gunicorn drops
    quietly). Linux wakes a blocked write only once a third of its send buffer (up to 4 MiB)
    is free, so a client that reads slowly may take a whole period to make room."""

    __slots__ = ()

    def recv(self, bufsize, flags=0):
        try:
            return super().recv(bufsize, flags)
        except BlockingIOError:
            self.__class__ = _Gone
            return b""

    def sendall(self, data, flags=0):
        with memoryview(data) as view, view.cast("B") as left:
            waiting = None  # the unsent bytes queued when a write last ran out
            while left:
                try:
                    sent = self.send(left, flags)
                except BlockingIOError:
                    queued = _queued(self)
                    if queued is None or (waiting is not None and queued >= waiting):
                        raise BrokenPipeError(errno.EPIPE, "the client stopped reading") from None
                    waiting = queued
                    continue
                waiting = None
                left = left[sent:]


def _queued(sock) -> int | None:
    """The bytes of the socket's send queue that the client has not taken (Linux's SIOCOUTQ);
    None where it cannot be read."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (AttributeError, OSError):
        return None


class _Gone(_Socket):
    """A client's socket whose read timed out: nothing more is read from it."""

    __slots__ = ()

    def recv(self, bufsize, flags=0):
        return b""


class _Body(Body):
    """A request's body whose failed read (a chunked body gunicorn cannot parse) makes the
    answer say `Connection: close`: gunicorn closes the connection after it (where the next
    request starts is unknown), and its answer said keep-alive."""

    def _read_reader(self, size):
        try:
            return super()._read_reader(size)
        except Exception:
            self.request.force_close()
            raise


class _Connection(gthread.TConn):
    over = False  # its head passed gunicorn's limits before its end (ThreadWorker.handle)
    linger = None  # its worker's ThreadWorker.linger (plain sockets)

    def close(self, graceful=False):
        # (Main loop: finish_request.) gunicorn's graceful close lingers for the client's end
        # of the connection (util.close_graceful: up to 2 s) in the main loop itself: a client
        # that sent `Connection: close`, or a head past the limits, and then neither closed nor
        # sent stopped the whole worker for 2 s each. Here the poller waits for it.
        if graceful and self.linger is not None and type(self.sock) in (socket.socket, _Socket, _Gone):
            self.linger(self.sock)
        else:
            super().close(graceful)

    def init(self):
        # In the worker thread, before a connection's first request is read. The kernel's
        # bounds stay through gunicorn's switches between blocking and non-blocking mode for
        # the requests that follow on a kept-alive connection. Not TLS, which gunicorn serves
        # as it does; nor with gunicorn's timeout 0, "none".
        super().init()
        if type(self.sock) is socket.socket and self.cfg.timeout > 0:
            bound(self.sock, self.cfg.timeout)


class ThreadWorker(gthread.ThreadWorker):
    """gthread, with each request's head read in the main loop, without a thread: a new or
    kept-alive connection goes to the thread pool only once its head (up to CRLF CRLF) is
    there, the bytes read given back to gunicorn's parser, which parses them as it would
    have read them. A head longer than gunicorn's own limits (limit_request_line,
    limit_request_fields x limit_request_field_size) goes to a thread at once, for the answer
    gunicorn's sync worker gives it (414, 431). A head not complete within `timeout` of the
    connection's start (a new one: its accept, a kept-alive one: its first byte), or that
    would take the heads held past HEADS_HELD, is dropped, never having taken a
    thread: clients that send half a head, or a byte now and then, no longer keep the two
    threads of the default setting from serving anyone else. A whole head's deadline, not
    a read's: a client then cannot stretch it by sending a byte just in time; `timeout` as
    each read was bounded by it, ample for any real client. Bodies are read in the threads
    with the kernel's bounds above. Not TLS (gunicorn reads the TLS handshake in a thread),
    nor with gunicorn's timeout 0, the PROXY protocol or HTTP/2 prior knowledge: those
    connections are served as gthread does. A connection closed after its answer waits for
    the client's end on the poller too (linger), not in the main loop as gthread's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.heads = deque()  # connections whose head is being read, by their deadline
        self.lingering = deque()  # closed connections waiting for the client's end (linger), by their deadline
        self.held = 0  # the bytes of their heads
        cfg = self.cfg
        line = cfg.limit_request_line
        line = MAX_REQUEST_LINE if line < 0 or line >= MAX_REQUEST_LINE else line or 1024 * 1024
        fields = cfg.limit_request_fields if 0 < cfg.limit_request_fields <= MAX_HEADERS else MAX_HEADERS
        size = cfg.limit_request_field_size
        size = size if size > 0 else DEFAULT_MAX_HEADERFIELD_SIZE
        # The longest head gunicorn's parser takes (an empty line, the request line, the
        # headers' buffer, as gunicorn.http.message.Request counts them), and a little over.
        self.head_limit = 2 + line + 2 + fields * (size + 2) + 4
        # (limit_request_line 0, "no limit": gunicorn's parser never answers a long line.)
        self.line_limit = line if cfg.limit_request_line else self.head_limit

    def enqueue_req(self, conn):
        # A request is next on the connection: a new one (from accept), a kept-alive one that
        # became readable, or one whose previous body's drain read into the next request.
        if type(conn) is gthread.TConn:
            conn.__class__ = _Connection
            cfg = self.cfg
            served_as_gthread = (cfg.is_ssl or cfg.timeout <= 0 or cfg.proxy_protocol != "off"
                                 or negotiation.prior_knowledge_allowed(cfg, conn.client))
            conn.head = None if served_as_gthread else bytearray()
            conn.handed = 0  # the bytes of the head it was handed to a thread with
            conn.linger = self.linger
        if conn.head is None or type(conn.sock) is _Gone:  # (_Gone: the thread ends it)
            super().enqueue_req(conn)
            return
        if conn.parser is not None and (read_ahead := conn.parser.unreader.take_buffered()):
            conn.head += read_ahead
            conn.sock.setblocking(False)  # (a thread's blocking socket; else it is non-blocking)
        # (A stopping worker's, as long as its kept-alive connections linger: see below.)
        wait = self.cfg.timeout if self.alive else gthread.STOP_KEEPALIVE_LINGER
        conn.timeout = time.monotonic() + wait
        self.read_head(conn, 0, waiting=False)

    def on_head_readable(self, conn, _client):
        self.read_head(conn, max(len(conn.head) - 3, 0), waiting=True)

    def read_head(self, conn, start, waiting):
        """Read what the client sent (most heads come whole at once); hand the connection to
        a thread once its head is complete, else wait for more on the poller. `start`: where
        in conn.head the head's end may begin (a byte at a time must not cost a rescan)."""
        head = conn.head
        if waiting:
            self.held -= len(head)  # (counted again below if it waits on)
        while True:
            if head.find(b"\r\n\r\n", start) >= 0 or _bare_lf(head, start):
                break  # the whole head, or a bare LF that gunicorn's parser rejects (400) at once
            first = 2 if head[:2] == b"\r\n" else 0  # (one empty line may come first)
            line_end = first + self.line_limit + 2
            if len(head) > line_end and head.find(b"\r\n", first, line_end) < 0:
                break  # a request line over gunicorn's limit: its parser answers the 400 at once
            if len(head) > self.head_limit:
                conn.over = True  # (its parser would read on before it said so: handle answers)
                break
            if self.held + len(head) > HEADS_HELD:
                self.drop_head(conn, waiting)
                return
            try:
                # (socket.socket's own recv: _Socket's takes EAGAIN as the client gone.)
                data = socket.socket.recv(conn.sock, 8192)
            except BlockingIOError:
                self.held += len(head)
                if not waiting:
                    self.heads.append(conn)
                    self.poller.register(conn.sock, selectors.EVENT_READ,
                                         partial(self.on_head_readable, conn))
                return
            except OSError:
                data = b""
            if not data:
                self.drop_head(conn, waiting)  # the client closed, or its connection failed
                return
            start = max(len(head) - 3, 0)
            head += data
        if waiting:
            self.poller.unregister(conn.sock)
            self.heads.remove(conn)
        if conn.parser is None:
            conn.init()  # (the parser, and the kernel's bounds; plain sockets only here)
        if not conn.over:  # (a head past the limits: its 431 needs none of its bytes, let go now)
            conn.parser.unreader.unread(bytes(head))
            # (Held until its request is done: a head may wait long in the thread pool's queue.)
            conn.handed = len(head)
            self.held += conn.handed
        head.clear()
        super().enqueue_req(conn)

    def handle(self, conn):
        # (A thread.) A head past gunicorn's limits gets the answer gunicorn's sync worker gives
        # it once it has read that far (431, "max buffer headers"); the connection then closes.
        if conn.over:
            conn.sock.setblocking(True)
            self.handle_error(None, conn.sock, conn.client, LimitRequestHeaders("max buffer headers"))
            return False
        return super().handle(conn)

    def handle_request(self, req, conn):
        if type(req.body) is Body:
            req.body.__class__ = _Body
            req.body.request = req
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn, keepalive):
        # (A thread, after the answer.) gthread drains the body the app left unread; one it
        # cannot parse (a bad chunk) raised to handle(), which wrote its own 400 after the
        # app's answer: a second answer, which the client would take for its next request's.
        # Where the next request starts is unknown: the connection closes, unanswered again.
        try:
            return super()._keepalive_after(conn, keepalive)
        except ParseException as e:
            self.log.debug("Closing connection after a body that could not be read (%s)", type(e).__name__)
            return False

    def finish_request(self, conn, fs):
        # (Main loop: a thread is done with the connection, its head parsed long since.)
        self.held -= conn.handed
        conn.handed = 0
        super().finish_request(conn, fs)

    def linger(self, sock):
        """gunicorn's util.close_graceful without its wait in the main loop: send our end of
        the connection, then read and drop what the client still sends (else the kernel answers
        it with a reset, which may cut the answer's last bytes short) until it closes its end,
        LINGER_BYTES came or LINGER_SECONDS passed, then close."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return
        self.nr_conns += 1  # (counted against worker_connections until closed, as gunicorn's)
        lingering = [time.monotonic() + LINGER_SECONDS, sock, 0]
        self.lingering.append(lingering)
        self.poller.register(sock, selectors.EVENT_READ, partial(self.on_lingering_readable, lingering))
        self.on_lingering_readable(lingering)

    def on_lingering_readable(self, lingering, _client=None):
        sock = lingering[1]
        while lingering[2] < LINGER_BYTES:
            try:
                data = socket.socket.recv(sock, 4096)  # (not _Socket's: EAGAIN is no end here)
            except BlockingIOError:
                return
            except OSError:
                break
            if not data:
                break
            lingering[2] += len(data)
        self.end_lingering(lingering)

    def end_lingering(self, lingering):
        self.lingering.remove(lingering)
        self.poller.unregister(lingering[1])
        lingering[1].close()
        self.nr_conns -= 1

    def drop_head(self, conn, waiting=True):
        if waiting:
            self.poller.unregister(conn.sock)
            self.heads.remove(conn)
        self.nr_conns -= 1
        conn.close()

    def _cap_keepalive(self, deadline):
        # A stopping worker (SIGTERM, max_requests) waits for its connections' requests, a
        # connection that has sent nothing (a browser's connection opened in advance) included:
        # their heads have as long as gunicorn gives kept-alive connections, not `timeout`.
        super()._cap_keepalive(deadline)
        for conn in self.heads:
            conn.timeout = min(conn.timeout, deadline)

    def murder_pending(self):
        # (Called in the main loop after each round of events, as gunicorn's own.)
        super().murder_pending()
        now = time.monotonic()
        while self.heads and self.heads[0].timeout <= now:
            self.held -= len(self.heads[0].head)
            self.drop_head(self.heads[0])
        while self.lingering and self.lingering[0][0] <= now:
            self.end_lingering(self.lingering[0])


def _bare_lf(head: bytearray, start: int) -> bool:
    """Whether head[start:] has an LF without its CR."""
    at = head.find(b"\n", start)
    while at >= 0:
        if at == 0 or head[at - 1] != 13:
            return True
        at = head.find(b"\n", at + 1)
    return False
