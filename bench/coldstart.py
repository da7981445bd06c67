"""Cold start: seconds from starting `gunicorn pwpush:app` to the first 200 on /api/v2/version.

    python bench/coldstart.py [--reps 5] [--port 8390] [-- extra gunicorn args]

Each repetition starts gunicorn with the project's gunicorn.conf.py on a fresh, empty instance
folder (keys and SQLite database created on this start: the slowest, first-ever start), polls
every 5 ms, then stops it. Prints each time and the median. Target: under 1.5 s.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def once(port, extra):
    instance = tempfile.mkdtemp(prefix="pwpush-cold-")
    env = dict(os.environ, PWPUSH_INSTANCE_PATH=instance, PORT="", BIND=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/api/v2/version"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *extra, "pwpush:app"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                pass
            if proc.poll() is not None:
                raise SystemExit("gunicorn exited before answering")
            if time.perf_counter() - t0 > 30:
                raise SystemExit("no answer within 30 s")
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(instance, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--port", type=int, default=8390)
    ap.add_argument("extra", nargs="*", help="extra gunicorn arguments (after --)")
    args = ap.parse_args()
    times = [once(args.port, args.extra) for _ in range(args.reps)]
    print("cold start s:", " ".join(f"{t:.3f}" for t in times), f"| median {statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
