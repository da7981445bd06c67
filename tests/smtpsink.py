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
