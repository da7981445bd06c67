"""Soak test of `gunicorn pwpush:app` (as the Procfile starts it, with gunicorn.conf.py) under a
mixed load for a while: API creates and retrieves (wrk with lua/flow.lua, -t1 -c2, in bursts),
file pushes of 1-10 MiB uploaded (some slowly in pieces, some cut mid-way) and downloaded
(whole, read slowly, cut, a byte range, HEAD, pipelined on one kept-alive connection),
web pages and the real `pwpush` CLI (PWPUSH_CLI, if installed). Every --every seconds one JSON
line: each worker's RSS, open files, deleted (temporary) files held, threads; the error log's
lines and tracebacks; request counts (ok/BAD); and whether a fresh API push, a 1 MiB file
(downloaded byte-identical) and a page still work. After each round, with the load stopped:
the temporary files let go, a body as large as the spool's cap accepted (its accounting back
to zero), the heads held counted back to zero (one worker), and no secret sent (payloads,
passphrases, url_tokens, the API token) anywhere in the log. Needs wrk and a free --port;
starts its own server in --dir (DATABASE_URL with --database-url)."""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent  # (the project: bench/..)
sys.path.insert(0, str(ROOT))
CLI = Path(os.environ.get("PWPUSH_CLI", Path.home() / ".cache/pwpush-tests/cli-venv-0.16.7/bin/pwpush"))
MiB = 1024 * 1024

SENT = set()          # every secret this run sent or got: none may appear in the log
SENT_LOCK = threading.Lock()
COUNTS = {}
COUNT_LOCK = threading.Lock()
STOP = threading.Event()


def secret(prefix="sk"):
    s = f"{prefix}-{secrets.token_hex(10)}"
    with SENT_LOCK:
        SENT.add(s)
    return s


def remember(value):
    if value:
        with SENT_LOCK:
            SENT.add(value)


def count(name, ok=True):
    key = f"{name}:{'ok' if ok else 'BAD'}"
    with COUNT_LOCK:
        COUNTS[key] = COUNTS.get(key, 0) + 1


class Client:
    def __init__(self, port, token):
        self.port, self.token = port, token

    def req(self, method, path, body=None, headers=None, timeout=60, auth=True):
        h = dict(headers or {})
        if auth:
            h["Authorization"] = f"Bearer {self.token}"
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def json(self, method, path, obj=None, auth=True):
        body = json.dumps(obj).encode() if obj is not None else None
        st, _h, raw = self.req(method, path, body, {"Content-Type": "application/json"} if body else {}, auth=auth)
        try:
            return st, json.loads(raw)
        except ValueError:
            return st, raw


def multipart(data: bytes, name="f.bin"):
    b = "b-" + secrets.token_hex(8)
    head = (f"--{b}\r\nContent-Disposition: form-data; name=\"push[expire_after_views]\"\r\n\r\n10\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"push[files][]\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def raw_conn(port, timeout=60):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def read_answer(s, limit=None, slow=0.0, chunk=65536):
    """Read one HTTP/1.1 answer with Content-Length from socket s; returns (status, headers, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed before head")
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    n = int(hdrs.get("content-length", 0))
    body = bytearray(rest)
    while len(body) < n:
        if limit is not None and len(body) >= limit:
            return status, hdrs, bytes(body)
        d = s.recv(min(chunk, n - len(body)))
        if not d:
            raise ConnectionError(f"closed at {len(body)}/{n}")
        body += d
        if slow:
            time.sleep(slow)
    return status, hdrs, bytes(body[:n]), bytes(body[n:])


def upload(port, token, data, mode):
    """POST a file push; mode: normal | slow | cut. Returns url_token or None."""
    body, ctype = multipart(data)
    head = (f"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    s = raw_conn(port)
    try:
        s.sendall(head)
        if mode == "cut":
            s.sendall(body[:random.randint(1, len(body) - 1)])
            return None
        try:
            if mode == "slow":
                pieces = 20
                step = len(body) // pieces + 1
                for i in range(0, len(body), step):
                    s.sendall(body[i:i + step])
                    time.sleep(random.uniform(0.05, 0.4))
            else:
                s.sendall(body)
        except OSError:
            # An answer may have come before the server stopped reading (a 503 once the head
            # was read): read it if the connection still holds it; else the upload was dropped.
            s.settimeout(2)
            try:
                r = read_answer(s)
            except OSError:
                raise ConnectionAbortedError("dropped unanswered") from None
            return ("status", r[0], r[2][:200])
        r = read_answer(s)
        if r[0] == 201:
            t = json.loads(r[2])["url_token"]
            remember(t)
            return t
        return ("status", r[0], r[2][:200])
    finally:
        s.close()


def file_loop(port, token, rng):
    while not STOP.is_set():
        size = rng.randint(1 * MiB, 10 * MiB)
        data = os.urandom(size)
        mode = rng.choices(["normal", "slow", "cut"], [6, 2, 1])[0]
        try:
            t = upload(port, token, data, mode)
        except OSError as e:
            count(f"upload_{mode}_oserror:{type(e).__name__}", mode == "cut")
            continue
        if mode == "cut":
            count("upload_cut")
            continue
        if isinstance(t, tuple):
            # A 503 from the spool's cap (the body alone passes it, or the spool is busy) is
            # expected; anything else is not.
            count(f"upload_{mode}_{t[1]}", t[1] == 503)
            if t[1] != 503 or COUNTS.get(f"upload_{mode}_503:ok", 0) < 2:
                print("upload answer", mode, len(data), t, flush=True)
            continue
        count(f"upload_{mode}")
        c = Client(port, token)
        st, push = c.json("GET", f"/api/v2/pushes/{t}")
        if st != 200:
            count("file_retrieve", False)
            continue
        path = urlsplit(push["files"][0]["url"]).path
        remember(path.rsplit("/", 1)[-1])
        kind = rng.choices(["full", "slow", "cut", "range", "head", "pipelined"], [4, 2, 2, 2, 1, 2])[0]
        try:
            download(port, token, path, data, kind, rng)
        except (OSError, AssertionError, ValueError) as e:
            count(f"download_{kind}", False)
            print(f"BAD download {kind}: {e!r}", flush=True)


def download(port, token, path, data, kind, rng):
    auth = f"Authorization: Bearer {token}\r\n"
    get = f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
    s = raw_conn(port)
    try:
        if kind == "full":
            s.sendall(get)
            st, h, body, _ = read_answer(s)
            assert st == 200 and body == data, (st, len(body))
        elif kind == "slow":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.sendall(get)
            st, h, body, _ = read_answer(s, slow=0.02, chunk=32768)
            assert st == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest(), st
        elif kind == "cut":
            s.sendall(get)
            r = read_answer(s, limit=rng.randint(1, len(data) - 1))
            assert r[0] == 200
        elif kind == "range":
            a = rng.randint(0, len(data) - 2)
            b = rng.randint(a, len(data) - 1)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Range: bytes={a}-{b}\r\n\r\n".encode())
            st, h, body, _ = read_answer(s)
            assert st == 206 and body == data[a:b + 1], (st, len(body))
        elif kind == "head":
            s.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode())
            buf = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
            assert buf.startswith(b"HTTP/1.1 200") and b"\r\n\r\n" in buf and buf.endswith(b"\r\n\r\n"), buf[:100]
        elif kind == "pipelined":
            # Three requests at once on one kept-alive connection: a range, the whole file, the version.
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Range: bytes=0-99\r\n\r\n".encode() + get
                      + b"GET /api/v2/version HTTP/1.1\r\nHost: x\r\n\r\n")
            st, h, body, rest = read_answer(s)
            assert st == 206 and body == data[:100], st
            s2 = _Prefixed(s, rest)
            st, h, body, rest = read_answer(s2)
            assert st == 200 and body == data, (st, len(body))
            st, h, body, _ = read_answer(_Prefixed(s, rest))
            assert st == 200 and (b"application_version" in body or b"api_version" in body), body[:100]
        count(f"download_{kind}")
    finally:
        s.close()


class _Prefixed:
    def __init__(self, s, prefix):
        self.s, self.prefix = s, prefix

    def recv(self, n):
        if self.prefix:
            p, self.prefix = self.prefix[:n], self.prefix[n:]
            return p
        return self.s.recv(n)


def api_loop(port, token, rng):
    c = Client(port, token)
    while not STOP.is_set():
        payload, pp = secret("pl"), secret("pp")
        st, r = c.json("POST", "/api/v2/pushes", {"push": {"payload": payload, "passphrase": pp,
                                                           "expire_after_views": 3}}, auth=rng.random() < 0.5)
        if st != 201:
            count("api_create", False)
            print("BAD create", st, r, flush=True)
            continue
        t = r["url_token"]
        remember(t)
        st, _ = c.json("GET", f"/api/v2/pushes/{t}?passphrase=wrong-{secrets.token_hex(4)}", auth=False)
        count("api_wrong_pp", st == 401)
        st, r = c.json("GET", f"/api/v2/pushes/{t}?passphrase={pp}", auth=False)
        count("api_retrieve", st == 200 and r.get("payload") == payload)
        # v1
        p1 = secret("v1")
        st, _h, raw = c.req("POST", "/p.json", f"password[payload]={p1}&password[expire_after_views]=1".encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"}, auth=False)
        if st == 201:
            t1 = json.loads(raw)["url_token"]
            remember(t1)
            st, r = c.json("GET", f"/p/{t1}.json", auth=False)
            count("v1_retrieve", st == 200 and r.get("payload") == p1)
            st, r = c.json("GET", f"/p/{t1}.json", auth=False)
            count("v1_expired", st == 200 and r.get("expired") is True)
        else:
            count("v1_create", False)
        st, r = c.json("GET", "/api/v2/pushes/active?page=1")
        count("api_active", st == 200)
        time.sleep(rng.uniform(0.05, 0.3))


def web_loop(port, token, rng):
    c = Client(port, token)
    while not STOP.is_set():
        st, r = c.json("POST", "/api/v2/pushes", {"push": {"payload": secret("web"), "retrieval_step": True}},
                       auth=False)
        t = r["url_token"] if st == 201 else None
        remember(t)
        for path in ["/", "/p/new?tab=files", "/users/sign_in", f"/p/{t}/r", f"/p/{t}", f"/p/{t}/preview",
                     "/static/app.js", "/p/nonexistent-token-xyz", "/help/api"]:
            st, h, body = c.req("GET", path, auth=False)
            count("web", st in (200, 302, 404))
            if st >= 500:
                print("BAD web", path, st, flush=True)
        time.sleep(rng.uniform(0.5, 1.5))


def cli_loop(port, token, rng, home):
    if not CLI.exists():
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PWP", "VIRTUAL_ENV"))}
    env.update(XDG_CONFIG_HOME=str(home), NO_COLOR="1", TERM="dumb", COLUMNS="250")
    url = f"http://127.0.0.1:{port}"
    subprocess.run([str(CLI), "login", "--url", url, "--email", "soak@example.com", "--token", token],
                   env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    c = Client(port, token)
    while not STOP.is_set():
        s = secret("cli")
        r = subprocess.run([str(CLI), "--json", "push", "--secret", s, "--views", "2"], env=env,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        ok = r.returncode == 0
        if ok:
            out = r.stdout
            u = json.JSONDecoder().raw_decode(out[out.find("{"):])[0]["url"]
            t = urlsplit(u).path.rstrip("/").removesuffix("/r").rsplit("/", 1)[-1]
            remember(t)
            st, j = c.json("GET", f"/api/v2/pushes/{t}", auth=False)
            ok = st == 200 and j.get("payload") == s
        count("cli", ok)
        if not ok:
            print("BAD cli", r.returncode, r.stdout[-300:], r.stderr[-300:], flush=True)
        STOP.wait(rng.uniform(10, 20))


def wrk_loop(port, seconds, rng):
    env = dict(os.environ, BENCH_LUA_DIR=str(ROOT / "bench/lua"))
    script = ROOT / "bench/lua/flow.lua"
    end = time.monotonic() + seconds
    while not STOP.is_set() and time.monotonic() < end - 5:
        d = int(min(60, end - time.monotonic()))
        r = subprocess.run(["wrk", "-t1", "-c2", f"-d{d}s", "--timeout", "10s", "-s", str(script),
                            f"http://127.0.0.1:{port}"], env=env, capture_output=True, text=True)
        m = re.search(r"^RESULT (.*)$", r.stdout, re.M)
        if m:
            res = json.loads(m.group(1))
            with COUNT_LOCK:
                COUNTS["wrk_requests"] = COUNTS.get("wrk_requests", 0) + res["requests"]
                COUNTS["wrk_errors"] = COUNTS.get("wrk_errors", 0) + res["errors"] + res["bad_body"]
        STOP.wait(rng.uniform(5, 15))  # (pauses: the load comes and goes)


# ---- the server and its figures -------------------------------------------------------------

def workers_of(master):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def figures(pid):
    """RSS, open fds, deleted files held (gunicorn's heartbeat file is one), threads of a process."""
    st = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", st).group(1)) // 1024
    thr = int(re.search(r"Threads:\s+(\d+)", st).group(1))
    fds = deleted = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(" (deleted)"):
                deleted += 1
        except OSError:
            pass
    return {"rss_mib": rss, "fds": fds, "deleted": deleted, "threads": thr}


def fresh_checks(port, token, size):
    """A request of each kind still works: API create/retrieve, a file of `size` bytes uploaded
    and downloaded byte-identical, a web page."""
    c = Client(port, token)
    out = {}
    p = secret("chk")
    st, r = c.json("POST", "/api/v2/pushes", {"push": {"payload": p}})
    ok = st == 201
    if ok:
        remember(r["url_token"])
        st, r = c.json("GET", f"/api/v2/pushes/{r['url_token']}", auth=False)
        ok = st == 200 and r["payload"] == p
    out["api"] = ok
    data = os.urandom(size)
    t = upload(port, token, data, "normal")
    ok = isinstance(t, str)
    if ok:
        st, push = c.json("GET", f"/api/v2/pushes/{t}")
        st, _h, got = c.req("GET", urlsplit(push["files"][0]["url"]).path)
        ok = st == 200 and got == data
    out["file"] = ok if ok else t
    st, _h, body = c.req("GET", "/p/new", auth=False)
    out["web"] = st == 200
    return out


def _all_read(port, conns, deadline_s=30):
    """Wait until the server's worker read everything conns sent (or dropped them): no row of
    /proc/net/tcp for them with bytes still queued, either way."""
    ends = {f":{c.getsockname()[1]:04X}" for c in conns}
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        rows = [f for f in map(str.split, list(open("/proc/net/tcp"))[1:]) if f[3] == "01"]
        busy = [r for r in rows if (r[1][-5:] in ends and int(r[4].split(":")[0], 16))
                or (r[2][-5:] in ends and r[1].endswith(f":{port:04X}") and int(r[4].split(":")[1], 16))]
        if not busy:
            return
        time.sleep(0.05)
    raise TimeoutError("the server did not read what was sent")


def _open(conn) -> bool:
    conn.setblocking(False)
    try:
        conn.recv(1)  # (the server's end closed: b"" or a reset)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        conn.setblocking(True)


def held_check(port):
    """The heads the main loop holds are counted back to zero once the load stopped: unfinished
    heads that fill HEADS_HELD to 1 KiB under it are all kept, one of 2 KiB more is dropped."""
    from pwp.worker_heads import HEADS_HELD
    big = b"GET /up HTTP/1.1\r\n" + (b"X-A: " + b"a" * 8100 + b"\r\n") * 100
    n = HEADS_HELD // len(big)
    last = HEADS_HELD - n * len(big) - 1024
    heads = [big] * n + [b"GET /up HTTP/1.1\r\nX-B: " + b"b" * (last - 26) + b"\r\n"]
    conns = []
    try:
        for h in heads:
            c = socket.create_connection(("127.0.0.1", port), timeout=30)
            c.sendall(h)
            conns.append(c)
        _all_read(port, conns)
        kept = sum(_open(c) for c in conns)
        over = socket.create_connection(("127.0.0.1", port), timeout=30)
        over.sendall(b"GET /up HTTP/1.1\r\nX-C: " + b"c" * 2048 + b"\r\n")
        _all_read(port, [over])
        over_dropped = not _open(over)
        over.close()
        return {"heads_kept": f"{kept}/{len(conns)}", "over_by_1KiB_dropped": over_dropped}
    finally:
        for c in conns:
            c.close()


def log_state(log):
    text = log.read_text(errors="replace")
    lines = text.splitlines()
    return {"log_lines": len(lines), "tracebacks": text.count("Traceback"),
            "errors": sum(1 for l in lines if "[ERROR]" in l or "[CRITICAL]" in l)}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8860)
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--every", type=float, default=180, help="seconds between figures")
    ap.add_argument("--spool", type=int, default=8 * MiB, help="PWPUSH_BODIES_SPOOLED")
    ap.add_argument("--workers", type=int, default=1, help="WEB_CONCURRENCY")
    ap.add_argument("--database-url", default="")
    ap.add_argument("--dir", default="/tmp/pwpush-soak", help="its instance, TMPDIR and log (emptied first)")
    ap.add_argument("--file-clients", type=int, default=2)
    ap.add_argument("--gunicorn-args", default="", help="GUNICORN_CMD_ARGS, e.g. --access-logfile -")
    ap.add_argument("--log-level", default="", help="LOG_LEVEL")
    ap.add_argument("--rounds", type=int, default=1, help="load rounds, each followed by a quiet check")
    a = ap.parse_args()
    d = Path(a.dir)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PWP")
           and k not in ("DATABASE_URL", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")}
    env.update(PWPUSH_INSTANCE_PATH=str(d / "instance"), PWP__THROTTLING__MINUTE="0",
               PWP__THROTTLING__SECOND="0", PWPUSH_BODIES_SPOOLED=str(a.spool),
               WEB_CONCURRENCY=str(a.workers), BIND=f"127.0.0.1:{a.port}", PYTHONUNBUFFERED="1",
               TMPDIR=str(d / "tmp"))
    (d / "tmp").mkdir()
    if a.database_url:
        env["DATABASE_URL"] = a.database_url
    if a.gunicorn_args:
        env["GUNICORN_CMD_ARGS"] = a.gunicorn_args
    if a.log_level:
        env["LOG_LEVEL"] = a.log_level
    r = subprocess.run([sys.executable, "-m", "flask", "--app", "pwpush", "users", "create", "soak@example.com"],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    token = r.stdout.strip().splitlines()[-1]
    remember(token)
    log = d / "gunicorn.log"
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "pwpush:app"], cwd=ROOT, env=env,
                              stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    print(f"master {server.pid}", flush=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if Client(a.port, token).req("GET", "/api/v2/version", auth=False, timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("server did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
        run(a, server, token, log, d)
    finally:
        STOP.set()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)


def snapshot(label, server, log, t0, extra=None):
    row = {"t_min": round((time.monotonic() - t0) / 60, 1), "label": label}
    for w in workers_of(server.pid):
        row[f"w{w}"] = figures(w)
    row.update(log_state(log))
    with COUNT_LOCK:
        row["counts"] = dict(sorted(COUNTS.items()))
    if extra:
        row.update(extra)
    print(json.dumps(row, default=repr), flush=True)
    return row


def run(a, server, token, log, d):
    t0 = time.monotonic()
    # baseline: warm once (one of each kind), then figures
    fresh_checks(a.port, token, 1 * MiB)
    snapshot("baseline", server, log, t0)
    for n in range(a.rounds):
        STOP.clear()
        load_round(a, server, token, log, d, t0, n)
    text = log.read_text(errors="replace")
    # (Each secret is a run of [A-Za-z0-9_-]: looked up among the log's runs, not searched for
    # one by one through a log of hundreds of thousands of lines.)
    leaked = sorted(SENT & set(re.findall(r"[A-Za-z0-9_-]+", text)))
    print(json.dumps({"secrets_sent": len(SENT), "secrets_in_log": leaked[:20]}), flush=True)
    print("---- log tail ----")
    print("\n".join(l for l in text.splitlines()[-40:]), flush=True)


def load_round(a, server, token, log, d, t0, n):
    port = a.port
    threads = [threading.Thread(target=wrk_loop, args=(port, a.minutes * 60, random.Random()), daemon=True),
               threading.Thread(target=api_loop, args=(port, token, random.Random()), daemon=True),
               threading.Thread(target=web_loop, args=(port, token, random.Random()), daemon=True),
               threading.Thread(target=cli_loop, args=(port, token, random.Random(), d / "cli"), daemon=True)]
    threads += [threading.Thread(target=file_loop, args=(port, token, random.Random()), daemon=True)
                for _ in range(a.file_clients)]
    for t in threads:
        t.start()
    end = time.monotonic() + a.minutes * 60
    while (left := end - time.monotonic()) > 1:
        time.sleep(min(a.every, left))
        try:
            chk = fresh_checks(port, token, 1 * MiB)
        except OSError as e:
            chk = {"error": repr(e)}
        snapshot("load", server, log, t0, {"fresh": chk})
    STOP.set()
    for t in threads:
        t.join(120)
    # quiet: wait for the worker to let go of everything (timeout 30 s bounds every client)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if all(figures(w)["deleted"] <= 1 for w in workers_of(server.pid)):
            break
        time.sleep(1)
    snapshot(f"stopped after round {n + 1}", server, log, t0)
    # a body as large as the spool's cap is accepted: its accounting came back to zero
    body, _ = multipart(b"")
    cap_data = os.urandom(a.spool - len(body))
    results = {}
    for w in range(max(1, a.workers) * 2):  # (each worker, likely)
        results[f"cap_body_{w}"] = fresh_checks(port, token, len(cap_data))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(figures(w)["deleted"] <= 1 for w in workers_of(server.pid)):
            break
        time.sleep(1)
    if a.workers == 1:
        results["held"] = held_check(port)
    snapshot(f"end of round {n + 1}", server, log, t0, results)


if __name__ == "__main__":
    main()
