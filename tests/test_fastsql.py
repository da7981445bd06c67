"""fastsql: compiled hot-path statements on a DB-API connection, on both databases."""
from datetime import datetime

import pytest
from sqlalchemy import bindparam, func, insert, select, text, update

from pwp import fastsql, pushes
from pwp.models import AuditLog, Push, User, db

from conftest import NOW

_PUSHES = Push.__table__


def _row(**overrides):
    row = dict(kind=0, url_token="tok" + "x" * 21, user_id=None, name="", expire_after_days=1,
               expires_at=datetime(2026, 1, 2, 12, 0, 0, 123456), expire_after_views=2, view_count=0,
               expired=False, expired_on=None, deleted=False, deletable_by_viewer=True,
               retrieval_step=False, payload_ciphertext=b"\x00cipher\xff", note_ciphertext=None,
               passphrase_salt=None, passphrase_verifier=None, created_at=NOW, updated_at=NOW)
    row.update(overrides)
    return row


def test_insert_returning_and_update_returning_convert_types_both_ways(app):
    insert_push = fastsql.Statement(insert(_PUSHES).returning(_PUSHES.c.id),
                                    [k for k in _PUSHES.c.keys() if k != "id"])
    claim = fastsql.Statement(
        update(_PUSHES).where(_PUSHES.c.url_token == bindparam("token"))
        .values(view_count=_PUSHES.c.view_count + 1, updated_at=bindparam("now"))
        .returning(*_PUSHES.c))
    later = datetime(2026, 1, 1, 13, 0, 0, 5)
    with app.app_context():
        with fastsql.Transaction() as tx:
            [(push_id,)] = tx.run(insert_push, _row())
            [row] = tx.run(claim, {"token": "tok" + "x" * 21, "now": later})
        values = dict(zip(_PUSHES.c.keys(), row))
        # Python types come back, as the ORM would load them.
        assert values["id"] == push_id
        assert values["view_count"] == 1
        assert values["expired"] is False and values["deletable_by_viewer"] is True
        assert values["updated_at"] == later
        assert values["expires_at"] == datetime(2026, 1, 2, 12, 0, 0, 123456)
        assert bytes(values["payload_ciphertext"]) == b"\x00cipher\xff"
        # And the ORM reads what fastsql wrote (the same storage format).
        stored = db.session.get(Push, push_id)
        assert stored.updated_at == later and stored.view_count == 1 and stored.expired is False
        # Stored datetimes compare correctly in SQL with SQLAlchemy's own parameters.
        assert db.session.scalar(select(Push.id).where(Push.expires_at > NOW)) == push_id


def test_an_exception_rolls_back_and_returns_the_connection(app):
    insert_push = fastsql.Statement(insert(_PUSHES), [k for k in _PUSHES.c.keys() if k != "id"])
    with app.app_context():
        pool = db.engine.pool
        lock = fastsql._write_lock(db.engine.url.database)
        sqlite = db.engine.dialect.name == "sqlite"
        with pytest.raises(RuntimeError):
            with fastsql.Transaction() as tx:
                tx.run(insert_push, _row())
                # SQLite: this process's threads queue on a lock for the write transaction.
                assert lock.locked() is sqlite
                raise RuntimeError("stop")
        assert pool.checkedout() == 0
        assert not lock.locked()
        assert db.session.scalar(select(Push.id)) is None
        db.session.rollback()  # the session gives its connection back too
        # The next transaction gets the write lock (SQLite) and commits.
        with fastsql.Transaction() as tx:
            tx.run(insert_push, _row())
        assert db.session.scalar(select(Push.url_token)) == "tok" + "x" * 21


def test_the_app_context_ends_an_opened_session_with_one_teardown(app):
    """_session_ender alone (Flask-SQLAlchemy's own teardown taken out) removes a session
    the app context opened, its connection given back to the pool; a fast transaction
    joins that session meanwhile."""
    with app.app_context():
        engine = db.engine
        assert len(app.teardown_appcontext_funcs) == 1
        db.session.execute(text("SELECT 1"))
        assert db.session.registry.has() and engine.pool.checkedout() == 1
        with fastsql.Transaction() as tx:
            assert tx.session is not None
    assert engine.pool.checkedout() == 0
    with app.app_context():
        assert not db.session.registry.has()


def test_joins_the_sessions_open_transaction(app):
    """A token caller's lookup opens the session first; on SQLite a second connection
    would wait for that transaction's write lock."""
    with app.app_context():
        db.session.scalar(select(Push.id))  # the session now holds a transaction
        assert db.session().in_transaction()
        push = pushes.create(pushes.NewPush(payload="joined"), pushes.Actor(), NOW)
        assert not db.session().in_transaction()  # committed with the session
        events = db.session.scalars(select(AuditLog.kind).where(AuditLog.push_id == push.id)).all()
        assert events == [0]  # creation


def test_a_failed_begin_gives_the_connection_and_the_lock_back(tmp_path, monkeypatch):
    """SQLite: another process holds the write lock past WRITE_LOCK_WAIT."""
    import sqlite3

    from conftest import make_config
    from pwp import create_app

    path = tmp_path / "locked.sqlite3"
    app = create_app(make_config(f"sqlite:///{path}"), instance_path=str(tmp_path / "instance"))
    monkeypatch.setattr(fastsql, "WRITE_LOCK_WAIT", 0.02)  # give up after 20 ms
    with app.app_context():
        engine = db.engine
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                fastsql.Transaction()
            assert engine.pool.checkedout() == 0
            assert not fastsql._write_lock(engine.url.database).locked()
        finally:
            other.execute("ROLLBACK")
            other.close()
        with fastsql.Transaction():  # free again
            pass


def test_sqlite_waits_for_another_process_then_commits(tmp_path, monkeypatch):
    """Another process's transaction holds SQLite's write lock: the fast path yields and
    retries (no busy-handler sleeps) and goes ahead once it is released."""
    import sqlite3
    import threading

    from conftest import make_config
    from pwp import create_app

    path = tmp_path / "wait-other.sqlite3"
    app = create_app(make_config(f"sqlite:///{path}"), instance_path=str(tmp_path / "instance"))
    insert_push = fastsql.Statement(insert(_PUSHES), [k for k in _PUSHES.c.keys() if k != "id"])
    retried = threading.Event()

    def yield_cpu():
        retried.set()
    monkeypatch.setattr(fastsql, "_yield_cpu", yield_cpu)
    outcome = []

    def write():
        with app.app_context():
            with fastsql.Transaction() as tx:
                tx.run(insert_push, _row())
            outcome.append("committed")

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    thread = threading.Thread(target=write)
    thread.start()
    assert retried.wait(10)  # it found the lock taken and is retrying
    assert outcome == []
    other.execute("COMMIT")
    other.close()
    thread.join()
    assert outcome == ["committed"]
    with app.app_context():
        assert db.session.scalar(select(Push.url_token)) == _row()["url_token"]


def test_sqlite_threads_share_the_process_connection_until_the_pool_is_replaced(tmp_path):
    import threading

    from conftest import make_config
    from pwp import create_app

    app = create_app(make_config(f"sqlite:///{tmp_path / 'own.sqlite3'}"),
                     instance_path=str(tmp_path / "instance"))

    def connection_used():
        with app.app_context(), fastsql.Transaction() as tx:
            return tx.dbapi

    first = connection_used()
    assert connection_used() is first  # no pool checkout per transaction
    assert first.execute("PRAGMA foreign_keys").fetchone() == (1,)  # the connect event ran
    assert first.execute("PRAGMA busy_timeout").fetchone() == (0,)  # _begin_immediate waits
    seen = []
    thread = threading.Thread(target=lambda: seen.append(connection_used()))
    thread.start()
    thread.join()
    assert seen[0] is first  # one connection per process: its page cache stays warm
    with app.app_context():
        db.engine.dispose()  # a new pool: the next transaction connects afresh
    assert connection_used() is not first


def test_sqlite_a_thread_waits_for_the_process_connection_then_gives_up(tmp_path, monkeypatch):
    """While one thread's transaction holds the process's connection, another one waits
    for it; past WRITE_LOCK_WAIT it fails as SQLite does when its busy timeout runs out."""
    import sqlite3
    import threading

    from conftest import make_config
    from pwp import create_app

    app = create_app(make_config(f"sqlite:///{tmp_path / 'wait.sqlite3'}"),
                     instance_path=str(tmp_path / "instance"))
    insert_push = fastsql.Statement(insert(_PUSHES), [k for k in _PUSHES.c.keys() if k != "id"])
    monkeypatch.setattr(fastsql, "WRITE_LOCK_WAIT", 0.05)
    outcome = []

    def other_thread():
        with app.app_context():
            try:
                with fastsql.Transaction() as tx:
                    tx.run(insert_push, _row(url_token="other" + "x" * 19))
                outcome.append("committed")
            except sqlite3.OperationalError as error:
                outcome.append(str(error))

    with app.app_context():
        with fastsql.Transaction() as tx:
            tx.run(insert_push, _row())
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
        assert outcome == ["database is locked"]
        assert not fastsql._write_lock(db.engine.url.database).locked()
        thread = threading.Thread(target=other_thread)  # free again
        thread.start()
        thread.join()
        assert outcome[1:] == ["committed"]
        assert db.session.scalar(select(func.count()).select_from(_PUSHES)) == 2


def test_the_fast_retrieval_logs_one_complete_view_event(app, make_user):
    """PostgreSQL logs the view inside the claim statement, SQLite with a second INSERT:
    the same row either way, and none when the claim fails."""
    reader_id, _token = make_user("reader@example.com")
    with app.app_context():
        token = pushes.create(pushes.NewPush(payload="p", expire_after_views=1), pushes.Actor(), NOW).url_token
        reader = db.session.get(User, reader_id)
        db.session.commit()  # the retrieval starts without an open session transaction
        actor = pushes.Actor(user=reader, ip="203.0.113.9", user_agent="ua/1", referrer="https://ref.example/")
        # The commit expired `reader`: reading its id inside the fast transaction would
        # reload it through the session (on SQLite: a second writer, "database is locked").
        assert pushes.retrieve(token, actor, NOW).payload == "p"
        assert pushes.retrieve(token, actor, NOW).payload is None  # expired: a failed view
        db.session.commit()
        assert pushes.create(pushes.NewPush(payload="q"), actor, NOW).user_id == reader_id
        events = db.session.execute(select(AuditLog).order_by(AuditLog.id)).scalars().all()
        view = events[1]
        assert [e.kind for e in events] == [0, 1, 2, 0]  # creation, view, failed_view, creation
        assert (view.user_id, view.ip, view.user_agent, view.referrer, view.created_at) == (
            reader_id, "203.0.113.9", "ua/1", "https://ref.example/", NOW)
        creation = events[3]
        assert (creation.push_id, creation.user_id, creation.ip, creation.user_agent,
                creation.referrer, creation.created_at) == (
            db.session.scalar(select(Push.id).where(Push.user_id == reader_id)), reader_id,
            "203.0.113.9", "ua/1", "https://ref.example/", NOW)


def test_a_failed_create_logs_nothing(app, monkeypatch):
    """PostgreSQL logs the creation inside the insert: a failed insert leaves no event."""
    with app.app_context():
        first = pushes.create(pushes.NewPush(payload="a"), pushes.Actor(), NOW)
        monkeypatch.setattr(pushes, "new_url_token", lambda: first.url_token)  # a collision
        with pytest.raises(db.engine.dialect.loaded_dbapi.IntegrityError):
            pushes.create(pushes.NewPush(payload="b"), pushes.Actor(), NOW)
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(AuditLog)) == 1
        assert db.session.scalar(select(func.count()).select_from(Push)) == 1


def test_a_single_statement_autocommits_on_postgresql_only(app):
    insert_push = fastsql.Statement(insert(_PUSHES), [k for k in _PUSHES.c.keys() if k != "id"])
    with app.app_context():
        postgresql = db.engine.dialect.name == "postgresql"
        with fastsql.Transaction() as tx:
            assert tx.autocommit_single_statement() is postgresql
            tx.run(insert_push, _row())
            connection = tx.dbapi
        if postgresql:
            assert connection.autocommit is False  # restored before the pool gets it back
        with pytest.raises(db.engine.dialect.loaded_dbapi.IntegrityError):
            with fastsql.Transaction() as tx:
                tx.autocommit_single_statement()
                connection = tx.dbapi
                tx.run(insert_push, _row())  # the same url_token again
        if postgresql:
            assert connection.autocommit is False
        assert db.session.scalar(select(func.count()).select_from(Push)) == 1
        with fastsql.Transaction() as tx:  # and the next transaction is a real one again
            tx.run(insert_push, _row(url_token="second"))
            assert not getattr(tx.dbapi, "autocommit", False)


def test_a_kept_postgresql_connection_the_server_dropped_is_replaced(app):
    """Threads keep their fast-path connection (no pool pre-ping); after the server ends
    it (a restart, an idle timeout), the next transaction connects again and succeeds."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite has no server to drop a connection")
        first = pushes.create(pushes.NewPush(payload="before"), pushes.Actor(), NOW)
        kept = fastsql._own_connection(db.engine)
        _terminate(kept)
        # A create (an autocommitted single statement) and a retrieval (a transaction).
        second = pushes.create(pushes.NewPush(payload="after"), pushes.Actor(), NOW)
        assert fastsql._own_connection(db.engine) is not kept and kept.closed
        _terminate(fastsql._own_connection(db.engine))
        assert pushes.retrieve(first.url_token, pushes.Actor(), NOW).payload == "before"
        assert pushes.retrieve(second.url_token, pushes.Actor(), NOW).payload == "after"
        events = db.session.scalars(select(AuditLog.kind).order_by(AuditLog.id)).all()
        assert events == [0, 0, 1, 1]  # two creations, two views: nothing twice


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # (SQLite has no server)
def test_a_connection_lost_mid_transaction_raises_its_own_error(app):
    """Not "the connection is closed" from the rollback of a connection already dropped:
    the log must say what happened."""
    import psycopg

    with app.app_context():
        push = pushes.create(pushes.NewPush(payload="x"), pushes.Actor(), NOW)
        select_push = fastsql.Statement(select(Push.id).where(Push.url_token == bindparam("t")))
        with pytest.raises(psycopg.OperationalError) as raised:
            with fastsql.Transaction() as tx:
                tx.run(select_push, {"t": push.url_token})
                _terminate(tx.dbapi)
                tx.run(select_push, {"t": push.url_token})
        assert "terminat" in str(raised.value) and "connection is closed" not in str(raised.value)
        assert pushes.retrieve(push.url_token, pushes.Actor(), NOW).payload == "x"  # a new one


def _terminate(connection):
    """End a PostgreSQL connection from the server side, and wait until it is gone."""
    pid = connection.info.backend_pid
    db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    db.session.commit()
    alive = True
    while alive:
        alive = db.session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                  {"pid": pid})
        db.session.commit()  # no open session transaction: the fast path uses its own connection


def test_a_forked_child_neither_uses_nor_closes_the_parents_connection(app):
    """gunicorn forks workers: a child connects afresh, and the parent's connection (whose
    socket the child shares) keeps working."""
    import gc
    import os

    with app.app_context():
        token = pushes.create(pushes.NewPush(payload="x", expire_after_views=5), pushes.Actor(), NOW).url_token
        parent = fastsql._own_connection(db.engine)
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            ok = fastsql._own_connection(db.engine) is not parent
            parent = None
            gc.collect()  # what the child no longer references may be closed now
            ok = ok and pushes.retrieve(token, pushes.Actor(), NOW).payload == "x"
            os._exit(0 if ok else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert pushes.retrieve(token, pushes.Actor(), NOW).payload == "x"
        assert fastsql._own_connection(db.engine) is parent  # not replaced: never dropped


def test_start_up_leaves_no_connection_open(database_url, tmp_path):
    """Under gunicorn --preload the master forks the workers after create_app."""
    from conftest import make_config
    from pwp import create_app

    app = create_app(make_config(database_url), instance_path=str(tmp_path / "instance"))
    with app.app_context():
        assert db.engine.pool.checkedin() == 0 and db.engine.pool.checkedout() == 0


def test_a_forked_child_opens_its_own_pooled_connections(app):
    """create_app leaves the connection start-up used in the pool; under gunicorn --preload
    every worker took that one connection (two processes on one socket: psycopg's "server
    sent data without prior row description", 500s under load)."""
    import os

    with app.app_context():
        pooled = db.engine.raw_connection()
        parent = pooled.dbapi_connection
        pooled.close()  # back to the pool, as after create_app
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            try:
                mine = db.engine.raw_connection()
                ok = mine.dbapi_connection is not parent
                ok = ok and db.session.execute(text("SELECT 1")).scalar() == 1
            except BaseException:
                ok = False
            os._exit(0 if ok else 1)
        assert os.waitpid(pid, 0)[1] == 0
        again = db.engine.raw_connection()
        assert again.dbapi_connection is parent  # the parent's own is untouched, still pooled
        again.close()
        assert db.session.execute(text("SELECT 1")).scalar() == 1


def test_sqlite_datetime_binds_match_sqlalchemys_text():
    """The one-call SQLite datetime conversion writes exactly SQLAlchemy's text, so
    comparisons with rows the ORM wrote stay right; anything else takes SQLAlchemy's way."""
    from datetime import date, timezone

    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    ours = fastsql.bind_processor(DateTime(), dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours.__name__ == "naive_datetime_text"
    values = [datetime(2026, 11, 27, 17, 10, 13, 123), datetime(2026, 1, 2), datetime(5, 1, 1, 0, 0, 0, 1),
              datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(2026, 1, 2, tzinfo=timezone.utc),
              date(2026, 3, 4), None]
    # Each value twice in a row and after every other (the text of the time bound last is
    # reused for an equal one, never for another value or an aware one of the same instant).
    for value in values + [v for value in values for w in values for v in (value, value, w)]:
        assert ours(value) == theirs(value), value
    with pytest.raises(TypeError):
        ours("2026-01-01")
    # Other dialects keep SQLAlchemy's own conversion.
    from sqlalchemy.dialects import postgresql
    assert fastsql.bind_processor(DateTime(), postgresql.dialect()) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_binds_none_and_blobs_as_they_are(app):
    """The app registers sqlite3 adapters for None, bytes and memoryviews (sqlite3 tried to
    adapt them at a cost), and they give each value back as it came: NULL and the blob."""
    with app.app_context():
        dbapi = db.engine.dialect.loaded_dbapi
    for type_ in (type(None), bytes, memoryview):
        assert dbapi.adapters[type_, dbapi.PrepareProtocol] is fastsql._itself
    values = (None, b"\x00a", memoryview(b"\xffb"))
    connection = dbapi.connect(":memory:")
    try:
        row = connection.execute("SELECT typeof(?), ?, typeof(?), ?, typeof(?), ?",
                                 [v for value in values for v in (value, value)]).fetchone()
    finally:
        connection.close()
    assert row == ("null", None, "blob", b"\x00a", "blob", b"\xffb")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # (SQLite has no server)
def test_a_connection_the_server_ends_mid_request_is_a_json_500_then_service_resumes(app, client, token):
    """The request's rollback at teardown, on the connection the server ended, raised out of
    the app: gunicorn answered its own HTML 500 to a JSON client."""
    import psycopg
    from sqlalchemy import event

    from conftest import PG_ADMIN_URL, bearer

    with app.app_context():
        engine = db.engine
    ended = []

    def end_the_connection(conn, cursor, statement, *_args):
        if not ended and "FROM users" in statement:  # the token's lookup: a session transaction
            ended.append(conn.connection.dbapi_connection.info.backend_pid)
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", ended)
                while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", ended).fetchone()[0]:
                    pass
    event.listen(engine, "after_cursor_execute", end_the_connection)
    try:
        r = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}, headers=bearer(token))
    finally:
        event.remove(engine, "after_cursor_execute", end_the_connection)
    assert ended and r.status_code == 500 and r.json == {"status": 500, "error": "Internal Server Error"}
    r = client.post("/api/v2/pushes", json={"push": {"payload": "y"}}, headers=bearer(token))
    assert r.status_code == 201
    assert client.get(f"/api/v2/pushes/{r.json['url_token']}").json["payload"] == "y"


def test_begin_immediate_waits_on_every_kind_of_busy(tmp_path):
    """CPython gives SQLite's extended code: SQLITE_BUSY_RECOVERY (261, another process
    recovering the WAL) is a busy database too, to wait for, not an error to raise."""
    import sqlite3

    from sqlalchemy.dialects import sqlite as sqlite_dialect
    real = sqlite3.connect(tmp_path / "busy.sqlite3", isolation_level=None).cursor()

    class Recovering:  # busy once, as while another process recovers the WAL
        busy = True

        def execute(self, sql):
            if self.busy:
                self.busy = False
                error = sqlite3.OperationalError("database is locked")
                error.sqlite_errorcode = 261
                raise error
            return real.execute(sql)

    dialect = sqlite_dialect.dialect()
    dialect.loaded_dbapi = sqlite3
    fastsql._begin_immediate(Recovering(), dialect)
    assert real.connection.in_transaction
    real.connection.rollback()
