"""Several instances on one database whose master keys differ, as an operator who skips a
step of the key rotation leaves them (README, "Key rotation"): the instance that cannot open
a push says why, in its log and in a 503, instead of a 500 with a traceback; it spends no
view of the push; and once `rotate-key` has moved the database to keys it lacks, it stops
taking pushes that the other instances could not read.
"""
import http.client
import json
import os
import re
import socket
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.fernet import Fernet

from conftest import TEST_MASTER_KEY, bearer, make_config
from pwp import create_app
from pwp.errors import KeysOutOfDate
from pwp.models import db
from servers import flask, gunicorn, server_env, stop

pytestmark = pytest.mark.slow

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
STALE = "this instance's PWPUSH_MASTER_KEY"


def two_instances(database_url, tmp_path):
    """Environments of an instance left on the old key alone and one already given
    NEW,OLD (the rotation's first step skipped)."""
    old = server_env(tmp_path / "instance-old", database_url, PWPUSH_MASTER_KEY=OLD, SECRET_KEY="s" * 40)
    new = server_env(tmp_path / "instance-new", database_url, PWPUSH_MASTER_KEY=f"{NEW},{OLD}",
                     SECRET_KEY="s" * 40)
    return old, new


def create(server, views):
    status, body = server.json("POST", "/api/v2/pushes", body={
        "push": {"payload": "the secret", "expire_after_views": views}})
    assert status == 201
    return body["url_token"]


def test_an_instance_without_the_key_of_a_push_answers_503_and_spends_no_view(database_url, tmp_path):
    env_old, env_new = two_instances(database_url, tmp_path)
    # The old one first: the database's key check is then under OLD, which NEW,OLD opens.
    with gunicorn(env_old, tmp_path / "old.log") as old, gunicorn(env_new, tmp_path / "new.log") as new:
        for views in (1, 2):
            url_token = create(new, views)  # encrypted under NEW
            status, body = old.json("GET", f"/api/v2/pushes/{url_token}")
            assert status == 503, body
            assert "Traceback" not in old.logs()
            assert STALE in old.logs() and "cannot decrypt" in old.logs()
            page_status, _headers, page = old.request("GET", f"/p/{url_token}")
            assert page_status == 503 and b"encryption keys are out of date" in page
            # No view was spent: the push still has all of them on the instance with the key.
            for _ in range(views):
                status, body = new.json("GET", f"/api/v2/pushes/{url_token}")
                assert (status, body["payload"]) == (200, "the secret")
            status, body = new.json("GET", f"/api/v2/pushes/{url_token}")
            assert (status, body["expired"], body["payload"]) == (200, True, None)


def test_rotate_key_refuses_while_a_running_instance_lacks_the_new_key(database_url, tmp_path):
    """The old instance, still on OLD alone, would lose its reads and writes: rotate-key names
    it and changes nothing, unless --force; once it has stopped (its row deleted as it ends),
    rotate-key runs."""
    env_old, env_new = two_instances(database_url, tmp_path)
    with gunicorn(env_old, tmp_path / "old.log") as old, gunicorn(env_new, tmp_path / "new.log") as new:
        url_token = create(old, 2)
        refused = flask(env_new, "rotate-key", check=False)
        (pid,) = re.findall(r"Booting worker with pid: (\d+)", old.logs())
        assert refused.returncode == 1 and "done" not in refused.stdout, refused
        assert f"1 running server process does not encrypt with the new key (the first in PWPUSH_MASTER_KEY): " \
               f"{socket.gethostname()} (pid {pid}, seen " in refused.stderr, refused.stderr
        assert "--force" in refused.stderr and OLD not in refused.stderr and NEW not in refused.stderr
        status, body = old.json("GET", f"/api/v2/pushes/{url_token}")
        assert (status, body["payload"]) == (200, "the secret")
        assert new.request("GET", "/up")[0] == 200
    assert "done, 1 pushes re-encrypted" in flask(env_new, "rotate-key").stdout


def test_rotate_key_ignores_an_instance_not_seen_for_a_while(app, database_url, tmp_path):
    """A process killed without ending leaves its row: ignored once not seen for STALE (the
    app here, on the tests' key alone, stands for one)."""
    from conftest import sql
    from pwp import instances

    rotating = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                          instance_path=str(tmp_path / "cli"), command_line=True)
    with rotating.app_context():
        refused = rotating.test_cli_runner().invoke(args=["rotate-key"])
        assert refused.exit_code == 1 and "does not encrypt with the new key" in refused.output, refused.output
        with db.engine.connect() as connection:  # (the records' clock)
            seen = instances.database_now(connection) - instances.STALE
        # (with no record of where it ran: a process elsewhere; this one's is seen to run here)
        sql(app, "UPDATE instance_keys SET seen_at = :seen, process = NULL", seen=seen)
        ran = rotating.test_cli_runner().invoke(args=["rotate-key"])
        assert ran.exit_code == 0 and "done, 0 pushes" in ran.output, ran.output
        db.engine.dispose()


@pytest.mark.parametrize("ahead", [timedelta(minutes=6), -timedelta(hours=1)])
def test_rotate_key_judges_when_an_instance_was_seen_by_the_database_clock(app, database_url, tmp_path, clock, ahead):
    """The hosts' clocks differ: the web host's (the app here, recorded at its start) behind
    the one running rotate-key by more than STALE was ignored as if stopped; one ahead was
    "seen -3600 s ago". Both times are the database's, whatever the hosts' clocks say."""
    clock.now = datetime.now(timezone.utc).replace(tzinfo=None) + ahead  # (rotate-key's host)
    rotating = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                          instance_path=str(tmp_path / "cli"), command_line=True)
    with rotating.app_context():
        refused = rotating.test_cli_runner().invoke(args=["rotate-key"])
        db.engine.dispose()
    assert refused.exit_code == 1 and "does not encrypt with the new key" in refused.output, refused.output
    assert 0 <= int(re.search(r"seen (-?\d+) s ago", refused.output).group(1)) < 60, refused.output


def test_rotate_key_refuses_while_a_running_instance_encrypts_with_the_old_key(database_url, tmp_path):
    """One given the new key second (OLD,NEW: the rotation's first step) opens what the
    rotation writes, but keeps encrypting what it stores under the old key, which nothing
    opens once that key is dropped: rotate-key refuses until it has NEW,OLD."""
    halfway = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{TEST_MASTER_KEY},{NEW}"),
                         instance_path=str(tmp_path / "halfway"))
    rotating = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                          instance_path=str(tmp_path / "cli"), command_line=True)
    with rotating.app_context():
        refused = rotating.test_cli_runner().invoke(args=["rotate-key"])
        assert refused.exit_code == 1, refused.output
        assert "1 running server process does not encrypt with the new key" in refused.output, refused.output
        assert "NEW,OLD" in refused.output and "OLD,NEW" not in refused.output
        db.engine.dispose()
    with halfway.app_context():
        db.engine.dispose()


def sqlite_locks(path, pid) -> list[str]:
    """The POSIX locks a process holds on a file, as Linux lists them in /proc/locks."""
    inode = f":{os.stat(path).st_ino} "
    with open("/proc/locks", encoding="ascii") as locks:
        return [line for line in locks if inode in line and line.split()[4] == str(pid)]


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="reads the process's file locks in Linux's /proc/locks")
def test_a_heartbeat_leaves_no_sqlite_connection_open_across_a_fork(tmp_path):
    """Under gunicorn --preload the master records its keys every minute and forks the
    workers that replace others (max_requests, a timeout): an SQLite connection it kept open
    holds a shared lock on the file (as any does in WAL mode), which a worker forked then
    believes it holds too, though no other process sees it (SQLite: "do not carry an open
    connection across a fork"); another's last close then checkpoints and deletes the WAL
    that worker still writes to. Seen by hand: a replaced worker held no lock."""
    path = tmp_path / "pwpush.sqlite3"
    app = create_app(make_config(f"sqlite:///{path}"), instance_path=str(tmp_path / "instance"))
    assert sqlite_locks(path, os.getpid()) == []  # (create_app closed what it opened)
    app.extensions["pwpush_heartbeat"].record()  # what its thread does every minute
    assert sqlite_locks(path, os.getpid()) == []


def test_an_instance_left_behind_by_rotate_key_stops_taking_pushes(database_url, tmp_path):
    env_old, env_new = two_instances(database_url, tmp_path)
    with gunicorn(env_old, tmp_path / "old.log", workers=2) as old, gunicorn(env_new, tmp_path / "new.log") as new:
        url_token = create(old, 2)
        forced = flask(env_new, "rotate-key", "--force")  # everything, and the key check, now under NEW
        assert "rotate-key: --force: " in forced.stderr and "the new key" in forced.stderr, forced.stderr
        # Every worker process of it answers /up 503 at once, not only one that met a push
        # it cannot open: the load balancer takes the whole instance out.
        assert [old.request("GET", "/up")[0] for _ in range(8)] == [503] * 8
        assert old.logs().count("rotate-key has moved the database") <= 2
        status, _body = old.json("GET", f"/api/v2/pushes/{url_token}")
        assert status == 503
        assert "rotate-key" in old.logs()
        # Its new pushes would be under OLD, which the others drop at the rotation's end. (On
        # a connection kept alive after an /up, so the worker is one that has read the key check:
        # another learns at its /up, an unreadable push or its next record, within a minute.
        # A new connection's create went to either worker: one in 4 CI runs the other's, 201.)
        conn = http.client.HTTPConnection("127.0.0.1", old.port, timeout=30)
        try:
            conn.request("GET", "/up")
            up = conn.getresponse()
            assert (up.status, up.getheader("Connection"), up.read() is not None) == (503, "keep-alive", True)
            conn.request("POST", "/api/v2/pushes", body=json.dumps({"push": {"payload": "x"}}),
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            status, body = response.status, response.read()
        finally:
            conn.close()
        assert status == 503, body
        assert old.request("GET", "/up")[0] == 503  # the load balancer takes it out
        status, body = new.json("GET", f"/api/v2/pushes/{url_token}")
        assert (status, body["payload"], body["views_remaining"]) == (200, "the secret", 1)


def test_an_instance_signing_with_another_secret_key_than_the_others_is_warned_about(database_url, tmp_path):
    """Two instances without SECRET_KEY each generate their own: behind one load balancer
    each refuses the other's session cookies and form tokens (people signed out at random,
    "This form could not be sent"). The second to start says so."""
    keys = {"PWPUSH_MASTER_KEY": OLD}
    env_a = server_env(tmp_path / "instance-a", database_url, **keys)
    env_b = server_env(tmp_path / "instance-b", database_url, **keys)
    with gunicorn(env_a, tmp_path / "a.log") as a, gunicorn(env_b, tmp_path / "b.log") as b:
        assert "SECRET_KEY" not in a.logs()
        assert "differs from the one another instance" in b.logs() and "same SECRET_KEY" in b.logs()
    # Given the same one, none says it.
    env_c = server_env(tmp_path / "instance-c", database_url, **keys,
                       SECRET_KEY=(tmp_path / "instance-b" / "secret_key").read_text())
    with gunicorn(env_c, tmp_path / "c.log") as c:
        assert "differs from the one another instance" not in c.logs()
    # Each says which key it means: b the one it generated, d its setting (it named b's kind
    # of file, "without the setting: .../secret_key", when SECRET_KEY was set too).
    assert f"the one generated in {tmp_path / 'instance-b' / 'secret_key'} (SECRET_KEY is not set)" in b.logs()
    env_d = server_env(tmp_path / "instance-d", database_url, **keys, SECRET_KEY="d" * 64)
    with gunicorn(env_d, tmp_path / "d.log") as d:
        assert "SECRET_KEY: this instance's SECRET_KEY setting differs from the one another instance" in d.logs()
        assert "instance-d" not in d.logs().split("SECRET_KEY: ")[1].split("\n")[0]


def test_a_note_another_instances_key_encrypted_is_a_503_on_the_owners_list(app, make_user, database_url,
                                                                              tmp_path, caplog):
    _user_id, token = make_user()
    newer = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                       instance_path=str(tmp_path / "newer"))
    try:
        created = newer.test_client().post("/api/v2/pushes", headers=bearer(token),
                                           json={"push": {"payload": "p", "note": "the note"}})
        assert created.status_code == 201
        answer = app.test_client().get("/api/v2/pushes/active", headers=bearer(token))
        assert answer.status_code == 503, answer.data
        assert "keys are out of date" in answer.get_json()["error"]
        assert STALE in caplog.text and "Traceback" not in caplog.text
    finally:
        with newer.app_context():
            db.engine.dispose()


def test_an_instance_left_behind_by_rotate_key_writes_no_secret_under_its_old_key(app, client, make_user, clock,
                                                                                  database_url, tmp_path):
    """Once it found rotate-key moved the database to keys it lacks, an instance writes no
    stored secret under its old key: not a push, and neither a note, a file nor a two-factor
    secret, which the other instances could not read once the old key is dropped (the
    account locked out of its sign-in)."""
    import pyotp
    from test_web_two_factor import SECRET
    from webutil import create as web_create, sign_in

    from pwp import pushes

    sign_in(client, make_user)
    owned = web_create(client, payload="mine", expire_after_days=7, expire_after_views=5)
    other = web_create(client, payload="another")
    newer = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                       instance_path=str(tmp_path / "newer"))
    try:
        with newer.app_context():
            pushes.rotate_keys()  # what `flask rotate-key` runs, there: the key check under NEW
        assert client.get(f"/p/{other}").status_code == 503  # this process now knows it
        edited = client.post(f"/p/{owned}/edit", data={
            "push[expire_after_days]": "7", "push[expire_after_views]": "5", "push[note]": "a new note"})
        assert edited.status_code == 503
        html = client.get("/users/two_factor").get_data(as_text=True)
        secret = SECRET.search(html).group(1).replace(" ", "")
        turned_on = client.post("/users/two_factor", data={
            "current_password": "correct horse", "code": pyotp.TOTP(secret).at(pushes.unix_seconds(clock.now))})
        assert turned_on.status_code == 503
        with app.app_context():
            rows = db.session.execute(db.text(
                "SELECT (SELECT count(*) FROM pushes WHERE note_ciphertext IS NOT NULL), "
                "(SELECT count(*) FROM users WHERE otp_secret_ciphertext IS NOT NULL)")).one()
            db.session.commit()
        assert tuple(rows) == (0, 0)
    finally:
        with newer.app_context():
            db.engine.dispose()


def _a_view_whose_give_back_waits(app, url_token, now):
    """Start a thread of `app` (whose key does not open the push) that has served a request (its
    connection for retrievals made), then, once the returned event is set, retrieves the push:
    it counts its view, and waits, before giving it back, for a connection of its app's pool,
    which the test holds; return (the thread, the event, what it raised)."""
    import threading

    from pwp import pushes

    go, raised = threading.Event(), []
    opened = app.test_client().post("/api/v2/pushes", json={"push": {"payload": "its own"}}).get_json()["url_token"]

    def view():
        with app.app_context():
            actor = pushes.Actor(ip="10.0.0.1", user_agent="left behind")
            assert pushes.retrieve_open(opened, actor, now).payload == "its own"
            assert go.wait(30)
            try:
                pushes.retrieve_open(url_token, actor, now)
            except Exception as exc:  # (what the request answers: asserted below)
                raised.append(exc)
    thread = threading.Thread(target=view)
    thread.start()
    return thread, go, raised


@pytest.mark.parametrize("views", [2, 3])
def test_a_view_given_back_leaves_the_other_viewers_views_and_their_expiry(app, database_url, tmp_path, views):
    """Another viewer's view between the count and the give-back (through an instance with
    the key, at the same instant): the push it used up stays used up (its count is not put
    back under its limit), and its event stays in the audit log. The view left behind is held
    between the two by its app's pool, all of whose connections the test holds: the same on
    SQLite, where the count and the give-back are two transactions too."""
    import time

    from conftest import NOW, sql
    from pwp import pushes
    from pwp.errors import KeysOutOfDate
    from pwp.models import AuditKind

    newer = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                       instance_path=str(tmp_path / "newer"))
    try:
        created = newer.test_client().post("/api/v2/pushes", json={
            "push": {"payload": "the secret", "expire_after_views": views}})
        url_token = created.get_json()["url_token"]
        thread, go, raised = _a_view_whose_give_back_waits(app, url_token, NOW)
        with app.app_context():
            pool = db.engine.pool
            held = [db.engine.connect() for _ in range(pool.size() + pool._max_overflow)]
        go.set()
        deadline = time.monotonic() + 30
        while sql(newer, "SELECT view_count FROM pushes WHERE url_token = :t", t=url_token) != [(1,)]:
            assert time.monotonic() < deadline and thread.is_alive(), "the view left behind never counted"
            time.sleep(0.005)  # (polling for its count; nothing depends on how long)
        with newer.app_context():
            seen = pushes.retrieve_open(url_token, pushes.Actor(ip="10.0.0.2", user_agent="up to date"), NOW)
            assert seen.payload == "the secret" and seen.last_view == (views == 2)
        assert thread.is_alive()  # (still held before its give-back)
        for connection in held:
            connection.close()
        thread.join()
        assert len(raised) == 1 and isinstance(raised[0], KeysOutOfDate)
        (count, expired), = sql(app, "SELECT view_count, expired FROM pushes WHERE url_token = :t", t=url_token)
        events = sql(app, "SELECT ip FROM audit_logs WHERE kind = :view AND push_id = "
                          "(SELECT id FROM pushes WHERE url_token = :t)", view=AuditKind.view, t=url_token)
        if views == 2:  # used up by the other view: as it was, the view left behind counted
            assert (count, expired) == (2, True)
            assert sorted(ip for ip, in events) == ["10.0.0.1", "10.0.0.2"]
        else:
            assert (count, expired) == (1, False)
            assert events == [("10.0.0.2",)]
    finally:
        with newer.app_context():
            db.engine.dispose()


def test_an_instance_without_the_key_logs_a_line_a_minute_at_most(app, client, database_url, tmp_path, caplog,
                                                                   clock):
    """A busy instance left behind met a push it cannot open on most retrievals: a line each
    flooded its log. One a minute at most, saying how many it stands for; no token in it."""
    import logging

    newer = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                       instance_path=str(tmp_path / "newer"))
    try:
        tokens = [newer.test_client().post("/api/v2/pushes", json={"push": {"payload": "p"}}).get_json()["url_token"]
                  for _ in range(3)]
        with caplog.at_level(logging.ERROR, logger="pwp"):
            for url_token in tokens * 2:
                assert client.get(f"/api/v2/pushes/{url_token}").status_code == 503
            assert caplog.text.count(STALE) == 1, caplog.text
            clock.advance(minutes=1)
            assert client.get(f"/api/v2/pushes/{tokens[0]}").status_code == 503
        assert caplog.text.count(STALE) == 2, caplog.text
        assert "(and 5 other stored secrets since the last such line)" in caplog.text
        assert not any(url_token in caplog.text for url_token in tokens)
    finally:
        with newer.app_context():
            db.engine.dispose()


def test_up_answers_503_without_a_traceback_while_the_database_is_unreachable(tmp_path, caplog):
    """/up reads the database's key check: a database it cannot reach is a 503 (the load
    balancer takes the instance out, as every request would fail), not a 500 and a
    traceback on every poll."""
    import psycopg

    from conftest import DATABASES, PG_ADMIN_URL, PG_BASE, throwaway_pg_database

    if "postgresql" not in DATABASES:
        pytest.skip("PostgreSQL is not among PWPUSH_TEST_DATABASES")
    with throwaway_pg_database("h_keys_up") as name:
        app = create_app(make_config(f"{PG_BASE}/{name}"), instance_path=str(tmp_path / "instance"))
        assert app.test_client().get("/up").status_code == 200
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        assert app.test_client().get("/up").status_code == 503
        assert "Traceback" not in caplog.text and "Exception on" not in caplog.text, caplog.text
        with app.app_context():
            db.engine.dispose()


def test_up_answers_503_without_a_traceback_on_any_database_error(tmp_path, caplog):
    """Not only a database out of reach (OperationalError): one whose key check table is gone
    (a ProgrammingError on PostgreSQL) or a pool left without a connection (TimeoutError,
    an SQLAlchemyError but no DBAPIError) is as unusable: a 503, no traceback."""
    import psycopg

    from conftest import DATABASES, PG_BASE, throwaway_pg_database

    if "postgresql" not in DATABASES:
        pytest.skip("PostgreSQL is not among PWPUSH_TEST_DATABASES")
    with throwaway_pg_database("h_keys2_up") as name:
        app = create_app(make_config(f"{PG_BASE}/{name}"), instance_path=str(tmp_path / "instance"))
        assert app.test_client().get("/up").status_code == 200
        with psycopg.connect(f"{PG_BASE}/{name}", autocommit=True) as conn:
            conn.execute("DROP TABLE key_check")
        assert app.test_client().get("/up").status_code == 503
        assert "Traceback" not in caplog.text and "Exception on" not in caplog.text, caplog.text
        with app.app_context():
            db.engine.dispose()


def test_an_instance_started_after_rotate_key_with_the_old_key_first_takes_no_pushes(database_url, tmp_path):
    """One started after rotate-key with OLD,NEW (an autoscaler's stale template, a forgotten
    host) opens the key check with its second key: it started as any other and encrypted every
    new push under OLD, lost once OLD is dropped. rotate-key records the keys it retired: such
    an instance refuses new pushes (the out-of-date 503) and answers /up 503 from every worker,
    says which host's PWPUSH_MASTER_KEY must put the new key first (no key in its log), and
    still serves the pushes it can open, made before the rotation and after it."""
    env_old, env_new = two_instances(database_url, tmp_path)
    env_stale = server_env(tmp_path / "instance-stale", database_url, PWPUSH_MASTER_KEY=f"{OLD},{NEW}",
                           SECRET_KEY="s" * 40)
    with gunicorn(env_old, tmp_path / "old.log") as old:
        before = create(old, 2)
    assert "done, 1 pushes re-encrypted" in flask(env_new, "rotate-key").stdout
    with gunicorn(env_new, tmp_path / "new.log") as new, \
            gunicorn(env_stale, tmp_path / "stale.log", workers=2) as stale:
        after = create(new, 2)
        for _ in range(4):
            status, body = stale.json("POST", "/api/v2/pushes", body={"push": {"payload": "x"}})
            assert (status, body) == (503, {"error": KeysOutOfDate.message}), body
            assert stale.request("GET", "/up")[0] == 503
        for url_token in (before, after):
            status, body = stale.json("GET", f"/api/v2/pushes/{url_token}")
            assert (status, body["payload"]) == (200, "the secret"), body
        assert f"PWPUSH_MASTER_KEY on {socket.gethostname()}" in stale.logs(), stale.logs()
        assert "retired by rotate-key" in stale.logs() and "first" in stale.logs()
        assert OLD not in stale.logs() and NEW not in stale.logs()
        assert new.request("GET", "/up")[0] == 200
    with gunicorn(env_new, tmp_path / "new.log") as new:
        for url_token in (before, after):  # (the stale one made nothing the new key alone cannot open)
            status, body = new.json("GET", f"/api/v2/pushes/{url_token}")
            assert (status, body["payload"]) == (200, "the secret"), body


def test_the_documented_rotation_steps_keep_taking_pushes_throughout(database_url, tmp_path):
    """Two instances on OLD, given OLD,NEW one at a time, then NEW,OLD one at a time, then
    rotate-key (exit 0: it retires OLD), then NEW alone: both take and serve pushes at every
    step, the ones on NEW,OLD too once OLD is retired, and the new key alone opens them all."""
    servers, made = {}, []

    def restart(stack, name, keys):
        if name in servers:
            stop(servers[name].process)
        env = server_env(tmp_path / name, database_url, PWPUSH_MASTER_KEY=keys, SECRET_KEY="s" * 40)
        servers[name] = stack.enter_context(gunicorn(env, tmp_path / f"{name}-{len(made)}.log"))
        made.extend(create(server, 9) for server in servers.values())

    with ExitStack() as stack:
        for keys in (OLD, f"{OLD},{NEW}", f"{NEW},{OLD}"):
            for name in ("a", "b"):
                restart(stack, name, keys)
        ran = flask(server_env(tmp_path / "cli", database_url, PWPUSH_MASTER_KEY=f"{NEW},{OLD}"), "rotate-key",
                    check=False)
        assert ran.returncode == 0 and f"done, {len(made)} pushes re-encrypted" in ran.stdout, ran.stderr
        made.extend(create(server, 9) for server in servers.values())
        assert [server.request("GET", "/up")[0] for server in servers.values()] == [200, 200]
        for name in ("a", "b"):
            restart(stack, name, NEW)
        for server in servers.values():
            for url_token in made:
                status, body = server.json("GET", f"/api/v2/pushes/{url_token}")
                assert (status, body["payload"]) == (200, "the secret"), body
