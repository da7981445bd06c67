"""purge-expired: its batches and locks, and its output for cron."""
import threading
from datetime import timedelta

import pytest

from conftest import NOW, sql, wait_for_a_lock_waiter
from pwp import pushes
from pwp.pushes import Actor, NewPush


def create(app, user=None, **fields):
    fields.setdefault("payload", "secret")
    with app.app_context():
        return pushes.create(NewPush(**fields), Actor(user=user), NOW).url_token


def test_purge_expires_then_deletes_every_push_due(app):
    for _ in range(5):
        create(app, expire_after_days=1)
    live = create(app, expire_after_days=7)
    with app.app_context():
        counts = pushes.purge(NOW + timedelta(days=2))
        assert counts["expired"] == 5
        assert pushes.purge(NOW + timedelta(days=4))["anonymous_deleted"] == 5
    assert sql(app, "SELECT url_token FROM pushes") == [(live,)]


def test_purge_locks_pushes_in_id_order_as_an_account_deletion_does(app, make_user, database_url):
    """An account's deletion locks its pushes in id order (pushes.lock_pushes_of); purge's
    expiring UPDATE locked them in the order it found them (here the table's: the
    higher id first), so each waited for a push the other held: PostgreSQL aborted the
    purge as a deadlock."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite locks the whole database: no row locks to take in an order")
    import psycopg

    owner, _ = make_user()
    with app.app_context():
        from pwp.models import User, db
        user = db.session.get(User, owner)
        for _ in range(2):
            pushes.create(NewPush(payload="secret", expire_after_days=1), Actor(user=user), NOW)
    (low,), (high,) = sql(app, "SELECT id FROM pushes ORDER BY id")
    # The higher id first in the table (the lower one's row rewritten after it) and in time.
    sql(app, "UPDATE pushes SET expires_at = expires_at - interval '1 hour' WHERE id = :id", id=high)
    sql(app, "UPDATE pushes SET note_ciphertext = note_ciphertext WHERE id = :id", id=low)
    assert [i for i, in sql(app, "SELECT id FROM pushes ORDER BY ctid")] == [high, low]
    outcome = []

    def purge():
        with app.app_context():
            try:
                outcome.append(pushes.purge(NOW + timedelta(days=2)))
            except Exception as e:  # (a deadlock: reported below)
                outcome.append(e)

    with psycopg.connect(database_url) as deletion:
        deletion.execute("SELECT id FROM pushes WHERE id = %s FOR UPDATE", (low,))
        purger = threading.Thread(target=purge)
        purger.start()
        wait_for_a_lock_waiter(database_url, "the purge", thread=purger)
        deletion.execute("SET lock_timeout = '10s'")
        deletion.execute("SELECT id FROM pushes WHERE id = %s FOR UPDATE", (high,))
        deletion.commit()
        purger.join(timeout=60)
    assert isinstance(outcome[0], dict) and outcome[0]["expired"] == 2, outcome


def purge_expired(app, *args):
    """`flask --app pwpush purge-expired ARGS` in the app's context; stdout and stderr apart."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=["purge-expired", *args])


def test_purge_expired_quiet_prints_nothing_when_nothing_needs_the_admin(app, clock):
    """Cron mails whatever a job prints: the README's hourly line mailed its summary hourly."""
    create(app, expire_after_days=1)
    clock.advance(days=2)
    quiet = purge_expired(app, "--quiet")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    assert sql(app, "SELECT expired FROM pushes") == [(True,)]
    loud = purge_expired(app)
    assert loud.exit_code == 0 and loud.stdout.startswith("purge-expired: expired 0,")


def test_purge_expired_quiet_still_says_what_was_left_pending(mail, smtp, token, app):
    from test_notify_api import left_pending_without_the_mail_settings

    left_pending_without_the_mail_settings(app, mail, token)
    result = purge_expired(app, "-q")
    assert (result.exit_code, result.stdout) == (0, "")
    assert "1 notification e-mail left pending: PWP__MAIL__SMTP_ADDRESS is not set here" in result.stderr
