"""Fill a pwpush database fast, straight through the app's models and keyring.

    python bench/fill_direct.py N OUTFILE

Creates N anonymous text pushes (view limit $FILL_VIEWS, default 100; expiry $FILL_DAYS days,
default 7; payload $BENCH_PAYLOAD) with their 'creation' audit events, in batches of
$FILL_BATCH (default 10 000) rows per transaction, and appends their url_tokens to OUTFILE,
one per line. Each row is built by pwp.pushes.new_row, as the API's create builds it.
Usable as the shared harness's FILL_CMD. Run it with the environment of the server it fills
(PWPUSH_INSTANCE_PATH or DATABASE_URL, PWPUSH_MASTER_KEY): it opens the same database and
keys, and the server may keep running (each batch is one short transaction).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fill(app, n, out, views=100, days=7, payload="bench-payload-0123456789-abcdefghijklmno",
         batch=10000):
    """Store n pushes in the app's database; append their url_tokens to the file out."""
    from sqlalchemy import insert

    from pwp import pushes
    from pwp.models import AuditKind, AuditLog, Push, db

    new = pushes.NewPush(kind="text", payload=payload, expire_after_days=days, expire_after_views=views)
    nobody = pushes.Actor()
    add_pushes = insert(Push.__table__).returning(Push.id, sort_by_parameter_order=True)
    with app.app_context(), open(out, "a") as tokens:
        done = 0
        while done < n:
            now = pushes.utcnow()
            rows = [pushes.new_row(new, nobody, now)[0] for _ in range(min(batch, n - done))]
            conn = db.session.connection()
            ids = conn.execute(add_pushes, rows).scalars().all()
            conn.execute(insert(AuditLog.__table__), [
                {"push_id": push_id, "user_id": None, "kind": int(AuditKind.creation), "ip": "",
                 "user_agent": "", "referrer": "", "created_at": now} for push_id in ids])
            db.session.commit()
            tokens.write("".join(row["url_token"] + "\n" for row in rows))
            done += len(rows)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    from pwp import create_app

    fill(create_app(), int(sys.argv[1]), sys.argv[2],
         views=int(os.environ.get("FILL_VIEWS", "100")), days=int(os.environ.get("FILL_DAYS", "7")),
         payload=os.environ.get("BENCH_PAYLOAD", "bench-payload-0123456789-abcdefghijklmno"),
         batch=int(os.environ.get("FILL_BATCH", "10000")))


if __name__ == "__main__":
    main()
