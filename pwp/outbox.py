"""The bytes of an answer that a client's socket did not take when a thread wrote them, sent
later by the worker's main loop (pwp/workers.py), as nginx buffers an upstream's answer
(proxy_buffering, proxy_temp_path): a client that reads a long answer slowly holds no thread.

The thread writes what the socket takes at once (buffered_sendall, a bounded client socket's
sendall) and leaves the rest to the connection's Outbox, in memory up to ANSWER_IN_MEMORY, past
it in an encrypted temporary file (crypto.temporary_spool), within the room the worker gives it
(ThreadWorker.hold_answer, spool_answer: the memory and files it shares with request heads and
bodies); past that room the thread writes on itself, each write bounded by the socket. Once the
thread is done, the main loop sends the rest as the socket drains (send_to): what it reads back
from the file and the socket does not take stays in the file, never held.

Loaded by gunicorn's master process (with pwp.workers): the standard library only.
"""
import os
import socket

# The most bytes of an answer an Outbox holds in memory; past it they go to its file.
ANSWER_IN_MEMORY = 64 * 1024

# The Outbox of each connection whose answer a thread is writing, by its socket (a socket has
# no room for it): the worker itself until the socket does not take a write whole at once,
# then an Outbox (made only then: most answers are taken whole, and cost none).
OUTBOXES = {}


def buffered_sendall(sock, data, flags=0):
    """(A thread: a bounded client socket's sendall.) What the socket takes now; the rest to
    the connection's Outbox if it has room, which the main loop sends later (after the bytes it
    holds already). A socket not in OUTBOXES (a connection served as gthread serves it) writes
    on itself (sock.send_waiting)."""
    outbox = OUTBOXES.get(sock)
    if outbox is None:
        return sock.send_waiting(data, flags)
    sent = 0
    if type(outbox) is not Outbox or not outbox.pending():
        try:
            sent = sock.send(data, flags | socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        if sent == len(data) and type(data) is bytes:
            return  # (most writes: taken whole, no Outbox made)
    with memoryview(data) as view, view.cast("B") as left:
        left = left[sent:]
        if not left:
            return
        if type(outbox) is not Outbox:  # (the worker whose room it takes: made once needed)
            outbox = OUTBOXES[sock] = Outbox(outbox)
        if outbox.put(left):
            return
        outbox.flush(sock)  # (no room: what it holds first, then these bytes, each write waiting)
        sock.send_waiting(left, flags)


class Outbox:
    """The bytes of a connection's answer that its socket did not take when the thread wrote
    them, in order: the first in memory (up to ANSWER_IN_MEMORY), the rest in an encrypted
    temporary file. Filled by the thread, then (ThreadWorker.finish_request) sent by the main
    loop (send_to); the one or the other, never both at once."""

    __slots__ = ("worker", "memory", "spool", "spooled")

    def __init__(self, worker):
        self.worker = worker  # the ThreadWorker whose room it takes
        self.memory = bytearray()  # the first bytes not sent
        self.spool = None  # the bytes after them (and, being sent, those read back from it)
        self.spooled = 0  # the bytes written to the file

    def pending(self) -> bool:
        return bool(self.memory) or self.spool is not None

    def put(self, data) -> bool:
        """(The thread.) Keep data after what is held; False where there is no room for it."""
        worker = self.worker
        if self.spool is None and len(self.memory) + len(data) <= ANSWER_IN_MEMORY and worker.hold_answer():
            self.memory += data
            return True
        if not worker.spool_answer(len(data)):
            return False
        try:
            if self.spool is None:
                from pwp.crypto import temporary_spool  # (in the worker, its app loaded)

                self.spool = temporary_spool()
            self.spool.write(data)
        except OSError:  # (TMPDIR full: the thread writes on itself)
            worker.unspool_answer(len(data))
            return False
        self.spooled += len(data)
        return True

    def flush(self, sock):
        """(The thread.) Send what is held, each write waiting (no room left for more); all of
        it let go either way (a write given up: the client is gone, nothing is sent twice)."""
        # (Taken out first: a write given up leaves a slice of them in its exception, and a
        # bytearray with a slice taken cannot be emptied.)
        memory, self.memory = self.memory, bytearray()
        try:
            if memory:
                sock.send_waiting(memory)
            if self.spool is not None:
                # Only what its writes took whole: one the file took in part (the disk full,
                # EFBIG) left that part after them, and the thread sends those bytes itself next.
                self.spool.seek(0)
                left = self.spooled
                while left and (data := self.spool.read(min(left, ANSWER_IN_MEMORY))):
                    sock.send_waiting(data)
                    left -= len(data)
        finally:
            self.release()

    def send_to(self, sock) -> bool | None:
        """(The main loop.) Send what the socket takes now: True once all is sent, False where
        the socket took all it could for now, None where the connection failed. Bytes read
        back from the file are not held: what the socket does not take is read again later."""
        while True:
            data = self.memory
            if not data:
                if self.spool is None:
                    return True
                try:
                    data = self.spool.read(ANSWER_IN_MEMORY)
                except OSError:  # (its file cannot be read back: the answer cannot be finished)
                    return None
                if not data:
                    self.release()
                    return True
            try:
                sent = socket.socket.send(sock, data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                return None
            if data is self.memory:
                del self.memory[:sent]
            elif sent < len(data):
                try:
                    self.spool.seek(sent - len(data), os.SEEK_CUR)
                except OSError:
                    return None
            if sent < len(data):
                return False

    def release(self):
        """Close its file (and give its room back); what is in memory stays."""
        if self.spool is not None:
            try:
                self.spool.close()
            except OSError:
                pass
            self.spool = None
            self.worker.unspool_answer(self.spooled)
            self.spooled = 0
