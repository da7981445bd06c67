"""Notify by e-mail under attack: caps under concurrent requests, spellings of one address,
header injection, authorization, secrets in errors and logs, a sending racing a deletion."""
import logging
import re
import threading

import pytest
from conftest import bearer, sql
from smtpsink import TricklingServer

from pwp import notify, pushes

SECRET = "correct horse battery staple"


def create(client, token, **push):
    push.setdefault("payload", SECRET)
    return client.post("/api/v2/pushes", json={"push": push}, headers=bearer(token) if token else {})


def recipients(app):
    return [r[0] for r in sql(app, "SELECT recipients FROM notify_by_emails ORDER BY id")]


# ----------------------------------------------------------------------------- caps, concurrently

def test_two_creates_at_once_cannot_both_pass_the_daily_cap(settings, smtp, database_url, request, monkeypatch):
    """A create that notifies checked the daily cap before its commit and queued its sending
    after it: a second create run in that gap saw no sending and passed too (10 recipients
    queued with a cap of 5). The second create now sees the first's sending: a 422."""
    settings.update(smtp.settings(), PWP__NOTIFY_BY_EMAIL__DAILY_LIMIT=5)
    client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
    token = request.getfixturevalue("token")
    real_create, answers, started = pushes.create, [], []

    def second_create():
        answers.append(create(app.test_client(), token, notify_emails_to="b1@example.com,b2@example.com").status_code)

    def create_then_let_another_in(*args, **kwargs):
        push = real_create(*args, **kwargs)
        if not started:  # (the first create only: the second runs whole, in another thread, now)
            started.append(True)
            thread = threading.Thread(target=second_create)
            thread.start()
            thread.join()
        return push

    monkeypatch.setattr(pushes, "create", create_then_let_another_in)
    first = create(client, token, notify_emails_to=",".join(f"a{i}@example.com" for i in range(4)))
    notify.wait_for_sends()
    assert sorted([first.status_code] + answers) == [201, 422]
    assert sum(len(r.split(",")) for r in recipients(app)) <= 5


def test_purging_a_users_pushes_frees_no_room_under_the_daily_cap(settings, smtp, database_url, request, clock):
    """The cap counts the day's stored sendings: a push expired at once and deleted by
    purge-expired (PWP__PURGE_AFTER short) took its sendings along, and the sender could
    send the day's cap again. Purge keeps a push with a sending of the day until the next."""
    settings.update(smtp.settings(), PWP__NOTIFY_BY_EMAIL__DAILY_LIMIT=3, PWP__PURGE_AFTER=0)
    client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
    token = request.getfixturevalue("token")
    url_token = create(client, token, notify_emails_to="a@example.com,b@example.com,c@example.com").json["url_token"]
    notify.wait_for_sends()
    assert client.delete(f"/api/v2/pushes/{url_token}", headers=bearer(token)).status_code == 200

    def purge():
        with app.app_context():
            return app.test_cli_runner().invoke(args=["purge-expired"]).output
    assert "owned deleted 0" in purge()
    r = create(client, token, notify_emails_to="d@example.com")
    assert r.status_code == 422 and r.json == {"base": ["The maximum number of emails has been reached for today"]}
    clock.advance(days=1)  # (a new UTC day: the push goes, and the cap has room again)
    assert "owned deleted 1" in purge()
    assert create(client, token, notify_emails_to="d@example.com").status_code == 201
    notify.wait_for_sends()


# ----------------------------------------------------------------------------- robustness

def test_five_long_refused_addresses_end_failed_not_stuck_processing(settings, smtp, database_url, request):
    """Five refused addresses of 250 characters made an error message longer than its column
    (1000): PostgreSQL refused the write, and the sending stayed `processing` (later called
    interrupted, "some may have got it"). It ends `failed`, its message cut to the column."""
    settings.update(smtp.settings())
    client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
    long = [f"refuse{i}" + "x" * 230 + "@example.com" for i in range(5)]
    assert all(len(a) <= 254 for a in long)
    r = create(client, request.getfixturevalue("token"), notify_emails_to=",".join(long))
    assert r.status_code == 201
    notify.wait_for_sends()
    (status, error), = sql(app, "SELECT status, error_message FROM notify_by_emails")
    assert status == "failed" and error.startswith("Sent to 0 of 5 recipient(s). ") and len(error) <= 1000
    assert smtp.sink.messages == []


@pytest.mark.parametrize("to", ["ann@example.com\r\nBcc: victim@example.com", "ann@example.com\nX: y",
                                '"a,b"@example.com', "Ann <ann@example.com>", "ann@exam\u0440le.com",
                                "ann@example.com (comment)", "ANN@example.com, ann@EXAMPLE.com",
                                " ann@example.com ,\tann@example.com", "ann@bücher.de"])
def test_addresses_that_could_reach_a_header_or_repeat_one_are_refused(settings, smtp, database_url, request, to):
    settings.update(smtp.settings())
    client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
    token = request.getfixturevalue("token")
    assert create(client, token, notify_emails_to=to).status_code == 422
    url_token = create(client, token).json["url_token"]
    r = client.post(f"/api/v2/pushes/{url_token}/notify_emails", data={"notify_emails_to": to}, headers=bearer(token))
    assert r.status_code == 422
    assert recipients(app) == []


def test_the_public_gateway_routes_no_notify(settings, smtp, database_url, request):
    settings.update(smtp.settings(), PWP_PUBLIC_GATEWAY=True)
    client = request.getfixturevalue("client")
    _uid, token = request.getfixturevalue("make_user")()
    for path in ("/api/v2/pushes/abc/notify_emails", "/api/v2/pushes/abc/notify_emails.json",
                 "/p/abc/notify_emails"):
        assert client.post(path, json={"notify_emails_to": "a@example.com"}, headers=bearer(token)).status_code == 404


def test_a_server_that_never_answers_costs_the_request_nothing_and_the_thread_its_timeout(
        settings, database_url, request):
    """An SMTP server that accepts the connection and never greets: the create answers at
    once (the sending runs after it), and the thread gives up after PWP__MAIL__SMTP_TIMEOUT
    (recorded as timed out, not as smtplib's SMTPServerDisconnected).
    Meanwhile the database is free: on SQLite the thread held the write lock (its session's
    BEGIN IMMEDIATE) for the whole sending, so the read below waited for it to end ('failed'),
    and every worker's writes waited too (past 15 s: "database is locked")."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # (connections wait in the backlog: accepted by the kernel, never answered)
    try:
        settings.update({"PWP__MAIL__SMTP_ADDRESS": "127.0.0.1", "PWP__MAIL__SMTP_PORT": listener.getsockname()[1],
                         "PWP__MAIL__SMTP_SECURITY": "none", "PWP__MAIL__MAILER_SENDER": "pwpush@example.com",
                         "PWP__MAIL__SMTP_TIMEOUT": 1, "PWP__HOST_DOMAIN": "pwpush.example.com"})
        client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
        token = request.getfixturevalue("token")
        assert create(client, token, notify_emails_to="ann@example.com").status_code == 201
        # (answered while the thread still waits for the greeting: the sending is not final)
        assert sql(app, "SELECT status FROM notify_by_emails") in ([("pending",)], [("processing",)])
        notify.wait_for_sends(timeout=30)
        assert sql(app, "SELECT status, error_message FROM notify_by_emails") == [
            ("failed", "Sent to 0 of 1 recipient(s). The SMTP server: timed out")]
    finally:
        listener.close()


def test_a_server_that_answers_a_byte_at_a_time_holds_the_thread_no_longer_than_the_deadline(
        settings, database_url, request, caplog):
    """A server that trickles its answers (a byte well within each read's timeout) held the
    sending thread for ever: smtplib's timeout is per read. Each mail's whole SMTP
    conversation now ends by notify.SMTP_DEADLINE timeouts; the mail is given up, recorded
    and logged as not sent, naming no address."""
    server = TricklingServer()
    server.start()
    try:
        settings.update(server.settings(), PWP__MAIL__SMTP_TIMEOUT=1)
        client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
        token = request.getfixturevalue("token")
        with caplog.at_level(logging.INFO, logger=app.logger.name):
            assert create(client, token, notify_emails_to="ann@example.com").status_code == 201
            notify.wait_for_sends(timeout=30)
        seconds = notify.SMTP_DEADLINE * 1  # (timeouts of 1 s)
        assert sql(app, "SELECT status, error_message FROM notify_by_emails") == [
            ("failed", f"Sent to 0 of 1 recipient(s). The SMTP server: took longer than {seconds} s")]
        warnings = [re.sub(r"^notify \d+", "notify N", rec.getMessage())
                    for rec in caplog.records if rec.levelno == logging.WARNING]
        assert warnings == [f"notify N: failed, 0 of 1 sent: the SMTP server 127.0.0.1:{server.port} (none): "
                            f"took longer than {seconds} s"]
        assert "ann@example.com" not in caplog.text
    finally:
        server.stop()


def test_a_recipients_answer_cut_by_the_deadline_is_not_a_refusal(settings, database_url, request):
    """A reply to RCPT that had not ended by the deadline (a server trickling it) was read, cut
    short, as the server refusing the recipient ('refused (SMTP 550)', '1 refused by the SMTP
    server'): smtplib's SMTPRecipientsRefused is no SMTPResponseException, which deliver gives
    up on. The server gave no answer: the mail took longer than the deadline."""
    server = TricklingServer(answers=(b"220 pwpush.test ESMTP\r\n", b"250 pwpush.test\r\n", b"250 OK\r\n"),
                             line=b"550 5.1.1 not yet, ")  # (the reply never ends)
    settings.update(server.settings(), PWP__MAIL__SMTP_TIMEOUT=1)
    app = request.getfixturevalue("app")
    server.start()
    try:
        sent, error, why = notify.deliver(app.config, ["ann@example.com"], "body")
    finally:
        server.stop()
    seconds = notify.SMTP_DEADLINE * 1
    assert (sent, error, why) == (
        [], f"Sent to 0 of 1 recipient(s). The SMTP server: took longer than {seconds} s",
        f"the SMTP server 127.0.0.1:{server.port} (none): took longer than {seconds} s")
