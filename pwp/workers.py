"""gunicorn's threaded worker with a bound on how long a client may keep a thread waiting.

gunicorn's gthread worker reads a request's headers and body with blocking reads that never
time out: a client that sends part of a request and stops (a phone that lost its network
mid-upload, or anyone on purpose) holds a thread for good, and the default setting has two.
Here each read waits at most gunicorn's `timeout` (30 s), as sync workers are bounded by it and
nginx's client_header_timeout and client_body_timeout bound each read; the client is then
taken as gone, as if it had closed the connection (headers: dropped; body: the app's 400 for
a body shorter than its Content-Length), for good. A write gives up once the client took
nothing of the answer for `timeout`, as nginx's send_timeout. A client that keeps sending a
byte now and then still holds its thread: in front of the open internet, a reverse proxy that
buffers requests is still the answer.

The bounds are the kernel's (SO_RCVTIMEO, SO_SNDTIMEO), set once per connection: Python's
own socket timeouts poll before every read and write, and in a process whose threads share
one core those extra system calls cost 6-9 % of the throughput (bench/RESULTS.md, stop 25).

Loaded by gunicorn's master process (gunicorn.conf.py's worker_class): gunicorn's own modules only.
"""
import errno
import fcntl
import socket
import struct
import termios

from gunicorn.workers import gthread


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


class _Connection(gthread.TConn):
    def init(self):
        # In the worker thread, before a connection's first request is read. The kernel's
        # bounds stay through gunicorn's switches between blocking and non-blocking mode for
        # the requests that follow on a kept-alive connection. Not TLS, which gunicorn serves
        # as it does; nor with gunicorn's timeout 0, "none".
        super().init()
        if type(self.sock) is socket.socket and self.cfg.timeout > 0:
            bound(self.sock, self.cfg.timeout)


class ThreadWorker(gthread.ThreadWorker):
    def enqueue_req(self, conn):
        if type(conn) is gthread.TConn:
            conn.__class__ = _Connection
        super().enqueue_req(conn)
