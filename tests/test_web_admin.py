"""The administration page: accounts listed, made administrators or not, deleted."""
import logging
import re
from datetime import datetime

import pytest
from conftest import bearer, make_config, sql, wait_for_a_lock_waiter
from webutil import sign_in

from pwp import create_app
from pwp.auth import NOT_AN_ADMIN, Refused, account, set_admin
from pwp.models import db

PASSWORD = "correct horse"


def sign_in_admin(client, make_user, email="admin@example.com"):
    """Create an administrator with a password and sign the client in; return its id."""
    user_id, _ = make_user(email=email, admin=True, password=PASSWORD)
    assert client.post("/users/sign_in", data={"email": email, "password": PASSWORD}).status_code == 302
    return user_id


def is_admin(app, user_id):
    return bool(sql(app, "SELECT is_admin FROM users WHERE id = :i", i=user_id)[0][0])


def flashes(html):
    return re.findall(r'class="flash flash-(\w+)"[^>]*>([^<]*)<', html)


@pytest.mark.parametrize("path", ["/admin", "/admin/users", "/admin/users/1/delete"])
def test_admin_pages_send_anonymous_visitors_to_sign_in(client, path):
    r = client.get(path)
    assert r.status_code == 302 and r.headers["Location"] == f"/users/sign_in?next={path}"


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/admin"), ("get", "/admin/users"), ("get", "/admin/users/1/delete"),
    ("post", "/admin/users/1/delete"), ("post", "/admin/users/1/admin"), ("post", "/admin/users/1/revoke_admin")])
def test_admin_pages_are_not_found_for_other_users(client, make_user, app, method, path):
    """Signed in but not an administrator: the not-found page, nothing changed."""
    user_id, _ = sign_in(client, make_user)
    r = getattr(client, method)(path)
    assert r.status_code == 404 and "Not Found" in r.get_data(as_text=True)
    assert sql(app, "SELECT count(*) FROM users")[0][0] == 1
    assert sql(app, "SELECT count(*) FROM users WHERE is_admin")[0][0] == 0
    assert "Administration" not in client.get("/p").get_data(as_text=True)
    # The same session once it is an administrator's: found (its own account: refused, redirected).
    sql(app, "UPDATE users SET is_admin = :t WHERE id = :i", t=True, i=user_id)
    assert getattr(client, method)(path).status_code in (200, 302)
    assert "Administration" in client.get("/p").get_data(as_text=True)


@pytest.mark.parametrize("settings", [{"PWP__DISABLE_LOGINS": True}])
def test_admin_page_is_unavailable_when_logins_are_disabled(client, settings):
    r = client.get("/admin/users")
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_admin_page_lists_accounts_as_users_list_does(client, make_user, app):
    me = sign_in_admin(client, make_user)
    _, token = make_user(email="busy@example.com", password=PASSWORD)
    make_user(email="robot@example.com")  # API only
    api = app.test_client()  # (no session: the token's owner makes the pushes)
    for _ in range(3):
        api.post("/api/v2/pushes", json={"push": {"payload": "x"}}, headers=bearer(token))
    gone = api.post("/api/v2/pushes", json={"push": {"payload": "x"}}, headers=bearer(token)).json
    api.delete(f"/api/v2/pushes/{gone['url_token']}", headers=bearer(token))
    r = client.get("/admin/users")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert "<title>Administration: accounts | " in html and "<h1>Administration: accounts</h1>" in html
    rows = [re.sub(r"<[^>]+>|\s+", " ", row).split() for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)[1:]]
    created = sql(app, "SELECT created_at FROM users WHERE id = 2")[0][0]
    created = (created if not isinstance(created, str) else datetime.fromisoformat(created)).strftime("%Y-%m-%d")
    assert [row[:3] for row in rows] == [["admin@example.com", "you", "Yes"], ["busy@example.com", "No", "Yes"],
                                         ["robot@example.com", "No", "No"]]
    assert rows[1][3:5] == ["3", created] and rows[2][3:7] == ["(API", "only)", "0", created]
    # Buttons for the others, none for oneself.
    assert "/admin/users/2/admin" in html and "/admin/users/3/delete" in html
    assert f"/admin/users/{me}/" not in html and "None (your own account)" in html
    assert '<a href="/admin/users">Administration</a>' in html
    assert client.get("/admin").headers["Location"] == "/admin/users"


def test_admin_page_paginates_25(client, make_user):
    sign_in_admin(client, make_user)
    for i in range(25):
        make_user(email=f"user{i:02d}@example.com")
    first = client.get("/admin/users").get_data(as_text=True)
    second = client.get("/admin/users?page=2").get_data(as_text=True)
    assert first.count("<tr>") == 25 + 1 and "Page 1 of 2" in first and "user23@example.com" in first
    assert "user24@example.com" not in first and "user24@example.com" in second and second.count("<tr>") == 2
    assert "user24@example.com" in client.get("/admin/users?page=7").get_data(as_text=True)
    assert client.get("/admin/users?page=abc").status_code == 400


def test_make_and_revoke_an_administrator_logs_ids_only(client, make_user, app, caplog):
    me = sign_in_admin(client, make_user)
    other, token = make_user(email="other@example.com", password=PASSWORD)
    caplog.clear()  # (making the users logged their tokens' issue: the app logs at INFO)
    with caplog.at_level(logging.INFO, logger=app.logger.name):
        r = client.post(f"/admin/users/{other}/admin", data={"page": "1"}, follow_redirects=True)
        assert is_admin(app, other)
        assert ("success", "other@example.com is now an administrator.") in flashes(r.get_data(as_text=True))
        r = client.post(f"/admin/users/{other}/revoke_admin", data={"page": "2"})
        assert r.headers["Location"] == "/admin/users?page=2" and not is_admin(app, other)
    assert ("success", "other@example.com is no longer an administrator.") in flashes(
        client.get("/admin/users").get_data(as_text=True))
    lines = [record.getMessage() for record in caplog.records if record.name == app.logger.name]
    assert lines == [f"user {other}: made an administrator by user {me}",
                     f"user {other}: no longer an administrator by user {me}"]
    assert "example.com" not in caplog.text and token not in caplog.text


def test_an_administrator_cannot_revoke_or_delete_themselves(client, make_user, app):
    me = sign_in_admin(client, make_user)
    for path in (f"/admin/users/{me}/revoke_admin", f"/admin/users/{me}/delete"):
        r = client.post(path, follow_redirects=True)
        html = r.get_data(as_text=True)
        assert r.status_code == 200 and "you would lock yourself out" in html and "Accounts" in html
    r = client.get(f"/admin/users/{me}/delete", follow_redirects=True)
    assert "you would lock yourself out" in r.get_data(as_text=True) and r.request.path == "/admin/users"
    assert is_admin(app, me) and sql(app, "SELECT count(*) FROM users")[0][0] == 1


def test_the_last_administrator_cannot_be_revoked_by_one_no_longer_an_administrator(app, make_user):
    """Two administrators revoking each other: the second, no longer one, is refused (the lock
    makes the second wait for the first, then read what it wrote)."""
    a, _ = make_user(email="a@example.com", admin=True)
    b, _ = make_user(email="b@example.com", admin=True)
    with app.app_context():
        user_a, user_b = account(a), account(b)
        set_admin(user_b, False, by=user_a)
        with pytest.raises(Refused, match=NOT_AN_ADMIN):
            set_admin(user_a, False, by=user_b)  # (user_b read before its revocation)
        db.session.remove()
    assert is_admin(app, a) and not is_admin(app, b)


def test_delete_asks_first_then_deletes_the_account_its_token_and_pushes(client, make_user, app):
    sign_in_admin(client, make_user)
    other, token = make_user(email="leaving@example.com", password=PASSWORD)
    api = app.test_client()  # (no session: the token's owner makes the pushes)
    created = [api.post("/api/v2/pushes", json={"push": {"payload": "x"}}, headers=bearer(token)).json
               for _ in range(3)]
    api.delete(f"/api/v2/pushes/{created[0]['url_token']}", headers=bearer(token))
    page = client.get(f"/admin/users/{other}/delete")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<title>Delete an account | " in html
    assert "Delete <strong>leaving@example.com</strong>?" in html and "its API token;" in html
    assert "its 3 pushes (2 still live)" in html and f'action="/admin/users/{other}/delete"' in html
    assert sql(app, "SELECT count(*) FROM users")[0][0] == 2  # (asking deleted nothing)
    r = client.post(f"/admin/users/{other}/delete", follow_redirects=True)
    assert r.request.path == "/admin/users"
    assert ("success", "Deleted leaving@example.com and its 3 pushes.") in flashes(
        r.get_data(as_text=True))
    assert sql(app, "SELECT count(*) FROM users")[0][0] == 1 and sql(app, "SELECT count(*) FROM pushes")[0][0] == 0
    assert api.get("/api/v2/pushes/active", headers=bearer(token)).status_code == 401


def test_deleting_one_push_account_says_push(client, make_user, app):
    sign_in_admin(client, make_user)
    other, token = make_user(email="one@example.com")
    app.test_client().post("/api/v2/pushes", json={"push": {"payload": "x"}}, headers=bearer(token))
    assert "its 1 push (1 still live)" in client.get(f"/admin/users/{other}/delete").get_data(as_text=True)
    r = client.post(f"/admin/users/{other}/delete", follow_redirects=True)
    assert ("success", "Deleted one@example.com and its 1 push.") in flashes(r.get_data(as_text=True))


def test_deleting_an_account_of_no_pushes_or_one_expired_says_so_in_words(client, make_user, app):
    sign_in_admin(client, make_user)
    other, token = make_user(email="none@example.com")
    html = client.get(f"/admin/users/{other}/delete").get_data(as_text=True)
    assert "its pushes (it has none).</li>" in html and "0 pushes" not in html and "still live" not in html
    api = app.test_client()
    url_token = api.post("/api/v2/pushes", json={"push": {"payload": "x"}}, headers=bearer(token)).json["url_token"]
    api.delete(f"/api/v2/pushes/{url_token}", headers=bearer(token))
    html = client.get(f"/admin/users/{other}/delete").get_data(as_text=True)
    assert "its 1 push (none still live), with its files and audit log: its secret link stops working." in html
    r = client.post(f"/admin/users/{other}/delete", follow_redirects=True)
    assert ("success", "Deleted none@example.com and its 1 push.") in flashes(r.get_data(as_text=True))
    other, _token = make_user(email="empty@example.com")
    r = client.post(f"/admin/users/{other}/delete", follow_redirects=True)
    assert ("success", "Deleted empty@example.com; it had no pushes.") in flashes(
        r.get_data(as_text=True))


@pytest.mark.parametrize(("method", "path", "status"), [
    ("get", "/admin/users/999/delete", 302), ("post", "/admin/users/999/delete", 302),
    ("post", "/admin/users/999/admin", 302), ("post", "/admin/users/999/revoke_admin", 302),
    ("get", "/admin/users/abc/delete", 404), ("post", "/admin/users/-1/admin", 404),
    ("get", "/admin/users/99999999999999999999/delete", 404), ("post", "/admin/users/2147483648/admin", 404),
    ("get", "/admin/users/1/nothing", 404), ("get", "/admin/users/1/admin", 405)])
def test_unknown_and_malformed_account_ids_are_friendly(client, make_user, method, path, status):
    sign_in_admin(client, make_user)
    assert client.get("/admin/users").status_code == 200
    r = getattr(client, method)(path)
    assert r.status_code == status
    if status == 302:
        assert r.headers["Location"] == "/admin/users"
        assert ("warning", "That account no longer exists.") in flashes(
            client.get("/admin/users").get_data(as_text=True))
    else:
        assert "<h1>" in r.get_data(as_text=True)


def test_admin_forms_need_the_csrf_token(database_url, tmp_path):
    app = create_app(make_config(database_url, WTF_CSRF_ENABLED=True), instance_path=str(tmp_path / "csrf"))
    client = app.test_client()
    with app.app_context():
        from pwp.auth import create_user
        create_user("admin@example.com", password=PASSWORD, admin=True)
        other = create_user("other@example.com").id
    page = client.get("/users/sign_in").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/users/sign_in", data={"email": "admin@example.com", "password": PASSWORD, "csrf_token": csrf})
    html = client.get("/admin/users").get_data(as_text=True)
    assert html.count('name="csrf_token"') == 1 + 1  # sign-out and the one other account's form
    for path in (f"/admin/users/{other}/admin", f"/admin/users/{other}/delete"):
        r = client.post(path)
        assert r.status_code == 400 and "This form could not be sent" in r.get_data(as_text=True)
    assert sql(app, "SELECT count(*) FROM users")[0][0] == 2 and not is_admin(app, other)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert client.post(f"/admin/users/{other}/admin", data={"csrf_token": csrf}).status_code == 302
    assert is_admin(app, other)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_delete_from_a_later_page_returns_to_that_page(client, make_user):
    """Delete on page 2 links to the confirmation with the page; Cancel and the deletion go back
    to page 2, not to the first page (where the administrator would lose their place)."""
    sign_in_admin(client, make_user)
    ids = [make_user(email=f"user{i:02d}@example.com")[0] for i in range(27)]
    second = client.get("/admin/users?page=2").get_data(as_text=True)
    assert f'href="/admin/users/{ids[25]}/delete?page=2"' in second
    ask = client.get(f"/admin/users/{ids[25]}/delete?page=2").get_data(as_text=True)
    assert 'href="/admin/users?page=2">Cancel</a>' in ask and '<input type="hidden" name="page" value="2">' in ask
    r = client.post(f"/admin/users/{ids[25]}/delete", data={"page": "2"})
    assert r.status_code == 302 and r.headers["Location"] == "/admin/users?page=2"
    assert 'href="/admin/users">Cancel</a>' in client.get(f"/admin/users/{ids[0]}/delete?page=x").get_data(as_text=True)


def test_deleting_an_account_while_its_owner_writes_to_a_push_is_no_deadlock(client, make_user, app, database_url):
    """A request of the owner's holds a push's row (a view or deletion counted, its audit event
    next: that event's user_id takes a key lock on the owner's row) while an administrator
    deletes the account: the deletion waits for the request and then deletes, rather than
    hold the account's row while waiting for the push's (PostgreSQL then aborted one of the
    two as a deadlock: a 500). Found racing viewers and an account deletion on gunicorn."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's BEGIN IMMEDIATE runs a request's whole transaction alone")
    import threading

    import psycopg
    admin_id = sign_in_admin(client, make_user)
    owner, token = make_user(email="leaving@example.com", password=PASSWORD)
    t = app.test_client().post("/api/v2/pushes", json={"push": {"payload": "x"}}, headers=bearer(token)).json
    push_id = sql(app, "SELECT id FROM pushes WHERE url_token = :t", t=t["url_token"])[0][0]
    answer = []
    with psycopg.connect(database_url) as request:
        request.execute("UPDATE pushes SET view_count = view_count + 1 WHERE id = %s", (push_id,))
        deleter = threading.Thread(target=lambda: answer.append(client.post(f"/admin/users/{owner}/delete")))
        deleter.start()
        wait_for_a_lock_waiter(database_url, "the deletion", thread=deleter)
        request.execute("INSERT INTO audit_logs (push_id, user_id, kind, ip, user_agent, referrer, created_at) "
                        "VALUES (%s, %s, 0, '', '', '', now())", (push_id, owner))
        request.commit()
        deleter.join(timeout=60)
    assert answer[0].status_code == 302, answer[0].status_code
    assert sql(app, "SELECT id FROM users") == [(admin_id,)] and sql(app, "SELECT count(*) FROM pushes") == [(0,)]


def test_a_push_made_while_its_account_is_deleted_is_locked_before_the_account_too(
        client, make_user, app, database_url):
    """A push its owner made while the deletion waited for the account's row (the create held
    it) was not among the pushes the deletion had locked: the owner's view of it, its event
    next, waited for the account's row, which the deletion held, while the deletion's delete
    waited for the push's (PostgreSQL aborted one as a deadlock: a 500). The deletion now
    finds that push after it locked the account, and begins again."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's BEGIN IMMEDIATE runs a request's whole transaction alone")
    import threading

    import psycopg
    admin_id = sign_in_admin(client, make_user)
    owner, token = make_user(email="leaving@example.com", password=PASSWORD)
    made = [app.test_client().post("/api/v2/pushes", json={"push": {"payload": p}}, headers=bearer(token)).json
            for p in ("old", "new")]
    (old,), (new,) = (sql(app, "SELECT id FROM pushes WHERE url_token = :t", t=m["url_token"])[0] for m in made)
    sql(app, "UPDATE pushes SET user_id = NULL WHERE id = :id", id=new)
    answers = {}
    with psycopg.connect(database_url) as creator, psycopg.connect(database_url) as slow:
        # The create under way (holding the account's row as its key), and a slow part of the deletion.
        creator.execute("UPDATE pushes SET user_id = %s WHERE id = %s", (owner, new))
        slow.execute("SELECT id FROM audit_logs WHERE push_id = %s FOR UPDATE", (old,))
        deleter = threading.Thread(target=lambda: answers.setdefault(
            "deletion", client.post(f"/admin/users/{owner}/delete")))
        deleter.start()
        wait_for_a_lock_waiter(database_url, "the deletion", thread=deleter)  # (for the account's row)
        creator.commit()
        # The view starts once the deletion waits for the slow part: started earlier, under load
        # it could be counted and done before the deletion locked the push (the deletion then
        # waited for it, never the two at once), or be counted beside the deletion's wait for
        # the account's row, seen before the deletion woke.
        wait_for_a_lock_waiter(database_url, "the deletion, for the slow part", "DELETE FROM audit_logs%",
                               thread=deleter)
        viewer = threading.Thread(target=lambda: answers.setdefault(
            "view", app.test_client().get(f"/api/v2/pushes/{made[1]['url_token']}", headers=bearer(token))))
        viewer.start()
        # (The deletion for the slow part, the view for it.)
        wait_for_a_lock_waiter(database_url, "the deletion and the view", thread=viewer, count=2)
        slow.commit()
        deleter.join(timeout=60)
        viewer.join(timeout=60)
    assert answers["deletion"].status_code == 302, answers["deletion"].status_code
    assert answers["view"].status_code in (200, 404), answers["view"].status_code
    assert sql(app, "SELECT id FROM users") == [(admin_id,)] and sql(app, "SELECT count(*) FROM pushes") == [(0,)]
