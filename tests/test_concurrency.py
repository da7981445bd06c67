"""Concurrent retrievals against real gunicorn workers and app processes.

N simultaneous readers of a push with V views left must get exactly V payloads:
across the workers of one gunicorn, and across two app processes sharing one
database. Runs on SQLite and on PostgreSQL (the `database_url` fixture).
"""
import http.client
import json
import re
import threading
from urllib.parse import urlencode

import pytest
from cryptography.fernet import Fernet

# Helpers come from servers.py, not `from conftest import`: another conftest.py under
# tests/ would shadow that module name.
from servers import bearer, create_user, flask, gunicorn, server_env

pytestmark = pytest.mark.slow

CASES = [(1, 20), (3, 30)]  # (expire_after_views, simultaneous readers)
ROUNDS = 3  # pushes per case: more chances for a race to show


def simultaneous_requests(ports, method, path, count, headers=None, bodies=None, paths=None):
    """Send `count` requests from as many threads at once (round-robin over ports); return
    the results. headers, bodies and paths (else path for all), if given, hold one entry per request.

    Each thread connects first and waits at a barrier, so the requests leave together.
    A result is (status, body bytes) or the exception a thread met.
    """
    barrier = threading.Barrier(count, timeout=60)
    results = [None] * count

    def send(i):
        conn = http.client.HTTPConnection("127.0.0.1", ports[i % len(ports)], timeout=60)
        try:
            conn.connect()
            barrier.wait()
            conn.request(method, paths[i] if paths else path, body=bodies[i] if bodies else None,
                         headers=headers[i] if headers else {})
            response = conn.getresponse()
            results[i] = (response.status, response.read())
        except Exception as exc:  # reported by the caller's assertions
            results[i] = exc
        finally:
            conn.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return results


def simultaneous_gets(ports, path, readers, method="GET", headers=None):
    """simultaneous_requests with the same headers for each, JSON answers decoded."""
    results = simultaneous_requests(ports, method, path, readers, headers=[headers or {}] * readers)
    return [(r[0], json.loads(r[1])) if isinstance(r, tuple) else r for r in results]


def assert_exactly(views, results, payload):
    """Exactly `views` readers got the payload; every other one saw it expired with no payload."""
    errors = [r for r in results if not isinstance(r, tuple)]
    assert not errors, f"requests failed: {errors[:3]}"
    statuses = sorted({status for status, _body in results})
    assert statuses == [200], f"statuses {statuses}"
    winners = [body for _status, body in results if body["payload"] is not None]
    losers = [body for _status, body in results if body["payload"] is None]
    assert len(winners) == views
    assert all(body["payload"] == payload for body in winners)
    assert all(body["expired"] is True for body in losers)
    assert len(losers) == len(results) - views


def run_case(servers, token, views, readers, round_no):
    """Create a push through the first server, read it concurrently through all of them."""
    payload = f"concurrency-{views}-{readers}-{round_no} \u00e9\u2603"
    status, created = servers[0].json("POST", "/api/v2/pushes", headers=bearer(token), body={
        "push": {"payload": payload, "expire_after_views": views, "retrieval_step": False}})
    assert status == 201
    url_token = created["url_token"]
    # Anonymous readers: the owner's own views would not be counted.
    results = simultaneous_gets([s.port for s in servers], f"/api/v2/pushes/{url_token}", readers)
    assert_exactly(views, results, payload)

    status, after = servers[-1].json("GET", f"/api/v2/pushes/{url_token}")
    assert (status, after["expired"], after["payload"], after["views_remaining"]) == (200, True, None, 0)
    status, audit = servers[0].json("GET", f"/api/v2/pushes/{url_token}/audit", headers=bearer(token))
    assert status == 200
    kinds = [entry["kind"] for entry in audit["logs"]]
    assert kinds.count("view") == views
    # Every losing reader, plus the check above, is a failed view.
    assert kinds.count("failed_view") == readers - views + 1


@pytest.mark.parametrize(("views", "readers"), CASES)
def test_concurrent_reads_across_four_workers_get_exactly_the_allowed_views(
        database_url, tmp_path, views, readers):
    env = server_env(tmp_path / "instance", database_url, PWPUSH_MASTER_KEY=Fernet.generate_key().decode())
    token = create_user(env, "owner@example.com")
    with gunicorn(env, tmp_path / "gunicorn.log", workers=4) as server:
        for round_no in range(ROUNDS):
            run_case([server], token, views, readers, round_no)


@pytest.mark.parametrize(("views", "readers"), CASES)
def test_two_app_processes_sharing_one_database_give_exactly_the_allowed_views(
        database_url, tmp_path, views, readers):
    # One database (a PostgreSQL database, or one SQLite file) and the same keys;
    # each process has its own instance folder, as on two machines.
    keys = {"PWPUSH_MASTER_KEY": Fernet.generate_key().decode(), "SECRET_KEY": "shared-secret-key"}
    env_a = server_env(tmp_path / "instance-a", database_url, **keys)
    env_b = server_env(tmp_path / "instance-b", database_url, **keys)
    token = create_user(env_a, "owner@example.com")
    with gunicorn(env_a, tmp_path / "a.log", workers=2) as a, \
            gunicorn(env_b, tmp_path / "b.log", workers=2) as b:
        assert a.port != b.port
        for round_no in range(ROUNDS):
            run_case([a, b], token, views, readers, round_no)


def test_concurrent_deletions_log_one_expire_event(database_url, tmp_path):
    """Upstream: deleting an expired push answers 200 and logs nothing. Owners' deletions
    arriving together must leave one `expire` event, not one per request."""
    env = server_env(tmp_path / "instance", database_url, PWPUSH_MASTER_KEY=Fernet.generate_key().decode())
    token = create_user(env, "owner@example.com")
    with gunicorn(env, tmp_path / "gunicorn.log", workers=4) as server:
        for _round in range(ROUNDS):
            status, created = server.json("POST", "/api/v2/pushes", headers=bearer(token),
                                          body={"push": {"payload": "to be deleted"}})
            assert status == 201
            path = f"/api/v2/pushes/{created['url_token']}"
            results = simultaneous_gets([server.port], path, 8, method="DELETE", headers=bearer(token))
            assert [(status, body["expired"], body["deleted"], body["payload"] if "payload" in body else None)
                    for status, body in results] == [(200, True, True, None)] * 8
            status, audit = server.json("GET", path + "/audit", headers=bearer(token))
            assert [entry["kind"] for entry in audit["logs"]] == ["creation", "expire"]


def test_simultaneous_sign_ups_of_one_address_make_one_account(database_url, tmp_path):
    """The second of two sign-ups at once is told the address is taken (422), never a 500."""
    # Eight clients (sign-ups are throttled per IP): behind a proxy that names them.
    env = server_env(tmp_path / "instance", database_url, PWPUSH_MASTER_KEY=Fernet.generate_key().decode(),
                     PWP__TRUSTED_PROXIES="1")
    with gunicorn(env, tmp_path / "gunicorn.log", workers=4) as server:
        headers, bodies = [], []
        for i in range(8):  # each with its own session and CSRF token
            status, got, page = server.request("GET", "/users/sign_up")
            assert status == 200
            csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
            headers.append({"Cookie": got["Set-Cookie"].split(";")[0], "X-Forwarded-For": f"203.0.113.{i + 1}",
                            "Content-Type": "application/x-www-form-urlencoded"})
            bodies.append(urlencode({"csrf_token": csrf, "email": "race@example.com",
                                     "password": "racepass12", "password_confirmation": "racepass12"}))
        results = simultaneous_requests([server.port], "POST", "/users/sign_up", 8, headers, bodies)
        statuses = sorted(r[0] if isinstance(r, tuple) else repr(r) for r in results)
        assert statuses == [302] + [422] * 7
        assert all(b"already registered" in body for status, body in results if status == 422)
        assert "Traceback" not in server.logs()


def _signed_in_admins(server, env, count):
    """Make `count` administrators (ids 1..count) and sign each in from its own address;
    return their (cookie header, CSRF token) in id order."""
    sessions = []
    for i in range(1, count + 1):
        flask(env, "users", "create", f"admin{i}@example.com", "--admin", "--password", "adminpass12")
        status, got, page = server.request("GET", "/users/sign_in")
        csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
        headers = {"Cookie": got["Set-Cookie"].split(";")[0], "X-Forwarded-For": f"203.0.113.{i}",
                   "Content-Type": "application/x-www-form-urlencoded"}
        status, got, _ = server.request("POST", "/users/sign_in", headers=headers, body=urlencode(
            {"csrf_token": csrf, "email": f"admin{i}@example.com", "password": "adminpass12"}))
        assert status == 302, status
        headers["Cookie"] = got["Set-Cookie"].split(";")[0]
        _, got, page = server.request("GET", "/admin/users", headers=headers)  # (the new session's token)
        headers["Cookie"] = got["Set-Cookie"].split(";")[0]
        sessions.append((headers, re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()))
    return sessions


def _give_pushes(server, env, database_url, accounts, count):
    """Give each of the accounts (ids 1..accounts) `count` pushes: one made through the API,
    copies of it written directly."""
    from sqlalchemy import create_engine, insert, select

    from pwp.config import database_uri
    from pwp.models import Push

    token = flask(env, "users", "token", "admin1@example.com").stdout.strip().splitlines()[-1]
    status, created = server.json("POST", "/api/v2/pushes", headers=bearer(token), body={"push": {"payload": "x"}})
    assert status == 201
    engine = create_engine(database_uri(database_url))
    with engine.begin() as conn:
        row = dict(conn.execute(select(Push.__table__).where(Push.url_token == created["url_token"])).mappings().one())
        del row["id"]
        conn.execute(insert(Push.__table__), [
            {**row, "url_token": f"{created['url_token']}{user}x{i}", "user_id": user}
            for user in range(1, accounts + 1) for i in range(count)])
    engine.dispose()


def _ring(server, sessions, action):
    """Each administrator changes the next one's account (the last the first's), all at once."""
    count = len(sessions)
    # "done": sent back to the list; refused under the lock: home; or not found (the request
    # came after its administrator's revocation).
    return [("done" if b'href="/admin/users"' in r[1] else r[0]) if isinstance(r, tuple) else repr(r)
            for r in simultaneous_requests(
        [server.port], "POST", "", count, [headers for headers, _ in sessions],
        [urlencode({"csrf_token": csrf}) for _, csrf in sessions],
        paths=[f"/admin/users/{(i + 1) % count + 1}/{action}" for i in range(count)])]


def test_administrators_revoking_or_deleting_each_other_at_once_leave_one(database_url, tmp_path):
    """Six administrators each revoke the next at once, then each delete the next: the
    administrators' rows are locked, so each change sees the ones before it and one made by
    an administrator revoked or deleted meanwhile is refused: at least one is left (not
    none, as six changes each checking only its own administrator would leave), and no 500."""
    env = server_env(tmp_path / "instance", database_url, PWPUSH_MASTER_KEY=Fernet.generate_key().decode(),
                     PWP__TRUSTED_PROXIES="1")
    with gunicorn(env, tmp_path / "gunicorn.log", workers=4) as server:
        sessions = _signed_in_admins(server, env, 6)
        statuses = _ring(server, sessions, "revoke_admin")
        assert set(statuses) <= {"done", 302, 404}, statuses
        listed = flask(env, "users", "list").stdout.splitlines()[1:]
        admins = [i for i, line in enumerate(listed) if line.split()[1] == "yes"]
        # As if one after the other, in some order: at least the last to act is left.
        assert len(admins) == 6 - statuses.count("done") >= 1, (statuses, listed)
        headers, csrf = sessions[admins[0]]
        for i in set(range(6)) - set(admins):  # (made administrators again by one left)
            assert server.request("POST", f"/admin/users/{i + 1}/admin", headers=headers,
                                  body=urlencode({"csrf_token": csrf}))[0] == 302
        _give_pushes(server, env, database_url, 6, 2000)  # (a delete takes a while: the changes overlap)
        statuses = _ring(server, sessions, "delete")
        assert set(statuses) <= {"done", 302, 404}, statuses
        listed = flask(env, "users", "list").stdout.splitlines()[1:]
        assert len(listed) == 6 - statuses.count("done") >= 1, (statuses, listed)
        assert all(line.split()[1] == "yes" for line in listed)
        assert "Traceback" not in server.logs()
