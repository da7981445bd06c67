"""Web sessions end on the server: each sign-in is a row (user_sessions) that signing out,
a new password, the account's deletion or its lifetime ends, whatever copies of the cookie
are left."""
import hashlib
import threading
from datetime import timedelta

import psycopg
import pytest
from conftest import make_config, sql, wait_for_a_lock_waiter
from webutil import sign_in

from pwp import auth, create_app, pushes
from pwp.models import User, UserSession, db

PASSWORD = "correct horse"


def session_id(client):
    """The session id the client's (signed, not encrypted) cookie holds."""
    app = client.application
    return app.session_interface.get_signing_serializer(app).loads(client.get_cookie("session").value)["_user_id"]


def copy_of(app, client):
    """Another browser holding a copy of the client's session cookie."""
    copy = app.test_client()
    copy.set_cookie("session", client.get_cookie("session").value)
    return copy


def signed_in(client) -> bool:
    """Whether the dashboard opens (else it sends the browser to sign in)."""
    r = client.get("/p")
    assert r.status_code == 200 or r.headers["Location"].startswith("/users/sign_in")
    return r.status_code == 200


def cli(app, *args):
    """Run a flask command of the app (as `flask --app pwpush ...` does, in its context)."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def sessions(app, user_id=None):
    """The digests of the sessions' rows (of one account, if given)."""
    rows = sql(app, "SELECT digest, user_id FROM user_sessions ORDER BY digest")
    return [digest for digest, owner in rows if user_id in (None, owner)]


def test_a_copy_of_the_cookie_is_signed_out_with_its_browser(app, client, make_user):
    """Signing out ends the session on the server: a copy of the cookie taken before (stolen,
    or left in a shared computer's profile) is anonymous after."""
    sign_in(client, make_user)
    copy = copy_of(app, client)
    assert signed_in(copy)
    assert client.post("/users/sign_out").status_code == 302
    assert not signed_in(copy) and not signed_in(client)
    assert "Sign in" in copy.get("/").get_data(as_text=True)
    assert sessions(app) == []


def test_signing_out_of_one_browser_leaves_the_other_signed_in(app, client, make_user):
    user_id = sign_in(client, make_user)[0]
    other = app.test_client()
    assert other.post("/users/sign_in", data={"email": "owner@example.com", "password": PASSWORD}).status_code == 302
    assert session_id(client) != session_id(other) and len(sessions(app, user_id)) == 2
    client.post("/users/sign_out")
    assert not signed_in(client) and signed_in(other)
    assert sessions(app, user_id) == [hashlib.sha256(session_id(other).encode()).hexdigest()]


def test_the_database_keeps_only_a_digest_of_the_session_id(app, client, make_user):
    user_id = sign_in(client, make_user)[0]
    sid = session_id(client)
    assert len(sid) >= 43  # (32 random bytes)
    [(digest, created_at)] = sql(app, "SELECT digest, created_at FROM user_sessions WHERE user_id = :u", u=user_id)
    assert digest == hashlib.sha256(sid.encode()).hexdigest() and digest != sid
    # A read of the database gives no usable cookie: its digest, as a session id, is no one.
    forged = app.session_interface.get_signing_serializer(app).dumps({"_user_id": digest, "_fresh": True})
    browser = app.test_client()
    browser.set_cookie("session", forged)
    assert not signed_in(browser)


def test_a_password_change_ends_the_other_sessions_and_starts_this_ones(app, client, make_user):
    user_id = sign_in(client, make_user)[0]
    other = app.test_client()
    other.post("/users/sign_in", data={"email": "owner@example.com", "password": PASSWORD})
    copy, before = copy_of(app, client), session_id(client)
    r = client.post("/users/edit", data={"current_password": PASSWORD, "password": "battery staple",
                                         "password_confirmation": "battery staple"})
    assert r.status_code == 302
    assert signed_in(client) and not signed_in(other) and not signed_in(copy)
    assert session_id(client) != before
    assert sessions(app, user_id) == [hashlib.sha256(session_id(client).encode()).hexdigest()]


def test_users_password_on_the_command_line_ends_every_session(app, client, make_user):
    user_id = sign_in(client, make_user)[0]
    result = cli(app, "users", "password", "owner@example.com", "--password", "battery staple")
    assert result.exit_code == 0, result.output
    assert not signed_in(client) and sessions(app, user_id) == []


def test_a_sign_in_whose_password_changed_meanwhile_makes_no_session(app, client, make_user, monkeypatch):
    """The password changed (its sessions deleted) while a sign-in checked the old one: that
    sign-in must not leave a row the change did not see."""
    user_id = make_user(email="owner@example.com", password=PASSWORD)[0]
    real = auth.check_password

    def change_it_after_the_check(user, password):
        checked = real(user, password)
        # (As another request's change, done before this one writes: not to this one's object.)
        db.session.execute(db.text("UPDATE users SET password_hash = 'changed' WHERE id = :u"), {"u": user_id})
        db.session.commit()
        return checked
    monkeypatch.setattr(auth, "check_password", change_it_after_the_check)
    r = client.post("/users/sign_in", data={"email": "owner@example.com", "password": PASSWORD})
    assert r.status_code == 401 and "Invalid e-mail address or password." in r.get_data(as_text=True)
    assert not signed_in(client) and sessions(app) == []


def test_a_sign_in_waits_for_a_password_change_under_way_and_makes_no_session(app, make_user, database_url):
    """PostgreSQL: a password change holds the account's row and deletes its sessions; a
    sign-in that checked the old password inserts its row meanwhile. It must wait for the
    change (FOR SHARE), then see the new password and make no row, or its row would be made
    after the deletion and outlive it. (SQLite: one writer at a time, from BEGIN.)"""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's transactions take the write lock at BEGIN")
    user_id = make_user(email="owner@example.com", password=PASSWORD)[0]
    result = {}

    def sign_in_with_the_old_password():
        with app.app_context():
            user = db.session.get(User, user_id)
            result["session"] = auth.start_session(user, pushes.utcnow())
            db.session.remove()

    with psycopg.connect(database_url) as change:
        change.execute("UPDATE users SET password_hash = 'changed' WHERE id = %s", (user_id,))
        change.execute("DELETE FROM user_sessions WHERE user_id = %s", (user_id,))
        signing_in = threading.Thread(target=sign_in_with_the_old_password)
        signing_in.start()
        wait_for_a_lock_waiter(database_url, "the sign-in", "INSERT INTO user_sessions%", signing_in)
        change.commit()
    signing_in.join(timeout=60)
    assert result == {"session": None} and sessions(app) == []


@pytest.mark.parametrize("where", ["admin page", "command line"])
def test_a_deleted_accounts_cookie_is_anonymous(app, client, make_user, where):
    user_id = sign_in(client, make_user, email="leaving@example.com")[0]
    copy = copy_of(app, client)
    if where == "admin page":
        admin = app.test_client()
        sign_in(admin, make_user, email="admin@example.com")
        sql(app, "UPDATE users SET is_admin = true WHERE email = 'admin@example.com'")
        assert admin.post(f"/admin/users/{user_id}/delete").status_code == 302
    else:
        result = cli(app, "users", "delete", "leaving@example.com", "--yes")
        assert result.exit_code == 0, result.output
    assert sql(app, "SELECT count(*) FROM users WHERE id = :u", u=user_id)[0][0] == 0
    assert not signed_in(client) and not signed_in(copy)
    assert sessions(app, user_id) == []


def test_a_sign_in_lasts_a_week_then_purge_expired_deletes_it(app, client, make_user, clock):
    user_id = sign_in(client, make_user)[0]
    clock.advance(days=7, seconds=-1)
    assert signed_in(client)
    later = app.test_client()  # signed in a day later: lasts a day longer
    assert later.post("/users/sign_in", data={"email": "owner@example.com", "password": PASSWORD}).status_code == 302
    result = cli(app, "purge-expired")
    assert result.output.count("\n") == 1 and "notifications sent 0, sessions deleted 0 (" in result.output
    clock.advance(seconds=1)
    assert not signed_in(client) and signed_in(later)
    assert len(sessions(app, user_id)) == 2  # (refused, not yet deleted)
    result = cli(app, "purge-expired")
    assert result.exit_code == 0 and result.output.count("\n") == 1
    assert result.output.startswith("purge-expired: expired 0") and "sessions deleted 1 (" in result.output
    assert sessions(app, user_id) == [hashlib.sha256(session_id(later).encode()).hexdigest()]
    assert signed_in(later)


def test_session_user_refuses_a_row_as_old_as_the_lifetime(app, client, make_user):
    sign_in(client, make_user)
    sid = session_id(client)
    with app.app_context():
        created_at = db.session.scalar(db.select(UserSession.created_at))
        assert auth.session_user(sid, created_at + auth.SESSION_LIFETIME - timedelta(microseconds=1)) is not None
        assert auth.session_user(sid, created_at + auth.SESSION_LIFETIME) is None
        assert auth.session_user("x" * 300, created_at) is None and auth.session_user(None, created_at) is None


def test_sessions_are_shared_by_instances_on_one_database(app, client, make_user, database_url, tmp_path):
    """Several instances (one database, one SECRET_KEY) behind a load balancer: a sign-out on
    one ends the session on the others."""
    other = create_app(make_config(database_url), instance_path=str(tmp_path / "other"))
    try:
        sign_in(client, make_user)
        there = other.test_client()
        there.set_cookie("session", client.get_cookie("session").value)
        assert signed_in(there)
        assert there.post("/users/sign_out").status_code == 302
        assert not signed_in(client)
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def test_signing_out_without_a_session_is_harmless(app, client, make_user):
    sign_in(client, make_user)
    stranger = app.test_client()
    assert stranger.post("/users/sign_out").status_code == 302
    assert signed_in(client) and len(sessions(app)) == 1


def test_signing_in_again_keeps_the_browsers_session_and_starts_none(app, client, make_user):
    # A signed-in browser is sent on, as Devise's require_no_authentication does (a sign-in
    # there used to switch accounts): one session row per browser still.
    first = sign_in(client, make_user, email="first@example.com")[0]
    copy = copy_of(app, client)
    second = make_user(email="second@example.com", password="correct horse")[0]
    r = client.post("/users/sign_in", data={"email": "second@example.com", "password": "correct horse"})
    assert r.status_code == 302
    assert signed_in(copy) and signed_in(client)
    assert len(sessions(app, first)) == 1 and sessions(app, second) == []


def test_users_compare_and_hash_as_objects(app, make_user):
    """Two accounts are two users (not equal for having no session), and a user can be a set's
    member or a dict's key, as before sessions had rows (setting __eq__ alone unhashes a class)."""
    ids = make_user("one@example.com")[0], make_user("two@example.com")[0]
    with app.app_context():
        one, two = (db.session.get(User, i) for i in ids)
        assert one.get_id() is None and two.get_id() is None
        assert one != two and len({one, two}) == 2 and {one: 1}[one] == 1


@pytest.mark.parametrize("old", ["the previous version's", 1, [1], {"id": 1}, None, True, "1:", "\x00"])
def test_a_cookie_from_before_the_upgrade_signs_no_one_in_and_breaks_nothing(app, make_user, old):
    """The previous version kept "<id>:<HMAC of the password hash>" in _user_id (older
    formats: the id alone): such a cookie, even one that version signed for this very account,
    is anonymous now, and signing out or in with it is not a 500."""
    import hmac
    user_id = make_user(email="owner@example.com", password=PASSWORD)[0]
    if old == "the previous version's":
        with app.app_context():
            password_hash = db.session.get(User, user_id).password_hash
        mark = hmac.new(app.config["SECRET_KEY"].encode(), password_hash.encode(), "sha256").hexdigest()[:32]
        old = f"{user_id}:{mark}"
    browser = app.test_client()
    browser.set_cookie("session", app.session_interface.get_signing_serializer(app).dumps(
        {"_user_id": old, "_fresh": True}))
    assert not signed_in(browser)
    assert browser.get("/api/v2/pushes/active").status_code == 401
    assert browser.post("/users/sign_out").status_code == 302
    browser.set_cookie("session", app.session_interface.get_signing_serializer(app).dumps(
        {"_user_id": old, "_fresh": True}))
    r = browser.post("/users/sign_in", data={"email": "owner@example.com", "password": PASSWORD})
    assert r.status_code == 302 and signed_in(browser) and len(sessions(app, user_id)) == 1


def test_signing_out_leaves_nothing_of_the_session(app, client, make_user):
    """Signing out clears the whole session, as Devise does: its CSRF token (which the next
    person at a shared computer would otherwise inherit) goes with the sign-in."""
    sign_in(client, make_user)
    client.get("/users/edit")  # (a page with a form: the session holds its CSRF token)
    signer = app.session_interface.get_signing_serializer(app)
    assert "csrf_token" in signer.loads(client.get_cookie("session").value)
    assert client.post("/users/sign_out").status_code == 302
    left = signer.loads(client.get_cookie("session").value)
    assert set(left) <= {"_flashes"}, left
