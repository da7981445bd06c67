"""Retrieval takes one conditional write per view: counts, owners, passphrases, audit events."""
import threading

import pytest

from conftest import bearer, sql, wait_for_a_lock_waiter


def _create(client, headers=None, **push):
    push.setdefault("payload", "s3cret")
    r = client.post("/api/v2/pushes", json={"push": push}, headers=headers or {})
    assert r.status_code == 201, r.json
    return r.json["url_token"]


def test_concurrent_readers_get_exactly_the_remaining_views(app):
    client = app.test_client()
    url_token = _create(client, expire_after_views=3)
    results = []
    start = threading.Barrier(8)

    def read():
        own = app.test_client()
        start.wait()
        results.append(own.get(f"/api/v2/pushes/{url_token}").json)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for r in results if r.get("payload") == "s3cret") == 3
    assert sum(1 for r in results if "payload" not in r or r["payload"] is None) == 5
    rows = sql(app, "SELECT expired, payload_ciphertext FROM pushes WHERE url_token = :t", t=url_token)
    assert rows[0][0] and rows[0][1] is None


def test_last_view_returns_payload_then_push_is_expired(client):
    url_token = _create(client, expire_after_views=1)
    first = client.get(f"/api/v2/pushes/{url_token}").json
    assert first["payload"] == "s3cret" and first["expired"] is False and first["views_remaining"] == 0
    second = client.get(f"/api/v2/pushes/{url_token}").json
    assert second["expired"] is True and second.get("payload") is None


def test_views_are_counted_and_logged(app, client, token):
    url_token = _create(client, headers=bearer(token), expire_after_views=5)
    r = client.get(f"/api/v2/pushes/{url_token}")
    assert r.json["views_remaining"] == 4
    kinds = [k for (k,) in sql(app, "SELECT a.kind FROM audit_logs a JOIN pushes p ON p.id = a.push_id "
                                    "WHERE p.url_token = :t ORDER BY a.id", t=url_token)]
    assert kinds == [0, 1]  # creation, view
    log = client.get(f"/api/v2/pushes/{url_token}/audit", headers=bearer(token)).json["logs"]
    assert [e["kind"] for e in log] == ["creation", "view"]


def test_owner_view_is_logged_not_counted(app, client, token):
    url_token = _create(client, headers=bearer(token), expire_after_views=2)
    r = client.get(f"/api/v2/pushes/{url_token}", headers=bearer(token))
    assert r.json["payload"] == "s3cret" and r.json["views_remaining"] == 2
    assert sql(app, "SELECT view_count FROM pushes WHERE url_token = :t", t=url_token)[0][0] == 0
    kinds = [k for (k,) in sql(app, "SELECT kind FROM audit_logs ORDER BY id")]
    assert kinds == [0, 6]  # creation, owner_view


def test_other_users_view_is_counted(client, make_user, token):
    url_token = _create(client, headers=bearer(token), expire_after_views=2)
    _other_id, other_token = make_user("other@example.com")
    r = client.get(f"/api/v2/pushes/{url_token}", headers=bearer(other_token))
    assert r.json["payload"] == "s3cret" and r.json["views_remaining"] == 1


def test_passphrase_is_checked_before_a_view_is_counted(app, client):
    url_token = _create(client, passphrase="open sesame", expire_after_views=2)
    r = client.get(f"/api/v2/pushes/{url_token}")
    assert r.status_code == 401
    assert sql(app, "SELECT view_count FROM pushes WHERE url_token = :t", t=url_token)[0][0] == 0
    r = client.get(f"/api/v2/pushes/{url_token}?passphrase=open%20sesame")
    assert r.json["payload"] == "s3cret" and r.json["views_remaining"] == 1


def test_created_push_json_matches_a_later_read(client, token):
    created = client.post("/api/v2/pushes", json={"push": {"payload": "x", "note": "n", "name": "a"}},
                          headers=bearer(token)).json
    assert created["note"] == "n" and created["name"] == "a" and created["views_remaining"] == 5
    assert created["expired"] is False and created["deleted"] is False and created["passphrase"] is None
    shown = client.get(f"/api/v2/pushes/{created['url_token']}").json
    assert shown["created_at"] == created["created_at"]
    assert shown["expire_after_days"] == created["expire_after_days"]


def test_read_after_the_time_limit_is_expired_and_counted(app, client, clock):
    url_token = _create(client, expire_after_days=1, expire_after_views=5)
    clock.advance(days=1, seconds=1)
    r = client.get(f"/api/v2/pushes/{url_token}").json
    assert r["expired"] is True and r.get("payload") is None
    rows = sql(app, "SELECT expired, view_count, payload_ciphertext FROM pushes WHERE url_token = :t", t=url_token)
    assert rows[0][0] and rows[0][1] == 1 and rows[0][2] is None


def test_an_owners_view_of_a_push_deleted_meanwhile_is_404_not_500(app, client, token, database_url, monkeypatch):
    """Its owner's view counts nothing: it logs the view of the push it read. A deletion
    between the read and the log (its account deleted, a purge) made the log a foreign-key
    violation: a 500. Found racing the owner's views and an account deletion on gunicorn."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's BEGIN IMMEDIATE runs a request's whole transaction alone")
    import psycopg

    from pwp import pushes
    url_token = _create(client, headers=bearer(token))
    views_count = pushes.views_count

    def deleted_meanwhile(push, user):
        with psycopg.connect(database_url, autocommit=True) as other:
            other.execute("DELETE FROM pushes WHERE id = %s", (push.id,))
        return views_count(push, user)

    monkeypatch.setattr(pushes, "views_count", deleted_meanwhile)
    r = client.get(f"/api/v2/pushes/{url_token}", headers=bearer(token))
    assert (r.status_code, r.json) == (404, {"error": "not-found"})


def test_a_wrong_passphrase_for_a_push_deleted_meanwhile_is_404_not_500(app, client, token, database_url,
                                                                        monkeypatch):
    """A wrong passphrase is logged against the push read before it was checked (the check
    takes a while: scrypt); deleted meanwhile (its account deleted), that event broke the
    foreign key: a 500."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's BEGIN IMMEDIATE runs a request's whole transaction alone")
    import psycopg

    from pwp import crypto
    url_token = _create(client, headers=bearer(token), passphrase="right one")
    check = crypto.check_passphrase

    def deleted_meanwhile(passphrase, salt, verifier):
        with psycopg.connect(database_url, autocommit=True) as other:
            other.execute("DELETE FROM pushes WHERE url_token = %s", (url_token,))
        return check(passphrase, salt, verifier)

    monkeypatch.setattr(crypto, "check_passphrase", deleted_meanwhile)
    r = client.get(f"/api/v2/pushes/{url_token}?passphrase=wrong")
    assert (r.status_code, r.json) == (404, {"error": "not-found"})


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_view_by_an_account_deleted_meanwhile_is_401_not_500(app, client, token, make_user, database_url, method):
    """A signed-in caller's view of another's push logs its event with the caller's user_id,
    whose foreign key waits for the account's row while an administrator deletes the account,
    then finds it gone: the caller is no one now (a 401, as a create's), not a 500; the view
    it claimed is given back (the transaction rolled back). So for a viewer's deletion."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's BEGIN IMMEDIATE runs a request's whole transaction alone")
    import psycopg
    url_token = _create(client, headers=bearer(token), expire_after_views=2, deletable_by_viewer=True)
    viewer_id, viewer_token = make_user(email="leaving@example.com")
    answer = []
    with psycopg.connect(database_url) as deletion:
        deletion.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", (viewer_id,))
        viewer = threading.Thread(target=lambda: answer.append(
            app.test_client().open(f"/api/v2/pushes/{url_token}", method=method, headers=bearer(viewer_token))))
        viewer.start()
        wait_for_a_lock_waiter(database_url, "the view", thread=viewer)
        deletion.execute("DELETE FROM users WHERE id = %s", (viewer_id,))
        deletion.commit()
        viewer.join(timeout=60)
    assert (answer[0].status_code, answer[0].json) == (
        401, {"error": "You need to sign in or sign up before continuing."})
    assert sql(app, "SELECT view_count, expired FROM pushes WHERE url_token = :t", t=url_token) == [(0, False)]
