"""gunicorn settings for pwpush, read automatically from the working directory.

`gunicorn pwpush:app` (the Procfile's web process) picks this file up. Environment:
  WEB_CONCURRENCY   worker processes (default 1; one per core to use more cores)
  GUNICORN_THREADS  threads per worker (default 2 on SQLite, 4 on PostgreSQL); for sync workers
                    (`-k sync`) set it to 1: with more, gunicorn runs gthread whatever -k says
  PORT              PaaS port: bind 0.0.0.0:$PORT; without it bind 127.0.0.1:8000 (behind a proxy)
  BIND              an explicit address, e.g. unix:/run/pwpush.sock (wins over PORT)
  GUNICORN_CONTROL_SOCKET  a path for gunicorn's control socket (`gunicornc`); none without it

Measured on one core of the 2-vCPU VM with the shared harness (bench/RESULTS.md, "Morning:
threads", 2026-11-28): one process with 2 threads serves as many requests per second as two
sync workers with about the same p99, at 95 MiB instead of 154 MiB: every extra process on
a core costs memory and CPU per request. More threads on SQLite raise throughput a little
(4 threads: +5-12 %) but the p99 at full load 1.5-1.8x (presumably as more requests at once
share one core's GIL and SQLite's write lock). On PostgreSQL a request waits for the
database's round trips with the GIL released: there 4 threads are 1.2-1.4x as fast as 2,
with a p99 no higher. Threads also keep serving while one request or client is slow, and a
client that stops sending mid-request is let go after `timeout` (pwp/workers.py); request
heads and bodies are read without a thread (a body past 64 KiB spooled, encrypted, to a
temporary file in TMPDIR), so one that sends a body slowly on purpose holds none; nor does one
that reads a long answer slowly (the main loop sends what the socket did not take at once).
With a very large SQLite store (1 000 000 pushes) the p99 of one process rises more than
that of two sync workers (SQLite's checkpoints run under the process's write lock; smaller
checkpoints, set below, halve that rise).
"""
import mmap
import os
import struct
import sys

# For pwpush.py: this file was read (gunicorn reads ./gunicorn.conf.py of the directory it is
# started in, or -c PATH; --chdir does not make it read this one).
os.environ["PWPUSH_GUNICORN_CONF"] = os.path.abspath(__file__)
# Read with -c from another folder (systemd without WorkingDirectory=): the project's folder
# is where gunicorn finds the logger class below and pwpush:app (--chdir on the command line wins).
_project = os.path.dirname(os.path.abspath(__file__))
if _project not in sys.path:
    sys.path.insert(0, _project)
chdir = _project


def _count(name, default):
    """A positive whole number from the environment (0 workers would start a server that
    never answers); a bad one stops gunicorn with one line naming it."""
    raw = os.environ.get(name) or str(default)
    if not (raw.strip().isascii() and raw.strip().isdigit()) or int(raw) < 1:
        raise SystemExit(f"pwpush: configuration error: {name}: expected a whole number of at least 1, "
                         f"got {raw!r}")
    return int(raw)


_port = os.environ.get("PORT")
bind = os.environ.get("BIND") or (f"0.0.0.0:{_port}" if _port else "127.0.0.1:8000")
workers = _count("WEB_CONCURRENCY", 1)
# gunicorn's gthread worker, each read of a request bounded by `timeout` below (pwp/workers.py:
# a client that stops sending mid-request no longer holds a thread for good).
worker_class = "pwp.workers.ThreadWorker"
# The most bytes of request bodies (and answers' rests) its workers write to temporary files, each.
if os.environ.get("PWPUSH_BODIES_SPOOLED"):
    _count("PWPUSH_BODIES_SPOOLED", 1)
# The URL forms pwp.config.database_uri accepts for PostgreSQL, checked here without importing
# pwp (its package would load Flask and SQLAlchemy into gunicorn's master process).
_postgresql = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql"))
threads = _count("GUNICORN_THREADS", 4 if _postgresql else 2)
# One process on SQLite: a commit's automatic checkpoint runs under the process's write lock
# while the other threads wait, so smaller checkpoints (every 250 WAL pages, not SQLite's 1000)
# cut the p99 by 8-32 % at 0.92-1.10x the throughput, and by a third with 1 000 000 pushes stored.
# With several processes they made no difference beyond the noise at small stores, and with
# 1 000 000 pushes stored they traded the median for the tail (p50 +13-15 %, p99 -14 %, 0.93x
# the throughput), so those keep SQLite's default (bench/RESULTS.md, 2026-12-04). Decided
# when the master starts, with the final worker count (`-w` on the command line wins over this
# file); the workers inherit the environment and read it when they load the app (with
# --preload the app is loaded earlier and keeps the default).


def on_starting(server):
    if server.cfg.workers == 1 and not _postgresql:
        os.environ.setdefault("PWPUSH_SQLITE_WAL_AUTOCHECKPOINT", "250")
    _halt_once(server)


def pre_fork(server, worker):
    # (In the master.) The start-up notes (a mistyped setting, what notify by e-mail does, a
    # key file open to others) come from the first worker of a start and the first of each
    # reload (HUP: the code or the settings may have changed), not from the others, nor one
    # more (TTIN) or one in place of another that ended, nor one in place of the worker that
    # said them once that one ended as planned (max_requests: worker_exit, in that worker,
    # writes its pid where the master reads it). One in place of that worker ended otherwise
    # (killed: maybe before it said them) says them again. The master keeps that worker
    # (on_reload forgets it). With --preload the master loaded the app: said once.
    if not hasattr(server, "pwpush_ended_as_planned"):
        server.pwpush_ended_as_planned = mmap.mmap(-1, 8)  # (shared with the workers forked after)
    teller = getattr(server, "pwpush_notes_by", None)
    worker.pwpush_notes = teller is None or (  # (None: the first since a start or reload)
        teller not in server.WORKERS.values() and _ended_as_planned(server) != teller.pid)
    worker.pwpush_ended_as_planned = server.pwpush_ended_as_planned
    if worker.pwpush_notes:
        server.pwpush_notes_by = worker


def post_fork(server, worker):
    if not worker.pwpush_notes:  # (in the new worker: pre_fork decided)
        os.environ["PWPUSH_START_UP_NOTES"] = "off"


def post_worker_init(worker):
    # (In the worker, its app loaded.) With `-k sync` (gunicorn's own class), its stop waits for
    # the app's e-mails being sent within bounds, as pwp.workers.ThreadWorker's (pwp/worker_mails.py).
    # Also, its answers to the requests gunicorn refuses are ThreadWorker's (pwp/worker_errors.py).
    from pwp import worker_errors, worker_mails

    worker_mails.guard(worker)
    worker_errors.answer_as_ours(worker)


def worker_exit(server, worker):
    # (In the worker, as it ends: not when killed.) Booted, it said the notes.
    if worker.pwpush_notes and worker.booted:
        worker.pwpush_ended_as_planned[:] = struct.pack("q", worker.pid)


def _ended_as_planned(server) -> int:
    """The pid of the last worker that said the notes and ended as planned."""
    return struct.unpack("q", server.pwpush_ended_as_planned[:])[0]


def on_reload(server):
    server.pwpush_notes_by = None


def _halt_once(server):
    """Let the first worker that fails to boot decide how gunicorn's master ends. A start-up
    refusal (pwpush's configuration errors: exit 3) halts the master, which reaps the other
    workers as it stops; gunicorn (27.0.1) raised its HaltServer again for each of them that
    refused too, out of the halt itself: a traceback and status 1 instead of 3. Those are
    reaped on quietly: the master is already stopping for the same reason."""
    from gunicorn.errors import HaltServer  # (gunicorn's, loaded already: not the app)

    reap, halting = server.reap_workers, []

    def reap_workers():
        while True:
            try:
                return reap()
            except HaltServer:
                if not halting:
                    halting.append(True)
                    raise
    server.reap_workers = reap_workers


# gunicorn (25.1 and later) opens a control socket that can change the worker count, reload
# or stop the server (`gunicornc`), at one path for every instance the same user runs
# ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl): off unless the admin names a path for it.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]

timeout = 30
graceful_timeout = 10
# Static files through the bounded writes above, not sendfile(): Python's socket.sendfile,
# on the kernel-bounded socket, waits for room with no timeout, so a client that pipelined
# requests for them on a kept-alive connection and stopped reading held a thread for good
# (one file alone, at most 15 KB, fits the socket's buffers). Reading 15 KB costs nothing.
sendfile = False
# No access log by default. Request paths carry url_tokens and may carry ?passphrase=...:
# when one is turned on (--access-logfile -), this logger writes them as [FILTERED], in
# error messages too, and never logs Authorization, X-User-Token or Cookie headers, nor, of an
# answer, a Location on another site (a URL push's URL) or a Content-Disposition (a file's name).
accesslog = None
logger_class = "pwp.logfilter.GunicornLogger"
errorlog = "-"
loglevel = (os.environ.get("LOG_LEVEL") or "info").strip().lower()
if loglevel not in ("debug", "info", "warning", "error", "critical"):  # (gunicorn would take it as info)
    raise SystemExit(f"pwpush: configuration error: LOG_LEVEL: expected debug, info, warning, error "
                     f"or critical, got {os.environ['LOG_LEVEL']!r}")
