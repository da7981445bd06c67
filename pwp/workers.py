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

Its parts, each a module: pwp.worker_sockets (the bounded client sockets), pwp.worker_heads
(request heads: HeadReader), pwp.worker_bodies (request bodies, their spool, refused bodies:
BodyReader), pwp.worker_answers (answers' rests sent from the main loop, lingering and draining
connections: AnswerSender), pwp.worker_errors (the worker's own error answers: ErrorAnswers),
pwp.worker_mails (the app's e-mails still being sent as the worker stops);
here the connection, and ThreadWorker, which joins them to gthread's worker (accepting,
handing a request to a thread, finishing it, the deadlines).

Loaded by gunicorn's master process (gunicorn.conf.py's worker_class): gunicorn's own modules,
pwp.outbox and its parts (the standard library's) only.
"""
import bisect
import errno
import resource
import selectors
import socket
import ssl
import sys
import threading
import time
from collections import deque
from functools import partial
from operator import attrgetter

from gunicorn.http.body import Body, ChunkedReader
from gunicorn.http.errors import InvalidProxyHeader, LimitRequestHeaders, ParseException
from gunicorn.http.message import Request
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

from pwp import worker_mails
from pwp.outbox import OUTBOXES, Outbox
from pwp.worker_answers import AnswerSender
from pwp.worker_bodies import (BODY_LIMIT, THREAD_DRAIN, BodyReader, CountedChunkedReader, RequestBody, SpooledUnreader,
                               ThreadReadRequest, TrailerCheck, unread_body)
from pwp.worker_errors import ErrorAnswers, refuse_plain, use_app_headers
from pwp.worker_heads import HeadReader, RecordingUnreader, head_limits, is_api, proxy_header_cut
from pwp.worker_sockets import (BoundedSocket, BoundedSSLSocket, GoneSocket, GoneSSLSocket, TimedSocket, bound,
                                queued_bytes)

# The open files a worker asks for (its soft limit raised up to its hard one): two per
# connection whose body is spooled, gunicorn's worker_connections (1000) of them and a margin.
OPEN_FILES = 65536
# gunicorn's master asked for a quick stop during a graceful one sends its workers SIGQUIT and kills
# them this many seconds later (arbiter.stop's literal 2.0): a quitting worker ends a second before.
QUICK_AFTER_GRACEFUL = 2.0
# (ThreadWorker.handle's result for a TLS connection whose handshake is done and no byte of its head came.)
HEAD_NOT_YET = object()


def _joined(threads, method_queue, flushed):
    """(A daemon thread of its own: ThreadWorker.quit.) Once `threads` have ended, wake the main
    loop with a mark in `flushed`: it polled them once a second, a quick stop of an idle worker
    took a second more than gunicorn's."""
    for thread in threads:
        thread.join()
    method_queue.defer(flushed.append, True)


class _HeadNotYet:
    """A TLS connection's parser after its handshake, no byte of a head there: gthread's handle
    reads no request (None) and the connection waits for its head on the poller (finish_request)."""

    def __init__(self, parser):
        self.parser = parser

    def __next__(self):
        return None


class _Connection(gthread.TConn):
    over = False  # its head passed gunicorn's limits before its end (ThreadWorker.handle)
    linger = None  # its worker's ThreadWorker.linger (plain sockets)
    spool = None  # the temporary file its body was written to (ThreadWorker.read_body)
    spooled = 0  # the bytes written to it
    api = False  # its request is the API's (its errors JSON): read_body, as its body is spooled
    keep = 0  # (served as gthread: the bytes of each request's start its RecordingUnreader keeps)
    request = b""  # the head handed to the thread (hand_over), while it serves it: its errors' JSON or text
    outbox = None  # the Outbox of the answer the main loop is sending (send_answer)
    drain = 0  # its refused body's bytes still to come, read and dropped before it closes (linger)
    queued = None  # its answer's bytes in the kernel's send queue when the main loop last sent (send_answer)
    continued = False  # the main loop answered its head's `Expect: 100-continue`
    idle_by = 0.0  # (TLS) when it is dropped, waiting on the poller for its next head's first byte (wait_for_first_byte)
    watch = None  # (TLS, the PROXY protocol) a socket on its file while a thread reads its head (watch_head)
    expired = False  # (TLS, the PROXY protocol) its head's deadline passed while the thread read it (expire_heads)
    unspoolable = False  # its body's Content-Length alone passes BODIES_SPOOLED (wait_for_body)
    # Its body is longer than the app takes, or framed in a way gunicorn refuses: the thread reads
    # no more of it (nor anything) from the client (GoneSocket), and the connection closes after the answer.
    cut = False

    def close(self, graceful=False):
        # (Main loop: finish_request.) gunicorn's graceful close lingers for the client's end
        # of the connection (util.close_graceful: up to 2 s) in the main loop itself: a client
        # that sent `Connection: close`, or a head past the limits, and then neither closed nor
        # sent stopped the whole worker for 2 s each. Here the poller waits for it.
        # (TLS too: SSLSocket.shutdown drops the TLS layer, as gunicorn's close; what still comes is dropped raw.)
        if graceful and self.linger is not None and type(self.sock) in (
                socket.socket, BoundedSocket, GoneSocket, ssl.SSLSocket, BoundedSSLSocket, GoneSSLSocket):
            self.linger(self.sock, self.drain)
        else:
            super().close(graceful)

    def init(self):
        # In the worker thread, before a connection's first request is read. The kernel's
        # bounds stay through gunicorn's switches between blocking and non-blocking mode for
        # the requests that follow on a kept-alive connection. TLS: Python's timeout, which
        # those switches keep (BoundedSSLSocket). None with gunicorn's timeout 0, "none".
        # (TLS is served as gthread, head None: a plain connection's init, one a request from a client
        # that opens one each, reads no gunicorn setting for it, ~3 us each: cfg's __getattr__.)
        if self.head is None and not self.initialized and self.cfg.is_ssl:
            refuse_plain(self.sock, self.keep)  # (plain HTTP: nginx's 400, handle_error)
            if self.cfg.timeout > 0 and type(self.sock) is socket.socket:
                # Its handshake, and then each read and write, wait at most `timeout`: gunicorn's
                # had no bound, a client that stopped in the handshake, a head or a body held a
                # thread for good. One that ran out is a client gone (ssl's EOF: dropped quietly).
                self.sock.__class__ = TimedSocket
        try:
            super().init()
        except TimeoutError:  # (TimedSocket's handshake)
            raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "the TLS handshake timed out") from None
        if type(self.sock) is ssl.SSLSocket and TimedSocket.seconds:
            self.sock.__class__ = BoundedSSLSocket
            waits = not self.is_http2 and not self.head_came()
        else:
            waits = False
        if type(self.sock) is socket.socket and self.cfg.timeout > 0:
            bound(self.sock, self.cfg.timeout)
        if self.head is None and type(getattr(self.parser, "unreader", None)) is SocketUnreader:
            self.parser.unreader.__class__ = RecordingUnreader  # (HTTP/1: its request heads kept in part)
            self.parser.unreader.keep = self.keep
        if waits:
            # (TLS.) Its handshake done, no byte of a head yet (a browser's connection opened in
            # advance): the poller waits for it, not this thread (ThreadWorker.finish_request),
            # `timeout` from now: not from its accept (a ClientHello that waited for a thread
            # that long had its head, sent just after the handshake, dropped unanswered).
            self.idle_by = 0.0
            self.parser = _HeadNotYet(self.parser)

    def head_came(self) -> bool:
        """(A thread, TLS: its handshake done, or kept alive, no byte of its next head read.) Take
        the records that came, without waiting: False where they held no application data (none
        came; or a TLS 1.3 KeyUpdate, say, which woke the poller: the thread then waited in
        OpenSSL for a head up to its deadline), the connection then waiting for it on the poller.
        (A KeyUpdate asking for the server's: OpenSSL sends that one before its next write, not as
        it reads it here, so no SSLWantWriteError even with the send buffer full: see the test
        test_a_kept_alive_tls_connection_asked_for_a_key_update_answers_its_next_request.)"""
        if self.sock.pending():
            return True
        self.sock.settimeout(0.0)
        try:
            data = self.sock.recv(8192)
        except ssl.SSLWantReadError:
            return False
        finally:
            self.sock.settimeout(TimedSocket.seconds)
        self.parser.unreader.unread(data)  # (b"": its end, which the parser reads again)
        return True


class ThreadWorker(HeadReader, BodyReader, AnswerSender, ErrorAnswers, gthread.ThreadWorker):
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
    goes to a thread at once (its 413: chunked, once past it, the worker's own 413 on the API,
    the app's page's, cut, on a page), one
    whose framing gunicorn refuses too (its 400). Not
    TLS (gunicorn reads the TLS handshake in a thread),
    nor with gunicorn's timeout 0, the PROXY protocol or HTTP/2 prior knowledge: those
    connections are served as gthread does. A connection closed after its answer waits for
    the client's end on the poller too (linger), not in the main loop as gthread's."""

    guards_mails = True  # (its own stop waits for the app's e-mails: restart, run; not worker_mails.guard)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # (TLS connections' bound: _Connection.init.)
        TimedSocket.seconds = BoundedSSLSocket.seconds = self.cfg.timeout if self.cfg.timeout > 0 else None
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
        # (Gunicorn's limits as the main loop counts them: heads, chunk-size lines, request starts kept.)
        self.field_limit, self.head_limit, self.line_limit, self.keep = head_limits(self.cfg)
        self.trailer_check = TrailerCheck(self.cfg)  # (a chunked body's trailers, as gunicorn's parser takes them)
        # max_requests counted here, in the main loop (finish_request), not by gthread's thread
        # (which stopped the worker at once): see restart.
        self.restart_after, self.max_requests = self.max_requests, sys.maxsize
        self.restart_by = 0.0  # (restart: deferred while e-mails are sent) when it stops at the latest
        self.mails_by = 0.0  # (restart) when its e-mail jobs are cut at the latest (run)
        self.restarting = False  # max_requests was reached (restart)
        self.in_app = 0  # requests the app is serving in threads (handle_request), under in_app_lock
        self.in_app_lock = threading.Lock()
        self.stop_asked = None  # when SIGTERM came (handle_exit; or SIGQUIT, SIGINT)
        self.quit_asked = None  # when SIGQUIT or SIGINT came (handle_quit)
        self.quit_by = 0.0  # (handle_quit) when it exits at the latest (quit; worker_mails.cut_at_exit)
        self.looping = False  # its main loop runs (gthread's run: handle_quit)
        # (TLS, the PROXY protocol.) Connections whose handshake and head a thread reads, by their
        # deadline (watch_head); threads add and take them, the main loop ends them (expire_heads).
        self.thread_heads = {}
        self.heads_lock = threading.Lock()
        self.heads_by = float("inf")  # (a stopping worker's: _cap_keepalive) the latest deadline of any

    def run(self):
        # (The worker, its app loaded.) The longest body the app takes (Flask's MAX_CONTENT_LENGTH).
        limit = getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")
        if isinstance(limit, int) and limit >= 0:
            self.body_limit = limit
        use_app_headers(self.wsgi)
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
        worker_mails.cut_at_exit(self)  # (SIGQUIT, SIGINT: once the main loop quit)
        self.looping = True
        try:
            super().run()
        finally:
            self.looping = False
        if self.quit_asked is not None:  # (SIGQUIT, SIGINT as its loop ended: no wait for the e-mails)
            raise SystemExit(0)
        # Its connections done (within graceful_timeout), its e-mails being sent have the rest of
        # it, less a second, so that it ends (and says what it cut) before a stopping master's
        # SIGKILL. Restarted by max_requests: those it served on for have none more (restart),
        # its replacement waits for its end; those that the requests it finished as it stopped
        # gave (a link form's at its close(); requests still served at restart_by's deadline)
        # have what is left of graceful_timeout (mails_by).
        worker_mails.wait(self, worker_mails.exit_deadline(self))

    def handle_exit(self, sig, frame):
        # SIGTERM: a graceful stop (the master's, a reload's).
        if self.stop_asked is None:
            self.stop_asked = time.monotonic()
        elif self.quit_asked is not None:
            # (SIGTERM after SIGQUIT: the master's graceful stop, then its quick one, both pending
            # as the handlers ran, and Python runs them by signal number, SIGQUIT's first. The
            # master gives its workers QUICK_AFTER_GRACEFUL from its SIGQUIT, as in handle_quit.)
            self.quit_by = min(self.quit_by, self.quit_asked + max(0.0, QUICK_AFTER_GRACEFUL - 1))
        super().handle_exit(sig, frame)

    def handle_quit(self, sig, frame):
        # SIGQUIT, SIGINT: gunicorn's quick stop. gthread's ended the main loop at once (sys.exit
        # here, in the signal handler): the requests its threads served were finished as Python's
        # exit joined them, but the rest of an answer left to the main loop (an Outbox: a download
        # read slowly, its view counted) was never sent. The main loop now quits between two rounds
        # of events (murder_pending: quit), sending those first.
        if not self.looping:  # (before its main loop or after it: gthread's, at once)
            super().handle_quit(sig, frame)
        if self.quit_asked is None:
            self.quit_asked = time.monotonic()
            if self.stop_asked is None:  # (the stop began: worker_mails.cut_at_exit's deadline)
                self.stop_asked = self.quit_asked
                self.quit_by = self.quit_asked + max(0, self.cfg.graceful_timeout - 1)
            else:
                # (During a graceful stop: gunicorn's master, asked for a quick one then, gives
                # its workers QUICK_AFTER_GRACEFUL, not what is left of graceful_timeout.)
                self.quit_by = min(self.stop_asked + max(0, self.cfg.graceful_timeout - 1),
                                   self.quit_asked + max(0.0, QUICK_AFTER_GRACEFUL - 1))
            self.alive = False
            self.cfg.worker_int(self)
            self.method_queue.defer(lambda: None)  # (the poller woken)

    def quit(self):
        """(Main loop, between two rounds of events: handle_quit.) gunicorn's quick stop: no
        connection taken, no request read any more (the heads threads read, TLS and the PROXY
        protocol, ended: expire_heads); the requests its threads serve are finished and the
        answers left to the main loop sent (then each connection closed), until none is left or
        quit_by (graceful_timeout less a second after the signal, as the e-mails are waited for:
        before a stopping master's SIGKILL), telling the master it lives meanwhile; then the
        worker exits (SystemExit, as gunicorn's: Python's exit joins the threads still serving)."""
        self.tpool.shutdown(wait=False)
        self.set_accept_enabled(False)
        for conn in self.answers:
            conn.finished = None  # (closed once sent: send_answer)
        # Only the answers being sent, the connections lingering and the threads' callbacks are
        # waited on: the heads, bodies and kept-alive connections wait in vain, closed at the exit.
        keep = {conn.sock for conn in self.answers}
        keep.update(lingering[1] for queue in (self.lingering, self.draining) for lingering in queue)
        for key in list(self.poller.get_map().values()):
            if key.fileobj not in keep and key.fd != self.method_queue.fileno():
                self.poller.unregister(key.fileobj)
        with self.heads_lock:  # (those read now and those a queued connection's thread begins)
            self.heads_by = 0.0
            for conn in self.thread_heads:
                self.thread_heads[conn] = 0.0
        self.expire_heads(time.monotonic())
        self.log.info("Worker quitting: finishing the requests being served and the answers being sent, "
                      "%.0f s at most", max(0.0, self.quit_by - time.monotonic()))
        # The poller is woken once the threads have ended (their last callbacks queued before).
        threads, flushed = list(getattr(self.tpool, "_threads", ())), []  # (no public way to tell they are done)
        threading.Thread(target=_joined, args=(threads, self.method_queue, flushed), daemon=True).start()
        while (now := time.monotonic()) < self.quit_by:
            wait = 1.0
            if flushed and not self.answers:
                # A lingering connection's answer can no longer be cut by a reset once the client
                # took all of it (and our end): its linger (LINGER_SECONDS for a client that keeps
                # its end open, one whose answer ended as the quit began) is not waited for.
                if all(queued_bytes(lingering[1]) == 0 for lingering in self.lingering):
                    break
                wait = 0.05  # (their last bytes on their way: nothing wakes the poller as they are taken)
            self.notify()
            self.wait_for_and_dispatch_events(timeout=min(wait, self.quit_by - now))
            now = time.monotonic()
            if self.thread_heads:
                self.expire_heads(now)
            self.end_lingered(now)
            self.drop_stalled_answers(now)
        if self.answers:  # (cut as the process exits: said, as the requests and mails cut then: worker_mails.cut_at_exit)
            self.log.warning("Worker exiting with %d answer(s) still being sent: cut at the quick stop's deadline",
                             len(self.answers))
        raise SystemExit(0)

    def handle_abort(self, sig, frame):
        self.aborted = True  # (worker_mails.cut_at_exit's status)
        super().handle_abort(sig, frame)

    def restart(self):
        """(Main loop.) max_requests reached. gunicorn's master starts the replacement only once
        this process has ended, and Python ends it only once its sending threads are done: a
        worker that stopped while an SMTP server held a mail answered no one meanwhile (the only
        worker: the instance), until the master killed it. With e-mails being sent, or requests
        its threads still serve (whose mails come as they end: a link form's at its close()), it
        serves on until none is left, at most graceful_timeout more (restart_by, murder_pending),
        then stops as gthread's stop does: it waits up to graceful_timeout once more for the
        requests still in its threads and the answers its main loop still sends (its kept-alive
        connections 2 s), so a restart may take twice graceful_timeout; but not for the e-mails
        past restart_by (mails_by: run, worker_mails.cut_at_exit; what is left is cut, and logged)."""
        self.restart_after, self.restarting = sys.maxsize, True
        self.log.info("Autorestarting worker after current request.")
        self.mails_by = time.monotonic() + self.cfg.graceful_timeout
        jobs = worker_mails.pending()
        if (jobs or self.in_app) and self.alive and self.cfg.graceful_timeout > 0:
            self.restart_by = self.mails_by
            if jobs:
                self.log.info("(Once its %d e-mail job(s) are done, in %d s at most: serving meanwhile.)",
                              jobs, self.cfg.graceful_timeout)
        else:
            self.alive = False

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
        if conn.head is None and not conn.initialized and not conn.data_ready and self.cfg.timeout > 0:
            # (TLS, the PROXY protocol: a new connection.) gthread's thread waited up to 5 s for
            # its first byte: two connections that sent nothing (a browser's, opened in advance)
            # kept everyone else 5 s from the two threads of the default setting. The poller
            # waits for it now, up to `timeout` (as for a plain connection's head), then drops it.
            self.wait_for_first_byte(conn)
            return
        if conn.head is None or type(conn.sock) is GoneSocket:  # (GoneSocket: the thread ends it)
            super().enqueue_req(conn)
            return
        if conn.parser is not None and (read_ahead := conn.parser.unreader.take_buffered()):
            conn.head += read_ahead
            conn.sock.setblocking(False)  # (a thread's blocking socket; else it is non-blocking)
        # (A stopping worker's, as long as its kept-alive connections linger: see below.)
        wait = self.cfg.timeout if self.alive else gthread.STOP_KEEPALIVE_LINGER
        conn.timeout = time.monotonic() + wait
        self.read_head(conn, 0, waiting=False)

    def wait_for_first_byte(self, conn):
        """(TLS, the PROXY protocol: a new connection, or a TLS one whose handshake is done.) The
        poller waits for its first byte (up to `timeout`, a stopping worker's as its kept-alive
        connections'), then a thread reads its head. Records without application data that wake
        it (TLS) do not put that off: the deadline is its first wait's since its accept or its last
        request (a kept-alive one's: `keepalive`, as gthread's)."""
        if not conn.idle_by:
            wait = self.cfg.keepalive if conn.parser is not None and conn.parser.req_count else self.cfg.timeout
            conn.idle_by = time.monotonic() + (wait if self.alive else gthread.STOP_KEEPALIVE_LINGER)
        conn.timeout = min(conn.idle_by, self.heads_by)
        if self.pending_conns and self.pending_conns[-1].timeout > conn.timeout:  # (by their deadline: murder_pending)
            bisect.insort(self.pending_conns, conn, key=attrgetter("timeout"))
        else:
            self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def hand_over(self, conn):
        """Give a connection whose head (and body) the main loop read to a thread, the bytes read
        given back to gunicorn's parser."""
        head = conn.head
        if conn.parser is None:
            conn.init()  # (the parser, and the kernel's bounds; plain sockets only here)
        if conn.over:
            conn.api = is_api(head)  # (its 431's JSON or text: handle_error)
        if conn.cut:  # (else a thread would wait for the rest of a body the main loop let go)
            conn.sock.__class__ = GoneSocket
        if conn.spool is not None:  # (the head and the body's start in the file, the rest after them)
            try:
                conn.spool.write(head)
                conn.spool.seek(0)  # (a buffered write's failure may come here)
            except OSError as error:  # (no disk space left: refused, as in read_body)
                self.refuse_body(conn, False, error)
                return
            conn.spooled += len(head)
            self.spooled += len(head)
            conn.parser.unreader.__class__ = SpooledUnreader
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
        if conn.head is not None and type(conn.sock) in (BoundedSocket, GoneSocket):  # (a plain socket, bounded)
            OUTBOXES[conn.sock] = self  # (its Outbox made only where the socket does not take an answer whole)
        elif conn.head is None and TimedSocket.seconds:
            if (conn.initialized and type(conn.sock) is BoundedSSLSocket and not conn.is_http2
                    and not conn.parser.unreader.buf.getvalue() and not conn.head_came()):
                return HEAD_NOT_YET  # (TLS, kept alive or waiting for its head: no application data came)
            self.watch_head(conn)
        keepalive = super().handle(conn)
        conn.request = b""
        if conn.head is None:
            self.head_read(conn)  # (none came, or it was refused: no longer watched either)
            if type(conn.parser) is _HeadNotYet:
                conn.parser = conn.parser.parser
                return HEAD_NOT_YET
        if conn.head is None and type(getattr(conn.parser, "unreader", None)) is RecordingUnreader:
            if ((type(conn.sock) is GoneSocket or conn.expired) and conn.parser.req_count == 1
                    and proxy_header_cut(conn.parser.unreader.seen)):
                # A PROXY protocol header cut short, its client waiting: a read waited `timeout`,
                # or its head's deadline passed (as the heads the main loop reads: `timeout`), and
                # gunicorn let it go unanswered.
                self.handle_error(None, conn.sock, conn.client, InvalidProxyHeader("header cut short"))
            conn.parser.unreader.seen = b""  # (its start, a token or payload maybe, let go: the next one's kept anew)
            conn.parser.unreader.watch_body(None)  # (the next head's bounded by its own deadline)
        if keepalive and type(conn.parser.unreader) is SpooledUnreader:
            conn.parser.unreader.take_rest()
        return keepalive

    def handle_request(self, req, conn):
        if type(req.body) is Body:
            req.body.__class__ = RequestBody
            req.body.request = req
            if conn.head is None:  # (read by gunicorn in this thread)
                if not self.head_in_time(conn):
                    return False
                conn.idle_by = 0.0
                if TimedSocket.seconds and type(conn.parser.unreader) is RecordingUnreader:
                    conn.parser.unreader.watch_body(TimedSocket.seconds)
                if type(req) is Request:
                    req.__class__ = ThreadReadRequest
                    if type(req.body.reader) is ChunkedReader:
                        req.body.reader.__class__ = CountedChunkedReader
        if conn.continued:  # (answered by the main loop: not a second time)
            conn.continued = req._expected_100_continue = False
        if conn.cut:
            req.force_close()
        with self.in_app_lock:
            self.in_app += 1
        try:
            return super().handle_request(req, conn)
        finally:
            with self.in_app_lock:
                self.in_app -= 1
            if type(req.body.reader) is CountedChunkedReader and req.body.reader.refused:
                # Its client may still be sending it (a blocking client reads the answer only
                # then): up to the app's limit more read and dropped as the connection closes,
                # as after the main loop's refusal (linger), else a reset lost it the 400.
                conn.drain = self.body_limit

    def handle_http2(self, conn):
        if not self.head_in_time(conn):  # (HTTP/2 over TLS, or with prior knowledge: its thread's for good, as gthread's)
            return False
        return super().handle_http2(conn)

    def handle_h2c_upgrade(self, conn, req, settings):
        if not self.head_in_time(conn):
            return False
        return super().handle_h2c_upgrade(conn, req, settings)

    def watch_head(self, conn):
        """(A thread, TLS and the PROXY protocol: gunicorn reads the handshake and head here.) Each
        of their reads waits at most `timeout`, but a client that sent a byte within each held the
        thread for ever: the handshake and head must be whole within `timeout` of the thread
        taking the connection, as a plain head's (the main loop's), a stopping worker's within its
        kept-alive connections' linger. Past it the main loop shuts the socket down (its reading;
        TLS: both ways) (expire_heads), which ends the thread's wait as a client gone. (On a file of its own: the
        thread may close the socket meanwhile, and its number be another's.)"""
        try:
            watch = socket.fromfd(conn.sock.fileno(), conn.sock.family, conn.sock.type)
        except OSError:  # (out of files: its reads bounded each, as before, rather than the client dropped)
            return
        wait = TimedSocket.seconds if self.alive else gthread.STOP_KEEPALIVE_LINGER  # (`timeout`: cfg's read costs ~3 us)
        with self.heads_lock:
            conn.watch = watch
            self.thread_heads[conn] = min(time.monotonic() + wait, self.heads_by)

    def head_read(self, conn):
        """(A thread.) The connection's head is read (or it is done with it): no longer watched."""
        with self.heads_lock:
            watch, conn.watch = conn.watch, None
            if watch is not None:
                del self.thread_heads[conn]
        if watch is not None:
            watch.close()

    def head_in_time(self, conn) -> bool:
        """(A thread: gunicorn read the head, an HTTP/2 connection's handshake or preface.) No longer
        watched (head_read); False where its deadline passed as its last bytes came: the main loop
        shut its socket down (or is about to), and Linux still reads to the thread what the client
        sent before and after it (tests: a handshake held until then), so it is dropped as a late
        head, the app not run (a view counted, say, its answer never written on TLS: both ways shut)."""
        self.head_read(conn)
        return not conn.expired

    def expire_heads(self, now):
        """(Main loop.) End the reads of the heads threads read past their deadline (watch_head)."""
        while self.thread_heads:
            with self.heads_lock:
                conn, deadline = next(iter(self.thread_heads.items()))
                if deadline > now:
                    return
                del self.thread_heads[conn]
                watch, conn.watch = conn.watch, None
                conn.expired = True
            try:
                # The thread's read (the handshake's too) ends, as a client gone: dropped unanswered,
                # as a plain head (TLS: not even OpenSSL's alert for the cut record; a PROXY header
                # cut short gets its 400, as once a read waited `timeout`: handle).
                watch.shutdown(socket.SHUT_RDWR if self.cfg.is_ssl else socket.SHUT_RD)
            except OSError:
                pass
            watch.close()

    def _keepalive_after(self, conn, keepalive):
        # (A thread, after the answer.) gthread drains the body the app left unread; one it
        # cannot parse (a bad chunk) raised to handle(), which wrote its own 400 after the
        # app's answer: a second answer, which the client would take for its next request's.
        # Where the next request starts is unknown: the connection closes, unanswered again.
        try:
            if keepalive and conn.head is not None:
                # The main loop read the whole body (in memory or its file): its rest is dropped
                # without the socket, however long. gthread's drain stops at 64 KiB and closes
                # the connection, its answer said keep-alive: a request pipelined after a long
                # body the app left unread (a JSON body past its limit, a 413) was not answered.
                return conn.parser.finish_body()
            if keepalive:  # (gthread's drain, its cap ours: ThreadReadRequest said close past it)
                deadline = time.monotonic() + gthread.DEFAULT_WORKER_DATA_TIMEOUT
                if conn.parser.finish_body(deadline=deadline, max_bytes=THREAD_DRAIN):
                    return True
        except ParseException as e:
            self.log.debug("Closing connection after a body that could not be read (%s)", type(e).__name__)
        if conn.head is None and conn.drain == 0 and unread_body(conn.parser.mesg):
            # (TLS, the PROXY protocol.) Its client may still be sending the body the app left
            # unread (a blocking client reads the answer only then): up to the app's limit more
            # read and dropped as the connection closes, as after a refusal (linger); the close's
            # 64 KiB left a 4 MiB upload answered 401 or 404 a broken pipe, its answer unread.
            conn.drain = self.body_limit
        return False

    def finish_request(self, conn, fs):
        # (Main loop: a thread is done with the connection, its head parsed long since.)
        if self.nr >= self.restart_after:
            self.restart()
        self.held -= conn.handed
        conn.handed = 0
        self.release_spool(conn)
        outbox = OUTBOXES.pop(conn.sock, None)
        if type(outbox) is Outbox and outbox.pending() and conn.sock.fileno() >= 0:
            # The rest of its answer is sent from here as the socket drains; the thread is
            # free. Its next request (kept alive) is read once the answer is sent (send_answer).
            self.send_rest(conn, outbox, None if self.quit_asked is not None else fs)  # (quit: then closed)
            return
        if type(outbox) is Outbox:
            outbox.release()  # (its socket closed: nothing more is sent)
        if self.quit_asked is not None:  # (quit: no request read any more)
            self.nr_conns -= 1
            conn.close(graceful=True)
            return
        if not fs.cancelled() and fs.exception() is None and fs.result() is HEAD_NOT_YET:
            conn.sock.setblocking(False)
            self.wait_for_first_byte(conn)
            return
        if (conn.head is None and isinstance(conn.sock, ssl.SSLSocket) and not fs.cancelled()
                and fs.exception() is None and fs.result() is True and conn.sock.pending()):
            # (TLS, kept alive.) The next request's bytes came in the record that ended the last
            # body: read into the ssl layer, not in the socket the poller looks at, which would
            # wait for more that never comes (and drop the connection unanswered).
            self.enqueue_req(conn)
            return
        super().finish_request(conn, fs)

    def _cap_keepalive(self, deadline):
        # A stopping worker (SIGTERM, max_requests) waits for its connections' requests, a
        # connection that has sent nothing (a browser's connection opened in advance) included:
        # their heads have as long as gunicorn gives kept-alive connections, not `timeout`.
        super()._cap_keepalive(deadline)
        for conn in self.heads:
            conn.timeout = min(conn.timeout, deadline)
        for conn in self.pending_conns:  # (nor a new TLS or PROXY connection's first byte)
            conn.timeout = min(conn.timeout, deadline)
        with self.heads_lock:  # (nor a TLS or PROXY handshake and head its thread reads)
            self.heads_by = deadline
            for conn, by in self.thread_heads.items():
                self.thread_heads[conn] = min(by, deadline)
        for lingering in self.draining:  # (nor the rest of a refused body)
            lingering[0] = min(lingering[0], deadline)

    def murder_pending(self):
        # (Called in the main loop after each round of events, as gunicorn's own.)
        super().murder_pending()
        now = time.monotonic()
        if self.restart_by and (now >= self.restart_by or not self.alive
                                or not (self.in_app or worker_mails.pending())):
            self.restart_by = 0.0  # (restart: its requests done and e-mails sent, or it waited long enough)
            self.alive = False
        if self.worker_connections != self.cfg.worker_connections and now >= self.accept_again:
            self.worker_connections = self.cfg.worker_connections  # (accept: out of files a second ago)
        while self.heads and self.heads[0].timeout <= now:
            self.held -= len(self.heads[0].head)
            self.drop_head(self.heads[0])
        if self.thread_heads:
            self.expire_heads(now)
        self.end_lingered(now)
        if self.quit_asked is not None:
            self.quit()  # (SIGQUIT, SIGINT: here, between two rounds of events, nothing half done)
        if (self.bodies or self.answers or self.draining) and now >= self.bodies_checked + 1:  # (a look a second)
            self.bodies_checked = now
            for lingering in [lingering for lingering in self.draining if lingering[4] <= now]:
                self.end_lingering(lingering)  # (a refused body's client that sent nothing for DRAIN_IDLE_SECONDS)
            for conn in [conn for conn in self.bodies if conn.timeout <= now]:
                self.held -= len(conn.head)
                self.give_up_body(conn)
            self.drop_stalled_answers(now)

    def end_lingered(self, now):
        """(Main loop.) Close the connections whose linger (or drain) is past its deadline."""
        for queue in (self.lingering, self.draining):
            while queue and queue[0][0] <= now:
                self.end_lingering(queue[0])

    def drop_stalled_answers(self, now):
        """(Main loop.) Drop the answers whose clients took nothing of them for `timeout`."""
        for conn in [conn for conn in self.answers if conn.timeout <= now]:
            # (Linux says a socket is writable only once a third of its send buffer is free:
            # a client that reads slowly may take longer than `timeout` to free that much.)
            queued = queued_bytes(conn.sock)
            if queued is not None and queued < conn.queued:
                conn.queued, conn.timeout = queued, now + self.cfg.timeout  # (it took some)
            else:
                self.drop_answer(conn)
