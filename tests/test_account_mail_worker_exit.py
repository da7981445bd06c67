"""Account mails pending as a real gunicorn worker stops (max_requests, SIGTERM, SIGINT), through
a real SMTP server that holds them (pwp/worker_mails.py)."""
import http.client
import os
import re
import signal
import subprocess
import threading
import time

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


def _wait_for_log(process, log_path, text, count=1, seconds=60):
    """Wait until the server's log holds `text` `count` times (a deadline, not a sleep: each pause
    returns at once if the server exits)."""
    deadline = time.monotonic() + seconds
    while log_path.read_text(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-4000:]
        try:
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue


# Our worker class (gunicorn.conf.py's), and gunicorn's sync worker (README: `-k sync`, one thread).
WORKER_CLASSES = pytest.mark.parametrize("kind", [(), ("-k", "sync")], ids=["ours", "sync"])


def _held_mail(tmp_path, smtp, *args):
    """gunicorn (its context manager, args added) sending account mails to smtp, with one
    account, owner@example.com."""
    threads = {"GUNICORN_THREADS": "1"} if "sync" in args else {}
    env = server_env(tmp_path / "instance", PWP__ENABLE_USER_ACCOUNT_EMAILS="true",
                     PWP__MAIL__SMTP_TIMEOUT="120", PWPUSH_USER_PASSWORD="correct horse", **smtp.environ(),
                     **threads)
    flask(env, "users", "create", "owner@example.com")
    return gunicorn(env, tmp_path / "server.log", args=args)


def _holding_smtp():
    arrived, release = threading.Event(), threading.Event()

    def hold():
        arrived.set()
        release.wait(90)
    smtp = SmtpServer(on_data=hold)
    smtp.controller.start()
    return smtp, arrived, release


@WORKER_CLASSES
def test_a_worker_restarted_by_max_requests_with_a_mail_held_by_the_smtp_server_leaves_no_one_unanswered(
        tmp_path, kind):
    smtp, arrived, release = _holding_smtp()
    try:
        with _held_mail(tmp_path, smtp, "--max-requests", "3", *kind) as server:
            cookie, csrf = _reset_form(server.port)  # (its 1st request)
            assert _ask_reset(server.port, cookie, csrf, "owner@example.com") == 302  # (2nd)
            assert arrived.wait(30)  # (the mail is being sent, held by the SMTP server)
            assert _ask_reset(server.port, cookie, csrf, "nobody@example.com") == 302  # (3rd: it stops)
            try:
                # The next request is answered (by the worker, which serves on until its mail is
                # sent) while the mail is still held.
                assert _ask_reset(server.port, cookie, csrf, "nobody2@example.com", timeout=20) == 302
            finally:
                release.set()
            assert smtp.sink.wait_for(1)[0][0] == ["owner@example.com"]
            # Its mail sent, the worker restarts: a second one boots.
            _wait_for_log(server.process, server.log_path, "Booting worker", count=2)
            logs = server.logs()
            assert "WORKER TIMEOUT" not in logs and "Traceback" not in logs and "not sent" not in logs
    finally:
        release.set()
        smtp.controller.stop()


def test_a_worker_stopped_by_sigterm_waits_for_a_held_mail_telling_the_master_it_lives(tmp_path):
    smtp, arrived, release = _holding_smtp()
    try:
        with _held_mail(tmp_path, smtp) as server:
            cookie, csrf = _reset_form(server.port)
            assert _ask_reset(server.port, cookie, csrf, "owner@example.com") == 302
            assert arrived.wait(30)
            server.process.send_signal(signal.SIGTERM)
            _wait_for_log(server.process, server.log_path, "waiting up to 9 s for its 1 e-mail job(s)")
            release.set()
            assert smtp.sink.wait_for(1)[0][0] == ["owner@example.com"]
            assert server.process.wait(timeout=60) == 0
            logs = server.logs()
            assert "Worker exiting (pid" in logs
            assert "SIGKILL" not in logs and "Traceback" not in logs and "not sent" not in logs
    finally:
        release.set()
        smtp.controller.stop()


def test_a_worker_stopped_by_sigterm_cuts_a_mail_still_held_at_its_graceful_timeout(tmp_path):
    smtp, arrived, release = _holding_smtp()
    try:
        with _held_mail(tmp_path, smtp, "--graceful-timeout", "3") as server:
            cookie, csrf = _reset_form(server.port)
            assert _ask_reset(server.port, cookie, csrf, "owner@example.com") == 302
            assert arrived.wait(30)
            server.process.send_signal(signal.SIGTERM)
            # (The master kills a worker still there after graceful_timeout: this one ended before.)
            assert server.process.wait(timeout=60) == 0
            logs = server.logs()
            assert "Worker exiting with 1 e-mail job(s) unfinished: not sent" in logs
            assert "SIGKILL" not in logs and "Traceback" not in logs and "WORKER TIMEOUT" not in logs
            assert "owner@example.com" not in logs
    finally:
        release.set()
        smtp.controller.stop()


@WORKER_CLASSES
def test_a_worker_stopped_alone_waits_for_a_held_mail_longer_than_timeout_without_being_killed(tmp_path, kind):
    # (SIGTERM to the worker, as a reload's: the master, still running, kills a worker silent
    # for `timeout`: 2 s here, shorter than the worker's wait, graceful_timeout less a second.)
    smtp, arrived, release = _holding_smtp()
    try:
        with _held_mail(tmp_path, smtp, "--timeout", "2", "--graceful-timeout", "5", *kind) as server:
            cookie, csrf = _reset_form(server.port)
            assert _ask_reset(server.port, cookie, csrf, "owner@example.com") == 302
            assert arrived.wait(30)
            worker = int(re.search(r"Booting worker with pid: (\d+)", server.logs()).group(1))
            os.kill(worker, signal.SIGTERM)
            _wait_for_log(server.process, server.log_path, "Booting worker", count=2)  # (its replacement)
            _wait_for_log(server.process, server.log_path, "Worker exiting with 1 e-mail job(s) unfinished: not sent")
            assert server.request("GET", "/api/v2/version")[0] == 200
            logs = server.logs()
            assert "waiting up to 4 s for its 1 e-mail job(s)" in logs
            assert "WORKER TIMEOUT" not in logs and "Traceback" not in logs
    finally:
        release.set()
        smtp.controller.stop()


@WORKER_CLASSES
def test_a_worker_stopped_by_sigint_ends_at_once_saying_what_it_cut(tmp_path, kind):
    smtp, arrived, release = _holding_smtp()
    try:
        with _held_mail(tmp_path, smtp, *kind) as server:
            cookie, csrf = _reset_form(server.port)
            assert _ask_reset(server.port, cookie, csrf, "owner@example.com") == 302
            assert arrived.wait(30)
            server.process.send_signal(signal.SIGINT)  # (gunicorn's quick stop: SIGQUIT to its workers)
            assert server.process.wait(timeout=60) == 0
            logs = server.logs()
            assert "Worker exiting with 1 e-mail job(s) unfinished: not sent" in logs
            assert "waiting up to" not in logs
            assert "SIGKILL" not in logs and "Traceback" not in logs and "WORKER TIMEOUT" not in logs
    finally:
        release.set()
        smtp.controller.stop()
