"""A real SMTP server for the notify-by-email tests (aiosmtpd), capturing what it is sent."""
import socket
import threading
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MAIL_HOST = "pwpush.example.com"  # (the links' host in the mails: PWP__HOST_DOMAIN)


class Sink:
    """aiosmtpd handler: keeps every message; refuses recipients whose address starts with 'refuse'."""

    def __init__(self, on_data=None):
        self.messages = []  # (envelope recipients, parsed message)
        self.arrived = threading.Condition()
        self.on_data = on_data  # called as each message arrives, while its sender waits
        self.seen = []  # what on_data returned

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.on_data is not None:
            self.seen.append(self.on_data())
        with self.arrived:
            self.messages.append((list(envelope.rcpt_tos),
                                  message_from_bytes(envelope.original_content, policy=policy.default)))
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 30) -> list:
        """Wait until `count` messages arrived (a condition, not a sleep); return them."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.messages) >= count, timeout), self.messages
            return list(self.messages)


class SmtpServer:
    """aiosmtpd on 127.0.0.1 and a free port, started and stopped by the fixture."""

    def __init__(self, on_data=None):
        self.sink = Sink(on_data)
        self.port = free_port()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)

    def settings(self) -> dict:
        """The app settings that send to this server (no TLS: a local test server), the mails'
        links on https://pwpush.example.com."""
        return {"PWP__MAIL__SMTP_ADDRESS": "127.0.0.1", "PWP__MAIL__SMTP_PORT": self.port,
                "PWP__MAIL__SMTP_SECURITY": "none", "PWP__MAIL__MAILER_SENDER": "pwpush <pwpush@example.com>",
                "PWP__HOST_DOMAIN": MAIL_HOST}

    def environ(self) -> dict:
        """The same settings as environment variables (a server process)."""
        return {key: str(value) for key, value in self.settings().items()}


class TricklingServer:
    """An SMTP server that answers a byte at a time for ever: its greeting a multi-line 220
    reply that never ends, a byte every `every` seconds (each of the client's reads gets one
    well within its timeout); or, with `answers` (the greeting, then one for each command but
    the last, each at once), the last command's reply `line`, again and again. Started and
    stopped by the test (stop: its connections closed)."""

    def __init__(self, every: float = 0.1, answers: tuple[bytes, ...] = (),
                 line: bytes = b"220-pwpush.test ESMTP, slowly\r\n"):
        self.every, self.answers, self.line = every, answers, line
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.connections = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def start(self):
        self.thread.start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:  # (stop closed it)
                return
            self.connections.append(conn)
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn):
        try:
            commands = conn.makefile("rb")
            for answer in self.answers:
                conn.sendall(answer)
                commands.readline()
        except OSError:  # (stop closed it)
            return
        while True:
            for byte in self.line:
                # (The server's pace, not a test's wait: it ends as soon as stop() is called.)
                if self.stopped.wait(self.every):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # (the client gave up)
                    return

    def settings(self) -> dict:
        return {"PWP__MAIL__SMTP_ADDRESS": "127.0.0.1", "PWP__MAIL__SMTP_PORT": self.port,
                "PWP__MAIL__SMTP_SECURITY": "none", "PWP__MAIL__MAILER_SENDER": "pwpush <pwpush@example.com>",
                "PWP__HOST_DOMAIN": MAIL_HOST}

    def stop(self):
        self.stopped.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # (wakes its accept(), which close() did not)
        except OSError:
            pass
        self.listener.close()
        for conn in self.connections:
            conn.close()
        self.thread.join(30)
