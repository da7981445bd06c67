"""The API's hot path (pwp/hotpath.py): which requests it answers, that its answers are
Flask's byte for byte, and that everything else reaches Flask untouched."""
import io
import json
import logging

import pytest
from flask import request_started

from conftest import TEST_MASTER_KEY, bearer, make_config, sql
from pwp import create_app
from pwp.config import ConfigError
from pwp.hotpath import HotPath
from pwp import pushes
from pwp.models import AuditKind, db

BODY = {"push": {"payload": "s3cret-payload", "expire_after_days": 2, "expire_after_views": 3}}


@pytest.fixture
def flask_hits(app):
    """How many requests reached Flask (its request_started signal)."""
    hits = []

    def count(sender, **_extra):
        hits.append(1)
    request_started.connect(count, app)
    yield hits
    request_started.disconnect(count, app)


def without_hot_path(app):
    """Take the hot path out of the app's WSGI layers (every request goes to Flask)."""
    outer = app.wsgi_app  # SecurityHeaders
    assert isinstance(outer.wsgi_app, HotPath)
    outer.wsgi_app = outer.wsgi_app.wsgi_app
    return app


def create(client, body=BODY, path="/api/v2/pushes", **kwargs):
    return client.post(path, data=json.dumps(body), content_type="application/json", **kwargs)


def test_anonymous_create_and_retrieve_skip_flask(client, flask_hits):
    created = create(client)
    assert created.status_code == 201
    token = created.get_json()["url_token"]
    shown = client.get(f"/api/v2/pushes/{token}")
    assert shown.status_code == 200 and shown.get_json()["payload"] == "s3cret-payload"
    shown = client.get(f"/api/v2/pushes/{token}.json")
    assert shown.get_json()["views_remaining"] == 1
    created = create(client, path="/api/v2/pushes.json")
    assert created.status_code == 201
    assert flask_hits == []


def _answers(app):
    """Create, read twice (the last view expires it), read again: what a client sees."""
    client = app.test_client()
    seen = []
    created = create(client, {"push": {"payload": "p", "expire_after_views": 2, "note": "n",
                                       "name": "x", "retrieval_step": "true"}})
    token = created.get_json()["url_token"]
    for response in (created, client.get(f"/api/v2/pushes/{token}"),
                     client.get(f"/api/v2/pushes/{token}.json"), client.get(f"/api/v2/pushes/{token}")):
        seen.append((response.status, response.headers.to_wsgi_list(),
                     response.get_data().replace(token.encode(), b"TOKEN")))
    return seen


def _with_and_without_hot_path(answers, database_url, tmp_path) -> tuple[list, list]:
    """What `answers` saw of an app with the hot path, then of one without it."""
    seen = []
    for name, made in (("a", lambda app: app), ("b", without_hot_path)):
        app = made(create_app(make_config(database_url), instance_path=str(tmp_path / name)))
        seen.append(answers(app))
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return seen[0], seen[1]


def test_answers_are_flasks_byte_for_byte(database_url, tmp_path, clock):
    fast_answers, slow_answers = _with_and_without_hot_path(_answers, database_url, tmp_path)
    assert slow_answers == fast_answers
    # the last view got the payload, the read after it an expired push without one
    assert json.loads(fast_answers[2][2])["payload"] == "p"
    after = json.loads(fast_answers[3][2])
    assert after["expired"] is True and after["payload"] is None


# Creates whose parsing upstream's rules decide: the hot path and Flask must agree on each.
EDGE_BODIES = [
    {"push": {"payload": "x", "deletable_by_viewer": " true", "retrieval_step": "TRUE"}},
    {"push": {"payload": "x", "kind": "TEXT"}},
    {"push": {"payload": "x", "kind": " "}},
    {"push": None, "payload": "wrapped"},
    {"payload": "wrapped", "retrieval_step": "on"},
    {"push": {"payload": "x", "expire_after_days": "2.9", "expire_after_views": "abc"}},
]


def _edge_answers(app):
    client = app.test_client()
    seen = []
    for body in EDGE_BODIES:
        response = create(client, body)
        data = response.get_json()
        if response.status_code == 201:
            data = {k: v for k, v in data.items() if k not in ("url_token", "created_at", "updated_at",
                                                               "json_url", "html_url")}
        seen.append((response.status, dict(response.headers), data))
    return seen


def test_edge_creates_are_answered_alike(database_url, tmp_path, clock):
    fast_answers, slow_answers = _with_and_without_hot_path(_edge_answers, database_url, tmp_path)
    assert slow_answers == fast_answers
    assert [status for status, _, _ in fast_answers] == \
        ["201 CREATED", "422 UNPROCESSABLE ENTITY", "201 CREATED", "400 BAD REQUEST", "201 CREATED", "201 CREATED"]
    assert fast_answers[0][2]["deletable_by_viewer"] is False and fast_answers[0][2]["retrieval_step"] is True


def test_the_hot_path_logs_views_and_creations(app, client):
    token = create(client, headers={"User-Agent": "agent/1", "Referer": "https://ref.example/"}).get_json()["url_token"]
    client.get(f"/api/v2/pushes/{token}", headers={"User-Agent": "agent/2"})
    rows = sql(app, "SELECT kind, ip, user_agent, referrer FROM audit_logs ORDER BY id")
    assert [tuple(r) for r in rows] == [(0, "127.0.0.1", "agent/1", "https://ref.example/"),
                                        (1, "127.0.0.1", "agent/2", "")]


@pytest.mark.parametrize("name, call, status", [
    ("token header", lambda c, t: c.get(f"/api/v2/pushes/{t}", headers=bearer("nope")), 401),
    ("cookie", lambda c, t: c.set_cookie("a", "b") or c.get(f"/api/v2/pushes/{t}"), 200),
    ("query string", lambda c, t: c.get(f"/api/v2/pushes/{t}?x=1"), 200),
    ("body on a read", lambda c, t: c.get(f"/api/v2/pushes/{t}", json={"passphrase": "x"}), 200),
    ("HEAD", lambda c, t: c.head(f"/api/v2/pushes/{t}"), 200),
    ("unknown token", lambda c, t: c.get("/api/v2/pushes/nosuchtoken"), 404),
    ("not a token", lambda c, t: c.get("/api/v2/pushes/a.b"), 404),
    ("active list", lambda c, t: c.get("/api/v2/pushes/active"), 401),
    ("preview", lambda c, t: c.get(f"/api/v2/pushes/{t}/preview"), 200),
    ("form body", lambda c, t: c.post("/api/v2/pushes", data={"push[payload]": "x"}), 201),
    ("JSON suffix type", lambda c, t: c.post("/api/v2/pushes", data=json.dumps(BODY),
                                             content_type="application/vnd.api+json"), 201),
    ("invalid JSON", lambda c, t: c.post("/api/v2/pushes", data="{nope", content_type="application/json"), 400),
    ("JSON array", lambda c, t: c.post("/api/v2/pushes", data="[1]", content_type="application/json"), 400),
    ("no push key", lambda c, t: create(c, {"other": 1}), 400),
    ("refused input", lambda c, t: create(c, {"push": {"payload": ""}}), 422),
    ("wrong type", lambda c, t: create(c, {"push": {"payload": ["x"]}}), 422),
    ("files", lambda c, t: create(c, {"push": {"payload": "x", "files": []}}), 401),
    ("e-mail", lambda c, t: create(c, {"push": {"payload": "x", "notify_emails_to": "a@b.c"}}), 422),
    ("v1 create", lambda c, t: c.post("/p.json", json={"password": {"payload": "x"}}), 201),
])
def test_everything_else_reaches_flask(client, flask_hits, name, call, status):
    token = create(client).get_json()["url_token"]
    assert flask_hits == []
    response = call(client, token)
    assert response.status_code == status, (name, response.get_data())
    assert flask_hits == [1], name


def test_pushes_that_need_the_general_path_reach_flask(client, flask_hits, clock, monkeypatch):
    secret = create(client, {"push": {"payload": "x", "passphrase": "pw"}}).get_json()["url_token"]
    short = create(client, {"push": {"payload": "x", "expire_after_days": 1}}).get_json()["url_token"]
    clock.advance(days=2)
    tries = []
    retrieve_open = pushes.retrieve_open
    monkeypatch.setattr(pushes, "retrieve_open", lambda *a: tries.append(1) or retrieve_open(*a))
    assert flask_hits == []
    assert client.get(f"/api/v2/pushes/{secret}").status_code == 401
    assert client.get(f"/api/v2/pushes/{secret}?passphrase=pw").get_json()["payload"] == "x"
    answer = client.get(f"/api/v2/pushes/{short}").get_json()
    assert answer["expired"] is True and answer["payload"] is None
    assert client.get("/api/v2/pushes/nosuchtoken").status_code == 404
    assert len(flask_hits) == 4
    # one claim attempt per read: the hot path's (three) and Flask's for the query string
    assert len(tries) == 4


def test_an_owners_read_reaches_flask(client, make_user, flask_hits):
    _user_id, api_token = make_user()
    token = create(client, headers=bearer(api_token)).get_json()["url_token"]
    assert client.get(f"/api/v2/pushes/{token}", headers=bearer(api_token)).status_code == 200
    assert len(flask_hits) == 2


@pytest.mark.parametrize("settings", [{"PWP__ALLOW_ANONYMOUS": False}])
def test_anonymous_access_off_reaches_flask(client, flask_hits, settings):
    assert create(client).status_code == 401
    assert client.get("/api/v2/pushes/whatever").status_code == 401
    assert len(flask_hits) == 2


@pytest.mark.parametrize("settings", [{"PWP__THROTTLING__MINUTE": 1000}])
def test_throttling_counts_in_front_of_it(client, flask_hits, settings):
    token = create(client).get_json()["url_token"]
    assert client.get(f"/api/v2/pushes/{token}").status_code == 200
    assert flask_hits == []


def test_an_unexpected_error_is_a_logged_json_500(app, client, monkeypatch, caplog):
    token = create(client).get_json()["url_token"]

    def broken(*_args):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr("pwp.pushes.retrieve_open", broken)
    with caplog.at_level(logging.ERROR):
        response = client.get(f"/api/v2/pushes/{token}")
    assert response.status_code == 500
    assert response.get_json() == {"status": 500, "error": "Internal Server Error"}
    assert response.headers["Cache-Control"] == "no-store"
    assert "disk on fire" in caplog.text and token not in caplog.text


def test_a_short_body_gets_flasks_400(client, flask_hits):
    body = json.dumps(BODY).encode()
    response = client.post("/api/v2/pushes", input_stream=io.BytesIO(body[:10]),
                           content_type="application/json", headers={"Content-Length": str(len(body))})
    assert response.status_code == 400
    assert flask_hits == [1]


def test_views_are_counted_once_per_read(app, client):
    token = create(client).get_json()["url_token"]
    for left in (2, 1, 0):
        assert client.get(f"/api/v2/pushes/{token}").get_json()["views_remaining"] == left
    assert tuple(sql(app, "SELECT view_count, expired, payload_ciphertext FROM pushes")[0]) == (3, True, None)


WRONG_KEY = "Wm9RcFhqM3R2a0N4bGZrWW5Rc2p2Q2J0a0JwWmhXb1E="


def test_a_wrong_master_key_stops_start_up(app, client, database_url, tmp_path, make_user):
    """An admin who starts the app with the wrong PWPUSH_MASTER_KEY (a regenerated key
    file, a forgotten variable) is told so at start, before any view is counted."""
    create(client, {"push": {"payload": "kept", "expire_after_views": 1}})
    with pytest.raises(ConfigError, match="PWPUSH_MASTER_KEY: none of its keys decrypts the stored pushes"):
        create_app(make_config(database_url, PWPUSH_MASTER_KEY=WRONG_KEY), instance_path=str(tmp_path / "wrong"))
    # Only expired pushes left, one with its owner's note (kept after expiry): still refused.
    sql(app, "UPDATE pushes SET expired = :t, payload_ciphertext = NULL", t=True)
    owner = bearer(make_user()[1])
    noted = create(client, {"push": {"payload": "x", "note": "kept"}}, headers=owner).get_json()["url_token"]
    assert client.delete(f"/api/v2/pushes/{noted}", headers=owner).get_json()["expired"] is True
    assert sql(app, "SELECT count(*) FROM pushes WHERE expired = :f", f=False) == [(0,)]
    with pytest.raises(ConfigError, match="PWPUSH_MASTER_KEY: none of its keys decrypts"):
        create_app(make_config(database_url, PWPUSH_MASTER_KEY=WRONG_KEY), instance_path=str(tmp_path / "w2"))
    # During a key rotation the old key still opens them.
    create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{WRONG_KEY},{TEST_MASTER_KEY}"),
               instance_path=str(tmp_path / "rotating"))


def test_a_wrong_master_key_stops_start_up_with_no_push_stored(app, database_url, tmp_path):
    """The database's key check (written by the first start) tells, even before any push
    is stored or after all are purged: an instance that made its own key would otherwise
    write pushes the others cannot read, and make their next start fail."""
    assert sql(app, "SELECT count(*) FROM pushes") == [(0,)]
    with pytest.raises(ConfigError, match="PWPUSH_MASTER_KEY: none of its keys decrypts"):
        create_app(make_config(database_url, PWPUSH_MASTER_KEY=WRONG_KEY), instance_path=str(tmp_path / "wrong"))
    with pytest.raises(ConfigError, match=r"no key file .*master.key, but the database already has a key"):
        create_app(make_config(database_url, PWPUSH_MASTER_KEY=None), instance_path=str(tmp_path / "own"))
    assert not (tmp_path / "own" / "master.key").exists()  # (its own new key is not kept)
    create_app(make_config(database_url), instance_path=str(tmp_path / "right"))


def test_a_push_its_instance_cannot_decrypt_never_costs_the_payload(app, client, database_url, tmp_path):
    """A rolling key rotation done out of order: an instance with the new key first
    (NEW,OLD) writes pushes that one with the old key alone cannot read: there reads fail
    with a 503; the last view is rolled back (its expiry would delete the ciphertext), any
    other view, counted before its decryption, is given back, and the payload stays."""
    newer = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{WRONG_KEY},{TEST_MASTER_KEY}"),
                       instance_path=str(tmp_path / "newer")).test_client()
    one = create(newer, {"push": {"payload": "only-once", "expire_after_views": 1}}).get_json()["url_token"]
    three = create(newer, {"push": {"payload": "three-times", "expire_after_views": 3}}).get_json()["url_token"]
    assert client.get(f"/api/v2/pushes/{one}").status_code == 503
    assert client.get(f"/api/v2/pushes/{three}").status_code == 503
    rows = dict((r[0], tuple(r[1:])) for r in sql(
        app, "SELECT url_token, view_count, expired, payload_ciphertext IS NOT NULL FROM pushes"))
    assert rows == {one: (0, False, True), three: (0, False, True)}
    assert sql(app, "SELECT count(*) FROM audit_logs WHERE kind = :view", view=AuditKind.view) == [(0,)]
    assert newer.get(f"/api/v2/pushes/{one}").get_json()["payload"] == "only-once"
    answer = newer.get(f"/api/v2/pushes/{three}").get_json()
    assert answer["payload"] == "three-times" and answer["views_remaining"] == 2
