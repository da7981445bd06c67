"""Per-IP throttling: memory storage per process, Redis shared between instances."""
import secrets
import time

import pytest
import redis

from conftest import make_config
from pwp import create_app

REDIS_URL = "redis://127.0.0.1:6379/13"


def make_app(tmp_path, **settings):
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    return create_app(make_config(url, **settings), instance_path=str(tmp_path / "instance"))


def test_requests_over_the_minute_limit_get_429_json_with_retry_after(tmp_path):
    client = make_app(tmp_path, PWP__THROTTLING__MINUTE=3).test_client()
    statuses = [client.get("/api/v2/version").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = client.get("/api/v2/version")
    assert r.status_code == 429 and r.is_json
    assert int(r.headers["Retry-After"]) > 0


def test_limits_are_per_client_ip(tmp_path):
    client = make_app(tmp_path, PWP__THROTTLING__MINUTE=2).test_client()
    for _ in range(2):
        client.get("/api/v2/version", environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert client.get("/api/v2/version", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 429
    assert client.get("/api/v2/version", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_zero_turns_throttling_off(tmp_path):
    client = make_app(tmp_path).test_client()
    assert {client.get("/api/v2/version").status_code for _ in range(30)} == {200}


def test_redis_storage_is_shared_between_app_instances(tmp_path):
    conn = redis.Redis.from_url(REDIS_URL)
    conn.flushdb()
    ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.7"
    settings = {"PWP__THROTTLING__MINUTE": 4, "PWP__THROTTLING__STORAGE_URI": REDIS_URL}
    one = make_app(tmp_path / "a", **settings).test_client()
    two = make_app(tmp_path / "b", **settings).test_client()
    env = {"REMOTE_ADDR": ip}
    assert [c.get("/api/v2/version", environ_base=env).status_code for c in (one, two, one, two)] == [200] * 4
    assert one.get("/api/v2/version", environ_base=env).status_code == 429
    assert two.get("/api/v2/version", environ_base=env).status_code == 429
    assert any(b"pwpush" in key for key in conn.keys())
    conn.flushdb()


@pytest.mark.parametrize("trusted,expected", [(0, 429), (1, 200)])
def test_forwarded_for_is_trusted_only_behind_a_configured_proxy(tmp_path, trusted, expected):
    client = make_app(tmp_path, PWP__THROTTLING__MINUTE=1, PWP__TRUSTED_PROXIES=trusted).test_client()
    client.get("/api/v2/version", headers={"X-Forwarded-For": "203.0.113.1"})
    r = client.get("/api/v2/version", headers={"X-Forwarded-For": "203.0.113.2"})
    assert r.status_code == expected


def test_the_api_hot_path_is_counted_and_refused_with_flasks_429(tmp_path):
    client = make_app(tmp_path, PWP__THROTTLING__MINUTE=2).test_client()
    body = {"push": {"payload": "x"}}
    assert [client.post("/api/v2/pushes", json=body).status_code for _ in range(2)] == [201, 201]
    refused = client.post("/api/v2/pushes", json=body)
    assert refused.status_code == 429
    assert refused.get_json() == {"status": 429, "error": "Too Many Requests"}
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["Cache-Control"] == "no-store"


def test_a_browser_gets_the_error_page_with_retry_after(tmp_path):
    client = make_app(tmp_path, PWP__THROTTLING__SECOND=1).test_client()
    assert client.get("/").status_code == 200
    refused = client.get("/")
    assert refused.status_code == 429 and refused.mimetype == "text/html"
    assert b"Too Many Requests" in refused.data
    assert 0 < int(refused.headers["Retry-After"]) <= 1


def test_static_assets_and_the_health_check_are_not_counted(tmp_path):
    client = make_app(tmp_path, PWP__THROTTLING__MINUTE=1).test_client()
    for _ in range(3):
        assert client.get("/up").status_code == 200
        response = client.get("/static/app.css")
        assert response.status_code == 200
        response.close()
    assert client.get("/api/v2/version").status_code == 200
    assert client.get("/api/v2/version").status_code == 429


def test_requests_are_served_when_the_storage_is_unreachable(tmp_path, caplog):
    client = make_app(tmp_path, PWP__THROTTLING__MINUTE=1,
                      PWP__THROTTLING__STORAGE_URI="redis://127.0.0.1:1/0").test_client()
    assert [client.get("/api/v2/version").status_code for _ in range(3)] == [200] * 3
    assert "throttling storage unavailable" in caplog.text


def _throttle(app):
    """The app's Throttle layer (inside ProxyFix and the other WSGI layers)."""
    from pwp.throttling import Throttle
    layer = app.wsgi_app
    while not isinstance(layer, Throttle):
        layer = getattr(layer, "app", None) or getattr(layer, "wsgi_app")  # (no layer: AttributeError)
    return layer


def test_a_redis_that_never_answers_holds_no_request_and_is_left_alone_a_while(tmp_path, caplog):
    import socket
    from pwp.throttling import BACKOFF_SECONDS, REDIS_TIMEOUT
    with socket.socket() as silent:  # takes connections (its backlog) and answers nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent.setblocking(False)
        port = silent.getsockname()[1]
        app = make_app(tmp_path, PWP__THROTTLING__MINUTE=1,
                       PWP__THROTTLING__STORAGE_URI=f"redis://127.0.0.1:{port}/0")
        throttle = _throttle(app)
        now = [1000.0]
        throttle.clock = lambda: now[0]
        client = app.test_client()
        started = time.monotonic()
        assert client.get("/api/v2/version").status_code == 200  # after REDIS_TIMEOUT, uncounted
        assert time.monotonic() - started < REDIS_TIMEOUT + 2  # (it waited for ever before)
        assert "throttling storage unavailable" in caplog.text
        silent.accept()[0].close()
        for _ in range(3):  # meanwhile: no connection tried, no wait
            assert client.get("/api/v2/version").status_code == 200
        with pytest.raises(BlockingIOError):
            silent.accept()
        now[0] += BACKOFF_SECONDS + 1
        assert client.get("/api/v2/version").status_code == 200
        silent.accept()[0].close()  # tried again


def test_the_uris_own_redis_timeouts_win(tmp_path):
    app = make_app(tmp_path, PWP__THROTTLING__MINUTE=1, PWP__THROTTLING__STORAGE_URI=REDIS_URL + "?socket_timeout=2")
    pool = _throttle(app).strategy.storage.storage.connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 2
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.5
