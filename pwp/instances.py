"""Which master keys the running instances hold, so that rotate-key can refuse to move the
database to a key one of them does not encrypt with (lacking it, that instance would lose
its reads and writes; holding it second, what it stores would stay under the old key).

Each server process records its keys' fingerprints (never the keys), with its host and pid,
in instance_keys: at its start, then every HEARTBEAT seconds from a thread of its own (never
on a request), and marks its row ended as it ends (ended rows count only for a rotation
they ran during: not_encrypting_with's since). A process killed without ending leaves its
row running, ignored once not seen for STALE, or sooner where rotate-key can know it is gone: on the
same machine, in the same PID namespace (process_mark, judge); there, one not seen for STALE
that is seen to run still counts. Every time here is the database's clock (database_now):
the hosts' clocks may differ by more than STALE. With gunicorn --preload the master process, which
loaded the app and holds the same keys as its workers, stands for them."""
import atexit
import logging
import os
import secrets
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import DateTime, delete, insert, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from .models import InstanceKeys, db

HEARTBEAT = 60  # seconds between a process's records
STALE = timedelta(minutes=5)  # a process not seen for this long has ended (unless seen to run: judge)
PRUNE = timedelta(days=1)  # a row not seen for this long is deleted by the next process's start
RUNNING = "running"

log = logging.getLogger("pwp")


class _utc_now(FunctionElement):
    """The database's clock, as naive UTC (the form stored)."""
    type = DateTime()
    inherit_cache = True


@compiles(_utc_now, "postgresql")
def _utc_now_postgresql(_element, _compiler, **_kw):
    return "(statement_timestamp() AT TIME ZONE 'UTC')"


@compiles(_utc_now, "sqlite")
def _utc_now_sqlite(_element, _compiler, **_kw):
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def database_now(connection=None) -> datetime:
    """The database's time now (on the connection or session given, else the app's session):
    the same for every host, whatever its own clock says."""
    return (connection or db.session).scalar(select(_utc_now()))


class Heartbeat:
    """A server process's row in instance_keys and the thread that keeps it."""

    def __init__(self, app):
        self.app = app
        self.id = secrets.token_hex(16)
        self.pid = os.getpid()
        self.process = process_mark(self.pid)
        self.started = None  # (the database's time of its first record)
        self.stopping = threading.Event()
        self.lock = threading.Lock()  # (held by a record: a fork waits for it to end)
        self.failing = False

    def start(self):
        """Record this process now, forget those gone long since; keep it recorded until it ends."""
        self.record(prune=True)
        if self.app.testing:  # (the tests' apps, many in a process: recorded once)
            return
        os.register_at_fork(before=self.lock.acquire, after_in_parent=self.lock.release,
                            after_in_child=self.lock.release)
        atexit.register(self.end)
        threading.Thread(target=self._run, name="pwpush instance keys", daemon=True).start()

    def record(self, prune=False):
        """Write this process's row (its keys, seen now). On connections closed after, not kept
        in the pool: under gunicorn --preload this process forks the workers, and an SQLite
        connection open across a fork leaves a worker believing it holds the file's shared
        lock its parent holds (pwp.factory.create_app closes what start-up opened)."""
        from . import pushes

        with self.lock, self.app.app_context():
            if self.stopping.is_set():  # (its row deleted as it ends: a record due then would make it again)
                return
            keys = ",".join(pushes.keyring().fingerprints)
            with _closed_after(db.engine.connect()) as connection:
                now = database_now(connection)
                self.started = self.started or now
                if prune:
                    connection.execute(delete(InstanceKeys).where(InstanceKeys.seen_at < now - PRUNE))
                if not connection.execute(update(InstanceKeys).where(InstanceKeys.id == self.id)
                                          .values(keys=keys, seen_at=now)).rowcount:
                    connection.execute(insert(InstanceKeys).values(
                        id=self.id, host=socket.gethostname()[:255], pid=self.pid, keys=keys,
                        started_at=self.started, seen_at=now, process=self.process))
                connection.commit()
            # Meanwhile: a worker that never meets /up nor a push it cannot open learns that
            # rotate-key left it behind, or retired the key it encrypts with (and stops taking
            # pushes), within a heartbeat. (Not the
            # workers gunicorn --preload forks: this thread runs in their master only.)
            with _closed_after(db.engine.connect().execution_options(read_snapshot=True)) as connection:
                pushes.keys_left_behind(connection)

    def _run(self):
        while not self.stopping.wait(HEARTBEAT):
            try:
                self.record()
            except Exception as exc:  # (the database down for a while: said once, tried again)
                if not self.failing:
                    log.warning("could not record this instance's keys in the database (tried again every %d s): "
                                "%s", HEARTBEAT, type(exc).__name__)
                self.failing = True
            else:
                self.failing = False

    def end(self):
        """Mark this process's row ended (not in a forked child: its parent's). Kept (pruned
        with the others after PRUNE), not deleted: a process on the old key that started
        during a rotation and ended before rotate-key's next look may have stored under it."""
        if os.getpid() != self.pid:
            return
        self.stopping.set()
        try:
            with self.lock, self.app.app_context():
                db.session.execute(update(InstanceKeys).where(InstanceKeys.id == self.id)
                                   .values(seen_at=_utc_now(), ended_at=_utc_now()))
                db.session.commit()
        except Exception:  # (the database gone first: the row is ignored once stale)
            pass


@contextmanager
def _closed_after(connection):
    """The connection, closed at the end rather than given back to the pool."""
    with connection:
        try:
            yield connection
        finally:
            connection.invalidate()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def _machine() -> str | None:
    """This boot of this machine and this PID namespace: where a pid names one process."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.stat("/proc/self/ns/pid")
        # (A /proc of another PID namespace, as after unshare --pid without mounting /proc
        # again: its /PID is that namespace's process of the number, not the one this pid names.)
        if os.readlink("/proc/self") != str(os.getpid()):
            return None
    except OSError:
        return None
    return boot and f"{boot.strip()}/{namespace.st_dev}:{namespace.st_ino}"


def _started(pid: int) -> str | None:
    """A process's start time (clock ticks after boot, /proc/PID/stat's 22nd field); None for
    a zombie (ended, its parent yet to reap it: nothing is known of the group it may have led)."""
    stat = _read(f"/proc/{pid}/stat")
    # (Its 2nd field, the command's name in parentheses, may hold spaces and parentheses.)
    fields = stat.rpartition(")")[2].split() if stat else []
    return fields[19] if len(fields) > 19 and fields[0] not in ("Z", "X") else None


def process_mark(pid: int) -> str | None:
    """What tells a process apart from any other ever on its machine: the boot, the PID
    namespace and its start time; then its process group (None without /proc)."""
    machine, started = _machine(), _started(pid)
    return machine and started and f"{machine}/{started}/{os.getpgid(pid)}"


def judge(row: InstanceKeys) -> str | None:
    """What is known for sure of a recorded process: RUNNING, or why it has ended; else None
    (the 5-minute rule). Known only on its machine's boot and in its PID namespace:
    elsewhere its pid names another process, or none."""
    boot, namespace, started, group = ((row.process or "").split("/") + [""] * 4)[:4]
    if f"{boot}/{namespace}" != _machine() or not group.isdecimal() or not (0 < row.pid < 2 ** 31
                                                                           and 0 < int(group) < 2 ** 31):  # (pid_t)
        return None
    ended = None
    try:
        os.kill(row.pid, 0)
    except ProcessLookupError:
        ended = "no such process here"
    except PermissionError:  # (another user's: it runs)
        pass
    if ended is None:
        now = _started(row.pid)
        if now is None:
            return None
        if now == started:
            return RUNNING
        ended = "its pid is another process's now"
    # Nor any process left in the process group it was in: under gunicorn --preload the
    # workers it forked hold its keys and outlive it a moment, in that group (the one it led,
    # or the one a script started it in). Where that group lives on (gunicorn's workers
    # without --preload are in their master's), the 5-minute rule.
    try:
        os.killpg(int(group), 0)
    except ProcessLookupError:
        return ended
    except PermissionError:
        pass
    return None


def not_encrypting_with(fingerprint: str, now: datetime,
                        since: datetime | None = None) -> tuple[list[InstanceKeys], list[str]]:
    """The running processes whose first key (the one they encrypt with) is not this one:
    those lacking it, and those holding it second, whose writes stay under another key.
    Running: seen to run (judge), or seen within STALE of now (database_now) and not known
    to have ended. since (a rotation's start, database_now): also those seen since that are
    no longer running (ended, found gone, or not seen for STALE): what they stored may be
    under another key.
    The rows of those found gone are deleted; the second list says which, and why."""
    # (As stored now: the session may hold these rows from a look before.)
    rows = db.session.scalars(select(InstanceKeys).order_by(InstanceKeys.host, InstanceKeys.pid)
                              .execution_options(populate_existing=True)).all()
    behind, judged = [], []
    for row in rows:
        if row.keys.split(",")[0] == fingerprint:
            continue
        known = judge(row) if row.ended_at is None else None
        if known == RUNNING or (known is None and row.ended_at is None and row.seen_at >= now - STALE):
            behind.append(row)
            continue
        if known is not None:
            judged.append(f"{row.host} pid {row.pid}: gone ({known}), its record deleted")
            db.session.execute(delete(InstanceKeys).where(InstanceKeys.id == row.id))
        # Ended, found gone, or not seen for STALE (killed elsewhere): it ran during the
        # rotation if seen since it started (an ended row was seen as it ended). Said as
        # ended when last seen (not the row: it may be deleted).
        if since is not None and row.seen_at >= since:
            behind.append(SimpleNamespace(host=row.host, pid=row.pid, seen_at=row.seen_at, ended_at=row.seen_at))
    db.session.commit()
    return behind, judged


def describe(rows: list[InstanceKeys], now: datetime) -> str:
    """Name the processes by host: 'web-1 (pids 12, 13, seen 40 s ago)', those ended apart:
    'web-2 (pid 14, ended 3 s ago)'."""
    hosts = {}
    for row in rows:
        hosts.setdefault((row.host, row.ended_at is not None), []).append(row)
    return "; ".join(
        f"{host} (pid{'s' if len(group) > 1 else ''} {', '.join(str(r.pid) for r in group)}, "
        f"{'ended' if ended else 'seen'} {int((now - max(r.seen_at for r in group)).total_seconds())} s ago)"
        for (host, ended), group in hosts.items())
