"""Answers the worker's main loop sends (pwp/workers.py: ThreadWorker's AnswerSender part):
the rest of an answer a client's socket did not take when its thread wrote it (pwp/outbox.py),
sent as the socket drains, the client dropped once it takes nothing for `timeout`; the room
answers take (memory, temporary files) beside heads and bodies; and a closed connection's
lingering for the client's end, or for the rest of a refused body (its drain).

Loaded by gunicorn's master process (with pwp.workers): gunicorn's own modules, pwp.outbox only.
"""
import selectors
import socket
import time
from functools import partial

from gunicorn.workers import gthread

from pwp.outbox import ANSWER_IN_MEMORY
from pwp.worker_bodies import BODIES_HELD, BODIES_SPOOLED
from pwp.worker_sockets import queued_bytes

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


class AnswerSender:
    """ThreadWorker's part that sends answers' rests from the main loop and lingers as connections close."""

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
            conn.queued = queued_bytes(conn.sock)
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
                data = socket.socket.recv(sock, min(lingering[2], 65536))  # (not BoundedSocket's: EAGAIN is no end here)
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
