"""gunicorn's threaded worker with a bound on how long a client may keep a thread waiting.

gunicorn's gthread worker reads a request's headers and body with blocking reads that never
time out: a client that sends part of a request and stops (a phone that lost its network
mid-upload, or anyone on purpose) holds a thread for good, and the default setting has two.
Here each read waits at most gunicorn's `timeout` (30 s), as sync workers are bounded by it and
nginx's client_header_timeout and client_body_timeout bound each read; the client is then
taken as gone, as if it had closed the connection (body: the app's 400 for a body shorter
than its Content-Length), for good. A write gives up once the client took nothing of the
answer for `timeout`, as nginx's send_timeout. A request's head and body take no thread at
all: the worker's main loop reads them (ThreadWorker below), as nginx buffers a request before
it passes it on. The head must come whole within `timeout`; a body's reads each wait at most
`timeout` (client_body_timeout), its bytes kept in memory up to 64 KiB, past it in a temporary
file (client_body_buffer_size, client_body_temp_path) as ciphertext under a key held in memory
(crypto.temporary_spool); bodies in memory take at most half of
the memory heads are held in (then go to their file), and a body that needs room in the files'
full cap takes it from the unfinished bodies that sent nothing for longest (dropped), so slow
clients keep neither heads nor later uploads out. A client that sends a body a byte now
and then holds no thread; nor does one that reads a long answer slowly: the thread writes what
the socket takes at once and leaves the rest to the main loop (pwp/outbox.py: in memory up to
64 KiB, while what is held is under half of the heads' memory, as bodies; past it in an
encrypted temporary file, answers' files within half of the files' cap, so bodies always keep
the other half; past either the thread writes on itself, each write bounded), which sends it as
the socket drains (what it reads back from the file and the socket does not take stays in the
file, never held: slow readers cannot crowd out the heads), drops the client once it took
nothing for `timeout`, and reads the connection's next request only once the answer is sent
(nginx's proxy_buffering).

The bounds are the kernel's (SO_RCVTIMEO, SO_SNDTIMEO), set once per connection: Python's
own socket timeouts poll before every read and write, and in a process whose threads share
one core those extra system calls cost 6-9 % of the throughput (bench/RESULTS.md, stop 25).

Loaded by gunicorn's master process (gunicorn.conf.py's worker_class): gunicorn's own modules and
pwp.outbox (the standard library's) only.
"""
import errno
import fcntl
import os
import re
import resource
import selectors
import socket
import struct
import termios
import threading
import time
from collections import deque
from functools import partial
from urllib.parse import unquote_to_bytes

from gunicorn.http.body import Body
from gunicorn.http.errors import LimitRequestHeaders, ParseException
from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE, MAX_HEADERS, MAX_REQUEST_LINE, PP_V2_SIGNATURE
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.util import split_request_uri, write_nonblock
from gunicorn.workers import gthread

from pwp.outbox import ANSWER_IN_MEMORY, OUTBOXES, Outbox, buffered_sendall

# The most bytes of heads (and bodies kept in memory) the main loop holds, all connections
# together, unfinished or whole and waiting for a thread (counted until their request is done):
# a head may be as long as gunicorn's limits (823 KB by default), and 1000 connections (its
# worker_connections) of them would take 800 MB. Real heads are a few KB.
HEADS_HELD = 32 * 1024 * 1024
# A request's body is read by the main loop too, before the request takes a thread (as nginx
# reads it: client_body_buffer_size, client_body_temp_path): kept in memory with its head up to
# BODY_IN_MEMORY, past it (or while the heads and bodies held are past half of HEADS_HELD, so
# that bodies never take the room heads need) written to a temporary file (TMPDIR, deleted at
# once), all bodies' files together at most BODIES_SPOOLED (PWPUSH_BODIES_SPOOLED, in bytes): a
# body that would pass it takes the room of the unfinished bodies that sent nothing for longest,
# dropped without an answer (itself refused, a 503, only when they are not enough; one whose
# Content-Length alone passes the cap at once, before any room is taken), as slow
# clients could otherwise keep every later upload out. A body whose file cannot be made or
# written (TMPDIR full or missing) gets a 503 too (refuse_body).
# A body longer than the app takes (its MAX_CONTENT_LENGTH; BODY_LIMIT without one) goes to
# the thread at once (declared: the app refuses it, 413), or once past it (chunked) gets the
# worker's own 413 (as the app's, JSON on the API), no thread taken (refuse).
BODY_IN_MEMORY = 64 * 1024
# The open files a worker asks for (its soft limit raised up to its hard one): two per
# connection whose body is spooled, gunicorn's worker_connections (1000) of them and a margin.
OPEN_FILES = 65536
BODIES_SPOOLED = int(os.environ.get("PWPUSH_BODIES_SPOOLED") or 1024 * 1024 * 1024)
BODIES_HELD = HEADS_HELD // 2
BODY_LIMIT = 64 * 1024 * 1024
# An answer's bytes that the client's socket does not take at once are left by the thread that
# wrote them to the main loop (pwp/outbox.py), which sends them as the socket drains (as nginx
# buffers an upstream's answer: proxy_buffering, proxy_temp_path): up to ANSWER_IN_MEMORY of them
# in memory (while the heads and bodies held are under BODIES_HELD: hold_answer; counted with
# them once the thread is done), past it in an encrypted temporary file, answers' files together
# within ANSWERS_SPOOLED (half of BODIES_SPOOLED: the rest is the bodies', which never wait for
# answers' room) and with bodies' within BODIES_SPOOLED (spool_answer; past either the thread
# writes on itself, each write bounded by `timeout`). What the main loop reads back from a file
# it sends at once, and what the socket does not take goes back to the file (its position), never
# held: slow readers of many long answers would otherwise hold ANSWER_IN_MEMORY each, unbounded,
# and crowd out the heads.
ANSWERS_SPOOLED = BODIES_SPOOLED // 2
# A body that cannot be written to its temporary file gets a 503 that says to try again after
# this many seconds (a full spool frees itself as bodies end, or are dropped after `timeout`).
RETRY_AFTER = 30
# A head's fields that say how long its body is, and whether the client waits for a 100 Continue.
_FRAMING = re.compile(rb"\r\n(content-length|transfer-encoding|expect):[ \t]*([^\r\n]*)", re.IGNORECASE)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# How long, and for how many bytes, a closed connection waits for the client's end of it
# (gunicorn's util.close_graceful's: ThreadWorker.linger).
LINGER_SECONDS = 2.0
LINGER_BYTES = 65536
# How long a connection whose body was refused (its 503 sent, or a 413 for a body past the
# app's limit) reads and drops the rest of the body the client may still be sending
# before it closes (nginx's lingering_time): a client that sends its request whole before it
# reads the answer (curl without `Expect`, Python's requests) would otherwise get a reset, not
# the answer. Its bytes: the body's Content-Length (chunked: up to the app's limit).
DRAIN_SECONDS = 30.0
# ... and how long it waits for more of it (nginx's lingering_timeout): a client that sends
# nothing more does not hold one of the worker's connections for DRAIN_SECONDS.
DRAIN_IDLE_SECONDS = 5.0


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

    sendall = buffered_sendall  # (a thread's write: what the socket takes now, the rest to its Outbox)

    def send_waiting(self, data, flags=0):
        """socket.sendall, each write waiting at most the socket's bound for room."""
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


class _ChunkedEnd:
    """Finds where a chunked body ends as its bytes come (gunicorn's parser reads it later, and
    answers its framing errors): feed() says whether it ended, or has framing gunicorn refuses
    (bad: then gunicorn may not know where it ends either, and would read on)."""

    __slots__ = ("line", "skip", "crlf", "last", "bad", "limit")

    def __init__(self, limit):
        self.limit = limit  # the longest line (a chunk's size and extensions): limit_request_field_size
        self.line = bytearray()  # the line read so far: a chunk's size, a chunk's CRLF, a trailer
        self.skip = 0  # the chunk's bytes still to come
        self.crlf = False  # a chunk's CRLF is next
        self.last = False  # the last chunk came: trailers up to an empty line
        self.bad = False  # framing gunicorn refuses

    def feed(self, data) -> bool:
        at, size = 0, len(data)
        while at < size:
            if self.skip:
                step = min(self.skip, size - at)
                self.skip -= step
                at += step
                continue
            end = data.find(b"\n", at)
            if end < 0:
                self.line += data[at:]
                self.bad = len(self.line) > self.limit or (
                    self.crlf and self.line not in (b"", b"\r"))
                return self.bad
            self.line += data[at:end]
            at = end + 1
            if self.line[-1:] != b"\r":  # (a bare LF: gunicorn looks for CRLF, reading on)
                self.bad = True
                return True
            line = bytes(self.line[:-1])
            self.line.clear()
            if self.crlf:
                if line:
                    self.bad = True  # (gunicorn's 400)
                    return True
                self.crlf = False
            elif self.last:
                if not line:
                    return True  # the end
            else:
                digits = line.split(b";", 1)[0].rstrip(b" \t")
                if not digits or digits.strip(b"0123456789abcdefABCDEF"):
                    self.bad = True  # (gunicorn's 400)
                    return True
                self.skip = int(digits, 16)
                self.last = not self.skip
                self.crlf = not self.last
        return False


def _is_api(head) -> bool:
    """Whether the request whose head starts `head` is the API's: its errors are JSON. Its
    path as the app routes it: gunicorn's PATH_INFO (`//api/...` a path, percent-decoded),
    without doubled or trailing slashes (pwp.hotpath). A PROXY protocol header before it
    (v1's line, v2's binary block) is passed over."""
    from pwp.errors import is_api_path  # (in the worker, its app loaded)
    from pwp.hotpath import routed_path

    if head[:6] == b"PROXY ":
        head = head[head.find(b"\r\n") + 2:]
    elif head[:12] == PP_V2_SIGNATURE:
        head = head[16 + int.from_bytes(head[14:16], "big"):]
    start = 2 if head[:2] == b"\r\n" else 0  # (one empty line may come first)
    target = bytes(head[start:head.find(b"\r\n", start)]).split(b" ")[1:2] or [b"/"]
    try:
        path = split_request_uri(target[0].decode("latin-1")).path
    except ValueError:  # (an absolute-form target urlsplit refuses: "http://[", say)
        return False
    return is_api_path(routed_path(unquote_to_bytes(path).decode("latin-1")))


# The headers the app puts on every answer (pwp.factory.SecurityHeaders: the security headers
# as configured, and no-store), on the worker's own answers too: set by ThreadWorker.run.
ANSWER_HEADERS = b"Cache-Control: no-store\r\n"


def _unavailable(api: bool) -> bytes:
    """A 503 with Retry-After that closes the connection."""
    return _error_answer(503, "Service Unavailable", api, b"Retry-After: %d\r\n" % RETRY_AFTER,
                         b"Service Unavailable: the server cannot take this request's body now; try again later.\n")


def _error_answer(status: int, reason: str, api: bool, fields=b"", text=None) -> bytes:
    """An answer of the worker's own that closes the connection, with the app's headers:
    JSON for the API, as the app's own errors (the 413: {"status": 413, "error": "Request
    Entity Too Large"}), plain text otherwise (text, or the reason alone: never the client's
    input, which a browser would show as this site's)."""
    if api:
        from pwp.errors import JSON_TYPE, json_body

        content_type, body = JSON_TYPE.encode(), json_body({"status": status, "error": reason})
    else:
        content_type, body = b"text/plain; charset=utf-8", text or reason.encode() + b"\n"
    return (b"HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s"
            % (status, reason.encode(), content_type, len(body), fields, ANSWER_HEADERS, body))


class _SpooledUnreader(SocketUnreader):
    """gunicorn's reader of a request whose body the main loop spooled to a file: the file's
    bytes (the head, the body, maybe the start of the next request), then the socket's."""

    spool = None

    def chunk(self, size_hint=None):
        data = self.spool.read(max(self.mxchunk, min(size_hint or 0, self.max_body_chunk)))
        if data:
            return data
        self.__class__ = SocketUnreader  # (the file is closed by the main loop: finish_request)
        return self.chunk(size_hint)

    def take_rest(self):
        """(A thread, the request done, its connection kept alive.) The file's rest, which the
        body's drain left (what the client pipelined after it), back to the reader's buffer,
        after what the body's last read took from the file past its end (unread() puts first)."""
        rest = self.spool.read()
        self.__class__ = SocketUnreader
        self.unread(self.take_buffered() + rest)


class _RecordingUnreader(SocketUnreader):
    """gunicorn's reader of a connection gunicorn reads itself (TLS, the PROXY protocol: not
    the main loop), which keeps the first bytes of each request (from ThreadWorker.handle on,
    up to `keep`): the head its errors' JSON or text is told by (handle_error), as the main
    loop's heads tell it on plain connections."""

    seen = b""
    keep = 0

    def read(self, size=None, read_ahead=None):
        data = super().read(size, read_ahead)
        if len(self.seen) < self.keep:
            self.seen += data[:self.keep - len(self.seen)]
        return data


class _Connection(gthread.TConn):
    over = False  # its head passed gunicorn's limits before its end (ThreadWorker.handle)
    linger = None  # its worker's ThreadWorker.linger (plain sockets)
    spool = None  # the temporary file its body was written to (ThreadWorker.read_body)
    spooled = 0  # the bytes written to it
    api = False  # its request is the API's (its errors JSON): read_body, as its body is spooled
    keep = 0  # (served as gthread: the bytes of each request's start its _RecordingUnreader keeps)
    request = b""  # the head handed to the thread (hand_over), while it serves it: its errors' JSON or text
    outbox = None  # the Outbox of the answer the main loop is sending (send_answer)
    drain = 0  # its refused body's bytes still to come, read and dropped before it closes (linger)
    queued = None  # its answer's bytes in the kernel's send queue when the main loop last sent (send_answer)
    continued = False  # the main loop answered its head's `Expect: 100-continue`
    unspoolable = False  # its body's Content-Length alone passes BODIES_SPOOLED (wait_for_body)
    # Its body is longer than the app takes, or framed in a way gunicorn refuses: the thread reads
    # no more of it (nor anything) from the client (_Gone), and the connection closes after the answer.
    cut = False

    def close(self, graceful=False):
        # (Main loop: finish_request.) gunicorn's graceful close lingers for the client's end
        # of the connection (util.close_graceful: up to 2 s) in the main loop itself: a client
        # that sent `Connection: close`, or a head past the limits, and then neither closed nor
        # sent stopped the whole worker for 2 s each. Here the poller waits for it.
        if graceful and self.linger is not None and type(self.sock) in (socket.socket, _Socket, _Gone):
            self.linger(self.sock, self.drain)
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
        if self.head is None and type(getattr(self.parser, "unreader", None)) is SocketUnreader:
            self.parser.unreader.__class__ = _RecordingUnreader  # (HTTP/1: its request heads kept in part)
            self.parser.unreader.keep = self.keep


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
    each read was bounded by it, ample for any real client. Then its body (Content-Length or
    chunked) is read here too, before the connection goes to a thread (read_body), each read
    within `timeout`, `Expect: 100-continue` answered here; a body longer than the app takes
    goes to a thread at once (its 413: chunked, once past it, the worker's own 413), one
    whose framing gunicorn refuses too (its 400). Not
    TLS (gunicorn reads the TLS handshake in a thread),
    nor with gunicorn's timeout 0, the PROXY protocol or HTTP/2 prior knowledge: those
    connections are served as gthread does. A connection closed after its answer waits for
    the client's end on the poller too (linger), not in the main loop as gthread's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.heads = deque()  # connections whose head is being read, by their deadline
        self.bodies = set()  # connections whose body is being read (each read's deadline: conn.timeout)
        self.bodies_checked = 0.0  # when murder_pending last looked for bodies past their deadline
        self.spooled = 0  # the bytes of their temporary files (and of those waiting for a thread)
        self.body_limit = BODY_LIMIT  # (run: the app's own)
        self.accept_again = 0.0  # (accept: out of files, when to try again)
        self.lingering = deque()  # closed connections waiting for the client's end (linger), by their deadline
        self.draining = deque()  # closed connections reading the rest of a refused body (linger), by their deadline
        self.held = 0  # the bytes of their heads
        self.spool_lock = threading.Lock()  # (answers_spooled: threads add to it)
        self.answers_spooled = 0  # the bytes of answers' temporary files (Outbox.put: spool_answer)
        self.answers = set()  # connections whose answer the main loop is sending (each write's deadline: conn.timeout)
        self.serving = threading.local()  # (.conn: the connection a thread serves: handle_error)
        cfg = self.cfg
        line = cfg.limit_request_line
        line = MAX_REQUEST_LINE if line < 0 or line >= MAX_REQUEST_LINE else line or 1024 * 1024
        fields = cfg.limit_request_fields if 0 < cfg.limit_request_fields <= MAX_HEADERS else MAX_HEADERS
        size = cfg.limit_request_field_size
        size = size if size > 0 else DEFAULT_MAX_HEADERFIELD_SIZE
        self.field_limit = size  # (gunicorn's parser's limit of a chunk-size line too)
        # The longest head gunicorn's parser takes (an empty line, the request line, the
        # headers' buffer, as gunicorn.http.message.Request counts them), and a little over.
        self.head_limit = 2 + line + 2 + fields * (size + 2) + 4
        # (limit_request_line 0, "no limit": gunicorn's parser never answers a long line.)
        self.line_limit = line if cfg.limit_request_line else self.head_limit
        # A request's start that tells whether it is the API's, served as gthread (_RecordingUnreader):
        # its request line, after a PROXY protocol header (v1's line: 107 bytes at most; v2's, its TLVs).
        self.keep = min(self.line_limit, 65536) + 4 + 1024

    def run(self):
        # (The worker, its app loaded.) The longest body the app takes (Flask's MAX_CONTENT_LENGTH).
        limit = getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")
        if isinstance(limit, int) and limit >= 0:
            self.body_limit = limit
        global ANSWER_HEADERS  # (the app's, as configured: the CSP's logo sites, HSTS with FORCE_SSL)
        security = getattr(getattr(self.wsgi, "wsgi_app", None), "security", None)
        if security is None:  # (an app without pwp.factory's middleware: its fixed headers)
            from pwp.factory import SECURITY_HEADERS as security
        ANSWER_HEADERS = b"Cache-Control: no-store\r\n" + b"".join(
            b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")) for name, value in security)
        # A connection whose body is spooled holds two files: 1000 connections (gunicorn's
        # worker_connections) need more than the soft limit many systems start a service with
        # (1024, systemd's), under their hard limit (systemd's 524288). As nginx's
        # worker_rlimit_nofile and Go's runtime do: the soft limit raised to the hard one.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, OPEN_FILES) if hard != resource.RLIM_INFINITY else OPEN_FILES
        if soft != resource.RLIM_INFINITY and soft < want:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            except (ValueError, OSError):  # (macOS: an unlimited hard limit, a per-process cap under it)
                pass
        super().run()

    def accept(self, listener):
        # gunicorn's accept() ended the worker on EMFILE (every connection it held with it).
        # Out of files: accept no more connections than it holds until one ends (gunicorn's run
        # loop compares them to worker_connections); the clients past it wait in the backlog.
        try:
            super().accept(listener)
        except OSError as error:
            if error.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                raise
            # (Tried again once a connection ends, or a second later: murder_pending. With
            # none held, ENFILE say, the listener is not polled in a busy loop meanwhile.)
            self.worker_connections = self.nr_conns
            self.accept_again = time.monotonic() + 1
            self.set_accept_enabled(False)
        else:
            self.worker_connections = self.cfg.worker_connections

    def enqueue_req(self, conn):
        # A request is next on the connection: a new one (from accept), a kept-alive one that
        # became readable, or one whose previous body's drain read into the next request.
        if type(conn) is gthread.TConn:
            conn.__class__ = _Connection
            cfg = self.cfg
            served_as_gthread = (cfg.is_ssl or cfg.timeout <= 0 or cfg.proxy_protocol != "off"
                                 or negotiation.prior_knowledge_allowed(cfg, conn.client))
            conn.head = None if served_as_gthread else bytearray()
            conn.keep = self.keep
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
            if (end := head.find(b"\r\n\r\n", start)) >= 0:
                break  # the whole head
            if _bare_lf(head, start):
                break  # a bare LF that gunicorn's parser rejects (400) at once
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
            self.heads.remove(conn)
        if end >= 0 and self.wait_for_body(conn, end + 4):
            if conn.unspoolable:
                # Alone it would pass the spool's cap: refused now, not once its file passed
                # the cap, having taken other uploads' room on the way (make_room) in vain.
                conn.api = _is_api(head)
                self.refuse_body(conn, waiting, None)
                return
            conn.timeout = time.monotonic() + self.cfg.timeout
            if waiting:
                self.held += len(head)  # (read_body counts it as waiting)
                self.bodies.add(conn)
                self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self.on_body_readable, conn))
            self.read_body(conn, waiting, None)
            return
        if waiting:
            self.poller.unregister(conn.sock)
        self.hand_over(conn)

    def wait_for_body(self, conn, body_start) -> bool:
        """Whether the request whose head ends at body_start has a body still to come, to read
        here first (conn.left: its bytes still to come, or a _ChunkedEnd). Not one longer than
        the app takes, nor one the head frames in a way gunicorn refuses (its 400 at once)."""
        head = conn.head
        lengths, codings, expect = [], [], False
        for name, value in _FRAMING.findall(head, 0, body_start - 2):
            first = name[0] | 0x20  # (its first letter, lower-cased)
            if first == 99:  # c
                lengths.append(value.rstrip(b" \t"))
            elif first == 116:  # t
                codings.append(value.rstrip(b" \t").lower())
            else:
                expect = value.rstrip(b" \t").lower() == b"100-continue"
        if codings:
            if lengths or b",".join(codings).rpartition(b",")[2].strip(b" \t") != b"chunked":
                return False
            conn.left = _ChunkedEnd(self.field_limit)
            if conn.left.feed(head[body_start:]):
                conn.cut = conn.left.bad
                return False
        elif len(lengths) != 1 or not lengths[0].isdigit():
            return False  # (none, or gunicorn's 400)
        elif int(lengths[0]) > self.body_limit:
            # (The app's 413, then closed: its body unread, then read and dropped as the
            # connection closes, as a refused body's: linger.)
            conn.cut = True
            conn.drain = int(lengths[0]) - (len(head) - body_start)
            return False
        else:
            conn.left = int(lengths[0]) - (len(head) - body_start)
            if conn.left <= 0:
                return False
            if int(lengths[0]) > max(BODIES_SPOOLED, BODY_IN_MEMORY):
                conn.unspoolable = True  # (no 100 Continue: read_head refuses it)
                return True
        conn.limit = body_start + self.body_limit  # (chunked: the bytes after which it goes to a thread)
        conn.continued = False
        if expect and head.find(b" HTTP/1.1\r\n", 0, body_start) >= 0:
            # (HTTP/1.1's own: curl waits 1 s for it before it sends a body over 1 KB.)
            try:
                conn.continued = socket.socket.send(conn.sock, _CONTINUE) == len(_CONTINUE)
            except OSError:
                pass
        return True

    def on_body_readable(self, conn, _client):
        if conn in self.bodies:  # (else dropped earlier in this round of events: make_room)
            self.read_body(conn, True, time.monotonic())

    def read_body(self, conn, waiting, now):
        """Read the rest of a request's body, as read_head its head: kept in conn.head up to
        BODY_IN_MEMORY, past it in a temporary file; hand the connection to a thread once the
        body is whole (or past the app's limit), the client closed its end or (murder_pending)
        sent nothing for `timeout`, gone then (the app's 400 for a short body, as before)."""
        head = conn.head
        if waiting:
            self.held -= len(head)  # (counted again below if it waits on)
        if now is not None:
            conn.timeout = now + self.cfg.timeout  # (each read's bound, as nginx's client_body_timeout)
        while True:
            if len(head) > BODY_IN_MEMORY or (head and self.held + len(head) > BODIES_HELD):
                try:
                    if conn.spool is None:
                        from pwp.crypto import temporary_spool  # (in the worker, its app loaded)

                        conn.api = _is_api(head)  # (its head, here whole, is in the file after)
                        conn.spool = temporary_spool()
                    conn.spool.write(head)
                except OSError as error:  # (no file descriptor or disk space left)
                    self.refuse_body(conn, waiting, error)
                    return
                conn.spooled += len(head)
                self.spooled += len(head)
                head.clear()
                if self.spooled + self.answers_spooled > BODIES_SPOOLED and not self.make_room(conn):
                    self.refuse_body(conn, waiting, None)
                    return
            try:
                data = socket.socket.recv(conn.sock, 65536)
            except BlockingIOError:
                self.held += len(head)
                if not waiting:
                    self.bodies.add(conn)
                    self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_body_readable, conn))
                return
            except OSError:
                self.drop_body(conn, waiting)
                return
            if not data:
                self.give_up_body(conn, waiting)  # (the client closed its end: gone, as a timeout)
                return
            head += data
            if type(conn.left) is int:
                conn.left -= len(data)
                if conn.left <= 0:
                    break
            elif conn.left.feed(data):
                conn.cut = conn.left.bad
                break
            elif conn.spooled + len(head) > conn.limit:
                # A 413 as the app's for a body declared as long, the thread never taken; the
                # rest of the body, its end unknown, read and dropped as the connection closes,
                # up to the app's limit more (linger).
                if conn.spool is None:
                    conn.api = _is_api(head)
                self.refuse(conn, waiting, self.body_limit, _error_answer(413, "Request Entity Too Large", conn.api))
                return
        if waiting:
            self.poller.unregister(conn.sock)
            self.bodies.discard(conn)
        self.hand_over(conn)

    def hold_answer(self) -> bool:
        """(A thread: Outbox.put.) Whether an answer's bytes may wait in memory (up to
        ANSWER_IN_MEMORY): while the heads and bodies held leave room for it under BODIES_HELD
        (the main loop's count, read)."""
        return self.held + ANSWER_IN_MEMORY <= BODIES_HELD

    def spool_answer(self, size) -> bool:
        """(A thread: Outbox.put.) Take room for `size` more bytes of answers' files, if they
        stay within ANSWERS_SPOOLED, and with bodies' within BODIES_SPOOLED."""
        with self.spool_lock:
            answers_spooled = self.answers_spooled + size
            if answers_spooled > ANSWERS_SPOOLED or self.spooled + answers_spooled > BODIES_SPOOLED:
                return False
            self.answers_spooled = answers_spooled
        return True

    def unspool_answer(self, size):
        """(A thread or the main loop: Outbox.) Give back the room of `size` bytes of answers' files."""
        with self.spool_lock:
            self.answers_spooled -= size

    def make_room(self, conn) -> bool:
        """Drop the unfinished spooled bodies (not conn's) that sent nothing for longest (the
        earliest deadline of a read) until the spool is back under BODIES_SPOOLED, if they can
        make it so: a few clients sending a byte within each `timeout` cannot keep out every
        later upload. (Answers' files count in the cap, and are never dropped for room: they
        take at most ANSWERS_SPOOLED of it, the rest the bodies'.)"""
        others = sorted((other for other in self.bodies if other.spool is not None and other is not conn),
                        key=lambda other: other.timeout)
        if self.spooled + self.answers_spooled - sum(other.spooled for other in others) > BODIES_SPOOLED:
            return False
        for other in others:
            if self.spooled + self.answers_spooled <= BODIES_SPOOLED:
                break
            self.held -= len(other.head)
            self.drop_body(other)
        return True

    def give_up_body(self, conn, waiting=True):
        # The client closed its end of the connection or sent nothing for `timeout` mid-body:
        # its request goes to a thread with the bytes that came, its socket read as ended (_Gone).
        if waiting:
            self.poller.unregister(conn.sock)
            self.bodies.discard(conn)
        if conn.parser is None:
            conn.init()
        conn.sock.__class__ = _Gone
        self.hand_over(conn)

    def drop_body(self, conn, waiting=True):
        """Let go of a body unfinished, unanswered."""
        self.let_go_body(conn, waiting)
        self.nr_conns -= 1
        conn.close()

    def let_go_body(self, conn, waiting):
        if waiting:
            self.poller.unregister(conn.sock)
            self.bodies.discard(conn)
        self.release_spool(conn)
        conn.head.clear()

    def refuse_body(self, conn, waiting, error):
        """A body whose temporary file could not be made or written (error: TMPDIR full or
        missing, out of files), or that alone would pass BODIES_SPOOLED: a 503 rather than a
        reset, as nginx's 500 for a client_body_temp_path it cannot write, sent as answers are
        (send_rest: whole, or the client dropped once it takes nothing for `timeout`); the
        connection then closes once the rest of the body the client may still be sending is
        read and dropped (conn.drain, DRAIN_SECONDS)."""
        if error is not None:  # (its cause only, never its bytes)
            self.log.warning("A request body could not be written to a temporary file (%s): answered 503",
                             error.strerror or type(error).__name__)
        # (Chunked: its end unknown, up to the bytes after which it would have gone to a thread.)
        left = conn.left if type(conn.left) is int else conn.limit - conn.spooled - len(conn.head)
        self.refuse(conn, waiting, max(left, 0), _unavailable(conn.api))

    def refuse(self, conn, waiting, drain, answer):
        """Answer a body the main loop read in part (waiting: on the poller) with the worker's
        own `answer`, sent as answers are (send_rest: whole, or the client dropped once it takes
        nothing for `timeout`); the connection then closes once `drain` more bytes of the body
        the client may still be sending are read and dropped (DRAIN_SECONDS: linger)."""
        conn.drain = drain
        self.let_go_body(conn, waiting)
        outbox = Outbox(self)
        outbox.memory += answer
        self.send_rest(conn, outbox, None)

    def release_spool(self, conn):
        if conn.spool is not None:
            try:
                conn.spool.close()
            except OSError:  # (its buffered bytes' write failed again: the file is closed all the same)
                pass
            conn.spool = None
            self.spooled -= conn.spooled
            conn.spooled = 0

    def hand_over(self, conn):
        """Give a connection whose head (and body) the main loop read to a thread, the bytes read
        given back to gunicorn's parser."""
        head = conn.head
        if conn.parser is None:
            conn.init()  # (the parser, and the kernel's bounds; plain sockets only here)
        if conn.over:
            conn.api = _is_api(head)  # (its 431's JSON or text: handle_error)
        if conn.cut:  # (else a thread would wait for the rest of a body the main loop let go)
            conn.sock.__class__ = _Gone
        if conn.spool is not None:  # (the head and the body's start in the file, the rest after them)
            try:
                conn.spool.write(head)
                conn.spool.seek(0)  # (a buffered write's failure may come here)
            except OSError as error:  # (no disk space left: refused, as in read_body)
                self.refuse_body(conn, False, error)
                return
            conn.spooled += len(head)
            self.spooled += len(head)
            conn.parser.unreader.__class__ = _SpooledUnreader
            conn.parser.unreader.spool = conn.spool
        elif not conn.over:  # (a head past the limits: its 431 needs none of its bytes, let go now)
            conn.parser.unreader.unread(request := bytes(head))
            conn.request = request
            # (Held until its request is done: a request may wait long in the thread pool's queue.)
            conn.handed = len(head)
            self.held += conn.handed
        head.clear()
        super().enqueue_req(conn)

    def handle(self, conn):
        # (A thread.) A head past gunicorn's limits gets the answer gunicorn's sync worker gives
        # it once it has read that far (431, "max buffer headers"); the connection then closes.
        self.serving.conn = conn
        if conn.over:
            conn.sock.setblocking(True)
            self.handle_error(None, conn.sock, conn.client, LimitRequestHeaders("max buffer headers"))
            return False
        if conn.head is not None and type(conn.sock) in (_Socket, _Gone):  # (a plain socket, bounded)
            OUTBOXES[conn.sock] = self  # (its Outbox made only where the socket does not take an answer whole)
        elif conn.head is None and type(getattr(conn.parser, "unreader", None)) is _RecordingUnreader:
            conn.parser.unreader.seen = b""  # (its next request's start: kept from here)
        keepalive = super().handle(conn)
        conn.request = b""
        if keepalive and type(conn.parser.unreader) is _SpooledUnreader:
            conn.parser.unreader.take_rest()
        return keepalive

    def handle_error(self, req, client, addr, exc):
        """gunicorn's answer to a request it refuses (a header name it does not take, a request
        line or head past its limits: 400, 414, 431...), with its status and its log line, but
        the worker's own body (_error_answer): gunicorn's is an HTML page without the app's
        headers that echoes the client's input (a header's name and value: a credential, maybe)."""
        status, reason = self.gunicorns_status(req, addr, exc)
        api, conn = False, getattr(self.serving, "conn", None)
        if conn is not None and conn.head is None:  # (served as gthread: what its reader kept)
            api = type(getattr(conn.parser, "unreader", None)) is _RecordingUnreader and _is_api(conn.parser.unreader.seen)
        elif conn is not None:  # (its head: handed to the parser, or already read for it: past the limits, spooled)
            api = _is_api(conn.request) if conn.request else (conn.over or conn.spool is not None) and conn.api
        try:
            write_nonblock(client, _error_answer(status, reason, api))
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

    def handle_request(self, req, conn):
        if type(req.body) is Body:
            req.body.__class__ = _Body
            req.body.request = req
        if conn.continued:  # (answered by the main loop: not a second time)
            conn.continued = req._expected_100_continue = False
        if conn.cut:
            req.force_close()
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
        self.release_spool(conn)
        outbox = OUTBOXES.pop(conn.sock, None)
        if type(outbox) is Outbox and outbox.pending() and conn.sock.fileno() >= 0:
            # The rest of its answer is sent from here as the socket drains; the thread is
            # free. Its next request (kept alive) is read once the answer is sent (send_answer).
            self.send_rest(conn, outbox, fs)
            return
        if type(outbox) is Outbox:
            outbox.release()  # (its socket closed: nothing more is sent)
        super().finish_request(conn, fs)

    def send_rest(self, conn, outbox, fs):
        """Send what outbox holds from the main loop as the socket drains (send_answer), then
        finish the request as gunicorn does (fs: its thread's result), or (fs None: a refused
        body's 503) close the connection."""
        conn.outbox = outbox
        if outbox.spool is not None:
            try:
                outbox.spool.seek(0)  # (a buffered write's failure may come here: a full disk)
            except OSError:
                self.end_answer(conn)
                self.nr_conns -= 1
                conn.close()  # (its answer cannot be finished)
                return
        conn.handed = len(outbox.memory)
        self.held += conn.handed
        conn.finished = fs
        conn.timeout = time.monotonic() + self.cfg.timeout
        self.answers.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self.send_answer, conn))
        self.send_answer(conn)

    def send_answer(self, conn, _client=None):
        outbox = conn.outbox
        sent = outbox.send_to(conn.sock)
        self.held -= conn.handed
        conn.handed = len(outbox.memory)
        self.held += conn.handed
        if sent is False:
            # (As nginx's send_timeout: the client takes nothing for `timeout`, it is gone.)
            conn.timeout = time.monotonic() + self.cfg.timeout
            conn.queued = _queued(conn.sock)
            return
        self.answers.discard(conn)
        self.poller.unregister(conn.sock)
        self.held -= conn.handed
        conn.handed = 0
        fs, conn.finished = conn.finished, None
        self.end_answer(conn)
        if sent is None or fs is None:
            self.nr_conns -= 1
            conn.close(graceful=sent is not None)  # (a refused body's 503: its rest read first)
            return
        super().finish_request(conn, fs)

    def end_answer(self, conn):
        conn.outbox.release()
        conn.outbox = None

    def drop_answer(self, conn):
        # Its client took nothing of it for `timeout`: gone, as a thread's write gives up.
        self.answers.discard(conn)
        self.poller.unregister(conn.sock)
        self.held -= conn.handed
        conn.handed = 0
        conn.finished = None
        self.end_answer(conn)
        self.nr_conns -= 1
        conn.close(graceful=True)  # (what it sent meanwhile read and dropped: no reset, as a thread's EPIPE)

    def linger(self, sock, drain=0):
        """gunicorn's util.close_graceful without its wait in the main loop: send our end of
        the connection, then read and drop what the client still sends (else the kernel answers
        it with a reset, which may cut the answer's last bytes short) until it closes its end,
        LINGER_BYTES came or LINGER_SECONDS passed (drain: a refused body's rest, that many
        bytes or DRAIN_SECONDS), then close."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return
        self.nr_conns += 1  # (counted against worker_connections until closed, as gunicorn's)
        if drain > 0:  # (a stopping worker's: as long as its kept-alive connections linger, _cap_keepalive)
            wait = DRAIN_SECONDS if self.alive else min(DRAIN_SECONDS, gthread.STOP_KEEPALIVE_LINGER)
            now = time.monotonic()
            lingering = [now + wait, sock, drain, self.draining, now + DRAIN_IDLE_SECONDS]
        else:
            lingering = [time.monotonic() + LINGER_SECONDS, sock, LINGER_BYTES, self.lingering]
        lingering[3].append(lingering)
        self.poller.register(sock, selectors.EVENT_READ, partial(self.on_lingering_readable, lingering))
        self.on_lingering_readable(lingering)

    def on_lingering_readable(self, lingering, _client=None):
        sock, reads = lingering[1], 16  # (at most 1 MiB a turn: the other connections' turn next)
        while lingering[2] > 0:
            if not reads:
                return
            reads -= 1
            try:
                data = socket.socket.recv(sock, min(lingering[2], 65536))  # (not _Socket's: EAGAIN is no end here)
            except BlockingIOError:
                return
            except OSError:
                break
            if not data:
                break
            lingering[2] -= len(data)
            if lingering[3] is self.draining:  # (it still sends: it may go on for DRAIN_IDLE_SECONDS more)
                lingering[4] = time.monotonic() + DRAIN_IDLE_SECONDS
        self.end_lingering(lingering)

    def end_lingering(self, lingering):
        lingering[3].remove(lingering)
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
        for lingering in self.draining:  # (nor the rest of a refused body)
            lingering[0] = min(lingering[0], deadline)

    def murder_pending(self):
        # (Called in the main loop after each round of events, as gunicorn's own.)
        super().murder_pending()
        now = time.monotonic()
        if self.worker_connections != self.cfg.worker_connections and now >= self.accept_again:
            self.worker_connections = self.cfg.worker_connections  # (accept: out of files a second ago)
        while self.heads and self.heads[0].timeout <= now:
            self.held -= len(self.heads[0].head)
            self.drop_head(self.heads[0])
        for queue in (self.lingering, self.draining):
            while queue and queue[0][0] <= now:
                self.end_lingering(queue[0])
        if (self.bodies or self.answers or self.draining) and now >= self.bodies_checked + 1:  # (a look a second)
            self.bodies_checked = now
            for lingering in [lingering for lingering in self.draining if lingering[4] <= now]:
                self.end_lingering(lingering)  # (a refused body's client that sent nothing for DRAIN_IDLE_SECONDS)
            for conn in [conn for conn in self.bodies if conn.timeout <= now]:
                self.held -= len(conn.head)
                self.give_up_body(conn)
            for conn in [conn for conn in self.answers if conn.timeout <= now]:
                # (Linux says a socket is writable only once a third of its send buffer is free:
                # a client that reads slowly may take longer than `timeout` to free that much.)
                queued = _queued(conn.sock)
                if queued is not None and queued < conn.queued:
                    conn.queued, conn.timeout = queued, now + self.cfg.timeout  # (it took some)
                else:
                    self.drop_answer(conn)


def _bare_lf(head: bytearray, start: int) -> bool:
    """Whether head[start:] has an LF without its CR."""
    at = head.find(b"\n", start)
    while at >= 0:
        if at == 0 or head[at - 1] != 13:
            return True
        at = head.find(b"\n", at + 1)
    return False

