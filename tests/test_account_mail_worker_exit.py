"""Account mails pending as a real gunicorn worker stops (max_requests), through a real SMTP
server that holds them."""
import http.client
import re
import threading

import pytest
from servers import flask, gunicorn, server_env
from smtpsink import SmtpServer


def _reset_form(port):
    """A session cookie and its CSRF token, from the reset form's page."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/users/password/new")
        response = conn.getresponse()
        page = response.read().decode()
        cookie = response.getheader("Set-Cookie").split(";")[0]
    finally:
        conn.close()
    return cookie, re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def _ask_reset(port, cookie, csrf, email, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/users/password", body=f"csrf_token={csrf}&email={email}",
                     headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.xfail(strict=True, reason=(
    "worker defect (pwp/workers.py, not this round's area): a worker that stops after "
    "max_requests waits, before it exits, for its sending threads (not daemons) without telling "
    "the master it lives; the master starts its replacement only once it has exited, so with one "
    "worker no request is answered meanwhile, and after `timeout` (30 s) the master kills it "
    "(WORKER TIMEOUT, SIGABRT: a traceback in the log), the mail held lost"))
def test_a_worker_restarted_by_max_requests_with_a_mail_held_by_the_smtp_server_leaves_no_one_unanswered(tmp_path):
    arrived, release = threading.Event(), threading.Event()

    def hold():
        arrived.set()
        release.wait(90)
    smtp = SmtpServer(on_data=hold)
    smtp.controller.start()
    try:
        env = server_env(tmp_path / "instance", PWP__ENABLE_USER_ACCOUNT_EMAILS="true",
                         PWP__MAIL__SMTP_TIMEOUT="120", PWPUSH_USER_PASSWORD="correct horse", **smtp.environ())
        flask(env, "users", "create", "owner@example.com")
        with gunicorn(env, tmp_path / "server.log", args=("--max-requests", "3")) as server:
            cookie, csrf = _reset_form(server.port)  # (its 1st request)
            assert _ask_reset(server.port, cookie, csrf, "owner@example.com") == 302  # (2nd)
            assert arrived.wait(30)  # (the mail is being sent, held by the SMTP server)
            assert _ask_reset(server.port, cookie, csrf, "nobody@example.com") == 302  # (3rd: it stops)
            try:
                # The next request is answered (by its replacement) while the mail is still held.
                assert _ask_reset(server.port, cookie, csrf, "nobody2@example.com", timeout=20) == 302
            finally:
                release.set()
            assert smtp.sink.wait_for(1)[0][0] == ["owner@example.com"]
            assert "WORKER TIMEOUT" not in server.logs()
    finally:
        release.set()
        smtp.controller.stop()
