"""Request heads, read by the worker's main loop (pwp/workers.py: ThreadWorker's HeadReader
part) without a thread: a connection goes to the thread pool only once its head is whole
(or past gunicorn's limits, for gunicorn's 414 or 431), within `timeout` of its start and
within HEADS_HELD of memory for all heads together, else it is dropped, never having taken a
thread. Also what tells a request's errors JSON or text (is_api), and the reader that keeps
a request's start on connections gunicorn reads itself (RecordingUnreader: TLS, the PROXY
protocol).

Loaded by gunicorn's master process (with pwp.workers): gunicorn's own modules and
pwp.worker_sockets only.
"""
import selectors
import socket
import time
from functools import partial
from urllib.parse import unquote_to_bytes

from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE, MAX_HEADERS, MAX_REQUEST_LINE, PP_V2_SIGNATURE
from gunicorn.http.unreader import SocketUnreader
from gunicorn.util import split_request_uri

from pwp.worker_sockets import BoundedSocket, BoundedSSLSocket, GoneSocket, GoneSSLSocket

# The most bytes of heads (and bodies kept in memory) the main loop holds, all connections
# together, unfinished or whole and waiting for a thread (counted until their request is done):
# a head may be as long as gunicorn's limits (823 KB by default), and 1000 connections (its
# worker_connections) of them would take 800 MB. Real heads are a few KB.
HEADS_HELD = 32 * 1024 * 1024
# A body gunicorn reads in a thread (TLS, the PROXY protocol: RecordingUnreader) must come at
# BODY_RECORD bytes, a TLS record (worker_sockets.TLS_WRITE), per `timeout` on average, as an
# answer is sent: its reads may wait `timeout` in all for its first BODY_RECORD, and `timeout`
# more for each BODY_RECORD that came (546 B/s with the default 30 s). Past that the body ends
# there, as after a read that waited `timeout` (its app's 400 for a body cut short): a client
# that sent a byte within each `timeout` held the thread for as long as its body lasted. Only
# the reads' waits count, the client's: not the app's time before or between its reads (a lock
# waited for: the body, sent whole long before, was cut). (Checked as each read returns, whose
# own wait is bounded by `timeout`: a thread is let go at most `timeout` past the deadline.) The
# main loop reads plain bodies without a thread (pwp.worker_bodies).
BODY_RECORD = 16384
_GONE = {BoundedSocket: GoneSocket, BoundedSSLSocket: GoneSSLSocket}


def is_api(head) -> bool:
    """Whether the request whose head starts `head` is the API's: its errors are JSON. Its
    path as the app routes it: gunicorn's PATH_INFO (`//api/...` a path, percent-decoded),
    without doubled or trailing slashes (pwp.hotpath). A PROXY protocol header before it
    (v1's line, v2's binary block) is passed over."""
    from pwp.errors import is_api_path  # (in the worker, its app loaded)
    from pwp.hotpath import routed_path

    head = head[proxy_header_length(head):]
    start = 2 if head[:2] == b"\r\n" else 0  # (one empty line may come first)
    target = bytes(head[start:head.find(b"\r\n", start)]).split(b" ")[1:2] or [b"/"]
    try:
        path = split_request_uri(target[0].decode("latin-1")).path
    except ValueError:  # (an absolute-form target urlsplit refuses: "http://[", say)
        return False
    return is_api_path(routed_path(unquote_to_bytes(path).decode("latin-1")))


# The longest PROXY protocol header: v2's (its block's length is two bytes; v1's line: 107 bytes).
PROXY_HEADER_MOST = 16 + 0xFFFF


def proxy_header_length(head) -> int:
    """The bytes of the PROXY protocol header `head` starts with (v1's line, v2's binary block
    and its TLVs, as far as it tells), 0 without one."""
    if head[:6] == b"PROXY ":
        return head.find(b"\r\n") + 2
    if head[:12] == PP_V2_SIGNATURE:
        return 16 + int.from_bytes(head[14:16], "big")
    return 0


def proxy_header_cut(start) -> bool:
    """Whether a connection's first bytes `start` are a PROXY protocol header (v1's line, v2's
    binary block) that stops short of its end."""
    if start and start[:6] == b"PROXY "[:len(start)]:
        return b"\r\n" not in start
    if start and start[:12] == PP_V2_SIGNATURE[:len(start)]:
        return len(start) < 16 or len(start) < proxy_header_length(start)
    return False


class RecordingUnreader(SocketUnreader):
    """gunicorn's reader of a connection gunicorn reads itself (TLS, the PROXY protocol: not
    the main loop), which keeps the first bytes of each request (up to `keep` past a PROXY
    protocol header; let go once the request is done: ThreadWorker.handle): the head its
    errors' JSON or text is told by (handle_error), as the main loop's heads tell it on plain
    connections."""

    seen = b""
    keep = 0
    body_wait = None  # (a body being read: what its reads may wait for its first BODY_RECORD)
    body_came = 0
    body_waited = 0.0  # (its reads' waits so far)

    def watch_body(self, seconds: float):
        """(A thread: a request's head read, its body next.) Bound the body by its rate
        (BODY_RECORD), its reads waiting `seconds` at most for its first BODY_RECORD;
        unwatched by watch_body(None)."""
        self.body_wait, self.body_came, self.body_waited = seconds, 0, 0.0

    def chunk(self, size_hint=None):
        if self.body_wait is None:
            return super().chunk(size_hint)
        began = time.monotonic()
        data = super().chunk(size_hint)
        if data:
            self.body_came += len(data)
            self.body_waited += time.monotonic() - began
            if self.body_waited > self.body_wait * (1 + self.body_came // BODY_RECORD):
                self.sock.__class__ = _GONE.get(type(self.sock), type(self.sock))  # (for good)
                return b""
        return data

    def read(self, size=None, read_ahead=None):
        data = super().read(size, read_ahead)
        if len(self.seen) < self.keep + proxy_header_length(self.seen):
            seen = self.seen + data[:self.keep + PROXY_HEADER_MOST]  # (not a body's 1 MiB read whole)
            self.seen = seen[:self.keep + proxy_header_length(seen)]
        return data


def bare_lf(head: bytearray, start: int) -> bool:
    """Whether head[start:] has an LF without its CR."""
    at = head.find(b"\n", start)
    while at >= 0:
        if at == 0 or head[at - 1] != 13:
            return True
        at = head.find(b"\n", at + 1)
    return False


def head_limits(cfg) -> tuple[int, int, int, int]:
    """gunicorn's limits as the main loop counts them: the longest header field (and chunk-size
    line), head, request line, and request start a RecordingUnreader keeps."""
    line = cfg.limit_request_line
    line = MAX_REQUEST_LINE if line < 0 or line >= MAX_REQUEST_LINE else line or 1024 * 1024
    fields = cfg.limit_request_fields if 0 < cfg.limit_request_fields <= MAX_HEADERS else MAX_HEADERS
    size = cfg.limit_request_field_size
    size = size if size > 0 else DEFAULT_MAX_HEADERFIELD_SIZE
    field_limit = size  # (gunicorn's parser's limit of a chunk-size line too)
    # The longest head gunicorn's parser takes (an empty line, the request line, the
    # headers' buffer, as gunicorn.http.message.Request counts them), and a little over.
    head_limit = 2 + line + 2 + fields * (size + 2) + 4
    # (limit_request_line 0, "no limit": gunicorn's parser never answers a long line.)
    line_limit = line if cfg.limit_request_line else head_limit
    # A request's start that tells whether it is the API's, served as gthread (RecordingUnreader):
    # its request line (an empty line may come first), after a PROXY protocol header.
    keep = min(line_limit, 65536) + 4
    return field_limit, head_limit, line_limit, keep


class HeadReader:
    """ThreadWorker's part that reads request heads in the main loop (enqueue_req starts it)."""

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
            if bare_lf(head, start):
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
                # (socket.socket's own recv: BoundedSocket's takes EAGAIN as the client gone.)
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
                conn.api = is_api(head)
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

    def drop_head(self, conn, waiting=True):
        if waiting:
            self.poller.unregister(conn.sock)
            self.heads.remove(conn)
        self.nr_conns -= 1
        conn.close()
