"""rotate-key and the server processes' records in instance_keys (pwp.instances): a process
killed without ending (kill -9, the OOM killer) on the machine and in the PID namespace
rotate-key runs in is known to be gone at once; one elsewhere keeps the 5-minute rule.
"""
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from datetime import timedelta

import psycopg
import pytest
from cryptography.fernet import Fernet

from conftest import TEST_MASTER_KEY, make_config, sql
from pwp import create_app, instances
from pwp.crypto import fingerprint
from pwp.models import db
from servers import ROOT, flask, server_env

pytestmark = pytest.mark.slow

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()

# A server process with its keys recorded, as gunicorn's worker is once it has loaded the app.
RECORDING = "from pwp import create_app; create_app(); print('recorded', flush=True); import sys; sys.stdin.read()"


def recorded_process(env) -> subprocess.Popen:
    """Start a server process (the app built, its keys recorded), leading a process group of
    its own (as systemd or a container starts it); return once recorded."""
    process = subprocess.Popen([sys.executable, "-c", RECORDING], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, process_group=0)
    assert process.stdout.readline() == "recorded\n"
    return process


def test_rotate_key_knows_a_process_killed_on_this_machine_is_gone(database_url, tmp_path):
    """kill -9 leaves the process's row, seen a moment ago: rotate-key refused for 5 minutes.
    On this machine and in this PID namespace it sees the pid is no longer running, says so,
    deletes the row and rotates."""
    env_old = server_env(tmp_path / "old", database_url, PWPUSH_MASTER_KEY=OLD, SECRET_KEY="s" * 40)
    env_new = server_env(tmp_path / "new", database_url, PWPUSH_MASTER_KEY=f"{NEW},{OLD}", SECRET_KEY="s" * 40)
    process = recorded_process(env_old)
    refused = flask(env_new, "rotate-key", check=False)
    assert refused.returncode == 1 and f"(pid {process.pid}, seen" in refused.stderr, refused.stderr
    # (What an operator whose process is in fact gone, elsewhere, does: wait, not restart again.)
    assert "not seen for 5 minutes" in refused.stderr, refused.stderr
    process.kill()
    assert process.wait() == -signal.SIGKILL  # (reaped: its pid free)
    ran = flask(env_new, "rotate-key", check=False)
    assert ran.returncode == 0, ran.stderr
    assert f"pid {process.pid}: gone (no such process here)" in ran.stderr, ran.stderr
    assert "done, 0 pushes re-encrypted" in ran.stdout
    process.stdin.close()


@pytest.mark.parametrize("own_group", [True, False], ids=["led its group", "in another's group"])
def test_rotate_key_waits_for_the_process_group_a_killed_process_was_in(database_url, tmp_path, own_group):
    """Under gunicorn --preload the master records the keys its forked workers hold: killed,
    its workers serve a moment more, in its process group: the one it led (systemd, a
    container, setsid), or the one it was started in (a script, nohup: it leads none, and its
    pid was free at once, so rotate-key took it for gone and was done as the workers stored
    pushes under the old key). A process is gone once no process of the group it was in is left."""
    env_old = server_env(tmp_path / "old", database_url, PWPUSH_MASTER_KEY=OLD, SECRET_KEY="s" * 40)
    env_new = server_env(tmp_path / "new", database_url, PWPUSH_MASTER_KEY=f"{NEW},{OLD}", SECRET_KEY="s" * 40)
    waiting = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    script = None if own_group else subprocess.Popen(waiting, stdin=subprocess.PIPE, process_group=0)
    master = subprocess.Popen([sys.executable, "-c", RECORDING], cwd=ROOT, env=env_old, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, process_group=0 if own_group else script.pid)
    assert master.stdout.readline() == "recorded\n"
    # Its "worker", in its process group (a child of this test's, which reaps it).
    worker = subprocess.Popen(waiting, stdin=subprocess.PIPE, process_group=master.pid if own_group else script.pid)
    master.kill()
    assert master.wait() == -signal.SIGKILL
    refused = flask(env_new, "rotate-key", check=False)
    assert refused.returncode == 1 and f"(pid {master.pid}, seen" in refused.stderr, refused.stderr
    master.stdin.close()
    for process in [worker] + ([script] if script else []):
        process.stdin.close()
        assert process.wait() == 0
    ran = flask(env_new, "rotate-key", check=False)
    assert ran.returncode == 0 and f"pid {master.pid}: gone (no such process here)" in ran.stderr, ran.stderr


def record(app, pid, process, now):
    """Insert a process's row as pwp.instances records it, with the tests' key alone."""
    sql(app, "INSERT INTO instance_keys (id, host, pid, keys, started_at, seen_at, process) "
             "VALUES (:id, 'web-9', :pid, :keys, :now, :now, :process)",
        id=os.urandom(8).hex(), pid=pid, keys=",".join(app.extensions["pwpush_keyring"].fingerprints),
        now=now, process=process)


def test_rotate_key_judges_only_the_processes_it_can_know(app, database_url, tmp_path):
    """A pid that now names a process started later (the pid reused) is gone; a process of
    another boot or PID namespace (another machine, another container), or a row without
    where it ran (recorded before) or without its process group, keeps the 5-minute rule,
    whatever its pid is here."""
    with app.app_context():
        sql(app, "DELETE FROM instance_keys")  # (the app's own, running: shown elsewhere)
        now = instances.database_now()
    mine = instances.process_mark(os.getpid())
    boot, namespace, started, group = mine.split("/")  # (namespace: the PID namespace's device:inode)
    machine = f"{boot}/{namespace}"
    ended = subprocess.Popen([sys.executable, "-c", ""], process_group=0)  # (its pid free, no group left)
    assert ended.wait() == 0
    rotating = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                          instance_path=str(tmp_path / "cli"), command_line=True)
    for pid, process in [(os.getpid(), mine), (os.getpid(), "another-boot" + mine[mine.index("/"):]),
                         (os.getpid(), f"{machine}0/{started}/{group}"), (os.getpid(), None),
                         (ended.pid, f"{machine}/{started}")]:  # (the last: recorded without its group)
        record(app, pid, process, now)
        with rotating.app_context():
            refused = rotating.test_cli_runner().invoke(args=["rotate-key"])
            db.engine.dispose()
        assert refused.exit_code == 1 and "gone" not in refused.output, (process, refused.output)
        sql(app, "DELETE FROM instance_keys")
    record(app, os.getpid(), f"{machine}/{int(started) - 1}/{ended.pid}", now)
    with rotating.app_context():
        ran = rotating.test_cli_runner().invoke(args=["rotate-key"])
        db.engine.dispose()
    assert ran.exit_code == 0, ran.output
    assert f"web-9 pid {os.getpid()}: gone (its pid is another process's now), its record deleted" in ran.output
    assert sql(app, "SELECT count(*) FROM instance_keys") == [(0,)]


# What a server process started with the old key alone during a rotation does, as the
# database's own triggers: it records itself (seen "now": in 2100, never stale) and, on
# the key check's re-encryption, stores a secret under that key (push 2's payload).
LATE_ROW = ("INSERT INTO instance_keys (id, host, pid, keys, started_at, seen_at) VALUES ('late', 'web-late', 4242, "
            "'{fingerprint}', '2100-01-01 00:00:00', '2100-01-01 00:00:00')")
LATE_PUSH = "UPDATE pushes SET payload_ciphertext = {ciphertext} WHERE id = 2"
# Or the row it leaves as it ends, on the old key alone (ended "now", in 2100); then, as if
# it had ended before the next run.
ENDED_ROW = ("INSERT INTO instance_keys (id, host, pid, keys, started_at, seen_at, ended_at) VALUES ('ended', "
             "'web-ended', 4343, '{fingerprint}', '2100-01-01 00:00:00', '2100-01-01 00:00:00', '2100-01-01 00:00:00')")
ENDED_BEFORE = ("UPDATE instance_keys SET started_at = '2000-01-01', seen_at = '2000-01-01', ended_at = '2000-01-01' "
                "WHERE id = 'ended'")


@contextmanager
def late_instance(app, table, ciphertext=None, row=LATE_ROW):
    """Make the database record an instance on the old key alone (and store a secret under
    it) as soon as rotate-key rewrites a row of table, for the with block (row: the record,
    or ENDED_ROW: the row it leaves as it ends)."""
    fingerprint = app.extensions["pwpush_keyring"].fingerprints[0]
    postgresql = app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
    literal = ciphertext and (f"decode('{ciphertext.hex()}', 'hex')" if postgresql else f"X'{ciphertext.hex()}'")
    steps = [row.format(fingerprint=fingerprint) + (" ON CONFLICT DO NOTHING" if postgresql else "")]
    steps += [LATE_PUSH.format(ciphertext=literal)] if ciphertext else []
    if postgresql:
        sql(app, "CREATE OR REPLACE FUNCTION late() RETURNS trigger AS $$ BEGIN " + "; ".join(steps)
            + "; RETURN NULL; END $$ LANGUAGE plpgsql")
        sql(app, f"CREATE TRIGGER late AFTER UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION late()")
    else:
        sql(app, f"CREATE TRIGGER late AFTER UPDATE ON {table} BEGIN "
            + "; ".join(s.replace("INSERT INTO", "INSERT OR IGNORE INTO") for s in steps) + "; END")
    try:
        yield
    finally:
        sql(app, "DROP TRIGGER late" + (f" ON {table}" if postgresql else ""))
        if postgresql:
            sql(app, "DROP FUNCTION late()")


def rotation(app, client, database_url, tmp_path):
    """Two pushes under the tests' key (OLD), every instance then on NEW,OLD (the app's row
    says so); the app that runs rotate-key, on NEW,OLD."""
    for payload in ("one", "two"):
        assert client.post("/api/v2/pushes", json={"push": {"payload": payload}}).status_code == 201
    rotating = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                          instance_path=str(tmp_path / "cli"), command_line=True)
    sql(app, "UPDATE instance_keys SET keys = :keys", keys=",".join(rotating.extensions["pwpush_keyring"].fingerprints))
    return rotating


def rotate_key(rotating):
    with rotating.app_context():
        ran = rotating.test_cli_runner().invoke(args=["rotate-key"])
        db.engine.dispose()
    return ran


def opens(app, keys) -> dict:
    """What each stored secret's ciphertext (the key check too) opens with the keys given."""
    from pwp.crypto import Keyring
    ring = Keyring(keys)
    rows = sql(app, "SELECT 'push ' || id, payload_ciphertext FROM pushes UNION ALL "
                    "SELECT 'key check', token FROM key_check WHERE id = 1")
    return {what: ring.opens(bytes(token)) for what, token in rows}


def test_rotate_key_refuses_to_seal_while_an_instance_started_meanwhile_lacks_the_new_key(app, client,
                                                                                         database_url, tmp_path):
    """An instance started with the old key alone after rotate-key's first look (it records
    itself as the pushes are re-encrypted) goes on storing under the old key: sealing the
    key check then ("done": the old key may go) would lose what it stored. rotate-key looks
    again before the seal, refuses, and leaves the key check under the old key, everything
    readable with NEW,OLD; once the instance has NEW,OLD, a second run is done."""
    rotating = rotation(app, client, database_url, tmp_path)
    with late_instance(app, "pushes"):
        refused = rotate_key(rotating)
    assert refused.exit_code == 1, refused.output
    assert "web-late (pid 4242, seen" in refused.output and "the key check" in refused.output, refused.output
    assert opens(app, [NEW, TEST_MASTER_KEY]) == {"push 1": True, "push 2": True, "key check": True}
    assert opens(app, [NEW])["key check"] is False  # (not sealed: the new key alone cannot start yet)
    sql(app, "UPDATE instance_keys SET keys = :keys WHERE id = 'late'",
        keys=",".join(rotating.extensions["pwpush_keyring"].fingerprints))  # (restarted with NEW,OLD)
    ran = rotate_key(rotating)
    assert ran.exit_code == 0 and "done, 2 pushes re-encrypted" in ran.output, ran.output
    assert opens(app, [NEW]) == {"push 1": True, "push 2": True, "key check": True}


def test_rotate_key_says_it_is_not_done_when_an_instance_started_as_it_sealed(app, client, database_url, tmp_path):
    """Started as the key check was re-encrypted (after rotate-key's look before it), an
    instance on the old key alone read the check before that commit and stored a secret
    under the old key (it finds itself left behind at its next heartbeat): rotate-key,
    looking once more after the seal, says it is not done (exit 1): keep the old key, restart
    that instance with NEW,OLD, run it again. The second run leaves nothing under the old key."""
    from pwp.crypto import Keyring
    rotating = rotation(app, client, database_url, tmp_path)
    with late_instance(app, "key_check", Keyring([TEST_MASTER_KEY]).encrypt(b"stored by the late instance")):
        refused = rotate_key(rotating)
    assert refused.exit_code == 1, refused.output
    assert "web-late (pid 4242, seen" in refused.output and "run rotate-key again" in refused.output, refused.output
    assert opens(app, [NEW]) == {"push 1": True, "push 2": False, "key check": True}  # (what was lost before)
    assert opens(app, [NEW, TEST_MASTER_KEY])["push 2"] is True
    sql(app, "UPDATE instance_keys SET keys = :keys WHERE id = 'late'",
        keys=",".join(rotating.extensions["pwpush_keyring"].fingerprints))
    ran = rotate_key(rotating)
    assert ran.exit_code == 0, ran.output
    assert opens(app, [NEW]) == {"push 1": True, "push 2": True, "key check": True}


@contextmanager
def ended_instance(app, ciphertext, row=None):
    """Make the database do, as rotate-key rewrites push 2 (push 1 rewritten before it), what
    an instance on the old key alone started during the rotation does and ended before its
    look before the seal: it stored a secret under the old key in a push the walk had passed
    (an edit: push 1's payload, as a note or added files), and its row is left as it ended
    (or row: an INSERT of the row it left)."""
    fingerprint = app.extensions["pwpush_keyring"].fingerprints[0]
    postgresql = app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
    literal = f"decode('{ciphertext.hex()}', 'hex')" if postgresql else f"X'{ciphertext.hex()}'"
    steps = [row or ENDED_ROW.format(fingerprint=fingerprint), f"UPDATE pushes SET payload_ciphertext = {literal} WHERE id = 1"]
    if postgresql:
        sql(app, "CREATE OR REPLACE FUNCTION ended() RETURNS trigger AS $$ BEGIN IF NEW.id = 2 THEN "
            + "; ".join(steps) + "; END IF; RETURN NULL; END $$ LANGUAGE plpgsql")
        sql(app, "CREATE TRIGGER ended AFTER UPDATE ON pushes FOR EACH ROW EXECUTE FUNCTION ended()")
    else:
        sql(app, "CREATE TRIGGER ended AFTER UPDATE ON pushes WHEN NEW.id = 2 BEGIN " + "; ".join(steps) + "; END")
    try:
        yield
    finally:
        sql(app, "DROP TRIGGER ended" + (" ON pushes" if postgresql else ""))
        if postgresql:
            sql(app, "DROP FUNCTION ended()")


def test_rotate_key_refuses_to_seal_after_an_instance_on_the_old_key_ran_and_ended_meanwhile(
        app, client, database_url, tmp_path):
    """An instance on the old key alone (or OLD,NEW) started after rotate-key's first look and
    ended cleanly before its look before the seal deleted its row as it ended: rotate-key
    sealed the key check, retired the old key and said done, and what it had stored under the
    old key in a push the walk had passed (an edit's note or files) was lost with that key.
    Its row now stays, ended: rotate-key refuses to seal, everything readable with NEW,OLD;
    a second run (the instance long ended before it) is done and leaves nothing under OLD."""
    from pwp.crypto import Keyring
    rotating = rotation(app, client, database_url, tmp_path)
    with ended_instance(app, Keyring([TEST_MASTER_KEY]).encrypt(b"stored by the ended instance")):
        refused = rotate_key(rotating)
    assert refused.exit_code == 1, refused.output
    assert "web-ended (pid 4343, ended" in refused.output and "run rotate-key again" in refused.output, refused.output
    assert opens(app, [NEW]) == {"push 1": False, "push 2": True, "key check": False}
    assert set(opens(app, [NEW, TEST_MASTER_KEY]).values()) == {True}
    assert sql(app, "SELECT count(*) FROM retired_keys") == [(0,)]
    sql(app, ENDED_BEFORE)
    ran = rotate_key(rotating)
    assert ran.exit_code == 0 and "done, 2 pushes re-encrypted" in ran.output, ran.output
    assert set(opens(app, [NEW]).values()) == {True}


def test_rotate_key_refuses_to_seal_after_an_instance_on_the_old_key_ran_and_was_killed_meanwhile(
        app, client, database_url, tmp_path):
    """The same instance killed (kill -9) instead, on this machine: rotate-key's look before
    the seal finds it gone, deletes its row and says so, and counts it, seen since the
    rotation started: refused, nothing retired."""
    from pwp.crypto import Keyring
    rotating = rotation(app, client, database_url, tmp_path)
    boot, namespace, started, _group = instances.process_mark(os.getpid()).split("/")
    killed = subprocess.Popen([sys.executable, "-c", ""], process_group=0)  # (its pid free, no group left)
    assert killed.wait() == 0
    row = ("INSERT INTO instance_keys (id, host, pid, keys, started_at, seen_at, process) VALUES ('killed', "
           f"'web-killed', {killed.pid}, '{app.extensions['pwpush_keyring'].fingerprints[0]}', "
           f"'2100-01-01 00:00:00', '2100-01-01 00:00:00', '{boot}/{namespace}/{started}/{killed.pid}')")
    with ended_instance(app, Keyring([TEST_MASTER_KEY]).encrypt(b"stored by the killed instance"), row):
        refused = rotate_key(rotating)
    assert refused.exit_code == 1, refused.output
    assert f"web-killed pid {killed.pid}: gone (no such process here), its record deleted" in refused.output
    assert f"web-killed (pid {killed.pid}, ended" in refused.output, refused.output
    assert opens(app, [NEW])["key check"] is False and set(opens(app, [NEW, TEST_MASTER_KEY]).values()) == {True}
    ran = rotate_key(rotating)
    assert ran.exit_code == 0 and "done, 2 pushes re-encrypted" in ran.output, ran.output
    assert set(opens(app, [NEW]).values()) == {True}


def test_a_process_on_the_old_key_seen_during_the_rotation_counts_once_not_seen_for_5_minutes(app, database_url):
    """A process on the old key started during a long rotation (an hour's walk) on another host
    and killed there (kill -9, the OOM killer) more than 5 minutes before rotate-key's look
    before the seal was ignored as any process not seen lately: rotate-key sealed and said
    done, though it may have stored under the old key in a push the walk had passed. Seen
    since the rotation started, it counts, as one ended; its row stays, and the next run's
    looks (started after it was last seen) ignore it."""
    sql(app, "DELETE FROM instance_keys")  # (the app's own, running: shown elsewhere)
    with app.app_context():
        since = instances.database_now()
    record(app, 4242, None, since + timedelta(seconds=1))  # (None: its machine unknown here)
    later = since + instances.STALE + timedelta(minutes=1)
    with app.app_context():
        behind, judged = instances.not_encrypting_with(fingerprint(NEW), later, since)
        assert [(row.host, row.pid, row.ended_at is not None) for row in behind] == [("web-9", 4242, True)]
        assert judged == [] and "web-9 (pid 4242, ended 359 s ago)" in instances.describe(behind, later)
        assert instances.not_encrypting_with(fingerprint(NEW), later, later) == ([], [])
    assert sql(app, "SELECT count(*) FROM instance_keys") == [(1,)]


def test_rotate_key_says_it_is_not_done_when_an_instance_started_and_ended_as_it_sealed(app, client, database_url,
                                                                                       tmp_path):
    """The instance started as the key check was re-encrypted, having stored under the old key,
    ended before rotate-key's look after the seal (on PostgreSQL its row deleted then, not
    seen: "done", and push 2 lost with the old key): its row stays, ended; not done."""
    from pwp.crypto import Keyring
    rotating = rotation(app, client, database_url, tmp_path)
    with late_instance(app, "key_check", Keyring([TEST_MASTER_KEY]).encrypt(b"stored by the late instance"),
                       ENDED_ROW):
        refused = rotate_key(rotating)
    assert refused.exit_code == 1, refused.output
    assert "web-ended (pid 4343, ended" in refused.output and "not done" in refused.output, refused.output
    assert opens(app, [NEW, TEST_MASTER_KEY])["push 2"] is True
    sql(app, ENDED_BEFORE)
    ran = rotate_key(rotating)
    assert ran.exit_code == 0, ran.output
    assert opens(app, [NEW]) == {"push 1": True, "push 2": True, "key check": True}


def test_ctrl_c_of_rotate_key_says_what_the_database_holds_and_that_a_run_again_is_safe(app, client, database_url,
                                                                                      tmp_path):
    """Ctrl-C of rotate-key (here as it waits for a push a view holds) printed click's bare
    'Aborted!' (a traceback early on): the operator knew neither what was re-encrypted nor
    whether running it again was safe. Now one line says where it stopped, that everything
    opens with NEW,OLD, and to run it again; the second run is done."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a push held by another transaction stops the walk on PostgreSQL alone (SQLite's lock is the file's)")
    rotation(app, client, database_url, tmp_path)
    env = server_env(tmp_path / "cli", database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}", SECRET_KEY="s" * 40)
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT id FROM pushes WHERE id = 2 FOR UPDATE")
        rotating = subprocess.Popen([sys.executable, "-m", "flask", "--app", "pwpush", "rotate-key", "--batch-size", "1"],
                                    cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert rotating.stdout.readline() == "rotate-key: 1 pushes re-encrypted, up to id 1\n"
        rotating.send_signal(signal.SIGINT)
        _, stderr = rotating.communicate(timeout=60)
    assert rotating.returncode == 130 and len(stderr.strip().splitlines()) == 1, stderr
    assert "interrupted (pushes re-encrypted up to id 1" in stderr and "run rotate-key again" in stderr, stderr
    assert set(opens(app, [NEW, TEST_MASTER_KEY]).values()) == {True}
    ran = flask(env, "rotate-key", check=False)
    assert ran.returncode == 0 and "done, 2 pushes re-encrypted" in ran.stdout, ran.stderr
    assert set(opens(app, [NEW]).values()) == {True}


def test_a_ctrl_c_met_by_an_error_as_it_was_handled_is_still_a_ctrl_c():
    """rotate-key's Ctrl-C during its pool's pre-ping of a connection (between batches): SQLAlchemy's
    reset of the connection the interrupt left mid-query failed (psycopg: "can't change 'autocommit'
    now: connection in transaction status ACTIVE"), and that error, not the KeyboardInterrupt,
    reached the command: a traceback instead of its one line (test above: 1 run in ~25 here)."""
    from sqlalchemy.exc import ProgrammingError

    from pwp.cli import _interrupted

    def raised(make):
        try:
            make()
        except BaseException as error:  # (the error itself is the value)
            return error

    def reset_after_ctrl_c():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            try:
                raise psycopg.ProgrammingError("can't change 'autocommit' now: connection in transaction status ACTIVE")
            except psycopg.ProgrammingError as error:
                raise ProgrammingError("SELECT 1", {}, error) from error

    assert _interrupted(raised(reset_after_ctrl_c))
    assert _interrupted(KeyboardInterrupt())
    assert not _interrupted(raised(lambda: 1 / 0))
    assert not _interrupted(ProgrammingError("SELECT 1", {}, psycopg.ProgrammingError("no Ctrl-C")))


def test_a_heartbeat_due_as_the_process_ends_leaves_its_row_ended(app, database_url, tmp_path):
    """The heartbeat thread woken for its record just as the process ends (atexit: end()
    marks the row ended) records after it: the row of a process that ended cleanly was
    running again, and rotate-key refused for 5 minutes. Ended, it does not count."""
    heartbeat = app.extensions["pwpush_heartbeat"]
    assert sql(app, "SELECT count(*) FROM instance_keys WHERE id = :id AND ended_at IS NULL", id=heartbeat.id) == [(1,)]
    heartbeat.end()
    heartbeat.record()  # (what its thread, past its wait, does next)
    assert sql(app, "SELECT count(*) FROM instance_keys WHERE id = :id AND ended_at IS NOT NULL",
               id=heartbeat.id) == [(1,)]
    rotating = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                          instance_path=str(tmp_path / "cli"), command_line=True)
    ran = rotate_key(rotating)
    assert ran.exit_code == 0, ran.output


def test_rotate_key_counts_a_process_not_seen_lately_that_still_runs_here(app, database_url, tmp_path):
    """A process whose records stopped for over 5 minutes (the database down a while, its
    heartbeat stuck, the database's clock stepped forward) was taken for ended, and its row
    deleted by the next process's start: rotate-key rotated under a live process on the old
    key alone. On its machine and in its PID namespace, one seen to run still counts."""
    with app.app_context():
        sql(app, "DELETE FROM instance_keys")
        seen = instances.database_now() - instances.STALE - instances.STALE
    record(app, os.getpid(), instances.process_mark(os.getpid()), seen)  # (this process: it runs)
    create_app(make_config(database_url), instance_path=str(tmp_path / "another"))  # another one's start
    rotating = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                          instance_path=str(tmp_path / "cli"), command_line=True)
    sql(app, "DELETE FROM instance_keys WHERE host != 'web-9'")  # (the other start's own)
    refused = rotate_key(rotating)
    assert refused.exit_code == 1, refused.output
    assert f"web-9 (pid {os.getpid()}, seen 6" in refused.output, refused.output


def test_a_zombie_does_not_count_as_running(app, database_url, tmp_path):
    """A process killed and not yet reaped (its parent does not wait for it: a container's
    PID 1 that reaps nothing) still has its pid and start time: it was taken for running,
    however long ago its row was seen, and rotate-key refused for ever. A zombie runs
    nothing: the 5-minute rule (it may have led a group whose workers live a moment more)."""
    with app.app_context():
        sql(app, "DELETE FROM instance_keys")
        seen = instances.database_now() - instances.STALE - instances.STALE
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    record(app, child.pid, instances.process_mark(child.pid), seen)
    child.kill()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # (ended, left unreaped: a zombie)
    rotating = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                          instance_path=str(tmp_path / "cli"), command_line=True)
    sql(app, "DELETE FROM instance_keys WHERE host != 'web-9'")
    ran = rotate_key(rotating)
    assert ran.exit_code == 0 and "done, 0 pushes re-encrypted" in ran.output, ran.output
    assert child.wait() == -signal.SIGKILL


MARK_HERE = "import os; from pwp import instances; print(instances.process_mark(os.getpid()))"


def test_no_mark_where_proc_is_another_pid_namespaces(tmp_path):
    """In a PID namespace of its own whose /proc was not mounted again (unshare --pid without
    --mount-proc), /proc/PID is another namespace's process of that number: the mark held
    that one's start time, so rotate-key there took the process for gone ("its pid is another
    process's now") once that other one was replaced, while it ran. There it has no mark."""
    unshared = subprocess.run(["unshare", "--user", "--map-root-user", "--pid", "--fork", sys.executable, "-c",
                               MARK_HERE], cwd=ROOT, capture_output=True, text=True)
    if unshared.returncode != 0:
        pytest.skip(f"no PID namespace of its own here: {unshared.stderr.strip()}")
    assert unshared.stdout == "None\n", unshared.stdout
    here = subprocess.run([sys.executable, "-c", MARK_HERE], cwd=ROOT, capture_output=True, text=True, check=True)
    machine = "/".join(instances.process_mark(os.getpid()).split("/")[:2])
    assert here.stdout.startswith(machine + "/"), here.stdout


def test_rotate_key_refuses_to_move_the_database_back_to_a_key_it_retired(app, client, database_url, tmp_path):
    """rotate-key retires the key it moves the database off; a retired key stays retired
    (a server with it first encrypts nothing): rotate-key given one first refuses, --force too,
    and changes nothing."""
    rotating = rotation(app, client, database_url, tmp_path)
    ran = rotate_key(rotating)
    assert ran.exit_code == 0, ran.output
    back = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{TEST_MASTER_KEY},{NEW}"),
                      instance_path=str(tmp_path / "back"), command_line=True)
    sql(app, "UPDATE instance_keys SET keys = :keys", keys=",".join(back.extensions["pwpush_keyring"].fingerprints))
    for args in (["rotate-key"], ["rotate-key", "--force"]):
        with back.app_context():
            refused = back.test_cli_runner().invoke(args=args)
            db.engine.dispose()
        assert refused.exit_code == 1, refused.output
        assert f"(fingerprint {fingerprint(TEST_MASTER_KEY)}) was retired by rotate-key at " in refused.output
        assert TEST_MASTER_KEY not in refused.output and NEW not in refused.output
        assert opens(app, [NEW]) == {"push 1": True, "push 2": True, "key check": True}


def test_a_running_instance_encrypting_with_a_key_rotate_key_retired_stops_at_its_next_heartbeat(
        app, client, database_url, tmp_path, caplog):
    """One running with OLD,NEW when rotate-key --force ran (or rotated as its record was
    missed) opens the new key check with its second key: at its next heartbeat it finds its
    first key retired and stores nothing under it (503), its /up 503; it still serves pushes."""
    rotating = rotation(app, client, database_url, tmp_path)
    halfway = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{TEST_MASTER_KEY},{NEW}"),
                         instance_path=str(tmp_path / "halfway"))
    try:
        halfway_client = halfway.test_client()
        assert halfway_client.get("/up").status_code == 200
        with rotating.app_context():
            ran = rotating.test_cli_runner().invoke(args=["rotate-key", "--force"])
            db.engine.dispose()
        assert ran.exit_code == 0 and "--force" in ran.output, ran.output
        halfway.extensions["pwpush_heartbeat"].record()  # (what its thread does every minute)
        created = halfway_client.post("/api/v2/pushes", json={"push": {"payload": "x"}})
        assert created.status_code == 503 and "out of date" in created.get_json()["error"], created.data
        assert halfway_client.get("/up").status_code == 503
        assert "PWPUSH_MASTER_KEY on " in caplog.text and "was retired by rotate-key" in caplog.text, caplog.text
        listed = sql(app, "SELECT url_token FROM pushes ORDER BY id")
        assert [halfway_client.get(f"/api/v2/pushes/{url_token}").get_json()["payload"]
                for url_token, in listed] == ["one", "two"]
        assert sql(app, "SELECT count(*) FROM pushes") == [(2,)]
    finally:
        with halfway.app_context():
            db.engine.dispose()


def test_a_rotation_that_leaves_the_database_on_its_key_retires_none_of_the_others(app, client, database_url,
                                                                                   tmp_path):
    """rotate-key run at the README's first step (every instance on OLD,NEW, and so the command
    too) moves the database off no key: NEW, never a key of it, stays usable. The next steps
    (an instance on NEW,OLD, then rotate-key with it) take pushes and end with OLD retired."""
    assert client.post("/api/v2/pushes", json={"push": {"payload": "one"}}).status_code == 201
    early = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{TEST_MASTER_KEY},{NEW}"),
                       instance_path=str(tmp_path / "early"), command_line=True)
    sql(app, "UPDATE instance_keys SET keys = :keys", keys=",".join(early.extensions["pwpush_keyring"].fingerprints))
    ran = rotate_key(early)
    assert ran.exit_code == 0, ran.output
    assert sql(app, "SELECT count(*) FROM retired_keys") == [(0,)]
    # Said, not a bare "done": the operator who meant to move to NEW learns it is not done.
    assert (f"the database was already under the first key of PWPUSH_MASTER_KEY (fingerprint "
            f"{fingerprint(TEST_MASTER_KEY)})" in ran.output and "retired no key" in ran.output
            and "NEW,OLD" in ran.output), ran.output
    rotating = rotation(app, client, database_url, tmp_path)
    stepped = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                         instance_path=str(tmp_path / "stepped"))
    try:
        assert stepped.test_client().get("/up").status_code == 200
        assert stepped.test_client().post("/api/v2/pushes", json={"push": {"payload": "x"}}).status_code == 201
    finally:
        with stepped.app_context():
            db.engine.dispose()
    sql(app, "DELETE FROM instance_keys WHERE keys NOT LIKE :new", new=fingerprint(NEW) + ",%")
    ran = rotate_key(rotating)
    assert ran.exit_code == 0, ran.output
    assert sql(app, "SELECT fingerprint FROM retired_keys") == [(fingerprint(TEST_MASTER_KEY),)]
    assert set(opens(app, [NEW]).values()) == {True}
