"""Time the maintenance commands on a large store: purge-expired and rotate-key.

    python bench/maintenance.py purge|rotate|all [-n 100000]

Fills a throwaway SQLite instance (or the database in $DATABASE_URL: give it an empty,
throwaway one) with n pushes through bench/fill_direct.py, prepares the state, then times the
real command line, `flask --app pwpush ...`, as cron would run it (process start included):
  purge: 1. expire n pushes past their time limit (ciphertext nulled);
         2. delete n anonymous pushes expired more than the grace period ago (and their events).
  rotate: re-encrypt n pushes under a new first key (PWPUSH_MASTER_KEY="new,old").
Targets: purge under 10 s, rotate under 60 s for 100 000 pushes.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def flask(env, *command):
    """Run `flask --app pwpush COMMAND`; return (seconds, last output line)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "pwpush", *command], cwd=ROOT,
                         env=env, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t0, out.strip().splitlines()[-1]


def sql(app, statement, **params):
    from sqlalchemy import text

    from pwp.models import db
    with app.app_context():
        result = db.session.execute(text(statement), params)
        rows = result.all() if result.returns_rows else None
        db.session.commit()
        return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["purge", "rotate", "all"])
    ap.add_argument("-n", type=int, default=100_000)
    args = ap.parse_args()
    from datetime import timedelta

    from cryptography.fernet import Fernet

    from fill_direct import fill
    from pwp import create_app
    from pwp.pushes import utcnow

    old_key = Fernet.generate_key().decode()
    env = dict(os.environ, PWPUSH_MASTER_KEY=old_key,
               PWPUSH_INSTANCE_PATH=tempfile.mkdtemp(prefix="pwpush-maint-"))
    os.environ.update(env)
    app = create_app()
    t0 = time.perf_counter()
    fill(app, args.n, os.path.join(env["PWPUSH_INSTANCE_PATH"], "tokens.txt"))
    print(f"fill: {args.n} pushes in {time.perf_counter() - t0:.1f} s "
          f"({app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]})")

    if args.what in ("rotate", "all"):
        # This process holds the old key alone, as a server would: rotate-key refuses while one
        # runs (pwp.instances). It stops recording itself, as a server stopped for the rotation.
        app.extensions["pwpush_heartbeat"].end()
        new_key = Fernet.generate_key().decode()
        seconds, line = flask(dict(env, PWPUSH_MASTER_KEY=f"{new_key},{old_key}"), "rotate-key")
        blob = sql(app, "SELECT payload_ciphertext FROM pushes ORDER BY id DESC LIMIT 1")[0][0]
        Fernet(new_key.encode()).decrypt(bytes(blob))  # raises unless re-encrypted under the new key
        print(f"rotate-key: {args.n} pushes in {seconds:.2f} s  ({line})")
        env["PWPUSH_MASTER_KEY"] = f"{new_key},{old_key}"

    if args.what in ("purge", "all"):
        sql(app, "UPDATE pushes SET expires_at = created_at")
        seconds, line = flask(env, "purge-expired")
        left = sql(app, "SELECT count(*) FROM pushes WHERE payload_ciphertext IS NOT NULL")[0][0]
        assert left == 0, left
        print(f"purge-expired (expire {args.n}): {seconds:.2f} s  ({line})")
        sql(app, "UPDATE pushes SET expired_on = :then", then=utcnow() - timedelta(days=2))
        seconds, line = flask(env, "purge-expired")
        left = sql(app, "SELECT count(*) FROM pushes")[0][0]
        assert left == 0, left
        print(f"purge-expired (delete {args.n}): {seconds:.2f} s  ({line})")


if __name__ == "__main__":
    main()
