"""Request bodies, read by the worker's main loop (pwp/workers.py: ThreadWorker's BodyReader
part) before a thread takes the request, as nginx buffers them (client_body_buffer_size,
client_body_temp_path): each read within `timeout`, `Expect: 100-continue` answered, kept in
memory up to BODY_IN_MEMORY, past it in an encrypted temporary file within BODIES_SPOOLED;
bodies it cannot take refused (503), a chunked one past the app's limit too (413; a page's:
the app's, cut past the limit), or of chunks too small (400: CHUNKS_FREE), their rest
read and dropped as the connection closes. Also the readers gunicorn's parser reads a spooled
body through (SpooledUnreader) and a chunked body it cannot parse (RequestBody).

Loaded by gunicorn's master process (with pwp.workers): gunicorn's own modules, pwp.outbox only.
"""
import importlib
import inspect
import os
import re
import selectors
import socket
import time
from functools import partial

import gunicorn
from gunicorn.config import Config
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.errors import InvalidChunkSize, ParseException
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader, SocketUnreader

from pwp.outbox import Outbox
from pwp.worker_errors import error_answer
from pwp.worker_heads import HEADS_HELD, is_api
from pwp.worker_sockets import GoneSocket

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
# worker's own 413 on the API (as the app's JSON), no thread taken (refuse); a page's goes to
# the thread PAST_LIMIT later, cut, for the app's 413 page.
BODY_IN_MEMORY = 64 * 1024
BODIES_SPOOLED = int(os.environ.get("PWPUSH_BODIES_SPOOLED") or 1024 * 1024 * 1024)
BODIES_HELD = HEADS_HELD // 2
BODY_LIMIT = 64 * 1024 * 1024
# A page's chunked body past the app's limit goes to a thread once this much more of it came (read_body).
PAST_LIMIT = 64 * 1024
# A chunked body may have CHUNKS_FREE lines (chunks' sizes, trailers), and one more for every
# DATA_PER_CHUNK bytes of its data: past that it gets the worker's 400, no thread taken (refuse),
# as each chunk costs the main loop's ChunkedEnd ~0.7 us and gunicorn's parser in the thread ~2.3 us
# where a declared body's MiB costs them ~4 ms (bench/chunked_framing.py; README).
# (More than the body bytes one head read brings, 8192: wait_for_body's feed is never refused.)
CHUNKS_FREE = 16384
DATA_PER_CHUNK = 64
# (Else, with extensions or more digits, feed's line by line. 16 digits and a CR are under any
# limit a chunked body passes: its head's "Transfer-Encoding:chunked" is 27 bytes with its CRLF.)
_NEXT_CHUNK = re.compile(rb"\r\n([0-9a-fA-F]{1,16})\r\n").match
# A body that cannot be written to its temporary file gets a 503 that says to try again after
# this many seconds (a full spool frees itself as bodies end, or are dropped after `timeout`).
RETRY_AFTER = 30
# A head's fields that say how long its body is, and whether the client waits for a 100 Continue.
_FRAMING = re.compile(rb"\r\n(content-length|transfer-encoding|expect):[ \t]*([^\r\n]*)", re.IGNORECASE)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# The most bytes of a body the app left unread that a thread reads and drops after the answer on
# a connection gunicorn reads itself (TLS, the PROXY protocol: ThreadWorker._keepalive_after),
# as gthread's drain: past it the connection closes, and the answer says so (ThreadReadRequest).
THREAD_DRAIN = 64 * 1024
# The gunicorn the worker was written against (requirements.txt pins it), and its parts the worker
# reads or overrides that gunicorn does not document ("module:Class.name"; a function's parameter
# too): in another gunicorn, without one, each request would fail, an override never be called
# (the main loop's bodies left undrained: _keepalive_after), or keep-alive be misjudged, unsaid.
# pwp.workers refuses to load there (check_gunicorn), naming what is missing.
GUNICORN_PINNED = "27.0.1"
GUNICORN_PARTS = (
    "gunicorn.http.body:Body._read_reader", "gunicorn.http.body:LengthReader.length",
    "gunicorn.http.message:Request._expected_100_continue", "gunicorn.http.parser:Parser.finish_body.max_bytes",
    "gunicorn.http.unreader:SocketUnreader.take_buffered", "gunicorn.http.unreader:SocketUnreader.mxchunk",
    "gunicorn.http.unreader:SocketUnreader.max_body_chunk", "gunicorn.http.body:ChunkedReader.parse_chunk_size",
    "gunicorn.http.body:CHUNK_EXT_RE", "gunicorn.http.message:Message.parse_headers.from_trailer",
    "gunicorn.workers.gthread:ThreadWorker._keepalive_after", "gunicorn.workers.gthread:ThreadWorker._cap_keepalive",
    "gunicorn.workers.gthread:STOP_KEEPALIVE_LINGER", "gunicorn.workers.gthread:DEFAULT_WORKER_DATA_TIMEOUT",
    "gunicorn.workers.gthread:ThreadWorker.on_pending_socket_readable",
    "gunicorn.workers.gthread:ThreadWorker.murder_pending")


def _gunicorn_has(part: str) -> bool:
    module, _, path = part.partition(":")
    *steps, name = path.split(".")
    owner = importlib.import_module(module)
    for step in steps:
        owner = getattr(owner, step, None)
    if inspect.isfunction(owner):
        return name in inspect.signature(owner).parameters
    if hasattr(owner, name):
        return True
    try:  # (an attribute each object sets: LengthReader(unreader, length), SocketUnreader(sock, max_chunk))
        return inspect.isclass(owner) and hasattr(owner(None, 0), name)
    except Exception:
        return False


def check_gunicorn():
    """Fail at once, naming the gunicorn this worker needs and what this one lacks, where
    gunicorn's parts it reads (GUNICORN_PARTS) are not as in GUNICORN_PINNED."""
    missing = [part for part in GUNICORN_PARTS if not _gunicorn_has(part)]
    if missing:
        raise RuntimeError(f"pwp.workers needs gunicorn=={GUNICORN_PINNED} (requirements.txt); this is gunicorn "
                           f"{gunicorn.__version__}, without {', '.join(missing)}: install the pinned one")


check_gunicorn()
_CHUNK_EXT = gunicorn.http.body.CHUNK_EXT_RE.fullmatch  # (a chunk's extensions, as gunicorn takes them)


class RequestBody(Body):
    """A request's body whose failed read (a chunked body gunicorn cannot parse) makes the
    answer say `Connection: close`: gunicorn closes the connection after it (where the next
    request starts is unknown), and its answer said keep-alive. (ended: a read found its end.)"""

    ended = False

    def _read_reader(self, size):
        try:
            data = super()._read_reader(size)
        except Exception:
            self.request.force_close()
            raise
        self.ended = self.ended or not data
        return data


class ThreadReadRequest(Request):
    """A request whose body gunicorn reads in a thread (TLS, the PROXY protocol): its answer
    says `Connection: close` where the app left more of a declared body unread than the thread
    drains (THREAD_DRAIN), or a chunked body unread to its end (how much is left is unknown):
    the connection then closes (it said keep-alive, and a request pipelined after it was never
    answered). Once said, for good: the answer's header and the connection agree."""

    def should_close(self):
        if super().should_close():
            return True
        reader = self.body.reader
        if (type(reader) is LengthReader and reader.length >= THREAD_DRAIN) or (
                isinstance(reader, ChunkedReader) and not self.body.ended):
            self.force_close()
            return True
        return False


def unread_body(request) -> bool:
    """Whether a request gunicorn reads in a thread has body bytes the app left unread (a
    declared length's rest, a chunked body not read to its end: ThreadWorker._keepalive_after)."""
    body = getattr(request, "body", None)
    reader = getattr(body, "reader", None)
    if type(reader) is LengthReader:
        return reader.length > 0
    return isinstance(reader, ChunkedReader) and not getattr(body, "ended", False)


class CountedChunkedReader(ChunkedReader):
    """gunicorn's reader of a chunked body it reads in a thread (TLS, the PROXY protocol), held
    to ChunkedEnd's allowance (CHUNKS_FREE, DATA_PER_CHUNK): past it, a chunk size it refuses
    (the app's 400, the connection closed: RequestBody), as each chunk costs it ~2.3 us."""

    lines = size = 0
    refused = False  # (then the rest the client still sends is read and dropped as it closes: ThreadWorker.handle_request)

    def parse_chunk_size(self, unreader, data=None):
        self.lines += 1
        if self.lines > CHUNKS_FREE + self.size // DATA_PER_CHUNK:
            self.refused = True
            raise InvalidChunkSize(b"chunks too small")
        size, rest = super().parse_chunk_size(unreader, data)
        self.size += size
        return size, rest


class TrailerCheck:
    """Whether gunicorn's parser refuses a chunked body's trailers (their lines, a CRLF between
    each): its own parse_headers, on a request of its own with the worker's settings (fields'
    size and number, header_map). ChunkedEnd keeps no more lines than its limit_request_fields
    (fields): parse_headers' time grows as the square of its lines (lines.pop(0)), and fields
    it drops (header_map's "drop": names with "_") are not counted (160 000 took 5 s)."""

    def __init__(self, cfg=None):
        # (A connection's second request: no PROXY protocol header read first, whatever cfg says.)
        self.request = Request(cfg or Config(), IterUnreader([b"GET / HTTP/1.1\r\n\r\n"]), ("127.0.0.1", 0), 2)
        self.fields = self.request.limit_request_fields

    def refuses(self, section) -> bool:
        try:
            self.request.parse_headers(bytes(section), from_trailer=True)
        except ParseException:
            return True
        return False


class ChunkedEnd:
    """Finds where a chunked body ends as its bytes come (gunicorn's parser reads it later, and
    answers its framing errors): feed() says whether it ended, or has framing gunicorn refuses
    (bad: then gunicorn may not know where it ends either, and would read on; or trailers it
    refuses, met only once the app's answer said keep-alive where the app left the body unread),
    or more lines (chunks, trailers) than its data pays for (small: CHUNKS_FREE, DATA_PER_CHUNK)."""

    __slots__ = ("line", "skip", "crlf", "last", "bad", "small", "limit", "size", "lines", "check", "trailers",
                 "past")

    def __init__(self, limit, check=None):
        self.limit = limit  # the longest line (a chunk's size and extensions): limit_request_field_size
        self.check = check  # the worker's TrailerCheck (None: one with gunicorn's default settings, made if needed)
        self.trailers = None  # the trailers so far, if any came
        self.past = False  # they passed what is kept of them (then bad at their end)
        self.line = bytearray()  # the line read so far: a chunk's size, a chunk's CRLF, a trailer
        self.skip = 0  # the chunk's bytes still to come
        self.crlf = False  # a chunk's CRLF is next
        self.last = False  # the last chunk came: trailers up to an empty line
        self.bad = False  # framing gunicorn refuses
        self.small = False  # more lines than the data pays for
        self.size = 0  # the body's own bytes so far (its chunks' data)
        self.lines = 0  # its chunks' size lines and trailers so far

    def feed(self, data) -> bool:
        at, size = 0, len(data)
        while at < size:
            if self.skip:
                step = min(self.skip, size - at)
                self.skip -= step
                self.size += step
                at += step
                if self.skip or at == size:
                    continue
            # (The usual case first: a chunk's CRLF and the next size line, whole in this read.)
            match = self.crlf and not self.line and _NEXT_CHUNK(data, at)
            if match:
                at = match.end()
                digits = match[1]
            else:
                end = data.find(b"\n", at)
                if end < 0:
                    self.line += data[at:]
                    self.bad = len(self.line) > self.limit or (
                        self.crlf and self.line not in (b"", b"\r"))
                    return self.bad
                self.line += data[at:end]
                at = end + 1
                # (A bare LF: gunicorn looks for CRLF, reading on. A line past the limit, even one
                # whole in this read: one of gunicorn's reads, 8 KiB of a spooled body, may end in it.)
                if self.line[-1:] != b"\r" or len(self.line) > self.limit:
                    self.bad = True
                    return True
                line = bytes(self.line[:-1])
                self.line.clear()
                if self.crlf:
                    if line:
                        self.bad = True  # (gunicorn's 400)
                        return True
                    self.crlf = False
                    continue
                if not self.last:
                    # (RFC 9112 7.1: blanks after the size only before an extension, as gunicorn's.)
                    digits, semicolon, extension = line.partition(b";")
                    if semicolon:
                        digits = digits.rstrip(b" \t")
                    if not digits or digits.strip(b"0123456789abcdefABCDEF") or (
                            semicolon and not _CHUNK_EXT(b";" + extension)):
                        self.bad = True  # (gunicorn's 400)
                        return True
            self.lines += 1
            if self.lines > CHUNKS_FREE + self.size // DATA_PER_CHUNK:
                self.small = True
                return True
            if self.last:  # (a trailer, or the empty line that ends them: the end)
                if not line:
                    if self.trailers is not None:
                        self.bad = self.past or self.check.refuses(self.trailers)
                    return True
                if self.trailers is None:
                    self.trailers = bytearray(line)
                    self.check = self.check or TrailerCheck()
                elif not self.past:
                    self.trailers += b"\r\n" + line
                # Kept up to one field's size in all (not gunicorn's max_buffer_headers: ~800 KB a
                # connection, outside HEADS_HELD) and gunicorn's number of fields (TrailerCheck);
                # past that, read on to their end (each line counted in the allowance: gunicorn's
                # parser in the thread has none), then bad: the answer closes the connection.
                self.past = self.past or len(self.trailers) > self.limit or (
                    self.trailers.count(b"\n") >= self.check.fields)  # (a line has none)
                continue
            self.skip = int(digits, 16)
            self.last = not self.skip
            self.crlf = not self.last
        return False


def unavailable(api: bool) -> bytes:
    """A 503 with Retry-After that closes the connection."""
    return error_answer(503, "Service Unavailable", api, b"Retry-After: %d\r\n" % RETRY_AFTER,
                         b"Service Unavailable: the server cannot take this request's body now; try again later.\n")


def small_chunks(api: bool) -> bytes:
    """A 400 that closes the connection, for a chunked body of more chunks than its data pays for."""
    return error_answer(400, "Bad Request", api, error="The request body's chunks are too small: send it in "
                        "larger chunks (64 bytes and more, on average), or with a Content-Length.", text=(
                            b"Bad Request: the request body's chunks are too small: send it in larger chunks "
                            b"(64 bytes and more, on average), or with a Content-Length.\n"))


class SpooledUnreader(SocketUnreader):
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


class BodyReader:
    """ThreadWorker's part that reads request bodies in the main loop (read_head starts it)."""

    def wait_for_body(self, conn, body_start) -> bool:
        """Whether the request whose head ends at body_start has a body still to come, to read
        here first (conn.left: its bytes still to come, or a ChunkedEnd). Not one longer than
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
            conn.left = ChunkedEnd(self.field_limit, self.trailer_check)
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

                        conn.api = is_api(head)  # (its head, here whole, is in the file after)
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
                if conn.left.small:  # (past its lines' allowance: CHUNKS_FREE, DATA_PER_CHUNK)
                    if conn.spool is None:
                        conn.api = is_api(head)
                    self.refuse(conn, waiting, self.chunked_left(conn), small_chunks(conn.api))
                    return
                conn.cut = conn.left.bad
                break
            elif conn.spooled + len(head) > conn.limit:
                # Past the app's limit. On the API (or where its chunks' framing, their sizes and
                # CRLFs, passed PAST_LIMIT: small chunks, which cost the main loop and then the
                # thread's parser ~5 us each): a 413 as the app's for a body declared as long, the
                # thread never taken. A page's (a form's) goes to a thread once PAST_LIMIT more of
                # the body itself came, cut there: the app tells it is past its limit as it reads
                # it (werkzeug), and answers its 413 page as for a body declared as long. The rest
                # of the body, its end unknown, is read and dropped as the connection closes, up
                # to the app's limit more (linger).
                if conn.spool is None:
                    conn.api = is_api(head)
                framing = conn.spooled + len(head) - (conn.limit - self.body_limit) - conn.left.size
                if conn.api or framing > PAST_LIMIT:
                    self.refuse(conn, waiting, self.body_limit, error_answer(413, "Request Entity Too Large", conn.api))
                    return
                if conn.left.size > self.body_limit + PAST_LIMIT:
                    conn.cut, conn.drain = True, self.body_limit
                    break
        if waiting:
            self.poller.unregister(conn.sock)
            self.bodies.discard(conn)
        self.hand_over(conn)

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
        # its request goes to a thread with the bytes that came, its socket read as ended (GoneSocket).
        if waiting:
            self.poller.unregister(conn.sock)
            self.bodies.discard(conn)
        if conn.parser is None:
            conn.init()
        conn.sock.__class__ = GoneSocket
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
        left = conn.left if type(conn.left) is int else self.chunked_left(conn)
        self.refuse(conn, waiting, max(left, 0), unavailable(conn.api))

    @staticmethod
    def chunked_left(conn) -> int:
        """A chunked body's bytes still to come, its end unknown: up to the bytes after which
        it would have gone to a thread."""
        return max(conn.limit - conn.spooled - len(conn.head), 0)

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
