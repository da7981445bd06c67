"""Two-factor authentication (TOTP and backup codes): set-up, the sign-in's second step,
replays, expiry, throttling and the lock, turning it off, PWP__REQUIRE_MFA on the pages and
the JSON APIs, rotate-key, the command line."""
import logging
import re
import threading

import psycopg
import pyotp
import pytest
from conftest import TEST_MASTER_KEY, bearer, make_config, sql, wait_for_a_lock_waiter
from test_web_account_emails import ClosingClient, ask_reset, link_in, mails

from pwp import account_mail, create_app, crypto, pushes
from pwp.auth import MFA_REQUIRED
from pwp.models import db

PASSWORD = "correct horse"
WRONG_CODE = "That code is not valid, or has been used already."
POST_NOT_SENT = "What you sent was not saved: send it again once two-factor authentication is on."
SECRET = re.compile(r'id="otp_secret">([A-Z2-7 ]+)</code>')
BACKUP = re.compile(r"\b[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}\b")


def code(secret, clock, steps=0):
    """The authenticator app's code at the clock's time (steps of 30 s later)."""
    return pyotp.TOTP(secret).at(pushes.unix_seconds(clock.now) + 30 * steps)


def password_step(client, email="owner@example.com", password=PASSWORD):
    return client.post("/users/sign_in", data={"email": email, "password": password})


def code_step(client, value):
    return client.post("/users/two_factor/sign_in", data={"code": value})


def signed_in(client) -> bool:
    return "Sign out" in client.get("/").get_data(as_text=True)


def set_up(client, clock):
    """Turn two-factor authentication on through its page (signed in); return (secret, backup codes)."""
    page = client.get("/users/two_factor")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'src="data:image/svg+xml;base64,' in html
    secret = SECRET.search(html).group(1).replace(" ", "")
    done = client.post("/users/two_factor", data={"current_password": PASSWORD, "code": code(secret, clock)})
    assert done.status_code == 200, done.data
    codes = BACKUP.findall(done.get_data(as_text=True))
    assert len(set(codes)) == 10
    return secret, codes


@pytest.fixture
def two_factor(client, make_user, clock):
    """A signed-out account with two-factor authentication on: (secret, backup codes)."""
    make_user(password=PASSWORD)
    assert password_step(client).status_code == 302
    secret, codes = set_up(client, clock)
    client.post("/users/sign_out")
    clock.advance(seconds=30)  # (the set-up's code is used)
    return secret, codes


def test_set_up_shows_the_secret_once_confirmed_and_stores_it_encrypted(client, make_user, clock, app, caplog):
    make_user(password=PASSWORD)
    password_step(client)
    assert "Set up two-factor authentication" in client.get("/users/edit").get_data(as_text=True)
    html = client.get("/users/two_factor").get_data(as_text=True)
    secret = SECRET.search(html).group(1).replace(" ", "")
    # The same secret until it is confirmed (the app may have scanned it already).
    assert SECRET.search(client.get("/users/two_factor").get_data(as_text=True)).group(1).replace(" ", "") == secret
    wrong = client.post("/users/two_factor", data={"current_password": PASSWORD, "code": code(secret, clock, steps=5)})
    assert wrong.status_code == 422 and "check that the app has the secret shown" in wrong.get_data(as_text=True)
    assert sql(app, "SELECT otp_enabled_at FROM users") == [(None,)]
    with caplog.at_level(logging.INFO, logger="pwp"):
        done = client.post("/users/two_factor", data={"current_password": PASSWORD, "code": code(secret, clock)})
    codes = BACKUP.findall(done.get_data(as_text=True))
    assert done.status_code == 200 and len(set(codes)) == 10
    assert "user 1: two-factor authentication turned on" in caplog.text
    assert secret not in caplog.text and not any(c in caplog.text for c in codes)
    ((stored, enabled),) = sql(app, "SELECT otp_secret_ciphertext, otp_enabled_at FROM users")
    assert enabled is not None and secret.encode() not in bytes(stored)
    assert crypto.Keyring([TEST_MASTER_KEY]).decrypt(bytes(stored)).decode() == secret
    digests = [d for (d,) in sql(app, "SELECT digest FROM otp_backup_codes")]
    assert len(digests) == 10 and not any(c.replace("-", "") in d or c in d for c in codes for d in digests)
    page = client.get("/users/two_factor").get_data(as_text=True)
    assert "10 unused backup codes" in page and secret not in page.replace(" ", "")


def test_an_expired_set_up_secret_is_said_plainly(client, make_user, clock, app):
    # After 15 minutes the secret shown was replaced by a new one without a word, and its code
    # refused with "check that the app has the secret shown".
    make_user(password=PASSWORD)
    password_step(client)
    secret = SECRET.search(client.get("/users/two_factor").get_data(as_text=True)).group(1).replace(" ", "")
    clock.advance(minutes=16)
    late = client.post("/users/two_factor", data={"current_password": PASSWORD, "code": code(secret, clock)})
    html = late.get_data(as_text=True)
    assert late.status_code == 422 and "check that the app has the secret shown" not in html
    assert "The secret shown before has expired: a new one is shown, scan it again" in html
    new = SECRET.search(html).group(1).replace(" ", "")
    assert new != secret and sql(app, "SELECT otp_enabled_at FROM users") == [(None,)]
    assert client.post("/users/two_factor", data={"current_password": PASSWORD,
                                                  "code": code(new, clock)}).status_code == 200


def test_turning_it_on_needs_the_password(client, make_user, clock, app):
    # A signed-in browser alone (one left open, a copied session cookie) turned it on with an
    # app of its own: the owner's sign-ins then asked for that app's codes, a password reset's
    # too (as the mail about it advises), locked out as a password change (which asks for the
    # current password) could not have done.
    make_user(password=PASSWORD)
    password_step(client)
    page = client.get("/users/two_factor").get_data(as_text=True)
    assert 'autocomplete="current-password"' in page
    secret = SECRET.search(page).group(1).replace(" ", "")
    for password in (None, "wrong password"):
        data = {"code": code(secret, clock)} | ({"current_password": password} if password else {})
        r = client.post("/users/two_factor", data=data)
        assert r.status_code == 422 and "That is not your current password." in r.get_data(as_text=True)
    assert sql(app, "SELECT otp_enabled_at, otp_last_step FROM users") == [(None, None)]
    r = client.post("/users/two_factor", data={"current_password": PASSWORD, "code": code(secret, clock)})
    assert r.status_code == 200 and len(set(BACKUP.findall(r.get_data(as_text=True)))) == 10


def test_turning_it_on_signs_out_the_accounts_other_sessions(client, make_user, clock, app):
    # A session made before, without a code (a copied cookie, a browser left open), would
    # otherwise stay signed in for its 7 days past the new second factor.
    make_user(password=PASSWORD)
    other = app.test_client()
    password_step(other)
    password_step(client)
    assert signed_in(other) and signed_in(client)
    set_up(client, clock)
    assert signed_in(client) and not signed_in(other)
    assert sql(app, "SELECT count(*) FROM user_sessions") == [(1,)]


def test_a_sign_in_without_a_code_while_it_is_turned_on_makes_no_session(client, make_user, app, database_url):
    """The password step found it off, then another tab turned it on (signing out the account's
    other sessions) before the session's row was made: that row outlived the second factor.
    Found reading the sign-in against turn_on; the turn-on is held here, as it commits."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's writers run one after the other: the window cannot be held open here")
    make_user(password=PASSWORD)
    answer = []
    with psycopg.connect(database_url) as turn_on:
        turn_on.execute("SELECT 1 FROM users WHERE id = 1 FOR UPDATE")
        signing_in = threading.Thread(target=lambda: answer.append(password_step(client)))
        signing_in.start()
        wait_for_a_lock_waiter(database_url, "the sign-in", "INSERT INTO user_sessions%", thread=signing_in)
        turn_on.execute("UPDATE users SET otp_enabled_at = now() WHERE id = 1")
        turn_on.commit()
        signing_in.join(timeout=60)
    assert answer[0].status_code == 401, answer[0].status_code
    assert sql(app, "SELECT count(*) FROM user_sessions") == [(0,)]
    assert not signed_in(client)


def test_sign_in_asks_for_the_code_before_any_session(client, two_factor, clock):
    secret, _codes = two_factor
    r = password_step(client, password="wrong password")
    assert r.status_code == 401 and "/users/two_factor/sign_in" not in r.headers.get("Location", "")
    r = password_step(client)
    assert r.status_code == 302 and r.headers["Location"] == "/users/two_factor/sign_in"
    assert not signed_in(client)
    assert client.get("/users/edit").status_code == 302  # (no session yet)
    page = client.get("/users/two_factor/sign_in")
    assert page.status_code == 200 and 'autocomplete="one-time-code"' in page.get_data(as_text=True)
    r = code_step(client, "000000" if code(secret, clock) != "000000" else "111111")
    assert r.status_code == 401 and WRONG_CODE in r.get_data(as_text=True) and not signed_in(client)
    r = code_step(client, code(secret, clock))
    assert r.status_code == 302 and r.headers["Location"] == "/" and signed_in(client)


def test_the_sign_in_goes_on_to_next_after_the_code(client, two_factor, clock):
    secret, _codes = two_factor
    client.post("/users/sign_in?next=/users/token", data={"email": "owner@example.com", "password": PASSWORD})
    assert code_step(client, code(secret, clock)).headers["Location"] == "/users/token"


def test_a_code_is_good_once(client, two_factor, clock):
    secret, _codes = two_factor
    used = code(secret, clock)
    password_step(client)
    assert code_step(client, used).status_code == 302
    client.post("/users/sign_out")
    password_step(client)
    r = code_step(client, used)  # replayed, in the same step
    assert r.status_code == 401 and WRONG_CODE in r.get_data(as_text=True) and not signed_in(client)
    clock.advance(seconds=30)
    assert code_step(client, code(secret, clock)).status_code == 302
    client.post("/users/sign_out")
    # An earlier step's code, still in the window, once a later one was used: refused too.
    password_step(client)
    assert code_step(client, code(secret, clock, steps=-1)).status_code == 401
    # The next step's (a clock a little ahead) is good.
    assert code_step(client, code(secret, clock, steps=1)).status_code == 302


@pytest.mark.parametrize("kind", ["totp", "backup"])
def test_of_two_uses_of_one_code_at_once_one_wins(client, two_factor, clock, app, database_url, kind):
    # Both wait for the account's row (held here), then each writes: one finds the code used.
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's writers run one after the other (BEGIN IMMEDIATE)")
    secret, codes = two_factor
    used = code(secret, clock) if kind == "totp" else codes[0]
    results = []

    def verify():
        with app.app_context():
            from pwp import auth, twofactor
            results.append(twofactor.verify(auth.find_user("owner@example.com"), used, clock.now))
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM users WHERE id = 1 FOR UPDATE")
        holder.execute("SELECT 1 FROM otp_backup_codes WHERE user_id = 1 FOR UPDATE")
        threads = [threading.Thread(target=verify) for _ in range(2)]
        for thread in threads:
            thread.start()
        wait_for_a_lock_waiter(database_url, "both uses", "UPDATE users%" if kind == "totp" else "DELETE FROM%",
                               count=2)
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False, True]


def test_a_code_outside_the_window_is_refused(client, two_factor, clock):
    secret, _codes = two_factor
    password_step(client)
    assert code_step(client, code(secret, clock, steps=2)).status_code == 401
    assert code_step(client, code(secret, clock, steps=-2)).status_code == 401
    assert code_step(client, "").status_code == 401
    assert code_step(client, "x" * 5000).status_code == 401
    assert not signed_in(client)


def test_the_pending_sign_in_expires_after_five_minutes(client, two_factor, clock):
    secret, _codes = two_factor
    password_step(client)
    clock.advance(seconds=301)
    r = code_step(client, code(secret, clock))
    assert r.status_code == 302 and r.headers["Location"] == "/users/sign_in"
    assert "Your sign-in has expired" in client.get("/users/sign_in").get_data(as_text=True)
    client.head("/users/two_factor/sign_in")
    assert "Your sign-in has expired" not in client.get("/users/sign_in").get_data(as_text=True)
    assert not signed_in(client)
    # Nor is there one without a password step first.
    assert code_step(app_client := client, code(secret, clock, steps=1)).headers["Location"] == "/users/sign_in"
    assert not signed_in(app_client)


def test_a_password_change_ends_the_pending_sign_in(client, two_factor, clock, app):
    secret, _codes = two_factor
    password_step(client)
    with app.app_context():
        from pwp import auth
        auth.set_password(auth.find_user("owner@example.com"), "another password")
    assert code_step(client, code(secret, clock)).headers["Location"] == "/users/sign_in"
    assert not signed_in(client)


@pytest.mark.parametrize("by", ["app", "backup code"])
def test_the_pending_sign_in_is_good_for_one_sign_in(client, two_factor, clock, app, by):
    # A copy of the cookie the password step gave, once the sign-in succeeded, was still a
    # pending sign-in for its five minutes: with a fresh code it signed in again.
    secret, codes = two_factor
    password_step(client)
    copied = client.get_cookie("session").value
    assert code_step(client, code(secret, clock) if by == "app" else codes[0]).status_code == 302
    assert signed_in(client)
    clock.advance(seconds=30)
    replay = app.test_client()
    replay.set_cookie("session", copied)
    r = code_step(replay, code(secret, clock))
    assert r.status_code == 302 and r.headers["Location"] == "/users/sign_in"
    assert "Your sign-in has expired" in replay.get("/users/sign_in").get_data(as_text=True)
    assert not signed_in(replay)
    # A wrong code uses nothing: the pending sign-in stays.
    password_step(replay)
    assert code_step(replay, "000000" if code(secret, clock) != "000000" else "111111").status_code == 401
    assert code_step(replay, code(secret, clock)).status_code == 302 and signed_in(replay)


@pytest.mark.parametrize("codes_sent", ["app and backup", "two backups"])
def test_two_copies_of_the_pending_sign_in_at_once_sign_in_once(client, two_factor, clock, app, database_url,
                                                                 codes_sent):
    # Each checked the pending sign-in, then used its own good code: both signed in.
    secret, codes = two_factor
    password_step(client)
    copied = client.get_cookie("session").value
    sent = [code(secret, clock), codes[0]] if codes_sent == "app and backup" else codes[:2]
    results = []

    def send(value):
        other = app.test_client()
        other.set_cookie("session", copied)
        r = code_step(other, value)
        results.append((r.status_code, r.headers.get("Location"), signed_in(other)))
    threads = [threading.Thread(target=send, args=(value,)) for value in sent]
    if database_url.startswith("postgresql"):
        # Both wait for the account's row and its backup codes (held here), then go on at once.
        with psycopg.connect(database_url) as holder:
            holder.execute("SELECT 1 FROM users WHERE id = 1 FOR UPDATE")
            holder.execute("SELECT 1 FROM otp_backup_codes WHERE user_id = 1 FOR UPDATE")
            for thread in threads:
                thread.start()
            wait_for_a_lock_waiter(database_url, "both sign-ins", count=2)
    else:
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [(302, "/", True), (302, "/users/sign_in", False)]


def test_a_backup_code_sign_in_while_new_backup_codes_are_made_is_no_deadlock(client, two_factor, app,
                                                                               database_url):
    """New backup codes (another browser of the account) delete the old codes, then insert
    the new ones, whose foreign key takes a key-share lock on the account's row; a sign-in with
    an old backup code held that row FOR UPDATE (auth.hold), then waited for its code's row:
    a deadlock, one of them aborted (the sign-in's a 500). Held as new_backup_codes runs."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's writers run one after the other: no row locks")
    _secret, codes = two_factor
    password_step(client)
    answer = []
    with psycopg.connect(database_url) as new_codes:
        new_codes.execute("DELETE FROM otp_backup_codes WHERE user_id = 1")
        signing_in = threading.Thread(target=lambda: answer.append(code_step(client, codes[0])))
        signing_in.start()
        wait_for_a_lock_waiter(database_url, "the sign-in", "DELETE FROM otp_backup_codes%", thread=signing_in)
        new_codes.execute("INSERT INTO otp_backup_codes (user_id, digest) VALUES (1, 'a new code')")
        new_codes.commit()
        signing_in.join(timeout=60)
    assert answer[0].status_code == 401, answer[0].status_code  # (its code is gone: a wrong one)
    assert not signed_in(client)
    assert sql(app, "SELECT digest FROM otp_backup_codes") == [("a new code",)]


def test_new_backup_codes_while_the_account_is_deleted_is_no_deadlock(client, two_factor, app, database_url):
    """New backup codes deleted the old ones, then inserted theirs (a key-share lock on the
    account's row, held by the deletion); the deletion, cascading to the old codes, waited for
    them: a deadlock, one of them aborted. Held as pushes.delete_account runs."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's writers run one after the other: no row locks")
    _secret, codes = two_factor
    password_step(client)
    assert code_step(client, codes[0]).status_code == 302
    answer = []
    with psycopg.connect(database_url) as deleting:
        deleting.execute("SELECT 1 FROM users WHERE id = 1 FOR UPDATE")  # (its first lock on the row)
        making = threading.Thread(target=lambda: answer.append(client.post(
            "/users/two_factor/backup_codes", data={"current_password": PASSWORD, "code": codes[1]})))
        making.start()
        wait_for_a_lock_waiter(database_url, "the new codes", thread=making)
        deleting.execute("DELETE FROM users WHERE id = 1")
        deleting.commit()
        making.join(timeout=60)
    assert answer[0].status_code == 302 and answer[0].headers["Location"] == "/users/sign_in", answer[0].status_code
    assert "That account no longer exists." in client.get("/users/sign_in").get_data(as_text=True)
    assert sql(app, "SELECT count(*) FROM otp_backup_codes") == [(0,)]


def test_a_backup_code_signs_in_once(client, two_factor, app):
    _secret, codes = two_factor
    password_step(client)
    assert code_step(client, codes[0].upper().replace("-", " ")).status_code == 302  # (as typed)
    client.post("/users/sign_out")
    password_step(client)
    assert code_step(client, codes[0]).status_code == 401
    assert code_step(client, codes[1]).status_code == 302
    assert "8 unused backup codes" in client.get("/users/two_factor").get_data(as_text=True)
    assert sql(app, "SELECT count(*) FROM otp_backup_codes") == [(8,)]


def test_wrong_codes_are_throttled_with_the_passwords(client, two_factor, clock):
    secret, _codes = two_factor
    clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)  # (a new window of the limits)
    password_step(client)  # the address's sign-in attempts: 1 of 10 in 5 minutes
    for _ in range(9):
        clock.advance(seconds=21)  # (past the per-IP limit, 5 in 20 s)
        assert code_step(client, "000000" if code(secret, clock) != "000000" else "111111").status_code == 401
    clock.advance(seconds=21)
    r = code_step(client, code(secret, clock))
    assert r.status_code == 429 and "Too many sign-in attempts" in r.get_data(as_text=True)
    assert not signed_in(client)


def test_an_account_takes_twenty_codes_an_hour_from_any_addresses(client, two_factor, clock):
    # With account e-mails off no lock bounds the guesses of one who has the password: the
    # per-address limit alone let 9 codes in 5 minutes through, 2,592 a day (about 0.8 % a day
    # of guessing one). Now 20 an hour (the lock's MAXIMUM_ATTEMPTS in its UNLOCK_IN).
    secret, _codes = two_factor
    clock.advance(seconds=3600 - pushes.unix_seconds(clock.now) % 3600)
    for attempt in range(20):
        if attempt % 5 == 0:  # (a new window of the per-address limit, a new pending sign-in)
            clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)
            password_step(client)
        clock.advance(seconds=21)  # (past the per-IP limit, 5 in 20 s)
        assert code_step(client, "000000" if code(secret, clock) != "000000" else "111111").status_code == 401
    clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)
    password_step(client)
    r = code_step(client, code(secret, clock))
    assert r.status_code == 429 and "Too many codes" in r.get_data(as_text=True)
    assert not signed_in(client)
    clock.advance(seconds=3600 - pushes.unix_seconds(clock.now) % 3600)
    password_step(client)
    assert code_step(client, code(secret, clock)).status_code == 302 and signed_in(client)


def test_a_stranger_with_the_password_does_not_block_the_owners_browser(client, two_factor, clock, app):
    # The account's 20 codes an hour, spent by one who has the password (from many addresses),
    # kept the owner out too, for the hour.
    secret, _codes = two_factor
    password_step(client)
    assert code_step(client, code(secret, clock)).status_code == 302  # (this browser is known from now)
    client.post("/users/sign_out")
    clock.advance(seconds=3600 - pushes.unix_seconds(clock.now) % 3600)
    stranger = app.test_client()
    for attempt in range(20):
        stranger.environ_base["REMOTE_ADDR"] = f"192.0.2.{attempt}"
        if attempt % 5 == 0:  # (a new window of the account's sign-in attempts, a new pending sign-in)
            clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)
            password_step(stranger)
        assert code_step(stranger, "000000" if code(secret, clock) != "000000" else "111111").status_code == 401
    clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)
    # A browser that never signed in to the account is refused its right code, as the stranger is ...
    for other in (stranger, app.test_client()):
        password_step(other)
        r = code_step(other, code(secret, clock))
        assert r.status_code == 429 and "Too many codes" in r.get_data(as_text=True)
    # ... but the owner's browser signs in, counted on its own.
    assert password_step(client).headers["Location"] == "/users/two_factor/sign_in"
    assert code_step(client, code(secret, clock)).status_code == 302 and signed_in(client)


def test_only_a_browser_that_signed_in_with_a_code_counts_its_codes_apart(client, make_user, clock, app):
    # A browser known to the account before two-factor authentication was on, one that took only
    # the password step, and one known to another account are held by the account's 20 codes
    # an hour as a stranger is: none of their pwp_device cookies (if any) counts.
    make_user(password=PASSWORD)
    make_user(email="other@example.com", password=PASSWORD)
    before = app.test_client()
    assert password_step(before).status_code == 302 and before.get_cookie("pwp_device")
    assert password_step(client).status_code == 302
    secret, _codes = set_up(client, clock)
    client.post("/users/sign_out")
    other = app.test_client()
    assert password_step(other, email="other@example.com").status_code == 302 and other.get_cookie("pwp_device")
    other.post("/users/sign_out")
    half = app.test_client()
    assert password_step(half).headers["Location"] == "/users/two_factor/sign_in"
    assert half.get_cookie("pwp_device") is None
    clock.advance(seconds=3600 - pushes.unix_seconds(clock.now) % 3600)
    stranger = app.test_client()
    for attempt in range(20):
        stranger.environ_base["REMOTE_ADDR"] = f"192.0.2.{attempt}"
        if attempt % 5 == 0:
            clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)
            password_step(stranger)
        assert code_step(stranger, "000000" if code(secret, clock) != "000000" else "111111").status_code == 401
    clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)
    for number, browser in enumerate((before, other, half)):
        browser.environ_base["REMOTE_ADDR"] = f"198.51.100.{number}"  # (the per-IP limit apart)
        password_step(browser)
        assert code_step(browser, code(secret, clock)).status_code == 429
    password_step(client)
    assert code_step(client, code(secret, clock)).status_code == 302 and signed_in(client)


def test_the_forms_that_ask_for_a_code_share_its_twenty_an_hour(client, two_factor, clock, app):
    # Turning it off (and new backup codes) with the password let 10 codes in 5 minutes through
    # beside the sign-in's 20 an hour: a browser signed in before it was turned on, with the
    # password, could guess its way to new backup codes.
    secret, _codes = two_factor
    password_step(client)
    code_step(client, code(secret, clock))
    clock.advance(seconds=3600 - pushes.unix_seconds(clock.now) % 3600)
    wrong = "000000" if code(secret, clock) != "000000" else "111111"
    for attempt in range(20):
        if attempt % 5 == 0:  # (a new window of the per-account password limit, 10 in 5 minutes)
            clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)
        clock.advance(seconds=21)  # (past the per-IP limit, 5 in 20 s)
        r = client.post("/users/two_factor/disable", data={"current_password": PASSWORD, "code": wrong})
        assert r.status_code == 422 and WRONG_CODE in r.get_data(as_text=True)
    clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)
    r = client.post("/users/two_factor/disable", data={"current_password": PASSWORD, "code": code(secret, clock)})
    assert r.status_code == 429 and "Too many codes" in r.get_data(as_text=True)
    assert sql(app, "SELECT otp_enabled_at IS NOT NULL FROM users") == [(True,)]
    clock.advance(seconds=3600 - pushes.unix_seconds(clock.now) % 3600)
    r = client.post("/users/two_factor/disable", data={"current_password": PASSWORD, "code": code(secret, clock)})
    assert r.status_code == 302 and sql(app, "SELECT otp_enabled_at FROM users") == [(None,)]


@pytest.fixture
def on(settings, smtp, database_url, request):
    """A client of an app with account e-mails on, sending to `smtp`, that closes each answer
    as a server does once it has sent it (a link form's work starts then)."""
    settings.update(smtp.settings(), PWP__ENABLE_USER_ACCOUNT_EMAILS=True)
    request.getfixturevalue("app").test_client_class = ClosingClient
    return request.getfixturevalue("client")


def test_with_account_emails_wrong_codes_lock_the_account_and_changes_are_mailed(on, make_user, smtp, clock, app):
    make_user(password=PASSWORD)
    password_step(on)
    secret, codes = set_up(on, clock)
    ((_rcpts, message),) = mails(smtp, 1)
    assert message["Subject"] == "Two-factor authentication turned on"
    assert secret not in message.get_content() and codes[0] not in message.get_content()
    on.post("/users/sign_out")
    sql(app, "UPDATE users SET failed_attempts = :n", n=account_mail.MAXIMUM_ATTEMPTS - 2)
    clock.advance(seconds=301)
    password_step(on)  # (a right password does not forget the failures: the code is still to come)
    assert sql(app, "SELECT failed_attempts FROM users") == [(account_mail.MAXIMUM_ATTEMPTS - 2,)]
    assert code_step(on, codes[0] + "x").status_code == 401
    clock.advance(seconds=30)
    assert code_step(on, "000000" if code(secret, clock) != "000000" else "111111").status_code == 401
    assert [m["Subject"] for _r, m in mails(smtp, 2)][1] == "Unlock instructions"
    clock.advance(seconds=30)
    r = code_step(on, code(secret, clock))  # the right code of a locked account: told as a wrong one
    assert r.status_code == 401 and WRONG_CODE in r.get_data(as_text=True) and not signed_in(on)


def test_a_locked_account_uses_up_no_backup_code(on, make_user, smtp, clock, app):
    # The right backup code of an account locked meanwhile (by wrong codes) is told as a wrong
    # one: it was deleted too, one of the owner's ten gone for nothing.
    make_user(password=PASSWORD)
    password_step(on)
    secret, codes = set_up(on, clock)
    on.post("/users/sign_out")
    clock.advance(seconds=30)
    password_step(on)
    sql(app, "UPDATE users SET failed_attempts = :n", n=account_mail.MAXIMUM_ATTEMPTS - 1)
    assert code_step(on, "000000" if code(secret, clock) != "000000" else "111111").status_code == 401
    assert sql(app, "SELECT locked_at IS NOT NULL FROM users") == [(True,)]
    r = code_step(on, codes[0])
    assert r.status_code == 401 and WRONG_CODE in r.get_data(as_text=True) and not signed_in(on)
    assert sql(app, "SELECT count(*) FROM otp_backup_codes") == [(10,)]
    clock.advance(hours=1, seconds=1)  # (unlocked by itself)
    password_step(on)
    assert code_step(on, codes[0]).status_code == 302 and signed_in(on)


def test_a_right_code_forgets_the_failed_sign_ins(on, make_user, smtp, clock, app):
    make_user(password=PASSWORD)
    password_step(on)
    secret, _codes = set_up(on, clock)
    on.post("/users/sign_out")
    sql(app, "UPDATE users SET failed_attempts = 3")
    clock.advance(seconds=30)
    password_step(on)
    assert code_step(on, code(secret, clock)).status_code == 302
    assert sql(app, "SELECT failed_attempts FROM users") == [(0,)]
    # Turned off: mailed too.
    clock.advance(seconds=30)
    r = on.post("/users/two_factor/disable", data={"current_password": PASSWORD, "code": code(secret, clock)})
    assert r.status_code == 302
    # (Each mail from a thread of its own: the two may arrive in either order.)
    assert sorted(m["Subject"] for _r, m in mails(smtp, 2)) == ["Two-factor authentication turned off",
                                                                "Two-factor authentication turned on"]


def test_a_reset_link_asks_for_the_code_before_signing_in(on, make_user, smtp, clock, app):
    # The mailbox alone (the reset link) must not sign in past the second factor.
    make_user(password=PASSWORD)
    password_step(on)
    secret, _codes = set_up(on, clock)
    on.post("/users/sign_out")
    ask_reset(on, "owner@example.com")
    (reset,) = [m for _r, m in mails(smtp, 2) if m["Subject"] == "Reset password instructions"]
    token = link_in(reset).partition("=")[2]
    r = on.post("/users/password/edit", data={"reset_password_token": token, "password": "a new password",
                                              "password_confirmation": "a new password"})
    assert r.status_code == 302 and r.headers["Location"] == "/users/two_factor/sign_in"
    assert not signed_in(on)
    clock.advance(seconds=30)
    assert code_step(on, code(secret, clock)).status_code == 302 and signed_in(on)
    assert sql(app, "SELECT count(*) FROM user_sessions") == [(1,)]


def test_turning_it_off_needs_the_password_and_a_code(client, two_factor, clock, app):
    secret, codes = two_factor
    password_step(client)
    code_step(client, code(secret, clock))
    clock.advance(seconds=30)
    r = client.post("/users/two_factor/disable", data={"current_password": "wrong", "code": code(secret, clock)})
    assert r.status_code == 422 and "That is not your current password." in r.get_data(as_text=True)
    r = client.post("/users/two_factor/disable", data={"current_password": PASSWORD, "code": "123"})
    assert r.status_code == 422 and WRONG_CODE in r.get_data(as_text=True)
    assert sql(app, "SELECT otp_enabled_at IS NOT NULL FROM users") == [(True,)]
    r = client.post("/users/two_factor/disable", data={"current_password": PASSWORD, "code": codes[3]})
    assert r.status_code == 302
    assert sql(app, "SELECT otp_enabled_at, otp_secret_ciphertext, otp_last_step FROM users") == [(None, None, None)]
    assert sql(app, "SELECT count(*) FROM otp_backup_codes") == [(0,)]
    client.post("/users/sign_out")
    assert password_step(client).headers["Location"] == "/" and signed_in(client)


def test_new_backup_codes_replace_the_old_ones(client, two_factor, clock):
    secret, old = two_factor
    password_step(client)
    code_step(client, code(secret, clock))
    clock.advance(seconds=30)
    r = client.post("/users/two_factor/backup_codes", data={"current_password": PASSWORD, "code": code(secret, clock)})
    new = BACKUP.findall(r.get_data(as_text=True))
    assert r.status_code == 200 and len(set(new)) == 10 and not set(new) & set(old)
    client.post("/users/sign_out")
    password_step(client)
    assert code_step(client, old[5]).status_code == 401
    assert code_step(client, new[5]).status_code == 302


# ----------------------------------------------------------------------------- PWP__REQUIRE_MFA

@pytest.fixture
def required(settings):
    settings["PWP__REQUIRE_MFA"] = True


def test_required_sends_a_signed_in_account_without_it_to_the_set_up(required, client, make_user, clock):
    _user_id, api_token = make_user(password=PASSWORD)
    assert password_step(client).status_code == 302
    for path in ("/", "/users/token", "/users/edit", "/d/active"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/users/two_factor?next="), path
    r = client.post("/p", data={"push[kind]": "text", "push[payload]": "x"})
    assert r.status_code == 302 and r.headers["Location"] == "/users/two_factor"
    page = client.get("/users/two_factor").get_data(as_text=True)
    # The form sent is not kept: the page says so (it said only that the set-up is required).
    assert MFA_REQUIRED in page and POST_NOT_SENT in page
    assert sql(client.application, "SELECT count(*) FROM pushes") == [(0,)]
    assert POST_NOT_SENT not in client.get("/users/two_factor?next=/").get_data(as_text=True)
    assert client.get("/static/app.css").status_code == 200
    # The JSON APIs, by token or by the browser's session: upstream's 403.
    for path in ("/api/v2/pushes/active", "/p/active.json"):
        for r in (client.get(path, headers=bearer(api_token)), client.get(path)):
            assert r.status_code == 403 and r.get_json() == {"error": MFA_REQUIRED}, path
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}, headers=bearer(api_token))
    assert r.status_code == 403 and r.get_json() == {"error": MFA_REQUIRED}
    set_up(client, clock)
    assert client.get("/").status_code == 200
    assert client.get("/api/v2/pushes/active", headers=bearer(api_token)).status_code == 200
    assert client.get("/p/active.json", headers=bearer(api_token)).status_code == 200
    assert client.post("/users/sign_out").status_code == 302


def test_required_the_set_up_goes_on_to_the_page_asked_for(required, client, make_user, clock):
    # The page asked for was lost: the set-up now carries it (as the sign-in's ?next=) and its
    # backup codes page's "Done" leads there, once two-factor authentication is on.
    make_user(password=PASSWORD)
    password_step(client)
    r = client.get("/users/token?x=1")
    assert r.headers["Location"] == "/users/two_factor?next=/users/token?x%3D1"
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert '<input type="hidden" name="next" value="/users/token?x=1">' in html
    secret = SECRET.search(html).group(1).replace(" ", "")
    # A wrong code's page still carries it.
    wrong = client.post("/users/two_factor", data={"current_password": PASSWORD, "code": code(secret, clock, 5),
                                                   "next": "/users/token?x=1"})
    assert wrong.status_code == 422 and 'name="next" value="/users/token?x=1"' in wrong.get_data(as_text=True)
    done = client.post("/users/two_factor", data={"current_password": PASSWORD, "code": code(secret, clock),
                                                  "next": "/users/token?x=1"})
    assert done.status_code == 200 and 'href="/users/token?x=1" class="button secondary">Done' in done.get_data(
        as_text=True)
    assert client.get("/users/token?x=1").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_the_set_ups_next_stays_on_the_site(client, make_user, clock, target):
    make_user(password=PASSWORD)
    password_step(client)
    html = client.get("/users/two_factor", query_string={"next": target}).get_data(as_text=True)
    assert 'name="next"' not in html
    secret = SECRET.search(html).group(1).replace(" ", "")
    done = client.post("/users/two_factor", data={"current_password": PASSWORD, "code": code(secret, clock),
                                                  "next": target})
    assert 'href="/users/two_factor" class="button secondary">Done' in done.get_data(as_text=True)


def test_required_the_set_up_page_links_nowhere_that_sends_back_to_it(required, client, make_user, clock):
    # Its "Back to your account" and the menu's pages each sent the browser back to the set-up:
    # until it is set up, the page offers to sign out instead.
    make_user(password=PASSWORD)
    password_step(client)
    html = client.get("/users/two_factor").get_data(as_text=True)
    links = re.findall(r'<a [^>]*href="(/[^"]*)"', html)
    assert links == ["/"]  # (the brand's, as on every page)
    assert 'action="/users/sign_out"' in html and "Back to your account" not in html
    set_up(client, clock)
    html = client.get("/users/two_factor").get_data(as_text=True)
    assert "Back to your account" in html and 'href="/users/token"' in html


def test_required_leaves_anonymous_visitors_sign_out_and_health_alone(required, client, make_user):
    assert client.get("/").status_code == 200
    assert client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).status_code == 201
    make_user(password=PASSWORD)
    password_step(client)
    # The health check and robots.txt answer a signed-in browser too (a monitor may share it).
    assert client.get("/up").status_code == 200 and client.get("/robots.txt").status_code == 200
    assert client.post("/users/sign_out").headers["Location"] == "/"
    assert client.get("/").status_code == 200


def test_off_by_default_an_account_without_it_uses_everything(client, token):
    assert client.get("/api/v2/pushes/active", headers=bearer(token)).status_code == 200


# ----------------------------------------------------------------------------- admins

def test_rotate_key_keeps_two_factor_working(database_url, tmp_path, clock):
    def app_with(keys):
        return create_app(make_config(database_url, PWPUSH_MASTER_KEY=keys), instance_path=str(tmp_path / "i"))
    old = app_with(TEST_MASTER_KEY)
    client = old.test_client()
    with old.app_context():
        from pwp.auth import create_user
        create_user("owner@example.com", PASSWORD)
    password_step(client)
    secret, _codes = set_up(client, clock)
    new_key = crypto.generate_key()
    both = app_with(f"{new_key},{TEST_MASTER_KEY}")
    with both.app_context():
        pushes.rotate_keys()
    (stored,) = sql(both, "SELECT otp_secret_ciphertext FROM users")[0]
    assert crypto.Keyring([new_key]).decrypt(bytes(stored)).decode() == secret
    new = app_with(new_key)  # (the old key gone)
    client = new.test_client()
    clock.advance(seconds=30)
    password_step(client)
    assert code_step(client, code(secret, clock)).status_code == 302 and signed_in(client)
    for a in (old, both, new):
        with a.app_context():
            db.engine.dispose()


def test_rotate_key_without_the_old_key_names_the_account(database_url, tmp_path, clock):
    old = create_app(make_config(database_url), instance_path=str(tmp_path / "i"))
    with old.app_context():
        from pwp.auth import create_user
        create_user("owner@example.com", PASSWORD)
    client = old.test_client()
    password_step(client)
    set_up(client, clock)
    before = sql(old, "SELECT otp_secret_ciphertext FROM users")
    sql(old, "DELETE FROM key_check")  # (else start-up refuses the key)
    app = create_app(make_config(database_url, PWPUSH_MASTER_KEY=crypto.generate_key()),
                     instance_path=str(tmp_path / "i"))
    with app.app_context(), pytest.raises(crypto.KeyMismatch, match="^user 1's two-factor secret$"):
        pushes.rotate_keys()
    assert sql(old, "SELECT otp_secret_ciphertext FROM users") == before
    for a in (old, app):
        with a.app_context():
            db.engine.dispose()


def test_users_reset_2fa_turns_it_off_and_logs_no_secret(app, client, two_factor, caplog):
    with caplog.at_level(logging.INFO, logger="pwp"):
        result = app.test_cli_runner().invoke(args=["users", "reset-2fa", "Owner@example.com"])
    assert result.exit_code == 0 and "Two-factor authentication turned off for owner@example.com" in result.output
    assert "user 1: two-factor authentication turned off from the command line" in caplog.text
    assert two_factor[0] not in caplog.text + result.output
    assert sql(app, "SELECT otp_enabled_at, otp_secret_ciphertext FROM users") == [(None, None)]
    again = app.test_cli_runner().invoke(args=["users", "reset-2fa", "owner@example.com"])
    assert again.exit_code == 0 and "nothing changed" in again.output
    missing = app.test_cli_runner().invoke(args=["users", "reset-2fa", "nobody@example.com"])
    assert missing.exit_code != 0 and "No user with the e-mail address" in missing.output
    assert password_step(client).headers["Location"] == "/"


def test_users_list_shows_who_has_it(app, two_factor, make_user):
    make_user(email="other@example.com", password=PASSWORD)
    make_user(email="api@example.com")
    result = app.test_cli_runner().invoke(args=["users", "list"])
    lines = [line.split() for line in result.stdout.splitlines()]
    assert result.exit_code == 0 and lines[0][:6] == ["e-mail", "admin", "web", "sign-in", "two-factor", "live"]
    assert [line[:4] for line in lines[1:]] == [["owner@example.com", "no", "yes", "yes"],
                                                ["other@example.com", "no", "yes", "no"],
                                                ["api@example.com", "no", "no", "no"]]


def test_the_administration_page_shows_who_has_it(client, two_factor, clock, make_user, app):
    secret, _codes = two_factor
    make_user(email="admin@example.com", password=PASSWORD, admin=True)
    password_step(client, email="admin@example.com")
    html = client.get("/admin/users").get_data(as_text=True)
    assert html.count("Yes, with two-factor authentication") == 1
