"""gunicorn's threaded worker with a bound on how long a client may keep a thread waiting.

gunicorn's gthread worker reads a request's headers and body with blocking reads that never
time out: a client that sends part of a request and stops (a phone that lost its network
mid-upload, or anyone on purpose) holds a thread for good, and the default setting has two.
Here each read waits at most gunicorn's `timeout` (30 s), as sync workers are bounded by it and
nginx's client_header_timeout and client_body_timeout bound each read; the client is then
taken as gone, as if it had closed the connection (headers: dropped; body: the app's 400 for
a body shorter than its Content-Length). A client that keeps sending a byte now and then still
holds its thread: in front of the open internet, a reverse proxy that buffers requests is
still the answer.

Loaded by gunicorn's master process (gunicorn.conf.py's worker_class): gunicorn's own modules only.
"""
import errno
import fcntl
import socket
import struct
import termios

from gunicorn.workers import gthread


class _Socket(socket.socket):
    """A client's socket in timeout mode: a read that times out reads as the end of the
    stream, for good (_Gone: else gunicorn, draining a body the app left unread or short,
    took its late rest as the next request on the kept-alive connection), a write that times
    out while the client took nothing of the answer as a client that went away (EPIPE, which
    gunicorn drops quietly); each wait may last `timeout`, not the whole answer
    (socket.sendall's would have cut a slow download of a large file)."""

    __slots__ = ()

    def recv(self, bufsize, flags=0):
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            self.__class__ = _Gone
            return b""

    def sendall(self, data, flags=0):
        with memoryview(data) as view, view.cast("B") as left:
            while left:
                queued = _queued(self)
                try:
                    sent = self.send(left, flags)
                except TimeoutError:
                    # The kernel takes more only once a third of its send buffer (up to 4 MiB)
                    # is free: a client that took some of the answer meanwhile reads, slowly.
                    if queued is not None and _queued(self) < queued:
                        continue
                    raise BrokenPipeError(errno.EPIPE, "the client stopped reading") from None
                left = left[sent:]


def _queued(sock) -> int | None:
    """The bytes of the socket's send queue that the client has not acknowledged (Linux's
    SIOCOUTQ); None where it cannot be read."""
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
        # Called in the worker thread after each switch back to blocking mode, before a
        # request is read (keep-alive requests too): blocking, but for at most `timeout`.
        super().init()
        # (Not TLS, which gunicorn serves as it does; nor with gunicorn's timeout 0, "none":
        # settimeout(0) would make the socket non-blocking, a body not all arrived cut.)
        if type(self.sock) is socket.socket and self.cfg.timeout > 0:
            self.sock.__class__ = _Socket
        if isinstance(self.sock, _Socket):  # (a kept-alive connection's: set again, each request)
            self.sock.settimeout(self.cfg.timeout)


class ThreadWorker(gthread.ThreadWorker):
    def enqueue_req(self, conn):
        if type(conn) is gthread.TConn:
            conn.__class__ = _Connection
        super().enqueue_req(conn)
