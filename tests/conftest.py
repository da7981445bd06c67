"""Shared fixtures: the app on a real SQLite file and on a real PostgreSQL database.

Every test that uses `app` (or `client`) runs once per database in
PWPUSH_TEST_DATABASES (default "sqlite,postgresql"). PostgreSQL gets one
throwaway database per run, emptied between tests and dropped at the end.
"""
import os
import time
from contextlib import contextmanager
import secrets
import sqlite3
from datetime import datetime, timedelta

import psycopg
import pytest
from sqlalchemy import text

from smtpsink import SmtpServer

from pwp import create_app
from pwp.auth import create_user, issue_token
from pwp.models import db

PG_ADMIN_URL = os.environ.get("PWPUSH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASES = [d.strip() for d in os.environ.get("PWPUSH_TEST_DATABASES", "sqlite,postgresql").split(",") if d.strip()]
# A fixed test master key: tests never depend on a generated one.
TEST_MASTER_KEY = "x3Qn7oN1dJ6cXyK8eVJ2m0fX9cS5uZbq3Wm1nQ4rT7s="
NOW = datetime(2026, 1, 1, 12, 0, 0)


PG_BASE = PG_ADMIN_URL.rsplit("/", 1)[0]  # the server's URL, without a database


@contextmanager
def throwaway_pg_database(prefix):
    """Create a PostgreSQL database named prefix_PID_RANDOM; yield its name; drop it."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url():
    """Create a throwaway PostgreSQL database for this run; drop it afterwards."""
    with throwaway_pg_database("pwpush_test") as name:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            # A throwaway database need not wait for the disk on every commit.
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        yield f"{PG_BASE}/{name}"


def make_config(database_url, **overrides):
    """Settings for a test app: fixed keys, the given database, no per-IP throttling."""
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-of-32-characters-",
        "PWPUSH_MASTER_KEY": TEST_MASTER_KEY,
        "DATABASE_URL": database_url,
        "WTF_CSRF_ENABLED": False,
        "PWP__THROTTLING__MINUTE": 0,
        "PWP__THROTTLING__SECOND": 0,
    }
    config.update(overrides)
    return config


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path):
    """A clean database URL: a new SQLite file, or the run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pwpush.sqlite3'}"
        return
    url = request.getfixturevalue("pg_url")
    yield url
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename != 'pwpush_schema_version'")]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")


@pytest.fixture
def settings():
    """Per-test setting overrides; a test edits this dict before using `app`."""
    return {}


@pytest.fixture
def app(database_url, settings, tmp_path):
    """The application on a clean database."""
    app = create_app(make_config(database_url, **settings), instance_path=str(tmp_path / "instance"))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    """A test client."""
    return app.test_client()


@pytest.fixture
def make_user(app):
    """Create a user and return (user_id, api_token)."""
    def make(email="owner@example.com", admin=False, password=None):
        with app.app_context():
            user = create_user(email, password=password, admin=admin)
            return user.id, issue_token(user)
    return make


@pytest.fixture
def token(make_user):
    """An API token of a fresh user."""
    return make_user()[1]


@pytest.fixture
def clock(monkeypatch):
    """Control 'now' for the lifecycle: clock.now is used by every request; clock.advance(...)."""
    import pwp.pushes

    class Clock:
        now = NOW

        def advance(self, **kwargs):
            self.now = self.now + timedelta(**kwargs)

    c = Clock()
    # Every view asks pushes.utcnow() for the time, so this one patch moves them all.
    monkeypatch.setattr(pwp.pushes, "utcnow", lambda: c.now)
    return c


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on a free port."""
    server = SmtpServer()
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture
def mail(settings, smtp, database_url, request):
    """A client of an app that sends its notification e-mails to `smtp`."""
    settings.update(smtp.settings())
    return request.getfixturevalue("client")


def bearer(token):
    """Authorization header for an API token."""
    return {"Authorization": f"Bearer {token}"}


def sql(app, statement, **params):
    """Run one SQL statement in the app's database and return all rows."""
    with app.app_context():
        result = db.session.execute(text(statement), params)
        rows = result.all() if result.returns_rows else []
        db.session.commit()
        return rows


def no_snapshot_held(database_url) -> bool:
    """Whether no connection of the test's database holds a read snapshot open: on SQLite a
    full checkpoint is not held back by a reader; on PostgreSQL nothing sits "idle in
    transaction"."""
    if database_url.startswith("sqlite"):
        other = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            other.close()
        return busy == 0
    with psycopg.connect(database_url, autocommit=True) as other:
        return other.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                             "AND state LIKE 'idle in transaction%'").fetchone()[0] == 0


def wait_for_a_lock_waiter(database_url, what="a lock", query_like="%", thread=None, timeout=30, count=1):
    """Return once `count` sessions of the test's PostgreSQL database wait for a lock (running
    a query LIKE query_like), polling from a connection of its own in autocommit: a
    transaction sees pg_stat_activity's sessions as they were at its first look, so polling
    from the one holding the lock missed a waiter whose connection came after. Fails after
    timeout seconds, or once the thread that should wait has ended."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as watch:
        while watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock' AND query LIKE %s", (query_like,)).fetchone()[0] < count:
            assert time.monotonic() < deadline and (thread is None or thread.is_alive()), f"{what} never waited"
            time.sleep(0.005)  # (polling for the wait to begin; nothing depends on how long)
