"""rotate-key and the server processes' records in instance_keys (pwp.instances): a process
killed without ending (kill -9, the OOM killer) on the machine and in the PID namespace
rotate-key runs in is known to be gone at once; one elsewhere keeps the 5-minute rule.
"""
import os
import signal
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from conftest import TEST_MASTER_KEY, make_config, sql
from pwp import create_app, instances
from pwp.models import db
from servers import ROOT, flask, server_env

pytestmark = pytest.mark.slow

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()

# A server process with its keys recorded, as gunicorn's worker is once it has loaded the app.
RECORDING = "from pwp import create_app; create_app(); print('recorded', flush=True); import sys; sys.stdin.read()"


def recorded_process(env) -> subprocess.Popen:
    """Start a server process (the app built, its keys recorded); return once recorded."""
    process = subprocess.Popen([sys.executable, "-c", RECORDING], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
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
    process.kill()
    assert process.wait() == -signal.SIGKILL  # (reaped: its pid free)
    ran = flask(env_new, "rotate-key", check=False)
    assert ran.returncode == 0, ran.stderr
    assert f"pid {process.pid}: gone (no such process here)" in ran.stderr, ran.stderr
    assert "done, 0 pushes re-encrypted" in ran.stdout
    process.stdin.close()


def test_rotate_key_waits_for_the_process_group_a_killed_process_led(database_url, tmp_path):
    """Under gunicorn --preload the master records the keys its forked workers hold: killed,
    its workers serve a moment more. A process that led its process group is gone once no
    process of the group is left."""
    env_old = server_env(tmp_path / "old", database_url, PWPUSH_MASTER_KEY=OLD, SECRET_KEY="s" * 40)
    env_new = server_env(tmp_path / "new", database_url, PWPUSH_MASTER_KEY=f"{NEW},{OLD}", SECRET_KEY="s" * 40)
    leader = subprocess.Popen(
        [sys.executable, "-c", "import os, sys\nif os.fork() == 0:\n    sys.stdin.read()\n    os._exit(0)\n"
         + RECORDING.replace("; ", "\n")],
        cwd=ROOT, env=env_old, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert leader.stdout.readline() == "recorded\n"
    leader.kill()
    assert leader.wait() == -signal.SIGKILL
    refused = flask(env_new, "rotate-key", check=False)
    assert refused.returncode == 1 and f"(pid {leader.pid}, seen" in refused.stderr, refused.stderr
    leader.stdin.close()  # the forked child (its "worker") reads its end and exits
    while True:  # (until init, its parent now, has reaped it)
        try:
            os.killpg(leader.pid, 0)
        except ProcessLookupError:
            break
        os.sched_yield()
    ran = flask(env_new, "rotate-key", check=False)
    assert ran.returncode == 0 and f"pid {leader.pid}: gone (no such process here)" in ran.stderr, ran.stderr


def record(app, pid, process, now):
    """Insert a process's row as pwp.instances records it, with the tests' key alone."""
    sql(app, "INSERT INTO instance_keys (id, host, pid, keys, started_at, seen_at, process) "
             "VALUES (:id, 'web-9', :pid, :keys, :now, :now, :process)",
        id=os.urandom(8).hex(), pid=pid, keys=",".join(app.extensions["pwpush_keyring"].fingerprints),
        now=now, process=process)


def test_rotate_key_judges_only_the_processes_it_can_know(app, database_url, tmp_path):
    """A pid that now names a process started later (the pid reused) is gone; a process of
    another boot or PID namespace (another machine, another container), or a row without
    where it ran (recorded before), keeps the 5-minute rule, whatever its pid is here."""
    with app.app_context():
        sql(app, "DELETE FROM instance_keys")  # (the app's own, running: shown elsewhere)
        now = instances.database_now()
    mine = instances.process_mark(os.getpid())
    machine, _, started = mine.rpartition("/")  # (machine: the boot id/the PID namespace's device:inode)
    rotating = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{NEW},{TEST_MASTER_KEY}"),
                          instance_path=str(tmp_path / "cli"), command_line=True)
    for pid, process in [(os.getpid(), mine), (os.getpid(), "another-boot" + mine[mine.index("/"):]),
                         (os.getpid(), f"{machine}0/{started}"), (os.getpid(), None)]:
        record(app, pid, process, now)
        with rotating.app_context():
            refused = rotating.test_cli_runner().invoke(args=["rotate-key"])
            db.engine.dispose()
        assert refused.exit_code == 1 and "gone" not in refused.output, (process, refused.output)
        sql(app, "DELETE FROM instance_keys")
    record(app, os.getpid(), f"{machine}/{int(started) - 1}", now)
    with rotating.app_context():
        ran = rotating.test_cli_runner().invoke(args=["rotate-key"])
        db.engine.dispose()
    assert ran.exit_code == 0, ran.output
    assert f"web-9 pid {os.getpid()}: gone (its pid is another process's now), its record deleted" in ran.output
    assert sql(app, "SELECT count(*) FROM instance_keys") == [(0,)]
