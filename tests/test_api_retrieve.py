"""API v2 and v1: retrieving, passphrases, views, expiry by time."""
import pytest

from conftest import bearer, sql

SHOW_KEYS = {"created_at", "days_remaining", "deletable_by_viewer", "deleted", "expire_after_days",
             "expire_after_views", "expired", "expired_on", "files", "html_url", "json_url",
             "passphrase", "payload", "retrieval_step", "updated_at", "url_token", "views_remaining"}


def push(client, headers=None, **fields):
    fields.setdefault("payload", "s3cret")
    r = client.post("/api/v2/pushes", json={"push": fields}, headers=headers or {})
    assert r.status_code == 201, r.json
    return r.json["url_token"]


@pytest.mark.parametrize("path", ["/p/{}.json", "/api/v2/pushes/{}", "/f/{}.json", "/r/{}.json",
                                  "/api/v2/pushes/{}.json"])
def test_two_view_push_serves_two_views_then_expired(app, client, path):
    token = push(client, expire_after_views=2)
    first = client.get(path.format(token))
    assert first.status_code == 200 and set(first.json) == SHOW_KEYS
    assert first.json["payload"] == "s3cret" and first.json["views_remaining"] == 1
    second = client.get(path.format(token)).json
    assert second["payload"] == "s3cret" and second["views_remaining"] == 0
    assert second["expired"] is False and second["expired_on"] is None
    (expired, payload), = sql(app, "SELECT expired, payload_ciphertext FROM pushes")
    assert expired and payload is None
    third = client.get(path.format(token))
    assert third.status_code == 200
    body = third.json
    assert body["expired"] is True and body["payload"] is None and body["files"] == []
    assert body["expired_on"] is not None and body["deleted"] is False
    assert body["views_remaining"] == 0 and body["passphrase"] is None


@pytest.mark.parametrize("path", ["/api/v2/pushes/{}", "/api/v2/pushes/{}.json", "/p/{}.json", "/p/{}",
                                  "/p/{}/r"])
def test_head_of_a_payload_url_counts_no_view(app, client, path):
    """A HEAD (link checkers, previews) has no body to carry the payload: it must not
    spend a view, or a 1-view push would be gone before its reader came."""
    token = push(client, expire_after_views=1, retrieval_step=False)
    head = client.head(path.format(token))
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Cache-Control"] == "no-store"
    assert sql(app, "SELECT view_count FROM pushes") == [(0,)]
    assert sql(app, "SELECT count(*) FROM audit_logs WHERE kind <> 0") == [(0,)]
    assert client.get(f"/api/v2/pushes/{token}").json["payload"] == "s3cret"
    # Web pages answer an unknown push with the expired page; the API with 404.
    assert client.head(path.format("nosuchpush")).status_code == (200 if "json" not in path and "api" not in path
                                                                  else 404)
    # Nor is a HEAD of an expired push a failed view.
    assert client.head(path.format(token)).status_code == 200
    assert sql(app, "SELECT view_count FROM pushes") == [(1,)]


def test_unknown_token_is_404_not_found(client):
    for path in ("/api/v2/pushes/nope", "/p/nope.json", "/api/v2/pushes/nope/preview",
                 "/p/nope/preview.json"):
        r = client.get(path)
        assert r.status_code == 404 and r.json == {"error": "not-found"}, path


@pytest.mark.parametrize("token", ["a" * 65, "bad%20token", "x.y", "..", "%00", "😀", "a'b"])
def test_odd_tokens_are_404_json(client, token):
    r = client.get(f"/api/v2/pushes/{token}")
    assert r.status_code == 404
    assert r.is_json


@pytest.mark.parametrize("path", ["/api/v2/pushes/{}", "/api/v2/pushes/{}/preview",
                                  "/p/{}.json", "/p/{}/preview.json", "/f/{}.json"])
@pytest.mark.parametrize("token", ["a" * 65, "bad%20token", "%F0%9F%98%80", "a'b"])
def test_a_token_upstreams_router_takes_gets_its_not_found(client, path, token):
    """Upstream routes any segment without '.' or '/' to the push's controller."""
    r = client.get(path.format(token))
    assert r.status_code == 404 and r.json == {"error": "not-found"}
    if path == "/api/v2/pushes/{}":
        r = client.delete(path.format(token))
        assert r.status_code == 404 and r.json == {"error": "not-found"}
    assert client.put(path.format(token)).json == {"status": 404, "error": "Not Found"}  # no route


def test_passphrase_gate(app, client, token):
    t = push(client, bearer(token), passphrase="asdf")
    for query in ("", "?passphrase=wrong", "?passphrase=ASDF"):
        r = client.get(f"/api/v2/pushes/{t}{query}")
        assert r.status_code == 401
        assert r.json == {"error": "That passphrase is incorrect.",
                          "message": "This push requires a passphrase. Please provide it using the "
                                     "'passphrase' parameter (e.g. ?passphrase=mysecret)",
                          "status": "unauthorized"}
    r = client.get(f"/api/v2/pushes/{t}?passphrase=asdf")
    assert r.status_code == 200 and r.json["payload"] == "s3cret"
    assert r.json["passphrase"] is None
    kinds = [e["kind"] for e in client.get(f"/api/v2/pushes/{t}/audit", headers=bearer(token)).json["logs"]]
    assert kinds == ["creation", "failed_passphrase", "failed_passphrase", "failed_passphrase", "view"]


def test_passphrase_in_json_body_is_accepted(client):
    t = push(client, passphrase="pp")
    r = client.open(f"/api/v2/pushes/{t}", method="GET", json={"passphrase": "pp"})
    assert r.status_code == 200 and r.json["payload"] == "s3cret"


def test_owner_is_not_exempt_from_the_passphrase(client, token):
    t = push(client, bearer(token), passphrase="pp")
    assert client.get(f"/api/v2/pushes/{t}", headers=bearer(token)).status_code == 401


def test_sixth_passphrase_attempt_in_a_minute_is_429(client, clock):
    t = push(client, passphrase="right")
    for _ in range(5):
        assert client.get(f"/api/v2/pushes/{t}?passphrase=wrong").status_code == 401
    r = client.get(f"/api/v2/pushes/{t}?passphrase=right")
    assert r.status_code == 429
    assert r.json == {"error": "Too many passphrase attempts. Please try again in a minute."}
    clock.advance(seconds=61)
    assert client.get(f"/api/v2/pushes/{t}?passphrase=right").status_code == 200


def test_passphrase_payload_is_not_readable_with_the_master_key_alone(app, client):
    t = push(client, passphrase="hunter2", payload="guarded")
    with app.app_context():
        from pwp.models import Push, db
        from pwp.pushes import keyring
        row = db.session.query(Push).filter_by(url_token=t).one()
        inner = keyring().decrypt(row.payload_ciphertext)
        assert b"guarded" not in inner
        assert row.passphrase_verifier is not None and b"hunter2" not in row.passphrase_verifier


def test_expired_passphrase_push_skips_the_gate(client):
    t = push(client, passphrase="pp", expire_after_views=1)
    assert client.get(f"/api/v2/pushes/{t}?passphrase=pp").json["payload"] == "s3cret"
    r = client.get(f"/api/v2/pushes/{t}")
    assert r.status_code == 200 and r.json["expired"] is True and r.json["payload"] is None


def test_push_expires_by_days(client, clock):
    t = push(client, expire_after_days=1)
    clock.advance(hours=23, minutes=59)
    body = client.get(f"/api/v2/pushes/{t}").json
    assert body["payload"] == "s3cret" and body["days_remaining"] == 1
    clock.advance(minutes=2)
    body = client.get(f"/api/v2/pushes/{t}").json
    assert body["expired"] is True and body["payload"] is None and body["days_remaining"] == 0


def test_days_remaining_counts_down(client, clock):
    t = push(client, expire_after_days=3)
    clock.advance(days=1, seconds=1)
    assert client.get(f"/api/v2/pushes/{t}").json["days_remaining"] == 2


def test_owner_views_are_logged_but_not_counted(client, make_user):
    _, owner = make_user("owner@example.com")
    _, admin = make_user("admin@example.com", admin=True)
    t = push(client, bearer(owner), expire_after_views=1)
    for headers in (bearer(owner), bearer(owner), bearer(admin)):
        body = client.get(f"/api/v2/pushes/{t}", headers=headers).json
        assert body["payload"] == "s3cret" and body["views_remaining"] == 1 and body["expired"] is False
    assert client.get(f"/api/v2/pushes/{t}").json["payload"] == "s3cret"
    assert client.get(f"/api/v2/pushes/{t}").json["expired"] is True
    kinds = [e["kind"] for e in client.get(f"/api/v2/pushes/{t}/audit", headers=bearer(owner)).json["logs"]]
    assert kinds == ["creation", "owner_view", "owner_view", "admin_view", "view", "failed_view"]


def test_an_admins_view_of_its_own_push_is_an_admin_view(client, make_user):
    """Section 4: admin_view takes precedence over owner_view (neither counted)."""
    _, admin = make_user("admin@example.com", admin=True)
    t = push(client, bearer(admin), expire_after_views=1)
    body = client.get(f"/api/v2/pushes/{t}", headers=bearer(admin)).json
    assert body["payload"] == "s3cret" and body["views_remaining"] == 1
    kinds = [e["kind"] for e in client.get(f"/api/v2/pushes/{t}/audit", headers=bearer(admin)).json["logs"]]
    assert kinds == ["creation", "admin_view"]


def _fill_audit_log(app, url_token, events, kind=6):
    """Add `events` audit rows (owner views by default) to a push, straight in the database."""
    sql(app, "INSERT INTO audit_logs (push_id, kind, ip, user_agent, referrer, created_at) "
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :events) "
             "SELECT p.id, :kind, '', '', '', p.created_at FROM n, pushes p WHERE p.url_token = :t",
        events=events, kind=kind, t=url_token)


def _audit_count(app, url_token):
    return sql(app, "SELECT count(*) FROM audit_logs a JOIN pushes p ON p.id = a.push_id "
                    "WHERE p.url_token = :t", t=url_token)[0][0]


def test_audit_log_stops_at_2000_events_but_views_are_always_logged(app, client, token):
    t = push(client, bearer(token), expire_after_views=2)
    _fill_audit_log(app, t, 1999)  # with the creation event: 2000, the cap
    assert _audit_count(app, t) == 2000
    client.get(f"/api/v2/pushes/{t}", headers=bearer(token))  # owner view: past the cap, not logged
    assert _audit_count(app, t) == 2000
    for views_left in (1, 0):  # counted views are bounded by the limit, and logged
        body = client.get(f"/api/v2/pushes/{t}").json
        assert body["payload"] == "s3cret" and body["views_remaining"] == views_left
    assert _audit_count(app, t) == 2002
    # Reads of the expired push could grow the log without bound: they stop at the cap.
    for _ in range(3):
        assert client.get(f"/api/v2/pushes/{t}").json["payload"] is None
        assert client.get(f"/p/{t}/r").status_code == 200
    assert _audit_count(app, t) == 2002


def test_another_users_view_is_counted(client, make_user):
    _, owner = make_user("owner@example.com")
    _, other = make_user("other@example.com")
    t = push(client, bearer(owner), expire_after_views=1)
    assert client.get(f"/api/v2/pushes/{t}", headers=bearer(other)).json["payload"] == "s3cret"
    assert client.get(f"/api/v2/pushes/{t}", headers=bearer(other)).json["expired"] is True


def test_preview_returns_url_without_counting_a_view(client):
    t = push(client, expire_after_views=1, retrieval_step=False)
    for _ in range(3):
        r = client.get(f"/api/v2/pushes/{t}/preview")
        assert r.status_code == 200 and r.json == {"url": f"http://localhost/p/{t}"}
    assert client.get(f"/api/v2/pushes/{t}").json["payload"] == "s3cret"


def test_preview_works_on_expired_pushes(client):
    t = push(client, expire_after_views=1)
    client.get(f"/api/v2/pushes/{t}")
    assert client.get(f"/p/{t}/preview.json").json == {"url": f"http://localhost/p/{t}/r"}


def test_responses_are_not_cached(client):
    t = push(client)
    assert client.get(f"/api/v2/pushes/{t}").headers["Cache-Control"] == "no-store"
    assert client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).headers["Cache-Control"] == "no-store"


def test_retrieval_step_does_not_affect_the_json_api(client):
    t = push(client, retrieval_step=True)
    assert client.get(f"/api/v2/pushes/{t}").json["payload"] == "s3cret"


@pytest.fixture
def purge_after_next_commit(app):
    """arm(): delete every push right after the session's next commit, as a purge-expired
    with no grace (PWP__PURGE_ANONYMOUS_AFTER=0) running in another process at that moment."""
    from sqlalchemy import event, text
    from sqlalchemy.orm import Session

    from pwp.models import db

    armed = []

    def purge(session):
        if armed and not armed[0]:
            armed[0] = True
            with db.engine.connect() as other:
                for table in ("audit_logs", "push_files", "pushes"):
                    other.execute(text(f"DELETE FROM {table}"))
                other.commit()
    event.listen(Session, "after_commit", purge)
    yield lambda: armed.append(False)
    event.remove(Session, "after_commit", purge)
    assert armed == [True], "the purge never ran: the test proved nothing"


@pytest.mark.parametrize("path", ["/api/v2/pushes/{}?passphrase=pp", "/p/{}.json?passphrase=pp"])
def test_a_purge_right_after_the_last_view_commits_loses_no_secret(client, purge_after_next_commit, path):
    """The answer is built from the push as the request left it: reloading it after the
    commit found no row (ObjectDeletedError, a 500 after the last view was counted)."""
    url_token = client.post("/api/v2/pushes", json={"push": {"payload": "last one", "passphrase": "pp",
                                                             "expire_after_views": 1}}).json["url_token"]
    purge_after_next_commit()
    r = client.get(path.format(url_token))
    assert r.status_code == 200 and r.json["payload"] == "last one" and r.json["views_remaining"] == 0


def test_a_purge_right_after_a_failed_view_commits_is_no_500(client, purge_after_next_commit):
    url_token = client.post("/api/v2/pushes", json={"push": {"payload": "x", "expire_after_views": 1}}).json["url_token"]
    assert client.get(f"/api/v2/pushes/{url_token}").json["payload"] == "x"
    purge_after_next_commit()
    r = client.get(f"/api/v2/pushes/{url_token}")
    assert r.status_code == 200 and r.json["expired"] is True and r.json["payload"] is None


def test_a_push_answers_its_creation_time_and_its_last_update(client, clock):
    """A new push was updated when it was created; a view updates it (the fast path here)."""
    created = clock.now.isoformat(timespec="milliseconds") + "Z"
    body = client.post("/api/v2/pushes", json={"push": {"payload": "p"}}).json
    assert body["created_at"] == body["updated_at"] == created
    clock.advance(hours=1, microseconds=1500)
    body = client.get(f"/api/v2/pushes/{body['url_token']}").json
    assert body["created_at"] == created
    assert body["updated_at"] == clock.now.isoformat(timespec="milliseconds") + "Z" != created


def test_a_counted_view_answers_the_updated_at_it_wrote(client, clock):
    """The general path (a passphrase push here) agrees with the fast path and the row."""
    url_token = client.post("/api/v2/pushes", json={"push": {"payload": "p", "passphrase": "pp"}}).json["url_token"]
    clock.advance(hours=1)
    body = client.get(f"/api/v2/pushes/{url_token}?passphrase=pp").json
    assert body["updated_at"] == clock.now.isoformat(timespec="milliseconds") + "Z"


def _delete_every_push(app):
    from sqlalchemy import text

    from pwp.models import db
    with db.engine.connect() as other:
        for table in ("audit_logs", "push_files", "pushes"):
            other.execute(text(f"DELETE FROM {table}"))
        other.commit()


# PostgreSQL only: on SQLite the request holds the write lock from its first statement, so
# no purge can delete the row in between.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_lost_race_whose_push_was_purged_meanwhile_is_404(client, app, monkeypatch):
    """Another reader took the last view and a purge deleted the row before this reader
    looked again: a refresh raised (500)."""
    from pwp import pushes

    url_token = client.post("/api/v2/pushes", json={"push": {"payload": "p", "passphrase": "pp"}}).json["url_token"]

    def lost_and_purged(push, now):
        _delete_every_push(app)
        return False
    monkeypatch.setattr(pushes, "_claim", lost_and_purged)
    r = client.get(f"/api/v2/pushes/{url_token}?passphrase=pp")
    assert r.status_code == 404 and r.json == {"error": "not-found"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_deletion_beaten_by_another_then_purged_is_404(client, app, monkeypatch):
    from pwp import pushes

    url_token = client.post("/api/v2/pushes", json={"push": {"payload": "p"}}).json["url_token"]

    def beaten_and_purged(push, now, tx=None, deletion=False):
        _delete_every_push(app)
        return False
    monkeypatch.setattr(pushes, "_expire", beaten_and_purged)
    r = client.delete(f"/api/v2/pushes/{url_token}")
    assert r.status_code == 404 and r.json == {"error": "not-found"}
