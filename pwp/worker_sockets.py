"""The worker's bounded client sockets (pwp/workers.py): each read and write of a plain
connection's blocking socket waits at most gunicorn's `timeout`, bounded by the kernel
(SO_RCVTIMEO, SO_SNDTIMEO), set once per connection: Python's own socket timeouts poll before
every read and write, and in a process whose threads share one core those extra system calls
cost 6-9 % of the throughput (bench/RESULTS.md, stop 25). A read that runs out reads as the
end of the stream; a write that runs out while the client took nothing, as a client gone.

Loaded by gunicorn's master process (with pwp.workers): the standard library and pwp.outbox only.
"""
import errno
import fcntl
import socket
import ssl
import struct
import termios

from pwp.outbox import buffered_sendall


def bound(sock: socket.socket, seconds: float):
    """Make each read and write of a blocking client socket wait at most `seconds`."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    sock.__class__ = BoundedSocket


class BoundedSocket(socket.socket):
    """A client's socket whose reads and writes the kernel bounds (a blocking socket's EAGAIN):
    a read that runs out reads as the end of the stream, for good (GoneSocket: else gunicorn,
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
            self.__class__ = GoneSocket
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
                    queued = queued_bytes(self)
                    if queued is None or (waiting is not None and queued >= waiting):
                        raise BrokenPipeError(errno.EPIPE, "the client stopped reading") from None
                    waiting = queued
                    continue
                waiting = None
                left = left[sent:]


def queued_bytes(sock) -> int | None:
    """The bytes of the socket's send queue that the client has not taken (Linux's SIOCOUTQ);
    None where it cannot be read."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (AttributeError, OSError):
        return None


class GoneSocket(BoundedSocket):
    """A client's socket whose read timed out: nothing more is read from it."""

    __slots__ = ()

    def recv(self, bufsize, flags=0):
        return b""


# The most bytes of an answer a TLS connection's write sends at once (a TLS record's), each
# waiting at most the bound: an SSLSocket's send waits for its whole data within its timeout,
# which would cut a long answer to a client that reads it slowly but steadily.
TLS_WRITE = 16384


class TimedSocket(socket.socket):
    """A TLS connection's socket before its handshake (pwp/workers.py): gunicorn's blocking mode
    is Python's timeout, `seconds` (the worker's `timeout`), which the SSLSocket it is wrapped
    in takes over, its handshake bounded by it. (Not the kernel's bound: OpenSSL retries a read
    that ran out, for ever.)"""

    __slots__ = ()
    seconds = None  # (set once by the worker: gunicorn's timeout)

    def setblocking(self, flag):
        # (Detached, its file the SSLSocket's, which a failed handshake closed (gunicorn's
        # do_handshake_on_connect): gthread's close sets it blocking first, an EBADF there made
        # its finish_request count the connection closed twice.)
        if self.fileno() >= 0:
            self.settimeout(self.seconds if flag else 0.0)


class BoundedSSLSocket(ssl.SSLSocket):
    """A TLS connection's socket whose reads and writes each wait at most `seconds`, as
    BoundedSocket's: a read that runs out reads as the end of the stream, for good
    (GoneSSLSocket); a write that runs out, as a client that went away (EPIPE)."""

    seconds = None  # (set once by the worker: gunicorn's timeout)

    def setblocking(self, flag):
        self.settimeout(self.seconds if flag else 0.0)

    def recv(self, buflen=1024, flags=0):
        try:
            return super().recv(buflen, flags)
        except TimeoutError:
            self.__class__ = GoneSSLSocket
            return b""

    def sendall(self, data, flags=0):
        with memoryview(data) as view, view.cast("B") as left:
            try:
                while left:
                    left = left[self.send(left[:TLS_WRITE], flags):]
            except TimeoutError:
                raise BrokenPipeError(errno.EPIPE, "the client stopped reading") from None


class GoneSSLSocket(BoundedSSLSocket):
    """A TLS connection's socket whose read timed out: nothing more is read from it."""

    def recv(self, buflen=1024, flags=0):
        return b""
