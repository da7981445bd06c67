"""Profile pwpush in-process: a WSGI loop of create / retrieve / flow requests, no network.

    python bench/profile_requests.py [create|retrieve|flow|all] [-n 3000] [--profile] [--top 30]
                                     [--clients N]

Uses a throwaway instance folder (SQLite) unless DATABASE_URL is set. Prints the CPU
microseconds per request, and with --profile the cProfile functions by own and cumulative time.
Deterministic enough to compare two commits on a noisy machine (run it 3 times).

Per-IP throttling is off unless PWP__THROTTLING__MINUTE / __SECOND are set; --clients N
sends the requests from N client addresses in turn (enough that none reaches the limits),
to measure the default throttling with as many clients as a public server sees.
"""
import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BODY = json.dumps({"push": {"payload": "bench-payload-0123456789-abcdefghijklmno",
                            "expire_after_days": 1, "expire_after_views": 5}}).encode()


CLIENTS = ["127.0.0.1"]
_next_client = itertools.cycle(range(1))


def set_clients(n: int):
    """Send the following requests from n addresses in turn (10.0.0.0/8)."""
    global _next_client
    CLIENTS[:] = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)]
    _next_client = itertools.cycle(range(n))


def environ(method, path, body=b""):
    """A WSGI environ like gunicorn builds for one request from 127.0.0.1 (or the next client)."""
    env = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": CLIENTS[next(_next_client)], "REMOTE_PORT": "40000", "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_ACCEPT": "application/json", "HTTP_USER_AGENT": "wrk",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if body:
        env["CONTENT_TYPE"] = "application/json"
        env["CONTENT_LENGTH"] = str(len(body))
    return env


def call(app, method, path, body=b""):
    """Run one request through the WSGI app; return (status, body bytes)."""
    status = []
    chunks = app(environ(method, path, body), lambda s, h, e=None: status.append(s))
    data = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    return status[0], data


def create(app):
    status, data = call(app, "POST", "/api/v2/pushes", BODY)
    assert status.startswith("201"), (status, data)
    return json.loads(data)["url_token"]


def workload(app, name, n):
    """Return a function running n requests of the workload."""
    if name == "create":
        return lambda: [create(app) for _ in range(n)]
    if name == "retrieve":
        os.environ.setdefault("FILL_VIEWS", "100")
        tokens = [create(app) for _ in range(min(n, 2000))]

        def run():
            for i in range(n):
                status, data = call(app, "GET", "/api/v2/pushes/" + tokens[i % len(tokens)])
                assert status.startswith("200"), (status, data)
        # 2000 tokens x 5 views: enough for n <= 10000 successful retrieves.
        return run

    def flow():
        for _ in range(n // 2):
            status, data = call(app, "GET", "/api/v2/pushes/" + create(app))
            assert status.startswith("200") and b'"payload"' in data, (status, data)
    return flow


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", nargs="?", default="all", choices=["create", "retrieve", "flow", "all"])
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--clients", type=int, default=1, help="client addresses used in turn")
    args = ap.parse_args()
    set_clients(args.clients)
    os.environ.setdefault("PWPUSH_INSTANCE_PATH", tempfile.mkdtemp(prefix="pwpush-prof-"))
    os.environ.setdefault("PWP__THROTTLING__MINUTE", "0")
    os.environ.setdefault("PWP__THROTTLING__SECOND", "0")
    from pwp import create_app
    app = create_app()
    names = ["create", "retrieve", "flow"] if args.workload == "all" else [args.workload]
    for name in names:
        run = workload(app, name, args.n)
        workload(app, name, 200)()  # warm-up
        prof = cProfile.Profile() if args.profile else None
        t0 = time.process_time()
        if prof:
            prof.enable()
        run()
        if prof:
            prof.disable()
        us = (time.process_time() - t0) * 1e6 / args.n
        print(f"{name}: {us:.0f} us CPU per request ({args.n} requests{', profiled' if prof else ''})")
        if prof:
            stats = pstats.Stats(prof)
            print(f"{name}: {stats.total_calls / args.n:.0f} Python function calls per request "
                  "(deterministic: compare these between commits)")
            if args.top == 0:
                continue
            for key in ("tottime", "cumulative"):
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats(key).print_stats(args.top)
                print(out.getvalue())


if __name__ == "__main__":
    main()
