"""Hot-path SQL: Core statements compiled once per dialect, run on a kept DB-API
connection (the process's on SQLite, the thread's own on PostgreSQL).

SQLAlchemy's execution layer (Session, Connection.execute, execution context, Result)
costs about ten times the statements themselves on the requests that matter most
(create, retrieve). The statements stay SQLAlchemy Core objects, compiled by
SQLAlchemy for the engine's dialect with its own type conversions; only the per-call
machinery is skipped. Everything else uses the session.
"""
import os
import threading
import time
import weakref
from datetime import datetime

from .models import db


class Statement:
    """A Core statement, compiled once per dialect; `run` executes it on a DB-API cursor."""

    def __init__(self, statement, column_keys=None):
        self.statement = statement
        self.column_keys = column_keys
        self._compiled = {}

    def _compile(self, dialect):
        compiled = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
        binds = compiled.binds
        names = compiled.positiontup if dialect.positional else list(binds)
        # (name, type conversion or None, the literal value when the caller gives none)
        slots = [(name, bind_processor(binds[name].type, dialect),
                  None if binds[name].callable else binds[name].value) for name in names]
        # A DML statement's exported columns are its RETURNING columns.
        converters = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                      for column in self.statement.exported_columns]
        returning = bool(converters)
        # (position, conversion) of the returned columns that need one
        results = [(i, convert) for i, convert in enumerate(converters) if convert is not None]
        entry = self._compiled[dialect.name] = (str(compiled), dialect.positional, slots,
                                                returning, results)
        return entry

    def run(self, cursor, dialect, params) -> list:
        """Execute with one parameter dict; return the converted rows."""
        sql, positional, slots, returning, results = (self._compiled.get(dialect.name)
                                                      or self._compile(dialect))
        cursor.execute(sql, _bind(slots, positional, params))
        if not returning:
            return []
        rows = cursor.fetchall()
        return [_convert(row, results) for row in rows] if results else rows


# SQLAlchemy's text form of a DATETIME on SQLite (its default storage format)
SQLITE_DATETIME_FORMAT = ("%(year)04d-%(month)02d-%(day)02d "
                          "%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d")


def bind_processor(type_, dialect):
    """SQLAlchemy's conversion of a bound value for the dialect, or None when none is needed.

    On SQLite a naive datetime becomes the same text through one isoformat call instead
    of SQLAlchemy's seven-field format (2-3 % of a create's or a retrieval's instructions),
    and the time bound just before is not formatted again.
    """
    impl = type_.dialect_impl(dialect)
    convert = impl.bind_processor(dialect)
    if dialect.name != "sqlite" or getattr(impl, "_storage_format", None) != SQLITE_DATETIME_FORMAT:
        return convert

    def naive_datetime_text(value):
        global _last_text
        if value.__class__ is datetime and value.tzinfo is None:
            last, text = _last_text
            if value != last:
                text = value.isoformat(" ", "microseconds")
                _last_text = value, text
            return text
        return convert(value)  # None, dates, aware datetimes, subclasses: SQLAlchemy's way
    return naive_datetime_text


# The naive datetime last bound on SQLite, and its text: a request binds its time several
# times (a push's creation and update, its event's; a view's claim, event and expiry), and
# each isoformat costs ~8 k instructions, 2 % of a create. (One tuple, replaced whole: a
# thread reads a value and its own text.)
_last_text = (None, "")


def _bind(slots, positional, params):
    if positional:
        return [params.get(name, literal) if convert is None else convert(params.get(name, literal))
                for name, convert, literal in slots]
    return {name: params.get(name, literal) if convert is None else convert(params.get(name, literal))
            for name, convert, literal in slots}


def _convert(row, results) -> list:
    row = list(row)
    for i, convert in results:
        row[i] = convert(row[i])
    return row


def _itself(value):
    return value


def bind_without_adapting(sqlite3):
    """Have sqlite3 bind None, bytes and memoryviews (SQLAlchemy's blobs) without trying to
    adapt them, as it binds ints, floats and strings.

    For any other type sqlite3 asks its registry of adapters, then its protocol's
    `__adapt__`: a failed attribute lookup on a type, which raises and clears an
    AttributeError with a formatted message, ~3 k instructions a parameter (seven in a
    create: the Nones of an anonymous push and its event, the payload). An adapter found in
    the registry costs ~1 k; this one gives the value back as is, bound as before. (The
    registry is the process's: any use of sqlite3 here binds them so.)
    """
    for type_ in (type(None), bytes, memoryview):
        sqlite3.register_adapter(type_, _itself)


class _Kept:
    """The connections the fast path keeps, by pool (made on first use)."""

    connections = None


class _KeptPerThread(_Kept, threading.local):
    pass


_held = _KeptPerThread()  # PostgreSQL: each thread's own connection
_shared = _Kept()  # SQLite: the process's one, used under its write lock


def _holder(engine):
    return _shared if engine.dialect.name == "sqlite" else _held


def _own_connection(engine):
    """The connection the fast path keeps, as the ceiling app keeps one: on SQLite the
    process's (the caller holds the write lock), on PostgreSQL this thread's own.

    A pool checkout and checkin (with PostgreSQL's pre-ping, a round trip) cost about a
    fifth of a retrieval's SQL time; the connection is made by the pool once (the connect
    event's settings applied) and then detached from it. Keyed by the pool: after
    engine.dispose() (a new pool) the next transaction connects afresh. A PostgreSQL
    connection the server closed while it sat idle is replaced on the next transaction's
    first statement (Transaction.run). SQLite threads share one connection because every
    fast-path transaction holds the process's write lock anyway, and SQLite empties a
    connection's page cache whenever another connection has written: with one per thread,
    every transaction read its B-tree pages again (19 reads per request with 4 threads
    under load, 0.7 shared: bench/PROFILE.md).
    """
    holder = _holder(engine)
    connections = holder.connections
    if connections is None:
        connections = holder.connections = weakref.WeakKeyDictionary()
    dbapi = connections.get(engine.pool)
    if dbapi is None:
        fairy = engine.raw_connection()
        fairy.detach()
        dbapi = connections[engine.pool] = fairy.dbapi_connection
        if engine.dialect.name == "sqlite":  # (sqlite3 connections close when collected)
            dbapi.execute("PRAGMA busy_timeout=0")  # _begin_immediate waits instead
        else:
            _finalizers[:] = [f for f in _finalizers if f.alive]
            _finalizers.append(weakref.finalize(engine.pool, _close_quietly, dbapi))
    return dbapi


_finalizers: list = []
_inherited: list = []
_engines = weakref.WeakSet()


def new_connections_after_fork(engine):
    """Have a forked child open its own connections for this engine: a pool holds the one
    that start-up used (tables, key check), and under gunicorn --preload every worker
    would otherwise share it, two processes on one socket (garbled replies, 500s)."""
    _engines.add(engine)


def _after_fork_in_child():
    # A forked child must neither use its parent's connections nor close them (closing
    # would end the parent's session on the shared socket): keep them, unused.
    for holder in (_held, _shared):
        _inherited.append(holder.connections)
        holder.connections = None
    for finalizer in _finalizers:
        finalizer.detach()
    _finalizers.clear()
    for engine in list(_engines):
        engine.dispose(close=False)  # a new, empty pool; the parent's connections left alone


def _drop_own_connection(pool, dbapi):
    for holder in (_held, _shared):
        if holder.connections is not None and holder.connections.get(pool) is dbapi:
            del holder.connections[pool]
    _close_quietly(dbapi)


def _close_quietly(dbapi):
    try:
        dbapi.close()
    except Exception:  # already broken: nothing left to release
        pass


os.register_at_fork(after_in_child=_after_fork_in_child)

# Seconds a thread waits for this process's SQLite write lock (and connection), and then
# for another process's, before it fails as SQLite would (as long as the connections'
# busy timeout).
WRITE_LOCK_WAIT = 15
_write_locks: dict = {}


def _take_write_lock(database: str, dialect) -> threading.Lock:
    """Take this process's lock for the SQLite file, or fail as SQLite does when its
    busy timeout runs out."""
    lock = _write_lock(database)
    if not lock.acquire(timeout=WRITE_LOCK_WAIT):
        raise dialect.loaded_dbapi.OperationalError("database is locked")
    return lock


# Another process's SQLite transaction: SQLite's busy handler would sleep 1, 2, 5, 10 ms …
# between attempts, while a fast-path transaction holds the write lock for about a tenth
# of a millisecond; those sleeps made most of the retrieval's p99 with two worker
# processes (bench/PROFILE.md). The fast path's connection (busy_timeout 0) yields the CPU
# between its first attempts instead, so that the process holding the lock finishes,
# then sleeps briefly between attempts, for up to WRITE_LOCK_WAIT seconds.
_YIELDS = 10
_RETRY_SLEEP = 0.0005
_SQLITE_BUSY = 5
_yield_cpu = getattr(os, "sched_yield", lambda: time.sleep(0))


def _begin_immediate(cursor, dialect):
    """BEGIN IMMEDIATE on the fast path's SQLite connection, waiting for another
    process's write lock; past WRITE_LOCK_WAIT, SQLite's "database is locked"."""
    attempt = 0
    deadline = None
    while True:
        try:
            cursor.execute("BEGIN IMMEDIATE")
            return
        except dialect.loaded_dbapi.OperationalError as error:
            # (the extended code: SQLITE_BUSY_RECOVERY is 261, its low byte SQLITE_BUSY)
            if getattr(error, "sqlite_errorcode", _SQLITE_BUSY) & 0xFF != _SQLITE_BUSY:
                raise
            now = time.monotonic()
            deadline = deadline or now + WRITE_LOCK_WAIT
            if now >= deadline:
                raise
        attempt += 1
        if attempt <= _YIELDS:
            _yield_cpu()
        else:
            time.sleep(_RETRY_SLEEP)


def _write_lock(database: str) -> threading.Lock:
    # Keyed by the file's name: hashing the engine's URL object renders it as a string.
    lock = _write_locks.get(database)
    if lock is None:
        lock = _write_locks.setdefault(database, threading.Lock())
    return lock


class Transaction:
    """One short transaction: `with Transaction() as tx: tx.run(...)`.

    Commits at the end of the block, rolls back on an exception (or `end(commit=False)`).
    When the request's session already holds a transaction (a token caller was looked
    up), the statements join it instead: on SQLite a second connection would wait for
    the first one's write lock.
    """

    def __init__(self):
        session = db.session() if db.session.registry.has() else None
        self.session = session if session is not None and session.in_transaction() else None
        self.own = None  # the pool whose kept connection this is
        self.open = True
        self.gone = False  # the kept connection was lost and closed: nothing left to end
        self.ran = False
        self.autocommitting = False
        self.cursor = self.lock = None
        if self.session is not None:
            connection = self.session.connection()
            self.dbapi = connection.connection.dbapi_connection
            self.dialect = connection.dialect
        else:
            self.engine = engine = db.engine
            self.dialect = engine.dialect
            if self.dialect.name == "sqlite":
                # The process's connection is this thread's until the transaction ends.
                # Threads queue here rather than in SQLite's busy handler, which polls
                # with sleeps of 1, 2, 5, 10 ... ms (3-6 % less CPU per request with 4
                # threads, bench/RESULTS.md); other processes, in _begin_immediate.
                self.lock = _take_write_lock(engine.url.database, self.dialect)
            try:
                self.dbapi = _own_connection(engine)
            except BaseException:
                if self.lock is not None:
                    self.lock.release()
                raise
            self.own = engine.pool
        try:
            self.cursor = self.dbapi.cursor()
            if self.lock is not None:
                # As pwp._sqlite_begin: take SQLite's write lock up front.
                _begin_immediate(self.cursor, self.dialect)
        except BaseException:
            # "database is locked" after the busy timeout: give the lock back.
            self.end(commit=False)
            raise

    def run(self, statement: Statement, params) -> list[tuple]:
        """Run one statement in this transaction."""
        try:
            rows = statement.run(self.cursor, self.dialect, params)
        except self.dialect.loaded_dbapi.Error as error:
            if not self._reconnected_after(error):
                raise
            rows = statement.run(self.cursor, self.dialect, params)
        self.ran = True
        return rows

    def _reconnected_after(self, error) -> bool:
        # A kept PostgreSQL connection the server dropped while it sat idle (a restart,
        # an idle timeout) fails on the transaction's first statement, inside a
        # transaction that never committed: connect again, once. (What pool_pre_ping
        # does for pooled connections, without a round trip on every checkout.)
        if self.ran or self.dialect.name == "sqlite" or not self._dropped_if_gone(error):
            return False
        self.dbapi = _own_connection(self.engine)
        self.dbapi.autocommit = self.autocommitting
        self.cursor = self.dbapi.cursor()
        self.gone = False
        return True

    def autocommit_single_statement(self) -> bool:
        """Declare that the block runs one statement, atomic on its own: on PostgreSQL
        it then commits itself, without the BEGIN and COMMIT round trips. Call before the
        statement; returns whether it applies (not on SQLite, whose BEGIN IMMEDIATE orders
        writers, nor inside a joined session)."""
        if self.own is None or self.dialect.name != "postgresql":
            return False
        self.dbapi.autocommit = self.autocommitting = True
        return True

    def end(self, commit: bool):
        """Commit or roll back (a joined session commits; its own teardown rolls back)."""
        if not self.open:
            return
        self.open = False
        try:
            if self.gone:
                pass  # (a rollback would raise "the connection is closed" over the real error)
            elif self.session is not None:
                if commit:
                    self.session.commit()
            elif self.autocommitting:
                self.dbapi.autocommit = False  # committed (or failed) as it ran
            elif commit:
                self.dbapi.commit()
            else:
                self.dbapi.rollback()
        except self.dialect.loaded_dbapi.Error as error:
            self._dropped_if_gone(error)
            raise
        finally:
            if self.cursor is not None and not self.gone:
                self.cursor.close()
            if self.own is not None and self.autocommitting and not self.gone and self.dbapi.autocommit:
                _drop_own_connection(self.own, self.dbapi)  # never keep one in autocommit
            if self.lock is not None:
                self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, _type, exc, _tb):
        if exc is not None:
            self._dropped_if_gone(exc)
        self.end(commit=exc is None)
        return False

    def _dropped_if_gone(self, error) -> bool:
        """What SQLAlchemy does for its pooled connections: a kept connection the server
        dropped is not used again. Returns whether it was dropped."""
        if self.own is None or not isinstance(error, self.dialect.loaded_dbapi.Error) \
                or not self.dialect.is_disconnect(error, self.dbapi, self.cursor):
            return False
        _drop_own_connection(self.own, self.dbapi)
        self.gone = True
        return True
