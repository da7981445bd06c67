"""Count CPU instructions per request with valgrind (callgrind): a noise-free A/B figure.

    python bench/instructions.py [create|retrieve|flow|const] [--dir CHECKOUT] [--ceiling MODE]

Wall-clock timings on a shared VM move by 10-40 % from run to run; instruction counts
move by well under 1 %, so a change of 2 % is visible. The app runs in-process (no
HTTP, no gunicorn: the same WSGI calls as bench/profile_requests.py) under valgrind twice,
with N1 and N2 measured requests after the same warm-up; the difference divided by
N2 - N1 is the count per request, start-up excluded.

  --dir DIR        measure the pwpush checkout in DIR (default: this one), e.g. a
                   `git worktree` of an older commit
  --ceiling MODE   measure the shared harness's ceiling app instead (MODE as its
                   CEILING_MODE: flask-sqlite-fernet, flask, ...)
  flow             a 1-view push created and read (its view expires it): per flow
  const            a route answering constant JSON: the framework and hooks alone

Needs valgrind (Debian package). About a minute per figure; run two at a time on two cores.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.environ.get("HARNESS", os.path.join(HERE, "..", "..", "shared", "bench"))
WARMUP_CREATES = 400  # pushes to retrieve (100 views each), made before counting starts


def run_requests(workload: str, n: int):
    """Inside valgrind: warm up, then run n requests of the workload."""
    sys.path.insert(0, HERE)
    import profile_requests as pr
    sys.path.insert(0, os.environ["BENCH_APP_DIR"])  # after profile_requests' own insert
    body = json.dumps({"push": {"payload": "bench-payload-0123456789-abcdefghijklmno",
                                "expire_after_days": 1, "expire_after_views": 100}}).encode()
    read_path = "/api/v2/pushes/"
    ceiling = os.environ.get("BENCH_CEILING")
    if ceiling:
        sys.path.insert(0, os.path.join(HARNESS, "ceiling"))
        os.environ["CEILING_MODE"] = ceiling
        os.environ["CEILING_DB"] = os.path.join(tempfile.mkdtemp(), "ceiling.db")
        import app as ceiling_app
        app = ceiling_app.application
        if ceiling == "flask":
            read_path += "constant"
    else:
        os.environ.setdefault("PWPUSH_INSTANCE_PATH", tempfile.mkdtemp(prefix="pwpush-instr-"))
        os.environ["PWP__THROTTLING__MINUTE"] = os.environ["PWP__THROTTLING__SECOND"] = "0"
        from flask import Response

        import pwp
        assert pwp.__file__.startswith(os.environ["BENCH_APP_DIR"]), pwp.__file__
        app = pwp.create_app()
        # Its record of the keys every minute (pwp.instances) is no request's: under valgrind
        # a run lasts minutes, and how many records fall in each run depends on the machine's
        # load, not on the requests. (Older checkouts, measured with --dir, have none.)
        if "pwpush_heartbeat" in app.extensions:
            app.extensions["pwpush_heartbeat"].stopping.set()
        if workload == "const":
            app.add_url_rule("/api/v2/const/<x>", "const",
                             lambda x: Response(b'{"a":1}', mimetype="application/json"))
            read_path = "/api/v2/const/constant"

    def create(body=body):
        status, data = pr.call(app, "POST", "/api/v2/pushes", body)
        assert status.startswith("201"), (status, data)
        return json.loads(data)["url_token"]

    def read(token):
        status, data = pr.call(app, "GET", read_path + ("" if read_path.endswith("constant") else token))
        assert status.startswith("200"), (status, data)

    tokens = [create() for _ in range(WARMUP_CREATES)] if workload != "const" else [""]
    for i in range(100):
        read(tokens[i % len(tokens)])
    one_view = body.replace(b'"expire_after_views": 100', b'"expire_after_views": 1')
    for i in range(n):
        if workload == "flow":
            read(create(one_view))
        elif workload == "create":
            create()
        else:
            read(tokens[i % len(tokens)])


def count(args, n: int) -> int:
    """Run n requests under callgrind; return the instructions of the whole process."""
    env = dict(os.environ, PYTHONHASHSEED="0", BENCH_APP_DIR=os.path.abspath(args.dir))
    if args.ceiling:
        env["BENCH_CEILING"] = args.ceiling
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         os.path.abspath(__file__), "--inside", args.workload, str(n)],
        env=env, cwd=args.dir, capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main():
    if sys.argv[1:2] == ["--inside"]:
        return run_requests(sys.argv[2], int(sys.argv[3]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", nargs="?", default="retrieve", choices=["create", "retrieve", "flow", "const"])
    ap.add_argument("--dir", default=os.path.dirname(HERE))
    ap.add_argument("--ceiling")
    ap.add_argument("-n", type=int, nargs=2, default=[100, 600], metavar=("N1", "N2"))
    args = ap.parse_args()
    n1, n2 = args.n
    per_request = (count(args, n2) - count(args, n1)) / (n2 - n1)
    target = f"ceiling {args.ceiling}" if args.ceiling else os.path.abspath(args.dir)
    print(f"{args.workload}: {per_request / 1000:.0f} k instructions per "
          f"{'flow' if args.workload == 'flow' else 'request'} ({target})")


if __name__ == "__main__":
    main()
