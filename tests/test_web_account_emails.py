"""Account e-mails (PWP__ENABLE_USER_ACCOUNT_EMAILS): password resets, account locks and
sign-up confirmations, through a real SMTP server whose mails' links are followed."""
import logging
import re
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event
from werkzeug.test import EnvironBuilder
from conftest import bearer, sql
from flask.testing import FlaskClient
from smtpsink import MAIL_HOST, SmtpServer
from test_notify_api import _nothing_held

from pwp import account_mail, notify, pushes
from pwp.models import db
from pwp.logfilter import redact

PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple"
LINK = re.compile(r"https://\S+")


class ClosingClient(FlaskClient):
    """A test client that closes each answer once it has read it, as a WSGI server does once
    it has sent it: a link form's work starts then."""

    def open(self, *args, buffered=True, **kwargs):
        return super().open(*args, buffered=buffered, **kwargs)


@pytest.fixture
def client(app):
    """A test client that closes each answer (its app's other test clients too)."""
    app.test_client_class = ClosingClient
    return app.test_client()


@pytest.fixture
def on(settings, smtp, database_url, request):
    """A client of an app with account e-mails on, sending to `smtp`."""
    settings.update(smtp.settings(), PWP__ENABLE_USER_ACCOUNT_EMAILS=True)
    return request.getfixturevalue("client")


def mails(smtp, count):
    """The mails the server got once this process's sending threads ended (count of them)."""
    notify.wait_for_sends()
    got = smtp.sink.wait_for(count) if count else smtp.sink.messages
    assert len(got) == count, [m["Subject"] for _r, m in got]
    return got


def link_in(message) -> str:
    """The one link of a mail, as a path with its query (for the test client)."""
    (url,) = LINK.findall(message.get_content())
    parts = urlsplit(url)
    assert parts.netloc == MAIL_HOST  # (the configured host, never the request's)
    return f"{parts.path}?{parts.query}"


def sign_in_as(client, email="owner@example.com", password=PASSWORD):
    return client.post("/users/sign_in", data={"email": email, "password": password})


def ask_reset(client, email="owner@example.com", **kwargs):
    return client.post("/users/password", data={"email": email}, **kwargs)


# ----------------------------------------------------------------------------- off

def test_off_by_default_the_pages_are_absent_and_the_sign_in_page_says_so(client):
    for path in ("/users/password/new", "/users/confirmation/new", "/users/unlock/new",
                 "/users/password/edit?reset_password_token=x", "/users/confirmation?confirmation_token=x",
                 "/users/unlock?unlock_token=x"):
        assert client.get(path).status_code == 404, path
    assert client.post("/users/password", data={"email": "a@example.com"}).status_code == 404
    html = client.get("/users/sign_in").get_data(as_text=True)
    assert "resets no password by e-mail" in html and "/users/password/new" not in html


def test_off_twenty_wrong_passwords_lock_nothing(client, make_user, clock):
    make_user(password=PASSWORD)
    for _ in range(account_mail.MAXIMUM_ATTEMPTS):
        clock.advance(seconds=301)
        assert sign_in_as(client, password="wrong password").status_code == 401
    assert sign_in_as(client).status_code == 302


# ----------------------------------------------------------------------------- recoverable

def test_forgot_password_mails_a_link_that_sets_a_new_password_once(on, make_user, smtp, app, settings):
    make_user(password=PASSWORD)
    other = app.test_client()
    assert sign_in_as(other).status_code == 302
    page = on.get("/users/sign_in").get_data(as_text=True)
    assert 'href="/users/password/new"' in page and "resets no password" not in page
    assert on.get("/users/password/new").status_code == 200
    r = ask_reset(on, "Owner@Example.com ")
    assert r.status_code == 302 and r.headers["Location"] == "/users/sign_in"
    assert "password recovery link" in on.get("/users/sign_in").get_data(as_text=True)
    ((rcpts, message),) = mails(smtp, 1)
    assert rcpts == ["owner@example.com"] and message["Subject"] == "Reset password instructions"
    link = link_in(message)
    assert link.startswith("/users/password/edit?reset_password_token=")
    token = link.partition("=")[2]
    # Only the token's digest is stored.
    assert token not in str(sql(app, "SELECT * FROM users"))
    form = on.get(link)
    assert form.status_code == 200 and form.headers["Cache-Control"] == "no-store"
    r = on.post("/users/password/edit", data={"reset_password_token": token, "password": "short",
                                              "password_confirmation": "shirt"})
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "Use at least 8 characters." in html and "do not match" in html
    r = on.post("/users/password/edit", data={"reset_password_token": token, "password": NEW_PASSWORD,
                                              "password_confirmation": NEW_PASSWORD})
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert "Sign out" in on.get("/").get_data(as_text=True)  # this browser signed in
    assert "Sign out" not in other.get("/").get_data(as_text=True)  # every other session ended
    assert sign_in_as(app.test_client()).status_code == 401
    assert sign_in_as(app.test_client(), password=NEW_PASSWORD).status_code == 302
    # Single use.
    assert app.test_client().get(link).status_code == 422
    again = app.test_client().post("/users/password/edit", data={
        "reset_password_token": token, "password": "third password", "password_confirmation": "third password"})
    assert again.status_code == 422 and account_mail.INVALID_LINK in again.get_data(as_text=True)
    assert sign_in_as(app.test_client(), password=NEW_PASSWORD).status_code == 302


def test_an_unknown_address_gets_the_same_answer_and_no_mail(on, make_user, smtp):
    make_user(password=PASSWORD)
    known, unknown = ask_reset(on), ask_reset(on, "nobody@example.com")
    assert known.status_code == unknown.status_code == 302
    assert known.headers["Location"] == unknown.headers["Location"]
    assert [rcpts for rcpts, _m in mails(smtp, 1)] == [["owner@example.com"]]


@pytest.mark.parametrize("path,state", [("/users/password", ""), ("/users/confirmation", "unconfirmed"),
                                        ("/users/unlock", "locked")])
def test_a_link_form_does_the_same_work_before_its_answer_whether_the_address_is_an_accounts_or_not(
        on, make_user, smtp, app, path, state):
    """The answer is the same, and so is its time: the request did the account's work (a
    token written, a mail queued) before answering, ~9 ms more than for an unknown address on
    a real server (15 against 6 ms, medians of 40): its time told which addresses had an
    account. Now the request only counts and answers; the lookup and the mail follow in a
    sending thread. Compared here as the statements the request's own thread runs."""
    make_user(password=PASSWORD)
    if state == "unconfirmed":
        sql(app, "UPDATE users SET confirmed_at = NULL")
    elif state == "locked":
        sql(app, "UPDATE users SET locked_at = :now", now=pushes.utcnow())
    request_thread = threading.current_thread()

    def statements(email):
        ran = []

        def record(_conn, _cursor, statement, *_args):
            if threading.current_thread() is request_thread:
                ran.append(statement)
        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", record)
            try:
                assert on.post(path, data={"email": email}).status_code == 302
            finally:
                event.remove(db.engine, "before_cursor_execute", record)
        return ran
    assert statements("owner@example.com") == statements("nobody@example.com")
    assert [rcpts for rcpts, _m in mails(smtp, 1)] == [["owner@example.com"]]


def test_a_link_forms_work_starts_once_its_answer_is_sent(on, make_user, smtp, app):
    """The sending thread started as the answer was made (the request's teardown), before the
    server wrote it: an account's work (its token written, its mail's connection) then ran
    while the answer was still being sent, 16.4 against 13.7 ms for an unknown address
    (medians of 120, real gunicorn). It starts once the server has sent the answer and
    closes it (the WSGI iterable's close(), which gunicorn calls after the last byte)."""
    make_user(password=PASSWORD)
    environ = EnvironBuilder(method="POST", path="/users/password",
                             data={"email": "owner@example.com"}).get_environ()
    started = []
    answer = app(environ, lambda status, headers, exc_info=None: started.append(status))
    b"".join(answer)
    assert started == ["302 FOUND"]
    notify.wait_for_sends()
    assert sql(app, "SELECT reset_password_token_digest FROM users") == [(None,)]
    answer.close()
    assert [rcpts for rcpts, _m in mails(smtp, 1)] == [["owner@example.com"]]
    assert sql(app, "SELECT reset_password_token_digest IS NOT NULL FROM users") == [(True,)]


def test_a_link_forms_work_waits_past_the_close_of_its_connection(on, make_user, smtp, app):
    """Started at the answer's close(), an account's work (its lookup, its token's write, its
    mail) ran while the server was closing the connection, the GIL with it: on a real gunicorn
    (1 worker, reset form, Connection: close, 200 pairs) the answer came whole in the same time
    (10.7 against 10.9 ms) but the connection's end 3.7 ms later in the median (11.5 against
    7.8), which told a client reading to the end which addresses had an account. The sending
    thread now waits a random ASK_DELAY first: nothing of the account's runs within its least."""
    make_user(password=PASSWORD)
    environ = EnvironBuilder(method="POST", path="/users/password",
                             data={"email": "owner@example.com"}).get_environ()
    answer = app(environ, lambda status, headers, exc_info=None: None)
    b"".join(answer)
    first = []

    def record(_conn, _cursor, statement, *_args):
        if threading.current_thread().name.startswith("account-ask") and not first:
            first.append(time.monotonic())
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            before = list(notify._threads)
            answer.close()
            closed = time.monotonic()
            # Nor is its thread started there (its start was ~1 ms of the connection's end):
            # the one thread of notify._later starts it.
            assert [t.name for t in notify._threads if t not in before] == []
            got = mails(smtp, 1)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    assert [rcpts for rcpts, _m in got] == [["owner@example.com"]]
    # (A lower bound only: a wait lasts at least its time, however busy the machine.)
    assert first and first[0] - closed >= account_mail.ASK_DELAY[0] > 0


def test_the_answers_close_runs_the_same_code_for_an_accounts_address_or_not(on, make_user, smtp, app):
    """Its close() (once the server has sent the answer) gave an account's work to the
    worker's sending-later thread, waking it, and did nothing for an unknown address: on a real
    gunicorn (1 worker, reset form, Connection: close, 200 pairs) the connection's end still
    came later after the whole answer for an account's address, 0.27 against 0.16 ms in the
    median. Now close() hands any address's on alike, to be looked at when due (only an
    account's then takes a sending place). Compared as the functions of pwp the closing
    thread calls."""
    make_user(password=PASSWORD)

    def calls(email):
        notify.wait_for_sends()
        environ = EnvironBuilder(method="POST", path="/users/password", data={"email": email}).get_environ()
        answer = app(environ, lambda status, headers, exc_info=None: None)
        b"".join(answer)
        called = []

        def record(frame, event, _arg):
            if event == "call" and "/pwp/" in frame.f_code.co_filename:
                called.append(frame.f_code.co_qualname)
        sys.setprofile(record)
        try:
            answer.close()
        finally:
            sys.setprofile(None)
        return called
    assert calls("owner@example.com") == calls("nobody@example.com")
    assert [rcpts for rcpts, _m in mails(smtp, 1)] == [["owner@example.com"]]


def test_a_link_form_runs_the_same_code_for_an_accounts_address_or_not_in_a_browser_known_to_another(
        on, make_user, smtp, app):
    """The form looks the address up to count a browser known to the account apart: it
    opened (decrypted) this browser's pwp_device cookie only for an account's address, work
    that an unknown address's request did not do. Compared as the functions of pwp the
    request's own thread calls until its answer is sent."""
    make_user(password=PASSWORD)
    assert sign_in_as(on).status_code == 302  # (this browser is known to owner@example.com)
    on.post("/users/sign_out")
    make_user(email="other@example.com", password=PASSWORD)

    def calls(email):
        called = []
        notify.wait_for_sends()  # (the last request's thread gave back its connection)

        def record(frame, event, _arg):
            if event == "call" and "/pwp/" in frame.f_code.co_filename:
                called.append(frame.f_code.co_qualname)
        sys.setprofile(record)
        try:  # (up to the answer sent: its close, after, starts an account's work alone)
            answer = on.post("/users/password", data={"email": email}, buffered=False)
            assert answer.status_code == 302
        finally:
            sys.setprofile(None)
        answer.close()
        return called
    calls("first@example.com")  # (the first request's own work: a connection made, ...)
    assert calls("other@example.com") == calls("never@example.com")  # (as long: its checks run per character)
    assert [rcpts for rcpts, _m in mails(smtp, 1)] == [["other@example.com"]]


def test_an_account_stored_before_addresses_with_header_specials_were_refused_is_mailed_nothing(
        on, make_user, smtp, app, caplog):
    """An account made before sign-up refused 'x<victim@example.com>' still signs in, but no
    account mail goes to it: smtplib's RCPT TO takes the address in the angle brackets, so
    its reset links went to victim@example.com, past that address's per-account cap."""
    make_user(password=PASSWORD)
    sql(app, "UPDATE users SET email = 'x<victim@example.com>'")
    assert sign_in_as(app.test_client(), "x<victim@example.com>").status_code == 302
    with caplog.at_level(logging.WARNING, logger="pwp"):
        assert ask_reset(on, "x<victim@example.com>").status_code == 302
        assert mails(smtp, 0) == []
    assert "e-mail not sent" in caplog.text and "victim" not in caplog.text


def test_the_reset_link_expires_after_six_hours(on, make_user, smtp, clock):
    make_user(password=PASSWORD)
    ask_reset(on)
    link = link_in(mails(smtp, 1)[0][1])
    clock.advance(hours=5, minutes=59)
    assert on.get(link).status_code == 200
    clock.advance(minutes=2)
    r = on.get(link)
    assert r.status_code == 422 and account_mail.INVALID_LINK in r.get_data(as_text=True)


def test_a_new_link_or_a_password_change_voids_the_link_before(on, make_user, smtp, app):
    make_user(password=PASSWORD)
    ask_reset(on)
    first = link_in(mails(smtp, 1)[0][1])
    ask_reset(on)
    second = link_in(mails(smtp, 2)[1][1])
    assert on.get(first).status_code == 422 and on.get(second).status_code == 200
    result = app.test_cli_runner().invoke(args=["users", "password", "owner@example.com"],
                                          input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert on.get(second).status_code == 422
    mails(smtp, 3)  # (the third: the password changed)


def test_the_reset_link_is_on_the_configured_host_not_the_requests(on, make_user, smtp):
    make_user(password=PASSWORD)
    ask_reset(on, headers={"Host": "evil.example.net"})
    assert LINK.search(mails(smtp, 1)[0][1].get_content()).group().startswith(f"https://{MAIL_HOST}/users/")


def test_asking_for_links_is_throttled_per_address(on, make_user, smtp, clock):
    make_user(password=PASSWORD)
    for i in range(5):
        clock.advance(seconds=61)  # (past the per-IP minute)
        assert ask_reset(on).status_code == 302, i
    clock.advance(seconds=61)
    r = ask_reset(on)
    assert r.status_code == 429 and "Too many attempts" in r.get_data(as_text=True)
    # The unknown address is counted the same: the answer tells nothing.
    for _ in range(5):
        clock.advance(seconds=61)
        ask_reset(on, "nobody@example.com")
    clock.advance(seconds=61)
    assert ask_reset(on, "nobody@example.com").status_code == 429
    assert len(mails(smtp, 5)) == 5


def test_a_stranger_spending_an_addresss_links_keeps_out_only_browsers_new_to_the_account(
        on, make_user, smtp, clock, app):
    """Anyone who knows the address could ask for its 5 links an hour and so keep its owner
    from a reset link, hour after hour; a browser that signed in to the account before
    (pwp_device) counts its own 5, as at the sign-in."""
    make_user(password=PASSWORD)
    assert sign_in_as(on).status_code == 302
    on.post("/users/sign_out")
    clock.advance(seconds=3600 - pushes.unix_seconds(clock.now) % 3600)
    stranger = app.test_client()
    for attempt in range(5):
        stranger.environ_base["REMOTE_ADDR"] = f"192.0.2.{attempt}"
        assert ask_reset(stranger).status_code == 302
    assert ask_reset(app.test_client()).status_code == 429
    assert ask_reset(on).status_code == 302
    assert len(mails(smtp, 6)) == 6


def test_a_blank_address_is_told_422(on):
    r = on.post("/users/password", data={"email": " "})
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "Enter your e-mail address." in html and 'aria-invalid="true"' in html


def test_no_transaction_is_held_while_an_account_mail_goes_out(settings, database_url, request):
    smtp = SmtpServer(on_data=lambda: _nothing_held(database_url))
    smtp.controller.start()
    try:
        settings.update(smtp.settings(), PWP__ENABLE_USER_ACCOUNT_EMAILS=True)
        client = request.getfixturevalue("client")
        request.getfixturevalue("make_user")(password=PASSWORD)
        ask_reset(client)
        mails(smtp, 1)
    finally:
        smtp.controller.stop()
    assert smtp.sink.seen == [True]


def test_the_links_tokens_are_redacted_from_logged_request_lines():
    for path in ("/users/password/edit?reset_password_token=SECRETabc", "/users/confirmation?confirmation_token=SECRETabc",
                 "/users/unlock?unlock_token=SECRETabc"):
        line = redact(f'"GET {path} HTTP/1.1" 200')
        assert "SECRETabc" not in line and path.partition("?")[0] in line


# ----------------------------------------------------------------------------- lockable

def fail_sign_ins(client, clock, count, email="owner@example.com"):
    for _ in range(count):
        clock.advance(seconds=301)  # (past the per-IP and per-address sign-in throttles)
        r = sign_in_as(client, email, "wrong password")
        html = r.get_data(as_text=True)
        assert r.status_code == 401 and "Invalid e-mail address or password." in html and "locked" not in html


def test_twenty_failed_sign_ins_lock_the_account_until_its_mailed_link(on, make_user, smtp, clock, app):
    _user_id, api_token = make_user(password=PASSWORD)
    fail_sign_ins(on, clock, account_mail.MAXIMUM_ATTEMPTS - 1)
    assert mails(smtp, 0) == []
    fail_sign_ins(on, clock, 1)
    ((rcpts, message),) = mails(smtp, 1)
    assert message["Subject"] == "Unlock instructions"
    clock.advance(seconds=301)
    r = sign_in_as(on)  # the right password
    assert r.status_code == 401 and "Invalid e-mail address or password." in r.get_data(as_text=True)
    # Its API token still works (a separate credential: a lock must not let anyone who knows
    # the address stop the owner's scripts).
    assert on.get("/api/v2/pushes/active", headers=bearer(api_token)).status_code == 200
    fail_sign_ins(on, clock, 1)  # (a wrong password is told nothing of the lock)
    link = link_in(message)
    assert link.startswith("/users/unlock?unlock_token=")
    r = on.get(link)
    assert r.status_code == 302 and r.headers["Location"] == "/users/sign_in"
    assert on.get(link).status_code == 422  # (used)
    clock.advance(seconds=301)
    assert sign_in_as(on).status_code == 302
    assert sql(app, "SELECT failed_attempts, locked_at FROM users") == [(0, None)]


def test_a_locked_accounts_signed_in_session_is_signed_out_at_its_next_request(on, make_user, smtp, clock, app):
    """As Devise's (a locked account is not active_for_authentication?, so Warden signs its
    sessions out): a browser signed in before the lock is anonymous from its next request on,
    told why once; the account's API token still works (README's deviations)."""
    _user_id, api_token = make_user(password=PASSWORD)
    browser = app.test_client()
    assert sign_in_as(browser).status_code == 302
    fail_sign_ins(on, clock, account_mail.MAXIMUM_ATTEMPTS)
    r = browser.get("/p")  # (a page for signed-in users)
    assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in?next=/p")
    html = browser.get(r.headers["Location"]).get_data(as_text=True)
    assert account_mail.LOCKED in html and "You need to sign in" not in html and "Sign out" not in html
    html = browser.get("/").get_data(as_text=True)
    assert "Sign out" not in html and account_mail.LOCKED not in html  # (told once)
    assert sql(app, "SELECT count(*) FROM user_sessions") == [(0,)]  # (signed out on the server)
    assert on.get("/api/v2/pushes/active", headers=bearer(api_token)).status_code == 200
    # The lock's hour over, the session stays signed out (as Devise's): a new sign-in is needed.
    clock.advance(hours=1, seconds=1)
    assert "Sign out" not in browser.get("/").get_data(as_text=True)


@pytest.mark.parametrize("path", ["/", "/p"])
def test_a_locked_accounts_session_ended_by_a_head_request_tells_why_at_the_next_page(on, make_user, clock, app,
                                                                                       path):
    # A HEAD's page (rendered, then its body dropped) used the message up: no page showed it.
    make_user(password=PASSWORD)
    browser = app.test_client()
    assert sign_in_as(browser).status_code == 302
    fail_sign_ins(on, clock, account_mail.MAXIMUM_ATTEMPTS)
    assert browser.head(path).status_code in (200, 302)
    assert sql(app, "SELECT count(*) FROM user_sessions") == [(0,)]
    html = browser.get("/").get_data(as_text=True)
    assert html.count(account_mail.LOCKED) == 1 and "Sign out" not in html
    assert account_mail.LOCKED not in browser.get("/").get_data(as_text=True)  # (told once)


def test_a_locked_accounts_right_password_is_answered_and_counted_as_a_wrong_one(on, make_user, smtp, clock, app):
    # (Devise's paranoid mode: told apart, the lock would tell a guesser which password is
    # right, the guessing going on at the throttles' pace while it lasts.)
    make_user(password=PASSWORD)
    fail_sign_ins(on, clock, account_mail.MAXIMUM_ATTEMPTS)
    answers = []
    for password in (PASSWORD, "wrong password"):
        clock.advance(seconds=301)
        r = sign_in_as(on, password=password)
        answers.append((r.status_code, re.sub(r'name="csrf_token" value="[^"]*"', "", r.get_data(as_text=True))))
    assert answers[0] == answers[1] and answers[0][0] == 401
    assert "Invalid e-mail address or password." in answers[0][1] and "locked" not in answers[0][1]
    assert "Sign out" not in on.get("/").get_data(as_text=True)
    assert sql(app, "SELECT failed_attempts FROM users") == [(account_mail.MAXIMUM_ATTEMPTS + 2,)]
    assert len(mails(smtp, 1)) == 1  # (one unlock mail: the lock's)


def test_an_account_without_a_password_is_never_locked_nor_mailed_an_unlock_link(on, make_user, smtp, clock, app):
    """An API-only account (no password: no web sign-in to guard) counted every sign-in
    tried with its address, and at 20 was locked and mailed a link to unlock nothing."""
    make_user()
    fail_sign_ins(on, clock, account_mail.MAXIMUM_ATTEMPTS + 1)
    assert mails(smtp, 0) == []
    assert sql(app, "SELECT failed_attempts, locked_at FROM users") == [(0, None)]


def test_a_locked_account_unlocks_itself_after_an_hour(on, make_user, smtp, clock):
    make_user(password=PASSWORD)
    fail_sign_ins(on, clock, account_mail.MAXIMUM_ATTEMPTS)
    clock.advance(minutes=59)
    assert sign_in_as(on).status_code == 401
    clock.advance(minutes=2)
    assert sign_in_as(on).status_code == 302


def test_a_right_password_forgets_the_failed_sign_ins(on, make_user, smtp, clock, app):
    make_user(password=PASSWORD)
    fail_sign_ins(on, clock, 5)
    clock.advance(seconds=301)
    assert sign_in_as(on).status_code == 302
    assert sql(app, "SELECT failed_attempts FROM users") == [(0,)]


def test_the_unlock_form_resends_a_link_to_a_locked_account_only(on, make_user, smtp, clock):
    make_user(password=PASSWORD)
    make_user(email="other@example.com", password=PASSWORD)
    fail_sign_ins(on, clock, account_mail.MAXIMUM_ATTEMPTS)
    assert len(mails(smtp, 1)) == 1
    for email in ("owner@example.com", "other@example.com", "nobody@example.com"):
        r = on.post("/users/unlock", data={"email": email})
        assert r.status_code == 302
    (_first, (rcpts, message)) = mails(smtp, 2)
    assert rcpts == ["owner@example.com"]
    assert on.get(link_in(message)).status_code == 302
    assert sign_in_as(on).status_code == 302


def test_an_unlock_link_used_twice_at_once_unlocks_once(on, make_user, smtp, clock, app, monkeypatch):
    """Two uses of one link: the one whose write found the token gone (used meanwhile, between
    its look-up and its write) is told the link is not valid, as a confirmation link's is."""
    make_user(password=PASSWORD)
    fail_sign_ins(on, clock, account_mail.MAXIMUM_ATTEMPTS)
    link = link_in(mails(smtp, 1)[0][1])
    holder = account_mail.holder

    def used_meanwhile(kind, token, now):
        user = holder(kind, token, now)
        monkeypatch.setattr(account_mail, "holder", holder)
        assert app.test_client().get(link).status_code == 302  # (the other use: unlocked)
        return user

    monkeypatch.setattr(account_mail, "holder", used_meanwhile)
    r = on.get(link)
    assert r.status_code == 422 and account_mail.INVALID_LINK in r.get_data(as_text=True)  # (was: 302)


def test_a_password_reset_unlocks_the_account(on, make_user, smtp, clock):
    make_user(password=PASSWORD)
    fail_sign_ins(on, clock, account_mail.MAXIMUM_ATTEMPTS)
    ask_reset(on)
    (reset,) = [m for _r, m in mails(smtp, 2) if m["Subject"] == "Reset password instructions"]
    token = link_in(reset).partition("=")[2]
    r = on.post("/users/password/edit", data={"reset_password_token": token, "password": NEW_PASSWORD,
                                              "password_confirmation": NEW_PASSWORD})
    assert r.status_code == 302 and r.headers["Location"] == "/"


# ----------------------------------------------------------------------------- password changed

def notice_in(message) -> str:
    """The password-changed notice's text (its one link: the forgot-password form's)."""
    assert message["Subject"] == "Password changed"
    assert link_in(message) == "/users/password/new?"
    return message.get_content()


def set_password_on_the_command_line(app, email="owner@example.com", password=NEW_PASSWORD):
    result = app.test_cli_runner().invoke(args=["users", "password", email], input=f"{password}\n{password}\n")
    assert result.exit_code == 0, result.output


def test_a_password_changed_on_the_edit_page_is_told_to_the_address(on, make_user, smtp):
    make_user(password=PASSWORD)
    sign_in_as(on)
    r = on.post("/users/edit", data={"current_password": PASSWORD, "password": NEW_PASSWORD,
                                     "password_confirmation": NEW_PASSWORD})
    assert r.status_code == 302
    ((rcpts, message),) = mails(smtp, 1)
    assert rcpts == ["owner@example.com"]
    text = notice_in(message)
    assert "your pwpush password was changed" in text.lower() and "If it was not you" in text


def test_a_password_reset_by_its_link_is_told_to_the_address(on, make_user, smtp):
    make_user(password=PASSWORD)
    ask_reset(on)
    token = link_in(mails(smtp, 1)[0][1]).partition("=")[2]
    on.post("/users/password/edit", data={"reset_password_token": token, "password": NEW_PASSWORD,
                                          "password_confirmation": NEW_PASSWORD}, headers={"Host": "evil.example.net"})
    (rcpts, message) = mails(smtp, 2)[1]
    # (notice_in: on the configured host, not the request's)
    assert rcpts == ["owner@example.com"] and token not in notice_in(message)


def test_a_password_set_on_the_command_line_is_told_even_the_first_one(on, make_user, smtp, app):
    make_user(password=PASSWORD)
    make_user("api@example.com")  # API only: its first password is a change too (Devise's rule)
    set_password_on_the_command_line(app)
    set_password_on_the_command_line(app, "api@example.com")
    got = mails(smtp, 2)
    assert sorted(rcpts for rcpts, _m in got) == [["api@example.com"], ["owner@example.com"]]
    for _r, message in got:
        notice_in(message)


def test_no_password_notice_when_account_emails_are_off(mail, make_user, smtp, app):
    make_user(password=PASSWORD)
    set_password_on_the_command_line(app)  # (notify by e-mail's SMTP settings alone send none)
    assert mails(smtp, 0) == []


def test_no_password_notice_to_an_unconfirmed_address(on, smtp, app):
    sign_up(on)
    assert mails(smtp, 1)[0][1]["Subject"] == "Confirmation instructions"
    set_password_on_the_command_line(app, "new@example.com")
    assert len(mails(smtp, 1)) == 1


def test_the_password_notice_is_logged_without_the_address(on, make_user, smtp, app, caplog):
    user_id, _token = make_user(password=PASSWORD)
    with caplog.at_level(logging.INFO, logger="pwp"):
        set_password_on_the_command_line(app)
        mails(smtp, 1)
    assert f"user {user_id}: password changed e-mail sent" in caplog.text
    assert "owner@example.com" not in caplog.text


def test_a_signed_in_user_is_not_sent_back_to_the_reset_or_unlock_pages_by_next(on, make_user):
    # As sign_in?next=/users/sign_in: each of these pages sends a signed-in browser on, so
    # a ?next= naming one of them sent it round for ever.
    make_user(password=PASSWORD)
    assert sign_in_as(on).status_code == 302
    for page in ("/users/password/new", "/users/password/edit", "/users/unlock/new", "/users/unlock"):
        for start in ("/users/password/new", "/users/unlock/new"):
            r = on.get(f"{start}?next={page}")
            assert (r.status_code, r.headers.get("Location")) == (302, "/"), (start, page)


def test_a_signed_in_user_is_sent_on_from_the_reset_and_unlock_pages(on, make_user, smtp):
    # Devise's PasswordsController and UnlocksController require_no_authentication; its
    # ConfirmationsController does not (a signed-in user may confirm a changed address).
    make_user(password=PASSWORD)
    assert sign_in_as(on).status_code == 302
    for method, path in (("get", "/users/password/new"), ("post", "/users/password"),
                         ("get", "/users/password/edit?reset_password_token=x"),
                         ("post", "/users/password/edit"), ("get", "/users/unlock/new"),
                         ("get", "/users/unlock?unlock_token=x"), ("post", "/users/unlock")):
        r = getattr(on, method)(path, data={"email": "owner@example.com"} if method == "post" else None)
        assert (r.status_code, r.headers.get("Location")) == (302, "/"), path
        assert "You are already signed in." in on.get("/").get_data(as_text=True), path
    assert mails(smtp, 0) == []
    assert on.get("/users/confirmation/new").status_code == 200
    assert on.get("/users/confirmation?confirmation_token=x").status_code == 422


# ----------------------------------------------------------------------------- confirmable

def sign_up(client, email="new@example.com", password=PASSWORD):
    return client.post("/users/sign_up", data={"email": email, "password": password,
                                               "password_confirmation": password})


def test_a_sign_up_must_confirm_its_address_before_signing_in(on, smtp, app):
    r = sign_up(on)
    assert r.status_code == 302 and r.headers["Location"] == "/users/sign_in"
    assert "Sign out" not in on.get("/").get_data(as_text=True)
    ((rcpts, message),) = mails(smtp, 1)
    assert rcpts == ["new@example.com"] and message["Subject"] == "Confirmation instructions"
    r = sign_in_as(on, "new@example.com")
    assert r.status_code == 401 and "confirm your e-mail address" in r.get_data(as_text=True)
    assert account_mail.UNCONFIRMED not in sign_in_as(on, "new@example.com", "wrong password").get_data(as_text=True)
    link = link_in(message)
    assert link.startswith("/users/confirmation?confirmation_token=")
    r = on.get(link)
    assert r.status_code == 302 and r.headers["Location"] == "/users/sign_in"
    assert on.get(link).status_code == 422  # (used)
    assert sign_in_as(on, "new@example.com").status_code == 302


def test_the_confirmation_link_expires_after_three_days_and_a_new_one_can_be_asked_for(on, smtp, clock):
    sign_up(on)
    first = link_in(mails(smtp, 1)[0][1])
    clock.advance(days=3, seconds=1)
    assert on.get(first).status_code == 422
    assert on.get("/users/confirmation/new").status_code == 200
    for email in ("new@example.com", "nobody@example.com"):
        assert on.post("/users/confirmation", data={"email": email}).status_code == 302
    second = link_in(mails(smtp, 2)[1][1])
    assert on.get(second).status_code == 302
    # Confirmed: no more links for it.
    on.post("/users/confirmation", data={"email": "new@example.com"})
    assert len(mails(smtp, 2)) == 2


def test_accounts_made_on_the_command_line_or_before_are_confirmed(on, make_user, app):
    make_user(password=PASSWORD)  # (users create)
    assert sign_in_as(on).status_code == 302


def test_sign_ups_while_it_was_off_are_confirmed_when_it_is_turned_on(client, settings, smtp, app, database_url,
                                                                        tmp_path):
    from conftest import make_config

    from pwp import create_app

    assert sign_up(client).status_code == 302
    settings.update(smtp.settings(), PWP__ENABLE_USER_ACCOUNT_EMAILS=True)
    later = create_app(make_config(database_url, **settings), instance_path=str(tmp_path / "instance"))
    assert sign_in_as(later.test_client(), "new@example.com").status_code == 302


def test_an_unconfirmed_accounts_session_is_signed_out_once_confirmation_is_required(on, make_user, smtp, app):
    """An account an older release made after the upgrade that marks old ones confirmed
    (README) may be signed in when account e-mails are turned on: as Devise's (not
    active_for_authentication? while unconfirmed), its session ends at its next request."""
    make_user(password=PASSWORD)
    assert sign_in_as(on).status_code == 302
    sql(app, "UPDATE users SET confirmed_at = NULL")
    html = on.get("/").get_data(as_text=True)
    assert "Sign out" not in html and account_mail.UNCONFIRMED in html
    assert "Sign out" not in on.get("/").get_data(as_text=True)


def test_start_up_says_account_emails_are_on(smtp, database_url, tmp_path, caplog):
    from test_notify_api import _start_up_log

    said = _start_up_log(caplog, database_url, tmp_path, **smtp.settings(), PWP__ENABLE_USER_ACCOUNT_EMAILS=True)
    assert ("INFO", "Account e-mails are on: password reset, unlock and confirmation links are mailed "
                    "through 127.0.0.1.") in said


def test_a_mail_the_smtp_server_refuses_is_logged_without_the_address_or_link(settings, smtp, database_url, request,
                                                                              caplog):
    from smtpsink import free_port

    settings.update(smtp.settings(), PWP__ENABLE_USER_ACCOUNT_EMAILS=True, PWP__MAIL__SMTP_PORT=free_port())
    client = request.getfixturevalue("client")
    user_id, _token = request.getfixturevalue("make_user")(password=PASSWORD)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pwp"):
        assert ask_reset(client).status_code == 302  # (the same answer: nothing said of the account)
        notify.wait_for_sends()
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith(f"user {user_id}: reset password instructions e-mail not sent: the SMTP server 127.0.0.1:")
    assert "owner@example.com" not in caplog.text and "token" not in caplog.text


def test_a_hung_smtp_server_holds_at_most_eight_sending_threads_and_queues_account_mails(
        settings, database_url, request, caplog):
    """Each account mail (and notify-by-email sending) had a thread of its own: with an SMTP
    server that does not answer, reset requests for many accounts (each within its per-IP
    and per-address limits) piled up threads without bound. At most MAX_SENDING_THREADS run
    per process; past them an account mail was dropped: a burst lost users' reset mails. Now
    up to MAX_QUEUED wait for a thread (sent once the server answers); past those one is not
    sent (logged, naming no address or link), and a notification stays pending for
    purge-expired, which sends it once."""
    import threading

    from test_notify_api import cli, create, sendings

    release = threading.Event()
    smtp = SmtpServer(on_data=lambda: release.wait(30))  # (holds the server: no mail is answered)
    smtp.controller.start()
    sent = notify.MAX_SENDING_THREADS + notify.MAX_QUEUED
    try:
        # (a long timeout: a thread must not give up, and free its place, during the test)
        settings.update(smtp.settings(), PWP__ENABLE_USER_ACCOUNT_EMAILS=True, PWP__MAIL__SMTP_TIMEOUT=120)
        client, clock = request.getfixturevalue("client"), request.getfixturevalue("clock")
        app, make_user = request.getfixturevalue("app"), request.getfixturevalue("make_user")
        user_ids = [make_user(email=f"u{i}@example.com", password=PASSWORD)[0] for i in range(sent + 1)]
        _owner, token = make_user(email="owner@example.com")
        with caplog.at_level(logging.INFO, logger="pwp"):
            for i in range(len(user_ids)):
                clock.advance(seconds=61)  # (past the per-IP minute)
                assert ask_reset(client, f"u{i}@example.com").status_code == 302
            # (Each asked mail takes its place, or is refused, ASK_DELAY after its answer: at
            # random, so which of the last is refused is not known.)
            assert notify._later.wait(30)
            url_token = create(client, token, notify_emails_to="ann@example.com").json["url_token"]
            assert [row[2] for row in sendings(app)] == ["pending"]
            release.set()
            got = mails(smtp, sent)
        asked = {f"u{i}@example.com" for i in range(sent + 1)}
        (unsent,) = asked - {rcpts[0] for rcpts, _m in got}
        # (Refused before a sending thread looks the address up: it cannot name the account.)
        assert ("a reset password instructions e-mail asked for not sent: "
                f"{notify.MAX_SENDING_THREADS} e-mails are being sent and {notify.MAX_QUEUED} wait already"
                ) in caplog.text
        assert unsent not in caplog.text and "reset_password_token" not in caplog.text
        assert [row[2] for row in sendings(app)] == ["pending"]
        clock.advance(minutes=2)
        assert "notifications sent 1" in cli(app, ["purge-expired"]).output
        assert "notifications sent 0" in cli(app, ["purge-expired"]).output
        assert [row[2] for row in sendings(app)] == ["completed"]
        assert smtp.sink.wait_for(sent + 1)[-1][0] == ["ann@example.com"]
        assert len(smtp.sink.messages) == sent + 1 and url_token
    finally:
        release.set()
        smtp.controller.stop()


def test_a_head_request_of_a_mailed_link_uses_nothing(on, make_user, smtp, clock, app):
    # Mail scanners and link previews send HEAD: it confirmed the address and unlocked the account.
    sign_up(on)
    confirm = link_in(mails(smtp, 1)[0][1])
    make_user(password=PASSWORD)
    fail_sign_ins(on, clock, account_mail.MAXIMUM_ATTEMPTS)
    unlock = link_in(mails(smtp, 2)[1][1])
    ask_reset(on)
    reset = link_in(mails(smtp, 3)[2][1])
    for link in (confirm, unlock, reset):
        scanner = app.test_client()
        r = scanner.head(link)
        assert r.status_code in (200, 302) and r.data == b""
        assert "has been" not in scanner.get("/users/sign_in").get_data(as_text=True)  # (no flash)
        r = scanner.head(link.replace("token=", "token=x"))  # (a wrong link: as a GET would)
        assert r.status_code == 422 and r.data == b""
    assert sql(app, "SELECT email, confirmed_at IS NULL, locked_at IS NOT NULL, "
                    "reset_password_token_digest IS NOT NULL FROM users ORDER BY email") == [
        ("new@example.com", True, False, False), ("owner@example.com", False, True, True)]
    # The links still work.
    assert on.get(confirm).status_code == 302 and on.get(unlock).status_code == 302
    assert on.get(reset).status_code == 200
    assert sql(app, "SELECT confirmed_at IS NULL, locked_at IS NOT NULL FROM users ORDER BY email") == [
        (False, False), (False, False)]


def test_a_link_form_for_an_unknown_address_takes_no_sending_place(on, make_user, smtp):
    """Its answer sent, a request for an address with no account took a sending thread or a
    queue place like an account's (to look the address up again there): from a few IPs such
    requests filled the queue while a slow SMTP server held the threads, and real ones were
    dropped. The request looks the address up anyway (its browsers' count), the same work for
    any address; only an account's work is queued, after the answer, which its time cannot tell."""
    make_user(password=PASSWORD)
    notify.wait_for_sends()
    before = list(notify._threads)
    assert ask_reset(on, "nobody@example.com").status_code == 302
    notify.wait_for_sends()  # (an account's starts ASK_DELAY later)
    assert [t.name for t in notify._threads if t not in before] == []
    assert ask_reset(on).status_code == 302
    notify.wait_for_sends()
    assert [t.name for t in notify._threads if t not in before] == ["account-ask-reset_password"]
    assert [rcpts for rcpts, _m in mails(smtp, 1)] == [["owner@example.com"]]
