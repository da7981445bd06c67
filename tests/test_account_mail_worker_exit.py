"""Account mails pending as a real gunicorn worker stops (max_requests, SIGTERM, SIGINT), through
a real SMTP server that holds them (pwp/worker_mails.py)."""
import http.client
import os
import re
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from conftest import wait_for_a_lock_waiter
from servers import Server, flask, gunicorn, request, server_env
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


def _wait_for_log(server, text, count=1, seconds=60):
    """Wait until the server's log holds `text` `count` times (a deadline, not a sleep: each pause
    returns at once if the server exits)."""
    deadline = time.monotonic() + seconds
    while server.logs().count(text) < count:
        assert time.monotonic() < deadline, server.logs()[-4000:]
        try:
            server.process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue


# Our worker class (gunicorn.conf.py's), and gunicorn's sync worker (README: `-k sync`, one thread).
WORKER_CLASSES = pytest.mark.parametrize("kind", [(), ("-k", "sync")], ids=["ours", "sync"])


@contextmanager
def _mail_held(tmp_path, *args, database_url=None):
    """gunicorn (its args added; on database_url, else SQLite) sending account mails to an SMTP server that holds each one
    until released; its account owner@example.com has asked for a reset link (the server's
    1st and 2nd requests), the mail now held. Yields a Held."""
    arrived, release = threading.Event(), threading.Event()

    def hold():
        arrived.set()
        release.wait(90)
    smtp = SmtpServer(on_data=hold)
    smtp.controller.start()
    try:
        threads = {"GUNICORN_THREADS": "1"} if "sync" in args else {}
        env = server_env(tmp_path / "instance", database_url, PWP__ENABLE_USER_ACCOUNT_EMAILS="true",
                         PWP__MAIL__SMTP_TIMEOUT="120", PWPUSH_USER_PASSWORD="correct horse",
                         **smtp.environ(), **threads)
        flask(env, "users", "create", "owner@example.com")
        with gunicorn(env, tmp_path / "server.log", args=args) as server:
            cookie, csrf = _reset_form(server.port)
            assert _ask_reset(server.port, cookie, csrf, "owner@example.com") == 302
            assert arrived.wait(30)  # (the mail is being sent, held by the SMTP server)
            yield Held(server, smtp, release, cookie, csrf)
    finally:
        release.set()
        smtp.controller.stop()


@dataclass
class Held:
    server: Server
    smtp: SmtpServer
    release: threading.Event  # (set: the SMTP server takes the mail)
    cookie: str
    csrf: str


@WORKER_CLASSES
def test_a_worker_restarted_by_max_requests_with_a_mail_held_by_the_smtp_server_leaves_no_one_unanswered(
        tmp_path, kind):
    with _mail_held(tmp_path, "--max-requests", "3", *kind) as held:
        port = held.server.port
        assert _ask_reset(port, held.cookie, held.csrf, "nobody@example.com") == 302  # (3rd: it restarts)
        try:
            # The next request is answered (by the worker, which serves on until its mail is
            # sent) while the mail is still held.
            assert _ask_reset(port, held.cookie, held.csrf, "nobody2@example.com", timeout=20) == 302
        finally:
            held.release.set()
        assert held.smtp.sink.wait_for(1)[0][0] == ["owner@example.com"]
        # Its mail sent, the worker restarts: a second one boots.
        _wait_for_log(held.server, "Booting worker", count=2)
        logs = held.server.logs()
        assert "WORKER TIMEOUT" not in logs and "Traceback" not in logs and "not sent" not in logs


def test_a_worker_stopped_by_sigterm_waits_for_a_held_mail(tmp_path):
    with _mail_held(tmp_path) as held:
        held.server.process.send_signal(signal.SIGTERM)
        _wait_for_log(held.server, "waiting up to 9 s for its 1 e-mail job(s)")
        held.release.set()
        assert held.smtp.sink.wait_for(1)[0][0] == ["owner@example.com"]
        assert held.server.process.wait(timeout=60) == 0
        logs = held.server.logs()
        assert "Worker exiting (pid" in logs
        assert "SIGKILL" not in logs and "Traceback" not in logs and "not sent" not in logs


def test_a_worker_stopped_by_sigterm_cuts_a_mail_still_held_at_its_graceful_timeout(tmp_path):
    with _mail_held(tmp_path, "--graceful-timeout", "3") as held:
        held.server.process.send_signal(signal.SIGTERM)
        # (The master kills a worker still there after graceful_timeout: this one ended before.)
        assert held.server.process.wait(timeout=60) == 0
        _assert_cut(held.server.logs())


@WORKER_CLASSES
def test_a_worker_stopped_alone_waits_for_a_held_mail_longer_than_timeout_without_being_killed(tmp_path, kind):
    # (SIGTERM to the worker, as a reload's: the master, still running, kills a worker silent
    # for `timeout`: 2 s here, shorter than the worker's wait, graceful_timeout less a second.)
    with _mail_held(tmp_path, "--timeout", "2", "--graceful-timeout", "5", *kind) as held:
        worker = int(re.search(r"Booting worker with pid: (\d+)", held.server.logs()).group(1))
        os.kill(worker, signal.SIGTERM)
        _wait_for_log(held.server, "Booting worker", count=2)  # (its replacement)
        _wait_for_log(held.server, "Worker exiting with 1 e-mail job(s) unfinished: not sent")
        assert held.server.request("GET", "/api/v2/version")[0] == 200
        assert "waiting up to 4 s for its 1 e-mail job(s)" in held.server.logs()
        _assert_cut(held.server.logs())


@WORKER_CLASSES
def test_a_worker_stopped_by_sigint_ends_at_once_saying_what_it_cut(tmp_path, kind):
    with _mail_held(tmp_path, *kind) as held:
        held.server.process.send_signal(signal.SIGINT)  # (gunicorn's quick stop: SIGQUIT to its workers)
        assert held.server.process.wait(timeout=60) == 0
        assert "waiting up to" not in held.server.logs()
        _assert_cut(held.server.logs())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_stopped_by_sigquit_with_a_mail_held_answers_the_request_it_serves(tmp_path, database_url):
    """SIGQUIT (gunicorn's quick stop) lets a request being served in a thread finish, as
    Python's exit joins the thread pool; with a mail held, the worker ended at once instead
    (os._exit, worker_mails.cut_at_exit, before that join): the request cut mid-way, a view
    counted whose secret was never sent if it had committed. The request here waits for a
    row lock of the test's as the worker quits."""
    with _mail_held(tmp_path, database_url=database_url) as held:
        server = held.server
        status, push = server.json("POST", "/api/v2/pushes", {"push": {"payload": "the secret"}})
        assert status == 201, push
        worker = int(re.search(r"Booting worker with pid: (\d+)", server.logs()).group(1))
        answer = []
        with psycopg.connect(database_url) as lock:
            lock.execute("SELECT id FROM pushes FOR UPDATE")
            retrieve = threading.Thread(target=lambda: answer.append(
                _retrieve(server.port, push["url_token"])))
            retrieve.start()
            wait_for_a_lock_waiter(database_url, "the retrieve", thread=retrieve)
            os.kill(worker, signal.SIGQUIT)
            _wait_for_log(server, "Worker quitting")  # (it then waits for the request: not its exit)
        retrieve.join(60)
        assert answer and answer[0][0] == 200 and b"the secret" in answer[0][1], answer
        _wait_for_log(server, "Worker exiting with 1 e-mail job(s) unfinished: not sent")
        _assert_cut(server.logs())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_mail_given_by_a_request_served_as_a_worker_restarts_is_sent(tmp_path, database_url):
    """A worker restarted by max_requests with no e-mail job (none to serve on for) still
    finishes the requests its threads serve; a link form among them gave its mail as it
    closed, and the worker's exit cut it at once (no wait on a restart: 'Worker exiting with
    1 e-mail job(s) unfinished'), the mail lost. Now it waits for it within graceful_timeout.
    The form's request waits for a table lock of the test's as another request restarts it."""
    smtp = SmtpServer()
    smtp.controller.start()
    try:
        env = server_env(tmp_path / "instance", database_url, PWP__ENABLE_USER_ACCOUNT_EMAILS="true",
                         PWPUSH_USER_PASSWORD="correct horse", **smtp.environ())
        flask(env, "users", "create", "owner@example.com")
        with gunicorn(env, tmp_path / "server.log", args=("--max-requests", "6")) as server:
            cookie, csrf = _reset_form(server.port)
            asked = []
            with psycopg.connect(database_url) as lock:
                lock.execute("LOCK TABLE throttles IN EXCLUSIVE MODE")
                ask = threading.Thread(target=lambda: asked.append(
                    _ask_reset(server.port, cookie, csrf, "owner@example.com", timeout=60)))
                ask.start()
                wait_for_a_lock_waiter(database_url, "the link form", thread=ask)
                for _ in range(6):  # (max_requests reached by one of these)
                    assert server.request("GET", "/api/v2/version")[0] == 200
                    if "Autorestarting worker" in server.logs():
                        break
                assert "Autorestarting worker" in server.logs()
            ask.join(60)
            assert asked == [302]
            assert smtp.sink.wait_for(1)[0][0] == ["owner@example.com"]
            _wait_for_log(server, "Booting worker", count=2)
            logs = server.logs()
            assert "not sent" not in logs and "Traceback" not in logs and "WORKER TIMEOUT" not in logs
    finally:
        smtp.controller.stop()


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGTERM, then SIGINT"])
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_stopped_by_sigterm_with_a_request_stuck_and_a_mail_held_cuts_it_before_the_sigkill(
        tmp_path, database_url, stop):
    """The cut joined gthread's pool without a bound: a request that outlived graceful_timeout
    (here waiting for a row lock of the test's throughout) held the worker's exit until the
    stopping master's SIGKILL ('was sent SIGKILL! Perhaps out of memory?'), the held mail cut
    unsaid. It waits for the requests until graceful_timeout less a second after the stop
    began, as for its mails, then cuts them and says so.
    The master asked for a quick stop (SIGINT) during its graceful one sends its workers SIGQUIT
    and kills them 2 s later (arbiter.stop): the worker waited for the request until
    graceful_timeout less a second after the SIGQUIT (27d9f34's quit), and the cut joined it until
    that long after the SIGTERM (9 s here), both past the SIGKILL, the cut unsaid. Both now end a
    second after that SIGQUIT."""
    graceful = "3" if stop == "SIGTERM" else "10"
    with _mail_held(tmp_path, "--graceful-timeout", graceful, database_url=database_url) as held:
        server = held.server
        status, push = server.json("POST", "/api/v2/pushes", {"push": {"payload": "the secret"}})
        assert status == 201, push
        with psycopg.connect(database_url) as lock:
            lock.execute("SELECT id FROM pushes FOR UPDATE")
            retrieve = threading.Thread(target=lambda: _retrieve(server.port, push["url_token"]))
            retrieve.start()
            wait_for_a_lock_waiter(database_url, "the retrieve", thread=retrieve)
            server.process.send_signal(signal.SIGTERM)
            if stop != "SIGTERM":
                _wait_for_log(server, "Handling signal: term")
                server.process.send_signal(signal.SIGINT)
            server.process.wait(timeout=60)  # (the master kills a worker still there after graceful_timeout, or 2 s)
        retrieve.join(60)
        assert (stop != "SIGTERM") == ("Quick shutdown requested" in server.logs())
        _assert_cut(server.logs())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_restarted_by_max_requests_with_a_request_stuck_and_a_mail_held_cuts_it_at_once(
        tmp_path, database_url):
    """A worker restarted by max_requests with a mail held serves on (graceful_timeout), then
    stops (its requests another graceful_timeout), then its mails' deadline (the restart's
    graceful_timeout) is past: the cut joined the request still stuck (a row lock of the
    test's) graceful_timeout less a second more, from its own start, telling the master
    nothing meanwhile: past `timeout` the master killed it ('WORKER TIMEOUT'), the held mail cut
    unsaid. On a restart the cut waits for requests no later than for its mails (mails_by)."""
    with _mail_held(tmp_path, "--max-requests", "5", "--graceful-timeout", "5", "--timeout", "2",
                    database_url=database_url) as held:
        server = held.server
        status, push = server.json("POST", "/api/v2/pushes", {"push": {"payload": "the secret"}})  # (3rd request)
        assert status == 201, push
        with psycopg.connect(database_url) as lock:
            lock.execute("SELECT id FROM pushes FOR UPDATE")
            retrieve = threading.Thread(target=lambda: _retrieve(server.port, push["url_token"]))  # (4th)
            retrieve.start()
            wait_for_a_lock_waiter(database_url, "the retrieve", thread=retrieve)
            assert server.request("GET", "/api/v2/version")[0] == 200  # (5th: max_requests)
            _wait_for_log(server, "Booting worker", count=2)  # (the worker ended: cut, or killed)
        retrieve.join(60)
        _assert_cut(server.logs())


def _retrieve(port, url_token):
    try:
        status, _headers, body = request(port, "GET", f"/api/v2/pushes/{url_token}", timeout=60)
    except (OSError, http.client.HTTPException) as exc:  # (the worker ended mid-request)
        return type(exc).__name__, b""
    return status, body


def _assert_cut(logs):
    """The worker said it cut the held mail (a count, no address), and was not killed."""
    assert "Worker exiting with 1 e-mail job(s) unfinished: not sent" in logs
    assert "owner@example.com" not in logs
    assert "SIGKILL" not in logs and "Traceback" not in logs and "WORKER TIMEOUT" not in logs
