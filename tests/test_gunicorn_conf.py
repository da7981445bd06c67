"""gunicorn.conf.py: the settings `gunicorn pwpush:app` runs with, from the environment.

(tests/servers.py starts real gunicorn processes with this file; here each setting's rule.)
"""
import json
import re
import os
import runpy
import socket
import subprocess
import sys
import threading
import time
import types
from urllib.parse import urlsplit

import pytest
from servers import bearer, create_user, flask, gunicorn, server_env

CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gunicorn.conf.py")
NAMES = ("DATABASE_URL", "GUNICORN_THREADS", "WEB_CONCURRENCY", "PORT", "BIND", "LOG_LEVEL",
         "PWPUSH_SQLITE_WAL_AUTOCHECKPOINT", "GUNICORN_CONTROL_SOCKET", "PWPUSH_BODIES_SPOOLED")


def settings(monkeypatch, **env):
    """The file's settings; "environ" is the environment it leaves for the workers."""
    environ = {k: v for k, v in os.environ.items() if k not in NAMES} | env
    monkeypatch.setattr(os, "environ", environ)  # the file may set variables: not in this process
    conf = runpy.run_path(CONF)
    conf["environ"] = environ
    return conf


def test_zero_configuration_is_one_process_with_two_threads_on_localhost(monkeypatch):
    conf = settings(monkeypatch)
    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("pwp.workers.ThreadWorker", 1, 2)
    assert conf["bind"] == "127.0.0.1:8000"
    assert conf["accesslog"] is None


def test_no_control_socket_unless_the_admin_names_one(monkeypatch):
    conf = settings(monkeypatch)
    assert conf["control_socket_disable"] is True and "control_socket" not in conf
    conf = settings(monkeypatch, GUNICORN_CONTROL_SOCKET="/run/pwpush/gunicorn.ctl")
    assert conf["control_socket_disable"] is False and conf["control_socket"] == "/run/pwpush/gunicorn.ctl"


@pytest.mark.parametrize("url, threads", [
    ("postgres://u:p@db:5432/pwpush", 4),  # Heroku's spelling
    ("postgresql://u@db/pwpush", 4),
    ("postgresql+psycopg://u@db/pwpush", 4),
    ("sqlite:////var/lib/pwpush/pwpush.db", 2),
    ("", 2),
])
def test_thread_count_follows_the_database(monkeypatch, url, threads):
    assert settings(monkeypatch, DATABASE_URL=url)["threads"] == threads


def test_explicit_threads_and_workers_win(monkeypatch):
    conf = settings(monkeypatch, DATABASE_URL="postgresql://u@db/pwpush", GUNICORN_THREADS="8",
                    WEB_CONCURRENCY="3")
    assert (conf["workers"], conf["threads"]) == (3, 8)


@pytest.mark.parametrize("name", ["WEB_CONCURRENCY", "GUNICORN_THREADS"])
@pytest.mark.parametrize("value", ["0", "-1", "two", "\u0663"])
def test_a_bad_worker_or_thread_count_stops_gunicorn_naming_it(monkeypatch, name, value):
    """WEB_CONCURRENCY=0 started a server without workers that accepted and never answered."""
    with pytest.raises(SystemExit, match=f"^pwpush: configuration error: {name}: "):
        settings(monkeypatch, **{name: value})


def test_a_bad_spool_cap_stops_gunicorn_naming_it(monkeypatch):
    settings(monkeypatch, PWPUSH_BODIES_SPOOLED="1048576")
    with pytest.raises(SystemExit, match="PWPUSH_BODIES_SPOOLED"):
        settings(monkeypatch, PWPUSH_BODIES_SPOOLED="1G")


def test_log_level_is_one_of_gunicorns(monkeypatch):
    assert settings(monkeypatch)["loglevel"] == "info"
    assert settings(monkeypatch, LOG_LEVEL="WARNING")["loglevel"] == "warning"
    with pytest.raises(SystemExit, match="^pwpush: configuration error: LOG_LEVEL: "):
        settings(monkeypatch, LOG_LEVEL="verbose")  # (gunicorn would quietly log at info)


def test_paas_port_binds_all_interfaces_and_bind_wins(monkeypatch):
    assert settings(monkeypatch, PORT="5000")["bind"] == "0.0.0.0:5000"
    assert settings(monkeypatch, PORT="5000", BIND="unix:/run/pwpush.sock")["bind"] == "unix:/run/pwpush.sock"


@pytest.mark.parametrize("env, checkpoint", [
    ({}, "250"),  # one process on SQLite: smaller checkpoints under its write lock
    ({"DATABASE_URL": "sqlite:////var/lib/pwpush/pwpush.db"}, "250"),
    ({"WEB_CONCURRENCY": "2"}, None),  # several processes: SQLite's default
    ({"DATABASE_URL": "postgres://u:p@db:5432/pwpush"}, None),
    ({"PWPUSH_SQLITE_WAL_AUTOCHECKPOINT": "1000"}, "1000"),  # the admin's value wins
])
def test_one_sqlite_process_checkpoints_in_smaller_steps(monkeypatch, env, checkpoint):
    conf = settings(monkeypatch, **env)
    # the file's body leaves the variable as the admin set it; only the hook may set it
    assert conf["environ"].get("PWPUSH_SQLITE_WAL_AUTOCHECKPOINT") == env.get("PWPUSH_SQLITE_WAL_AUTOCHECKPOINT")
    conf["on_starting"](arbiter(conf["workers"]))  # gunicorn's master, before it forks workers
    assert conf["environ"].get("PWPUSH_SQLITE_WAL_AUTOCHECKPOINT") == checkpoint


def test_command_line_worker_count_decides_the_checkpoint_size(monkeypatch):
    conf = settings(monkeypatch)  # `gunicorn -w 3 pwpush:app`: -w wins over the file's 1
    conf["on_starting"](arbiter(3))
    assert "PWPUSH_SQLITE_WAL_AUTOCHECKPOINT" not in conf["environ"]


def test_workers_that_all_refuse_to_start_stop_gunicorn_with_status_3(tmp_path):
    """Several workers that each refuse to start (an SQLite database in a missing folder: exit
    3): gunicorn's master halted for the first one, reaped the next one's exit 3 while it
    stopped, and raised its HaltServer again out of the halt: a traceback and status 1, about
    every other start with 3 workers. (A race: a few starts.)"""
    missing = tmp_path / "missing" / "pwpush.sqlite3"
    env = server_env(tmp_path / "instance", f"sqlite:///{missing}", WEB_CONCURRENCY=3, BIND="127.0.0.1:0")
    for _ in range(5):
        proc = subprocess.run([sys.executable, "-m", "gunicorn", "pwpush:app"], cwd=os.path.dirname(CONF),
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.splitlines()[-1].endswith("Reason: Worker failed to boot.")


def arbiter(workers, reap_workers=None):
    """What on_starting reads of gunicorn's arbiter: its final settings (and its reaper)."""
    return types.SimpleNamespace(cfg=types.SimpleNamespace(workers=workers), reap_workers=reap_workers)


def test_only_the_first_worker_that_fails_to_boot_halts_gunicorn_the_next_are_reaped_on(monkeypatch):
    from gunicorn.errors import HaltServer

    found = [3, 3, 0]  # what each reaping finds: a worker that failed to boot (exit 3), then none

    def reap_workers():
        if found.pop(0) == 3:
            raise HaltServer("Worker failed to boot.", 3)

    server = arbiter(3, reap_workers)
    settings(monkeypatch)["on_starting"](server)
    with pytest.raises(HaltServer):
        server.reap_workers()  # (the master's loop: it halts)
    server.reap_workers()  # (the halt's own reaping: was a second HaltServer, out of the halt)
    assert found == []


def test_the_workers_learn_that_this_file_was_read(monkeypatch):
    assert settings(monkeypatch)["environ"]["PWPUSH_GUNICORN_CONF"] == CONF


def test_gunicorn_started_in_another_folder_warns_that_this_file_was_not_read(tmp_path):
    """gunicorn reads ./gunicorn.conf.py of the folder it starts in; with --chdir alone it
    reads none, and the access log filter and the closed control socket are gone."""
    root = os.path.dirname(CONF)
    env = {k: v for k, v in os.environ.items() if k != "PWPUSH_GUNICORN_CONF"}
    env["PWPUSH_INSTANCE_PATH"] = str(tmp_path / "instance")

    def check(*args):
        return subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", *args, "pwpush:app"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    elsewhere = check("--chdir", root)
    assert elsewhere.returncode == 0 and "did not read pwpush's gunicorn.conf.py" in elsewhere.stderr
    named = check("-c", CONF, "--chdir", root)
    assert named.returncode == 0 and "did not read" not in named.stderr
    # -c alone (systemd without WorkingDirectory=): the file adds its folder (was: "No module named 'pwp'").
    alone = check("-c", CONF)
    assert alone.returncode == 0 and "did not read" not in alone.stderr, alone.stderr
    # Not gunicorn: the command line says nothing of it (the app imports gunicorn's logger
    # class for its log filter, which once made every `flask` command warn).
    for command in ("init-db", "purge-expired"):
        cli = subprocess.run([sys.executable, "-m", "flask", "--app", "pwpush", command],
                             cwd=root, env=env, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0 and f"{command}:" in cli.stdout and "gunicorn" not in cli.stderr


def test_the_master_process_loads_neither_flask_nor_sqlalchemy():
    """gunicorn's master (without --preload) reads this file and loads its logger class; it
    forks the workers and serves no request, so the app's libraries stay out of it (they cost
    the master ~28 MiB of RSS, more than the workers' own share of them)."""
    probe = ("import runpy, sys\n"
             "from gunicorn.config import Config\n"
             "cfg = Config()\n"
             "for name, value in runpy.run_path(sys.argv[1]).items():\n"
             "    if name in cfg.settings: cfg.set(name, value)\n"
             "cfg.logger_class(cfg)\n"  # as the arbiter builds its logger
             "cfg.worker_class\n"  # (the arbiter loads it too)
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'sqlalchemy', 'werkzeug', 'jinja2', 'cryptography'}))\n")
    done = subprocess.run([sys.executable, "-c", probe, CONF], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(CONF))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _stalled(port, start: bytes) -> socket.socket:
    """A connection that sent the start of a request and then nothing."""
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(start)
    return conn


def test_clients_that_stop_mid_request_do_not_hold_the_threads(tmp_path):
    """gunicorn's gthread worker never timed out a read: two clients that sent half a request
    (a phone that lost its network mid-upload) held both threads of the default setting, for
    good. Each read now waits at most `timeout`, and the client is taken as gone: no error
    logged, the body's 400 (it is shorter than its Content-Length)."""
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log", args=("--timeout", "3", "--threads", "2")) as server:
        assert "Using worker: pwp.workers.ThreadWorker" in server.logs()
        body = _stalled(server.port, b"POST /api/v2/pushes HTTP/1.1\r\nHost: h\r\nContent-Type: "
                                     b"application/json\r\nContent-Length: 100\r\n\r\n{")
        head = _stalled(server.port, b"GET /up HTTP/1.1\r\nHost: 12")
        status, _headers, _body = server.request("GET", "/up", timeout=20)  # (was: never)
        assert status == 200
        body.settimeout(20)
        assert body.recv(100).startswith(b"HTTP/1.1 400 ")
        head.settimeout(20)
        assert head.recv(100) == b""
        body.close()
        head.close()
        assert "Traceback" not in server.logs() and "Error" not in server.logs()


def test_a_slow_reader_gets_the_whole_answer_and_one_that_stops_reading_is_let_go():
    """Each write may wait `timeout` (socket.sendall's timeout would bound the whole answer:
    a large file's download at a phone's pace would be cut); a reader that stops is dropped
    as one that went away (EPIPE, which gunicorn does not log)."""
    from pwp.workers import bound
    ours, theirs = socket.socketpair()
    bound(ours, 0.5)
    data = os.urandom(2 * 1024 * 1024)
    received = bytearray()

    def read_slowly():
        while len(received) < len(data):
            chunk = theirs.recv(64 * 1024)
            received.extend(chunk)
            threading.Event().wait(0.05)  # a reader slower than the sender: 1.25 MiB/s at most
    reader = threading.Thread(target=read_slowly)
    reader.start()
    ours.sendall(data)  # (socket.sendall: TimeoutError once 0.5 s have passed)
    reader.join()
    assert bytes(received) == data
    with pytest.raises(BrokenPipeError):
        ours.sendall(data)  # nobody reads
    ours.close()
    theirs.close()


def test_a_client_that_stalled_mid_body_sends_no_further_request_on_its_connection(tmp_path):
    """A read that timed out is the end of the client's stream for good: the rest of a body
    that arrives after the 400 was taken as the next request on the kept-alive connection
    (a request smuggled inside another's body; behind a proxy that reuses its connections to
    gunicorn, another client's answer goes to the wrong one). gunicorn's gthread closes it."""
    env = server_env(tmp_path / "instance")
    smuggled = b"GET /robots.txt HTTP/1.1\r\nHost: h\r\n\r\n"
    with gunicorn(env, tmp_path / "log", args=("--timeout", "2")) as server:
        conn = _stalled(server.port, b"POST /api/v2/pushes HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\n\r\n{" % (1 + len(smuggled)))
        conn.settimeout(20)
        assert conn.recv(65536).startswith(b"HTTP/1.1 400 ")
        conn.sendall(smuggled)  # (the rest of the body, late)
        rest = b""
        while chunk := conn.recv(65536):
            rest += chunk
        conn.close()
        assert b"HTTP/1.1" not in rest and b"User-agent" not in rest


def test_after_a_read_timed_out_nothing_more_is_read_from_the_client():
    """Once a read timed out (the client taken as gone), later reads see the end of the stream
    too, bytes sent since included: gunicorn's drain of an unread body then ends the connection
    instead of serving the body's late rest as a new request."""
    from pwp.workers import bound
    ours, theirs = socket.socketpair()
    bound(ours, 0.2)
    assert ours.recv(100) == b""  # (timed out)
    theirs.sendall(b"GET /robots.txt HTTP/1.1\r\nHost: h\r\n\r\n")
    assert ours.recv(100) == b""
    ours.close()
    theirs.close()



def test_a_kept_alive_connection_that_stops_mid_request_is_let_go_too(tmp_path):
    """The bound was set on a connection's first request only: gunicorn puts the socket back
    in blocking mode (no timeout) before each request, so a client that sent one request and
    then half of a second held its thread for good, as before the bound."""
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log", args=("--timeout", "2")) as server:
        conn = socket.create_connection(("127.0.0.1", server.port))
        conn.sendall(b"GET /robots.txt HTTP/1.1\r\nHost: h\r\n\r\n")
        conn.settimeout(20)
        answer = b""
        while b"Disallow" not in answer:
            answer += conn.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: keep-alive" in answer
        conn.sendall(b"GET /up HTTP/1.1\r\nHost: 12")  # (and nothing more)
        assert conn.recv(100) == b""  # (was: a TimeoutError here, the thread still held)
        conn.close()


def test_gunicorns_timeout_0_leaves_reads_unbounded_as_gthread_does(tmp_path):
    """`--timeout 0` is gunicorn's "no timeout" (Cloud Run's examples set it): the client's
    socket was put in non-blocking mode, and a body not all arrived when the app read it was
    cut (the 400 of a short body, at once), so uploads failed on any real link."""
    env = server_env(tmp_path / "instance")
    body = b'{"push": {"payload": "a secret"}}'
    with gunicorn(env, tmp_path / "log", args=("--timeout", "0")) as server:
        conn = _stalled(server.port, b"POST /api/v2/pushes HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:10]))
        conn.settimeout(2)
        with pytest.raises(TimeoutError):  # (was: a 400 at once)
            conn.recv(100)
        conn.sendall(body[10:])
        conn.settimeout(20)
        assert conn.recv(100).startswith(b"HTTP/1.1 201 ")
        conn.close()


def test_a_large_download_read_slowly_is_not_cut(tmp_path):
    """A write waits until the kernel takes more of the answer, which it does only once a third
    of its send buffer (up to 4 MiB) is free: a client reading a file at 640 KB/s was cut after
    4 MiB, the wait being longer than `timeout` (1 s here; 30 s cut below about 45 KB/s). A write
    is given up only when the client took nothing in `timeout`."""
    env = server_env(tmp_path / "instance")
    data = os.urandom(6 * 1024 * 1024)
    body = (b'--b0undary\r\nContent-Disposition: form-data; name="push[files][]"; filename="big.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b0undary--\r\n")
    with gunicorn(env, tmp_path / "log", args=("--timeout", "1")) as server:
        token = create_user(env, "slow@example.com")
        status, _headers, raw = server.request("POST", "/api/v2/pushes", body=body, headers={
            **bearer(token), "Content-Type": "multipart/form-data; boundary=b0undary"})
        assert status == 201
        status, push = server.json("GET", f"/api/v2/pushes/{json.loads(raw)['url_token']}", headers=bearer(token))
        link = urlsplit(push["files"][0]["url"]).path
        conn = socket.create_connection(("127.0.0.1", server.port))
        conn.sendall(f"GET {link} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
        conn.settimeout(20)
        received = bytearray()
        while chunk := conn.recv(64 * 1024):
            received.extend(chunk)
            threading.Event().wait(0.1)  # (640 KB/s at most)
        conn.close()
        head, _, got = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert len(got) == len(data) and got == data  # (was: 4 MiB of 6)


def test_the_apps_log_lines_reach_gunicorns_error_log_once_at_its_level(tmp_path):
    """The app's logger (`pwp`) says that an account changed (INFO), a push was made (DEBUG):
    under gunicorn such lines went nowhere (Python's default level, WARNING, applied) and its
    warnings to stderr without gunicorn's format. Now gunicorn's level and error log apply,
    one line each, and `flask` commands print them to stderr at LOG_LEVEL."""
    pattern = re.compile(r"^\[[^]]+\] \[\d+\] \[DEBUG\] push \d+ created \(kind text\)$", re.MULTILINE)
    for level, expected in (("debug", 1), ("info", 0)):  # (a push made: DEBUG, see pushes.create)
        env = server_env(tmp_path / "instance", LOG_LEVEL=level)
        log_path = tmp_path / f"{level}.log"
        with gunicorn(env, log_path) as server:
            status, body = server.json("POST", "/api/v2/pushes", {"push": {"payload": "p4yl0ad-marker"}})
            assert status == 201
        logs = log_path.read_text()
        assert len(pattern.findall(logs)) == expected, logs[-2000:]
        assert "p4yl0ad-marker" not in logs and body["url_token"] not in logs
    env = server_env(tmp_path / "instance")
    create_user(env, "logged@example.com")
    made = flask(env, "users", "admin", "logged@example.com")
    assert re.search(r"INFO in auth: user \d+: made an administrator from the command line$", made.stderr,
                     re.MULTILINE) and "logged@example.com" not in made.stderr
    quiet = flask(server_env(tmp_path / "instance", LOG_LEVEL="warning"), "users", "admin", "--revoke",
                  "logged@example.com")
    assert "no longer an administrator" in quiet.stdout  # (stderr: only the warning that none is left)
    assert quiet.stderr.strip() == "warning: no administrator is left; make one with: flask --app pwpush users admin EMAIL"
    assert "LOG_LEVEL: expected debug" in flask(server_env(tmp_path / "instance", LOG_LEVEL="loud"),
                                                "users", "list", check=False).stderr


def test_static_files_for_a_client_that_stopped_reading_do_not_hold_the_thread(tmp_path):
    """gunicorn sends a static file with sendfile(), past pwp/workers.py's bounded sendall: once
    pipelined requests on a kept-alive connection had filled the socket's buffers, Python's
    socket.sendfile waited for room with no timeout and a client that stopped reading held the
    thread for good (one 15 KB file alone fits the buffers). gunicorn.conf.py turns sendfile
    off; the writes' bound lets the client go (the main loop's, which sends what the socket did
    not take: the /up requests no longer wait for the thread meanwhile)."""
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log", args=("--timeout", "2", "--threads", "1")) as server:
        hog = socket.socket()
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect(("127.0.0.1", server.port))
        hog.sendall(b"GET /static/app.css HTTP/1.1\r\nHost: h\r\n\r\n" * 1000)  # 15 MB of answers, never read
        # The one thread serves these and the hog's requests in turn, until the hog's stall.
        for _ in range(1000):
            status, _headers, _body = server.request("GET", "/up", timeout=60)  # (was: never)
            assert status == 200
        _until_let_go(server.port, hog)
        hog.settimeout(60)
        received = 0
        while chunk := hog.recv(1 << 20):  # (then the end: it was let go)
            received += len(chunk)
        assert received < 1000 * 15000
        hog.close()
        assert "Traceback" not in server.logs()


def _until_let_go(port, conn):
    """Return once the server's end of conn is no longer established (it closed it), by Linux's
    /proc/net/tcp, without reading from conn."""
    import time

    deadline = time.monotonic() + 30  # (a failure guard only)
    ends = (f":{port:04X}", f":{conn.getsockname()[1]:04X}")
    while True:
        with open("/proc/net/tcp") as table:
            rows = [fields for fields in map(str.split, list(table)[1:])]
        if not any(row[1].endswith(ends[0]) and row[2].endswith(ends[1]) and row[3] == "01" for row in rows):
            return
        assert time.monotonic() < deadline


def _until_closed(conn) -> bytes:
    """Everything the server sent on `conn` until it closed it."""
    conn.settimeout(20)  # (a failure guard only)
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    conn.close()
    return received


def _still_open(conn) -> bool:
    """Whether the server neither answered nor closed the connection (yet)."""
    conn.setblocking(False)
    try:
        conn.recv(1)
    except BlockingIOError:
        return True
    except ConnectionResetError:
        pass
    finally:
        conn.setblocking(True)
    return False


def test_clients_that_send_half_a_head_hold_no_thread(tmp_path):
    """Four connections that each sent half a request head (two more than the threads) kept
    /up unanswered for 61 s: each held a thread for up to `timeout` (and one that sends a
    byte every 29 s, for good). Heads are now read in the worker's main loop, without a thread."""
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log", args=("--threads", "2")) as server:
        halves = [_stalled(server.port, b"GET /up HTTP/1.1\r\nHost: x\r\n") for _ in range(2 + 2)]
        status, _headers, _body = server.request("GET", "/up", timeout=10)  # (was: a TimeoutError)
        assert status == 200
        assert all(_still_open(half) for half in halves)  # (answered while they wait)
        for half in halves:
            half.sendall(b"Connection: close\r\n\r\n")  # (their heads, complete late, are served)
            assert _until_closed(half).startswith(b"HTTP/1.1 200 ")


def test_heads_in_pieces_pipelined_large_or_bad_are_read_as_before(tmp_path):
    """The head read in the main loop is given back to gunicorn's parser whole: a head sent a
    byte at a time, requests pipelined on one connection, a POST whose head and body come in
    pieces, a header near gunicorn's limit, and the parser's own 4xx for a field or request
    line past it or a bare LF."""
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log") as server:
        conn = socket.create_connection(("127.0.0.1", server.port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
            conn.sendall(bytes([byte]))
        assert _until_closed(conn).startswith(b"HTTP/1.1 200 ")

        conn = socket.create_connection(("127.0.0.1", server.port))
        conn.sendall(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\nGET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = _until_closed(conn)
        assert answers.count(b"HTTP/1.1 200 ") == 3 and b"Disallow" in answers

        body = b'{"push": {"payload": "a secret"}}'
        conn = socket.create_connection(("127.0.0.1", server.port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (b"POST /api/v2/pushes HTTP/1.1\r\nHo", b"st: x\r\nContent-Type: application/json\r",
                      b"\nConnection: close\r\nContent-Length: %d\r\n\r" % len(body), b"\n" + body[:5], body[5:]):
            conn.sendall(piece)
        answer = _until_closed(conn)
        assert answer.startswith(b"HTTP/1.1 201 ") and b'"url_token"' in answer

        for head, status in ((b"X-Big: " + b"a" * 8000, b"200"), (b"X-Big: " + b"a" * 9000, b"431"),
                             (b"X-Bare: lf\n", b"400")):
            conn = socket.create_connection(("127.0.0.1", server.port))
            conn.sendall(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n\r\n")
            assert _until_closed(conn).startswith(b"HTTP/1.1 " + status), head[:10]
        conn = _stalled(server.port, b"GET /" + b"a" * 5000)  # (no end of line: the 414 at once)
        assert _until_closed(conn).startswith(b"HTTP/1.1 414 ")
        assert "Traceback" not in server.logs()


def test_a_head_not_complete_within_the_timeout_is_dropped_without_an_answer(tmp_path):
    """The whole head must come within `timeout`: a byte every half second kept a thread for
    good (each read waited less than the bound)."""
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log", args=("--timeout", "2")) as server:
        conn = _stalled(server.port, b"GET /up HTTP/1.1\r\nX-Slow: ")
        conn.settimeout(0.5)  # (the pace of the bytes, not a measured timing)
        for _ in range(40):  # 20 s at most: a failure guard
            try:
                assert conn.recv(100) == b""  # closed, with no answer
                break
            except TimeoutError:
                conn.sendall(b"a")
        else:
            pytest.fail("the slow head was never dropped")  # (was: here)
        conn.close()
        assert server.request("GET", "/up", timeout=10)[0] == 200


def test_a_head_past_gunicorns_limits_gets_its_431_at_once(tmp_path):
    """A head longer than gunicorn's limits allow before its end (a field too long, too many
    fields) was closed without an answer; gunicorn's sync worker answers its 431 (`max buffer
    headers`) once the head passes them, and so does this one now, then closes."""
    env = server_env(tmp_path / "instance")
    args = ("--limit-request-fields", "2", "--limit-request-field_size", "100")
    with gunicorn(env, tmp_path / "log", args=args) as server:
        for head in (b"X-Long: " + b"a" * 5000, b"X-Many: a\r\n" * 500):
            conn = _stalled(server.port, b"GET /up HTTP/1.1\r\n" + head)
            answer = _until_closed(conn)  # (was: b"")
            assert answer.startswith(b"HTTP/1.1 431 "), head[:10]
            assert b"\r\nConnection: close\r\n" in answer
        assert server.request("GET", "/up", timeout=10)[0] == 200
        assert "Traceback" not in server.logs()
        assert server.logs().count("Invalid request from ip=127.0.0.1: max buffer headers") == 2


def test_clients_that_do_not_close_after_the_answer_do_not_stop_the_worker(tmp_path):
    """gunicorn lingers for the client's end of a connection it closes (up to 2 s, dropping
    what still comes), in the worker's main loop: clients that sent `Connection: close`, or a
    head past the limits (the 431), and then neither closed nor sent stopped the whole worker
    2 s each, one after the other. The poller waits for them now: a request that comes
    meanwhile is answered while they still linger (was: once each was closed, and a byte
    they sent after it was answered with a reset)."""
    env = server_env(tmp_path / "instance")
    args = ("--limit-request-fields", "2", "--limit-request-field_size", "100")
    with gunicorn(env, tmp_path / "log", args=args) as server:
        lingering = [_stalled(server.port, b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                     _stalled(server.port, b"GET /up HTTP/1.1\r\n" + b"X-Long: " + b"a" * 5000)]
        for conn, status in zip(lingering, (b"200", b"431")):
            conn.settimeout(20)  # (a failure guard only)
            answer = b""
            while chunk := conn.recv(65536):  # the answer, then the server's end of the connection
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 " + status)
        assert server.request("GET", "/up", timeout=10)[0] == 200
        for conn in lingering:
            for _ in range(2):  # still read and dropped by the server (was: closed: a reset, then EPIPE)
                conn.sendall(b"x")
            conn.close()
        assert "Traceback" not in server.logs()


def test_a_chunked_body_gunicorn_cannot_parse_gets_a_400_that_says_close(tmp_path):
    """gunicorn closes the connection after a body it could not parse (where the next request
    starts is unknown), but its 400 said `Connection: keep-alive`. A chunk size with blanks
    after it and no extension (`5 `, RFC 9112 allows none there: gunicorn's 400) is refused as
    it comes, its chunk's data not waited for (was: until `timeout`)."""
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log") as server:
        for body in (b"zz\r\n\r\n", b"5\r\nabcdeXX\r\n0\r\n\r\n", b"5 \r\n", b"5;a=\r\n"):
            conn = _stalled(server.port, b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                         b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
            head = _until_closed(conn).partition(b"\r\n\r\n")[0]
            assert head.startswith(b"HTTP/1.1 400 ") and b"\r\nConnection: close\r\n" in head, body
        assert "Traceback" not in server.logs()


def test_a_chunked_body_the_app_left_unread_and_gunicorn_cannot_parse_gets_no_second_answer(tmp_path):
    """A request whose chunked body the app never read (a POST without a Content-Type, answered
    at once) had that body drained after its answer, for the kept-alive connection; a chunk
    gunicorn could not parse there made it write a second answer, its own 400, on the same
    connection: a client reads that as the answer to its next request. The connection is
    now closed after the app's one answer."""
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log") as server:
        for body in (b"zz\r\n\r\n", b"5\r\nabcdeXX\r\n0\r\n\r\n"):
            conn = _stalled(server.port, b"POST /p.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                         b"\r\n\r\n" + body + b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
            answers = _until_closed(conn)
            assert answers.startswith(b"HTTP/1.1 400 "), body
            assert answers.count(b"HTTP/1.1 ") == 1, answers  # (was: the app's 400, then gunicorn's)
        assert server.request("GET", "/up", timeout=10)[0] == 200
        assert "Traceback" not in server.logs()


def test_the_unfinished_heads_held_are_bounded_all_together(tmp_path):
    """A head may be as long as gunicorn's limits allow (810 KB by default) and never end:
    held by the main loop for `timeout`, 1000 connections of them (worker_connections) took
    800 MB of the worker's memory. Past HEADS_HELD all together, the connection that would
    add to them is dropped."""
    from pwp.worker_heads import HEADS_HELD
    env = server_env(tmp_path / "instance")
    head = b"GET /up HTTP/1.1\r\n" + (b"X-A: " + b"a" * 8100 + b"\r\n") * 100
    with gunicorn(env, tmp_path / "log") as server:
        conns, dropped = [], 0
        for _ in range(HEADS_HELD // len(head) + 1):
            try:
                conns.append(_stalled(server.port, head))
            except (BrokenPipeError, ConnectionResetError):
                dropped += 1
        assert server.request("GET", "/up", timeout=10)[0] == 200
        dropped += sum(not _still_open(conn) for conn in conns)  # (was: none)
        assert dropped == 1 and _still_open(conns[0])
        for conn in conns:
            conn.close()


def _threads_kept_busy(server, env, count) -> list:
    """`count` connections that each hold a thread: a download larger than the kernel's buffers,
    not read, with no room left for it in the worker's spool (the server run with BUSY_SPOOL,
    a body kept unfinished fills it): its thread waits in a write; closing the connections
    lets it go. (Clients stalled mid-body held threads so before bodies were read in the main
    loop, and downloads not read before the main loop sent the rest of answers.)"""
    token = create_user(env, "busy@example.com")
    data = os.urandom(12 * 1024 * 1024)
    body = (b'--b0undary\r\nContent-Disposition: form-data; name="push[expire_after_views]"\r\n\r\n10\r\n'
            b'--b0undary\r\nContent-Disposition: form-data; name="push[files][]"; filename="big.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b0undary--\r\n")
    status, _headers, raw = server.request("POST", "/api/v2/pushes", body=body, headers={
        **bearer(token), "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert status == 201
    status, push = server.json("GET", f"/api/v2/pushes/{json.loads(raw)['url_token']}", headers=bearer(token))
    link = urlsplit(push["files"][0]["url"]).path
    cap = int(BUSY_SPOOL["PWPUSH_BODIES_SPOOLED"])
    lazy = _sending_slowly(server.port, b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                           b"\r\nContent-Length: %d\r\n\r\n" % cap, b"{" + b" " * (cap - 256 * 1024))
    _wait_until_read(server.port, [lazy])
    conns = [lazy]
    for _ in range(count):
        conn = socket.socket()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.connect(("127.0.0.1", server.port))
        conn.sendall(f"GET {link} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        conn.settimeout(20)  # (a failure guard only)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += conn.recv(1024)
        assert answer.startswith(b"HTTP/1.1 200 ")
        conns.append(conn)
    return conns


# A spool too small for _threads_kept_busy's answers: their threads write on themselves.
BUSY_SPOOL = {"PWPUSH_BODIES_SPOOLED": str(16 * 1024 * 1024)}


def test_heads_waiting_for_a_busy_thread_count_in_the_heads_held(tmp_path):
    """A whole head is read before its connection waits for a thread: while both threads were
    busy (two clients stalled mid-body then; now two downloads not read), complete heads of 800 KB piled up in the thread
    pool's queue uncounted, 300 of them took the worker from 79 MB to 311 MB (measured by
    hand), 1000 (worker_connections) would take 800 MB. They count in HEADS_HELD until their
    request is done."""
    from pwp.worker_heads import HEADS_HELD
    env = server_env(tmp_path / "instance", **BUSY_SPOOL)
    head = (b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + (b"X-A: " + b"a" * 8100 + b"\r\n") * 98 + b"\r\n")  # (100 fields: gunicorn's limit)
    with gunicorn(env, tmp_path / "log", args=("--threads", "2")) as server:
        busy = _threads_kept_busy(server, env, 2)
        conns = [_stalled(server.port, head) for _ in range(HEADS_HELD // len(head))]
        try:  # the one that would take them past HEADS_HELD is dropped, without an answer
            assert _until_closed(_stalled(server.port, head)) == b""  # (was: a TimeoutError)
        except (BrokenPipeError, ConnectionResetError):
            pass  # (the server closed it with the head's rest unread)
        assert all(_still_open(conn) for conn in conns)
        for conn in busy:
            conn.close()
        assert _until_closed(conns[0]).startswith(b"HTTP/1.1 200 ")  # (the others are served)
        for conn in conns[1:]:
            conn.close()
        assert server.request("GET", "/up", timeout=10)[0] == 200


def test_heads_past_gunicorns_limits_waiting_for_their_431_do_not_count_in_the_heads_held(tmp_path):
    """A head past gunicorn's limits is answered (431) without its bytes: they counted in
    HEADS_HELD (~830 KB each) until the answer was sent, so while both threads were busy, 40
    of them made the worker drop every further connection, their own included."""
    from pwp.worker_heads import HEADS_HELD
    env = server_env(tmp_path / "instance", **BUSY_SPOOL)
    over = b"GET /up HTTP/1.1\r\nHost: x\r\n" + (b"X-A: " + b"a" * 8100 + b"\r\n") * 103  # (past 823 KB)
    with gunicorn(env, tmp_path / "log", args=("--threads", "2")) as server:
        busy = _threads_kept_busy(server, env, 2)
        refused = [_stalled(server.port, over) for _ in range(HEADS_HELD // len(over) + 2)]
        served = _stalled(server.port, b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _wait_until_read(server.port, refused)
        assert _still_open(served) and all(_still_open(conn) for conn in refused)  # (was: the last dropped)
        for conn in busy:
            conn.close()
        assert all(_until_closed(conn).startswith(b"HTTP/1.1 431 ") for conn in refused)
        assert _until_closed(served).startswith(b"HTTP/1.1 200 ")
        assert "Traceback" not in server.logs()


def _wait_until_read(port, conns, unread_max=65536):
    """Return once the server took what conns sent (or dropped them): by Linux's /proc/net/tcp,
    each of them that is still established has at most unread_max bytes (a head's last 64 KB)
    that the server's worker did not read, counting both the bytes still in the client's send
    queue and those in the server's receive queue for it. (Counting each queue alone made a
    head the worker stops reading past gunicorn's limits wait for ever whenever the server's
    receive window, smaller under load, could not take its rest: the client kept sending.)"""
    import time

    deadline = time.monotonic() + 30  # (a failure guard only)
    server = f":{port:04X}"
    clients = {f":{conn.getsockname()[1]:04X}" for conn in conns}
    while True:
        with open("/proc/net/tcp") as table:
            rows = [fields for fields in map(str.split, list(table)[1:]) if fields[3] == "01"]  # (ESTABLISHED)
        waiting = dict.fromkeys(clients, 0)
        for local, remote, queues in ((row[1], row[2], row[4]) for row in rows):
            tx, rx = (int(queue, 16) for queue in queues.split(":"))
            if local[-5:] in clients and remote.endswith(server):
                waiting[local[-5:]] += tx  # (sent by the client, not yet taken by the server)
            elif local.endswith(server) and remote[-5:] in clients:
                waiting[remote[-5:]] += rx  # (taken by the server's kernel, not read by its worker)
        behind = [client for client, count in waiting.items() if count > unread_max]
        if not behind:
            return
        assert time.monotonic() < deadline, [waiting[client] for client in behind]


def test_the_start_up_notes_come_once_whatever_the_worker_count(tmp_path):
    """Each worker loads the app, and each said the start-up notes (a mistyped setting, what
    notify by e-mail does): three workers, each said three times. The first worker gunicorn
    starts says them; the others it starts with it do not."""
    env = server_env(tmp_path / "instance", PWP__NO_SUCH_SETTING="1")
    log_path = tmp_path / "log"
    with gunicorn(env, log_path, workers=3) as server:
        while log_path.read_text().count("Booting worker with pid") < 3:  # (each loads the app, then serves)
            assert server.process.poll() is None
            try:
                server.process.wait(timeout=0.05)  # (the pause between looks; returns if gunicorn died)
            except subprocess.TimeoutExpired:
                pass
        assert server.request("GET", "/up", timeout=10)[0] == 200
    logs = log_path.read_text()  # (stopped: each worker was past its start-up)
    assert logs.count("Ignored, not a pwpush setting: PWP__NO_SUCH_SETTING.") == 1, logs
    assert logs.count("Notify by e-mail is off") == 1


BOOT = re.compile(r"Booting worker with pid: (\d+)")


def _until(server, count, what=None):
    """Wait until `count` workers of the server booted (or its log said `what` `count` times);
    the pids of those that booted."""
    while (server.logs().count(what) if what else len(BOOT.findall(server.logs()))) < count:
        assert server.process.poll() is None
        try:
            server.process.wait(timeout=0.05)  # (the pause between looks; returns if gunicorn died)
        except subprocess.TimeoutExpired:
            pass
    return [int(pid) for pid in BOOT.findall(server.logs())]


def test_a_planned_restart_of_the_worker_that_said_the_start_up_notes_says_nothing(tmp_path):
    """The worker in place of the one that said them said them again, after its max_requests
    too (a restart gunicorn plans, every N requests)."""
    env = server_env(tmp_path / "instance", PWP__NO_SUCH_SETTING="1")
    note = "Ignored, not a pwpush setting: PWP__NO_SUCH_SETTING."
    with gunicorn(env, tmp_path / "log", args=("--max-requests", "2")) as server:
        _until(server, 1, note)
        for restarts in (1, 2):
            while len(BOOT.findall(server.logs())) < restarts + 1:  # (each second request ends the worker)
                server.request("GET", "/up", timeout=10)
        assert server.request("GET", "/up", timeout=10)[0] == 200
    logs = server.logs()  # (stopped: each worker was past its start-up)
    assert "Autorestarting worker after current request." in logs and logs.count(note) == 1, logs
    assert logs.count("Notify by e-mail is off") == 1


def test_the_start_up_notes_come_once_per_start_and_once_per_reload(tmp_path):
    """Workers gunicorn started after its first batch each said the start-up notes again: one
    more at each TTIN, every worker of a reload (HUP). Now the first worker of a start or of a
    reload (the code or settings may have changed) says them; one more worker, or one in place
    of another, does not, unless it takes the place of the worker that said them (which may
    have ended before it did: the notes are not lost)."""
    import signal

    env = server_env(tmp_path / "instance", PWP__NO_SUCH_SETTING="1")
    log_path = tmp_path / "log"
    note = "Ignored, not a pwpush setting: PWP__NO_SUCH_SETTING."
    with gunicorn(env, log_path, workers=2) as server:
        def until(count, what=None):
            return _until(server, count, what)

        until(2), until(1, note)
        server.process.send_signal(signal.SIGTTIN)  # (one more worker, the same configuration)
        until(3)
        server.process.send_signal(signal.SIGHUP)  # (a reload: two new workers)
        until(5), until(2, note)
        server.process.send_signal(signal.SIGTTIN)
        added = until(6)[5]
        said = re.findall(r"\[(\d+)\] \[WARNING\] " + re.escape(note), log_path.read_text())
        assert len(said) == 2, said  # (once at the start, once at the reload)
        said_by = int(said[1])
        os.kill(added, signal.SIGKILL)  # (in its place a worker that says nothing)
        until(7)
        os.kill(said_by, signal.SIGKILL)  # (in its place one that says them)
        until(8), until(3, note)
        assert server.request("GET", "/up", timeout=10)[0] == 200
    logs = log_path.read_text()  # (stopped: each worker was past its start-up)
    assert logs.count(note) == 3, logs
    assert logs.count("Notify by e-mail is off") == 3


def _sending_slowly(port, head: bytes, first: bytes) -> socket.socket:
    """A connection that sent a request's head and the first bytes of its body, the rest to come."""
    conn = socket.create_connection(("127.0.0.1", port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.sendall(head + first)
    return conn


def test_clients_that_send_a_body_slowly_hold_no_thread(tmp_path):
    """A client that sent a body a byte now and then (within `timeout` each) held a thread
    for as long as it cared to: two of them stopped the default setting's two threads for
    everyone. Bodies are now read in the worker's main loop, declared (Content-Length) or
    chunked, and handed to a thread whole: the slow ones, still unfinished, do not keep a
    push from being made and read, and are served whole once they end."""
    env = server_env(tmp_path / "instance")
    body = json.dumps({"push": {"payload": "slowly sent", "expire_after_views": 2}}).encode()
    json_head = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\n")
    with gunicorn(env, tmp_path / "log", args=("--threads", "2")) as server:
        declared = [_sending_slowly(server.port, json_head + b"Content-Length: %d\r\n\r\n" % len(body), body[:1])
                    for _ in range(2)]
        chunked = _sending_slowly(server.port, json_head + b"Transfer-Encoding: chunked\r\n\r\n",
                                  b"%x\r\n%s" % (len(body), body[:1]))
        for conn in declared + [chunked]:
            conn.sendall(body[1:2])  # (a byte more: a thread reading it would be waiting for the next)
        status, made = server.json("POST", "/api/v2/pushes", {"push": {"payload": "prompt"}})  # (was: a timeout)
        assert status == 201
        status, read = server.json("GET", f"/api/v2/pushes/{made['url_token']}")
        assert status == 200 and read["payload"] == "prompt"
        assert all(_still_open(conn) for conn in declared + [chunked])  # (unfinished, unanswered)
        for conn in declared:
            conn.sendall(body[2:])
        chunked.sendall(body[2:] + b"\r\n0\r\n\r\n")
        for conn in declared + [chunked]:
            head, _, answer = _until_closed(conn).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 201 ")
            token = json.loads(answer)["url_token"]
            assert server.json("GET", f"/api/v2/pushes/{token}")[1]["payload"] == "slowly sent"
        assert "Traceback" not in server.logs()


def test_a_body_that_stops_coming_is_answered_as_a_short_one_and_pipelined_requests_follow_bodies(tmp_path):
    """A body whose client sends nothing more for `timeout` gets the app's 400 for a short body
    (as when its thread's read timed out), without a thread waiting; requests pipelined after a
    body, in the same packet or the next, and a kept-alive connection's next body, are served."""
    env = server_env(tmp_path / "instance")
    body = b'{"push": {"payload": "a secret"}}'
    post = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    with gunicorn(env, tmp_path / "log", args=("--timeout", "2")) as server:
        conn = _sending_slowly(server.port, post, body[:3])
        assert _until_closed(conn).startswith(b"HTTP/1.1 400 ")

        conn = _sending_slowly(server.port, post, body[:3])
        conn.sendall(body[3:] + post + body[:5])
        conn.sendall(body[5:] + b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = _until_closed(conn)
        assert answers.count(b"HTTP/1.1 201 ") == 2 and answers.count(b"HTTP/1.1 200 ") == 1, answers
        assert "Traceback" not in server.logs()


def test_curl_uploading_a_file_gets_its_100_continue_once_and_the_file_comes_back_intact(tmp_path):
    """curl sends `Expect: 100-continue` with a large upload and waits for the interim answer
    before it sends the body: the main loop, reading the body before a thread takes the
    request, answers it (the thread does not answer it again). The file, over BODY_IN_MEMORY
    (written to a temporary file on its way), is stored whole."""
    env = server_env(tmp_path / "instance")
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "big.bin").write_bytes(data)
    with gunicorn(env, tmp_path / "log") as server:
        token = create_user(env, "curl@example.com")
        done = subprocess.run(
            ["curl", "-sS", "-v", "--expect100-timeout", "300", "-H", "Expect: 100-continue",
             "-H", f"Authorization: Bearer {token}", "-F", f"push[files][]=@{tmp_path / 'big.bin'}",
             f"{server.url}/api/v2/pushes"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("< HTTP/1.1 100 Continue") == 1, done.stderr
        assert "< HTTP/1.1 201 " in done.stderr
        status, push = server.json("GET", f"/api/v2/pushes/{json.loads(done.stdout)['url_token']}",
                                   headers=bearer(token))
        status, _headers, got = server.request("GET", urlsplit(push["files"][0]["url"]).path)
        assert status == 200 and got == data
        assert "Traceback" not in server.logs()


def test_a_body_longer_than_the_app_takes_gets_its_413_and_the_connection_closes(tmp_path):
    """A Content-Length over the app's limit (MAX_CONTENT_LENGTH) is answered at once, as
    before, unread; the answer said keep-alive, and its thread then drained the body the client
    would not send, for up to `timeout` a read: a thread held per such request. Now the answer
    says close and the connection closes."""
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log") as server:
        conn = _stalled(server.port, b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                     b"\r\nContent-Length: 100000000\r\n\r\n{")
        head, _, answer = _until_closed(conn).partition(b"\r\n\r\n")  # (was: keep-alive)
        assert head.startswith(b"HTTP/1.1 413 ") and b"\r\nConnection: close\r\n" in head
        assert json.loads(answer) == {"status": 413, "error": "Request Entity Too Large"}
        assert "Traceback" not in server.logs()


def test_a_chunked_body_the_main_loop_lets_go_unfinished_is_not_waited_for_by_a_thread(tmp_path):
    """The main loop hands a chunked body to a thread before gunicorn's parser would say it
    ended: at a bare LF (gunicorn reads on for the CRLF: "5\\nhello\\n0\\n\\n" was whole for the
    main loop), or past the app's limit in bytes sent, its content under it (chunk extensions
    thousands of bytes long, one byte of content each). The thread then waited for the rest of
    the body, and two clients that sent a byte within each `timeout` held both threads of the
    default setting for as long as they cared to. The thread now reads nothing more from them:
    each gets its answer at once (the bare LF gunicorn's 400; the body past the app's limit in
    bytes sent the worker's 413, no thread taken) and the connection closes."""
    env = server_env(tmp_path / "instance", PWP__FILES__MAX_TOTAL_BYTES=1024)  # (MAX_CONTENT_LENGTH: 12.2 MiB)
    head = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"1;" + b"e" * 8000 + b"\r\n \r\n"  # (a chunk extension gunicorn takes)
    inflated = b"1\r\n{\r\n" + chunk * (13 * 1024 * 1024 // len(chunk))  # (past it, 1.6 KB of content)
    with gunicorn(env, tmp_path / "log", args=("--timeout", "120")) as server:
        conns = [_stalled(server.port, head + b"5\nhello\n0\n\n"), _stalled(server.port, head + inflated)]
        for conn, status in zip(conns, (b"400", b"413")):
            conn.sendall(b"1\r\n")  # (a thread reading on would take it and wait for more)
            answer = _until_closed(conn).partition(b"\r\n\r\n")[0]  # (was: a TimeoutError)
            assert answer.startswith(b"HTTP/1.1 %s " % status) and b"\r\nConnection: close\r\n" in answer, answer
        assert server.request("GET", "/up", timeout=20)[0] == 200
        assert "Traceback" not in server.logs()


def test_requests_pipelined_after_a_body_written_to_a_temporary_file_come_in_order(tmp_path):
    """A body past BODY_IN_MEMORY is read from its temporary file, and the bytes after it (the
    next requests, pipelined) go back to gunicorn's reader: the last read of a chunked body took
    some of them already, and the file's rest was put before those: the next request's head came
    after the start of its body, parsed as a request line too long (and no answer at all)."""
    from pwp.worker_bodies import BODY_IN_MEMORY
    env = server_env(tmp_path / "instance")
    body = b'{"push": {"payload": "spooled"}}' + b" " * (BODY_IN_MEMORY * 3)
    post = b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    chunked = post + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"%x\r\n%s\r\n" % (len(body[at:at + 1000]), body[at:at + 1000]) for at in range(0, len(body), 1000))
    with gunicorn(env, tmp_path / "log") as server:
        conn = _stalled(server.port, chunked + b"0\r\n\r\n" + post + b"Content-Length: %d\r\n\r\n" % len(body)
                        + body + b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = _until_closed(conn)  # (was: a TimeoutError)
        assert re.findall(rb"HTTP/1\.1 \d\d\d", answers) == [b"HTTP/1.1 201", b"HTTP/1.1 201", b"HTTP/1.1 200"]
        assert "Traceback" not in server.logs()


def _spool_files(server) -> int:
    """How many temporary files (bodies spooled) the server's worker holds open."""
    pid = int(re.findall(r"Booting worker with pid: (\d+)", server.logs())[-1])
    fds = os.listdir(f"/proc/{pid}/fd")
    links = []
    for fd in fds:
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass  # (closed meanwhile)
    return sum(link.endswith(" (deleted)") for link in links)


def test_bodies_that_never_end_cannot_take_the_memory_heads_and_other_bodies_need(tmp_path):
    """~520 connections each holding a 63 KiB body unfinished (a byte within each `timeout`
    keeps them) filled HEADS_HELD, which bodies in memory (up to BODY_IN_MEMORY each) counted
    in with heads: every later request whose head or body needs a second read (a large upload,
    curl's `Expect: 100-continue`) was dropped without an answer. Bodies now stay in memory
    only while the heads and bodies held are under half of HEADS_HELD; past it they are
    written to their temporary file instead (bounded by the spool's cap): none dropped."""
    from pwp.worker_bodies import BODY_IN_MEMORY
    from pwp.worker_heads import HEADS_HELD
    env = server_env(tmp_path / "instance")
    post = b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head = post + b"Content-Length: %d\r\n\r\n" % (BODY_IN_MEMORY * 4)
    first = b"{" + b" " * (BODY_IN_MEMORY - 1024 - len(head) - 1)  # (each 63 KiB with its head)
    body = b'{"push": {"payload": "uploaded"}}' + b" " * 1000
    with gunicorn(env, tmp_path / "log") as server:
        conns = [_sending_slowly(server.port, head, first)
                 for _ in range(HEADS_HELD // (len(head) + len(first)) + 1)]
        # (Every byte read: a connection the main loop had not come to yet, its 63 KiB still in
        # the kernel, passed the 64 KB a head may leave unread, and was counted neither way.)
        _wait_until_read(server.port, conns, unread_max=0)
        assert all(_still_open(conn) for conn in conns)  # (was: the last dropped)
        assert _spool_files(server) >= len(conns) // 2 - 10  # (memory: half of HEADS_HELD)
        upload = _sending_slowly(server.port, post + b"Connection: close\r\nContent-Length: %d\r\n\r\n"
                                 % len(body), body[:10])
        _wait_until_read(server.port, [upload])
        upload.sendall(body[10:])
        assert _until_closed(upload).startswith(b"HTTP/1.1 201 ")  # (was: b"", dropped)
        head_in_pieces = _sending_slowly(server.port, b"GET /up HTTP/1.1\r\n", b"")
        _wait_until_read(server.port, [head_in_pieces])
        head_in_pieces.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
        assert _until_closed(head_in_pieces).startswith(b"HTTP/1.1 200 ")
        for conn in conns:
            conn.close()
        assert "Traceback" not in server.logs()


def test_a_full_spool_drops_the_body_that_sent_nothing_for_longest_not_the_newest(tmp_path):
    """A few clients that each sent a large body's start and then a byte within each `timeout`
    filled the spool (BODIES_SPOOLED, 1 GiB: 40 of 26 MiB): every later body past
    BODY_IN_MEMORY was dropped. A body that needs room in a full spool now takes it from the
    unfinished bodies that sent nothing for longest (PWPUSH_BODIES_SPOOLED: a smaller cap)."""
    env = server_env(tmp_path / "instance", PWPUSH_BODIES_SPOOLED=str(4 * 1024 * 1024))
    post = b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    lazy_head = post + b"Content-Length: %d\r\n\r\n" % (3584 * 1024)  # (each would fit alone)
    body = b'{"push": {"payload": "uploaded"}}' + b" " * (2 * 1024 * 1024)
    with gunicorn(env, tmp_path / "log") as server:
        lazy = []
        for _ in range(2):  # (3 MiB spooled: the later of them sent its last byte last)
            lazy.append(_sending_slowly(server.port, lazy_head, b"{" + b" " * (1536 * 1024)))
            _wait_until_read(server.port, lazy)
        status, _headers, answer = server.request(
            "POST", "/api/v2/pushes", body=body, headers={"Content-Type": "application/json"}, timeout=20)
        assert status == 201, answer  # (was: dropped, a ConnectionResetError)
        assert _until_closed(lazy[0]) == b""  # (dropped, unanswered)
        assert _still_open(lazy[1])
        lazy[1].close()
        assert "Traceback" not in server.logs()


def test_a_chunk_size_line_may_be_as_long_as_limit_request_field_size(tmp_path):
    """The main loop took a chunk-size line (its extensions) over 8190 bytes, unfinished, for
    framing gunicorn refuses, whatever limit_request_field_size said: the request went to a
    thread cut short (its 400), where gunicorn's own parser follows the setting."""
    env = server_env(tmp_path / "instance")
    body = b'{"push": {"payload": "extended"}}'
    head = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    with gunicorn(env, tmp_path / "log", args=("--limit-request-field_size", "20000")) as server:
        conn = _sending_slowly(server.port, head, b"%x;" % len(body) + b"e" * 12000)
        _wait_until_read(server.port, [conn])
        conn.sendall(b"\r\n" + body + b"\r\n0\r\n\r\n")
        assert _until_closed(conn).startswith(b"HTTP/1.1 201 ")  # (was: 400)
        assert "Traceback" not in server.logs()


def _worker_pid(server) -> int:
    return int(re.findall(r"Booting worker with pid: (\d+)", server.logs())[-1])


def _until_gone(pid, seconds):
    """Wait (bounded) until process `pid` has ended (a zombie its parent has not reaped yet counts)."""
    until = time.monotonic() + seconds
    while True:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                    return
        except (FileNotFoundError, ProcessLookupError):  # (reaped before the open, or between it and the read)
            return
        assert time.monotonic() < until, f"process {pid} still runs after {seconds} s"
        time.sleep(0.01)  # (polling a real state, bounded)


def test_bodies_spooled_by_many_clients_do_not_run_the_worker_out_of_files(tmp_path):
    """A body past BODY_IN_MEMORY takes a temporary file besides its connection: a few hundred
    slow uploads ran a worker whose soft limit on open files was 1024 (systemd's default) out
    of them at worker_connections' 1000, and gunicorn's accept() ended the worker on EMFILE
    (every connection with it). The worker raises its soft limit to the hard one."""
    from pwp.worker_bodies import BODY_IN_MEMORY
    env = server_env(tmp_path / "instance")
    head = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (BODY_IN_MEMORY * 4))
    with gunicorn(env, tmp_path / "log", nofile=(128, 4096)) as server:
        pid = _worker_pid(server)
        conns = [_sending_slowly(server.port, head, b"{" + b" " * (BODY_IN_MEMORY * 2)) for _ in range(100)]
        _wait_until_read(server.port, conns)
        assert all(_still_open(conn) for conn in conns)  # (was: reset with their worker)
        assert _spool_files(server) >= len(conns)
        assert server.request("GET", "/up", timeout=20)[0] == 200
        assert _worker_pid(server) == pid
        for conn in conns:
            conn.close()
        assert "Traceback" not in server.logs()


def _until_out_of_files(pid, limit):
    """Return once the worker holds `limit` open files, or is gone."""
    import time

    deadline = time.monotonic() + 30  # (a failure guard only)
    while True:
        try:
            if len(os.listdir(f"/proc/{pid}/fd")) >= limit:
                return
        except FileNotFoundError:
            return
        assert time.monotonic() < deadline


def test_a_worker_out_of_files_stops_accepting_until_one_is_freed_and_goes_on(tmp_path):
    """With a hard limit on open files under worker_connections, gunicorn's accept() ended the
    worker on EMFILE (every connection it held with it). The worker now accepts no more
    connections than it holds until one ends, and the clients past it wait in the backlog."""
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log", nofile=(96, 96)) as server:
        pid = _worker_pid(server)
        conns = [_stalled(server.port, b"GET /up HTTP/1.1\r\nHost: x") for _ in range(110)]
        _until_out_of_files(pid, 96)
        waiting = socket.create_connection(("127.0.0.1", server.port))
        waiting.sendall(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for conn in conns:
            conn.close()
        assert _until_closed(waiting).startswith(b"HTTP/1.1 200 ")  # (was: reset, the worker gone)
        assert server.request("GET", "/up", timeout=20)[0] == 200
        assert _worker_pid(server) == pid
        assert "Traceback" not in server.logs()


def test_a_body_whose_last_bytes_cannot_be_written_to_its_file_is_dropped_not_the_worker(tmp_path):
    """The main loop writes a spooled body's last bytes (those read with its end) to its file
    as it hands the connection to a thread: that write failing (a full disk; here a file past
    RLIMIT_FSIZE, EFBIG) raised out of the main loop and ended the worker, every connection it
    held with it. Now the body gets a 503, as when an earlier write of it fails."""
    from pwp.worker_bodies import BODY_IN_MEMORY
    env = server_env(tmp_path / "instance")
    fsize = 2 * BODY_IN_MEMORY + 65536  # (the database, the log stay smaller)
    head = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (fsize + 1024))
    start = b"{" + b" " * (BODY_IN_MEMORY + 32 * 1024)  # (its first 64 KiB written, the rest in memory)
    with gunicorn(env, tmp_path / "log", fsize=fsize) as server:
        pid = _worker_pid(server)
        files = _spool_files(server)  # (gunicorn's own: its heartbeat's)
        other = _stalled(server.port, b"GET /up HTTP/1.1\r\nHost: x")
        upload = _sending_slowly(server.port, head, start)
        _wait_until_read(server.port, [other, upload])
        upload.sendall(b" " * (fsize + 1024 - len(start)))  # (its end: < 64 KiB more in memory, one write)
        assert _until_closed(upload).startswith(b"HTTP/1.1 503 ")  # (was: dropped, unanswered)
        assert _still_open(other)  # (was: reset with its worker)
        assert _spool_files(server) == files  # (its file closed)
        other.sendall(b"\r\nConnection: close\r\n\r\n")
        assert _until_closed(other).startswith(b"HTTP/1.1 200 ")
        assert _worker_pid(server) == pid
        assert "Traceback" not in server.logs()


def _until_out_of_files_of(server, files):
    """Return once the worker holds no more temporary files than `files`."""
    import time

    deadline = time.monotonic() + 30  # (a failure guard only)
    while _spool_files(server) > files:
        assert time.monotonic() < deadline


def test_the_spool_is_whole_again_after_hundreds_of_mixed_requests(tmp_path):
    """The bytes spooled are counted in and out: after a few hundred requests whose bodies were
    spooled (kept-alive, framed badly, reset by their client, dropped for room, refused with a
    413) a body nearly as long as the spool's cap still fits (a count left over would drop it)."""
    import struct

    from pwp.worker_bodies import BODY_IN_MEMORY
    cap = 8 * BODY_IN_MEMORY
    env = server_env(tmp_path / "instance", PWPUSH_BODIES_SPOOLED=str(cap))
    post = b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

    def json(size):
        return b'{"push": {"payload": "mixed"}}' + b" " * (size - 30)

    body = json(3 * BODY_IN_MEMORY)
    framed = post + b"Content-Length: %d\r\n\r\n" % len(body) + body
    with gunicorn(env, tmp_path / "log") as server:
        pid = _worker_pid(server)
        files = _spool_files(server)  # (gunicorn's own: its heartbeat's)
        for _ in range(40):
            kept = socket.create_connection(("127.0.0.1", server.port))  # (kept alive, spooled twice)
            kept.sendall(framed + framed + b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert re.findall(rb"HTTP/1\.1 \d\d\d", _until_closed(kept)) == [b"HTTP/1.1 201"] * 2 + [b"HTTP/1.1 200"]
            bad = _sending_slowly(server.port, post + b"Transfer-Encoding: chunked\r\n\r\n",
                                  b"%x\r\n%s\r\n" % (len(body), body))
            bad.sendall(b"zz\r\n")  # (a chunk size gunicorn refuses: its 400)
            assert _until_closed(bad).startswith(b"HTTP/1.1 400 ")
            reset = _sending_slowly(server.port, post + b"Content-Length: %d\r\n\r\n" % (2 * len(body)), body)
            _wait_until_read(server.port, [reset])
            reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            reset.close()
            lazy = _sending_slowly(server.port, post + b"Content-Length: %d\r\n\r\n" % cap, json(cap - 1024)[:-1])
            _wait_until_read(server.port, [lazy])
            status, _headers, answer = server.request(  # (takes the room of the lazy one)
                "POST", "/api/v2/pushes", body=json(cap // 2), headers={"Content-Type": "application/json"},
                timeout=20)
            assert status == 201, answer
            assert _until_closed(lazy) == b""
            big = _stalled(server.port, post + b"Content-Length: %d\r\n\r\n" % (1 << 40))
            assert _until_closed(big).startswith(b"HTTP/1.1 413 ")
        # (The last body's file is let go once its thread is done, just after its answer: on a
        # busy machine the next request could come first.)
        _until_out_of_files_of(server, files)
        status, _headers, answer = server.request(
            "POST", "/api/v2/pushes", body=json(cap - 2048), headers={"Content-Type": "application/json"}, timeout=20)
        assert status == 201, answer
        assert _worker_pid(server) == pid
        assert "Traceback" not in server.logs()


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_long_body_the_app_left_unread_is_dropped_and_the_pipelined_request_answered(tmp_path, chunked):
    """A JSON body past the API's JSON limit, under the app's MAX_CONTENT_LENGTH (13 MiB, the
    main loop spooled it whole), is the app's 413, unread. Its answer said keep-alive, and
    gunicorn then drained the body from its file for 64 KiB only and closed the connection:
    the request pipelined after it was never answered. The main loop holds the whole body: its
    rest is dropped, the socket untouched, and the next request is read where it starts (never
    from the body's bytes, which here look like requests)."""
    env = server_env(tmp_path / "instance")
    fake = b"\r\n\r\nGET /desync HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b'{"push": {"payload": "' + fake * (13 * 1024 * 1024 // len(fake)) + b'"}}'
    post = b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if chunked:
        request = post + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
            b"%x\r\n%s\r\n" % (len(body[at:at + 65536]), body[at:at + 65536])
            for at in range(0, len(body), 65536)) + b"0\r\n\r\n"
    else:
        request = post + b"Content-Length: %d\r\n\r\n" % len(body) + body
    with gunicorn(env, tmp_path / "log") as server:
        conn = _stalled(server.port, request + b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = _until_closed(conn)
        assert re.findall(rb"HTTP/1\.1 \d\d\d", answers) == [b"HTTP/1.1 413", b"HTTP/1.1 200"], answers[:300]
        assert "Traceback" not in server.logs()
