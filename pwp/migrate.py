"""Schema revisions (Alembic scripts in migrations/): bring a database to the code's head.

A start on a database already at HEAD reads one row and never imports Alembic; a new
database gets the models' tables and is stamped at HEAD; one made before pwpush had
migrations (no version table) gets its missing tables, the column check and the baseline's
indexes, then the revisions after the baseline; a database behind HEAD gets the pending
revisions, once, under a lock every starting worker and instance takes; one at a revision
this code does not know (a newer release's, or no pwpush revision at all) or with an empty
version table is refused."""
import logging
import os
import re

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.exc import DBAPIError

from . import ROOT
from .config import ConfigError, DatabaseUnavailable

# The newest revision in migrations/versions (tests/test_migrations.py checks it against the
# scripts' head): what a start compares the database's revision with, without Alembic.
HEAD = "0007"
# The revision whose schema the releases before migrations made (their databases have no
# version table).
BASELINE = "0001"
MIGRATIONS = os.path.join(ROOT, "migrations")
# Alembic's version table, as its DefaultImpl.version_table_impl makes it: a new database is
# stamped without loading Alembic. Named for pwpush, not Alembic's alembic_version: another
# application's Alembic in the same database keeps its revision there.
VERSION_TABLE = Table("pwpush_schema_version", MetaData(), Column("version_num", String(32), nullable=False),
                      PrimaryKeyConstraint("version_num", name="pwpush_schema_version_pkc"))
# Seconds a start waits for another process's upgrade: its write lock on SQLite (the
# connections' busy_timeout, 15 s, is a request's wait; a revision may copy large tables),
# its advisory lock on PostgreSQL (without a bound, an upgrade stuck on its host kept every
# start waiting for ever, without a word).
LOCK_WAIT = 600
# pg_advisory_xact_lock's key for schema changes ("pwpush" in ASCII).
_PG_LOCK = 0x707770757368

log = logging.getLogger("pwp")


def revision(conn) -> str | None:
    """The database's schema revision; None without one (no version table, or an empty one)."""
    if not inspect(conn).has_table(VERSION_TABLE.name):
        return None
    return conn.execute(VERSION_TABLE.select()).scalar()


# What to record in the version table, in the refusals of a revision lost or not pwpush's.
_WHICH = "NNNN the HEAD in pwp/migrate.py of the last pwpush that ran on it"


def bring_up_to_date(app, db, before_changing=None) -> bool:
    """Bring the app's database to the code's head revision (see the module's docstring);
    tell whether it was new. ConfigError for a database ahead of the code or lacking columns.
    before_changing: called (to raise a refusal) before anything changes in a database that
    exists and is behind the code."""
    migrations = app.config.get("PWPUSH_MIGRATIONS", MIGRATIONS)
    head = app.config.get("PWPUSH_SCHEMA_HEAD", HEAD)
    # (read_snapshot: on SQLite a plain BEGIN, which takes no write lock.)
    with db.engine.connect().execution_options(read_snapshot=True) as conn:
        found = revision(conn)
        if found == head:
            return False
        exists = found is not None or inspect(conn).has_table("pushes")
    if exists and before_changing is not None:
        before_changing()
    with db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # A batch operation rebuilds a table (copy, DROP TABLE, rename): with foreign keys
            # on, the DROP deletes its rows first, and with them, through ON DELETE CASCADE and
            # SET NULL, the audit logs, files and sessions referring to them and the pushes'
            # owners. Off for the transaction (the pragma is a no-op inside one), checked before
            # the commit, as SQLite's own procedure for altering a table does.
            dbapi = conn.connection.dbapi_connection
            busy_timeout = dbapi.execute("PRAGMA busy_timeout").fetchone()[0]
            dbapi.execute("PRAGMA foreign_keys=OFF")
            dbapi.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT * 1000)}")
        try:
            try:
                transaction = conn.begin()  # (SQLite: BEGIN IMMEDIATE, raised as the driver's error)
            except (DBAPIError, conn.dialect.loaded_dbapi.OperationalError) as exc:
                if not sqlite or "locked" not in str(exc):
                    raise
                raise DatabaseUnavailable(
                    f"DATABASE_URL: cannot use the database: another process held its write lock for "
                    f"{LOCK_WAIT:g} s (an upgrade of its schema still running?)") from None
            with transaction:
                # One at a time: the others wait here, then find the work done. (SQLite's BEGIN
                # IMMEDIATE, pwp.factory, took the database's write lock already.)
                if conn.dialect.name == "postgresql":
                    _take_pg_lock(conn)
                found = revision(conn)
                if found == head:
                    return False
                if found is None and not inspect(conn).has_table("pushes"):
                    db.metadata.create_all(conn)
                    VERSION_TABLE.create(conn, checkfirst=True)  # (it may be there, empty: emptied by hand)
                    conn.execute(VERSION_TABLE.insert().values(version_num=head))
                    return True
                if found is None and inspect(conn).has_table(VERSION_TABLE.name):
                    # Emptied (by hand: its row is written with the tables, in one transaction):
                    # the schema may be at any revision, and none may run on tables it was
                    # not written for.
                    raise ConfigError(
                        f"DATABASE_URL: the table {VERSION_TABLE.name} is empty, so the database's schema "
                        "revision is unknown: nothing was changed (no revision runs on tables it may not be "
                        "written for); restore a backup, or put the revision back (INSERT INTO "
                        f"{VERSION_TABLE.name} VALUES ('NNNN'), {_WHICH}) and start again")
                try:
                    upgrade(conn, migrations, found, head)
                except DBAPIError as exc:
                    if exc.connection_invalidated:  # (the connection lost: the start's retry)
                        raise
                    # A revision the database refuses (a constraint its rows break, SQLite's
                    # OperationalError for most things): waiting will not help, nor a traceback.
                    from .factory import database_error

                    raise ConfigError(
                        f"DATABASE_URL: the schema revisions from {found or 'none'} to {head} failed, nothing "
                        "was changed (back up the database, then fix it or the revision and start again): "
                        + database_error(app, exc)) from None
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise ConfigError(f"DATABASE_URL: the schema revisions up to {head} left rows whose "
                                      "foreign keys point nowhere: nothing was changed (run "
                                      "`PRAGMA foreign_key_check` on a copy to see them)")
        finally:
            if sqlite:
                dbapi.execute("PRAGMA foreign_keys=ON")
                dbapi.execute(f"PRAGMA busy_timeout={busy_timeout}")
    return False


def _take_pg_lock(conn):
    """Take the advisory lock of schema changes for the transaction, waiting at most
    LOCK_WAIT seconds for the process holding it (saying so first); DatabaseUnavailable past
    that."""
    if conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _PG_LOCK}).scalar():
        return
    log.warning("database: waiting for another process's schema upgrade (its lock is held)")
    # For the wait only, bounded by lock_timeout, not a statement_timeout below it (a role's,
    # pgbouncer's connect_query): set for the transaction (set_config's true), then given back
    # the session's own values, whichever set them, for the revisions after it.
    timeouts = {"lock_timeout": str(max(1, int(LOCK_WAIT * 1000))), "statement_timeout": "0"}
    own = conn.execute(text("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")).one()
    _set_locally(conn, timeouts)
    try:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # (lock_not_available)
            raise
        raise DatabaseUnavailable(
            f"DATABASE_URL: cannot use the database: another process held the lock of schema upgrades for "
            f"{LOCK_WAIT:g} s (an upgrade of its schema still running?)") from None
    _set_locally(conn, dict(zip(timeouts, own)))


def _set_locally(conn, settings: dict):
    """Set PostgreSQL settings for the transaction (SET LOCAL, with bound values)."""
    for name, value in settings.items():
        conn.execute(text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})


def upgrade(conn, migrations, found, head):
    """Run the revisions from found (None: a database from before migrations) to head."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = _alembic_config(migrations)
    config.attributes["connection"] = conn
    scripts = ScriptDirectory.from_config(config)
    numbered = found is not None and re.fullmatch("[0-9]{4}", found)  # (pwpush's revisions: 0001, 0002, ...)
    try:
        known = found is None or numbered and scripts.get_revision(found) is not None
    except CommandError:
        known = False
    if not known and numbered and int(found) > int(head):
        raise ConfigError(
            f"DATABASE_URL: the database's schema is at revision {found}, which this pwpush does not know "
            f"(its newest is {head}): a newer pwpush upgraded it; run that version or a later one, or "
            "restore the backup taken before that upgrade")
    if not known:  # (corrupt, or edited by hand: no release to run)
        raise ConfigError(
            f"DATABASE_URL: the table {VERSION_TABLE.name} holds {found[:40]!r}, which is not a pwpush revision "
            "(those are numbered 0001, 0002, ...; corrupt or edited by hand?): nothing was changed; restore a "
            f"backup, or put the right one there (UPDATE {VERSION_TABLE.name} SET version_num = 'NNNN', "
            f"{_WHICH}) and start again")
    command.upgrade(config, head)
    if found is None:
        log.warning("database had no schema revision (made before pwpush had migrations): checked, "
                    "and recorded as %s", BASELINE)
        found = BASELINE
    if found != head:
        log.warning("database upgraded from %s to %s", found, head)


def _alembic_config(migrations):
    """Alembic's configuration for the scripts in migrations (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", migrations)
    return config


def check_columns(conn, tables):
    """Stop when an existing table lacks a column of tables (a database made by an older
    pwpush, on which every request touching that table would fail with a 500), naming them
    and the statements that add them."""
    inspector = inspect(conn)
    have_tables = set(inspector.get_table_names())
    for table in tables:
        if table.name not in have_tables:
            continue
        have = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in have]
        if missing:
            adds = "; ".join(f"ALTER TABLE {table.name} ADD COLUMN {column.name} "
                             f"{column.type.compile(dialect=conn.dialect)}" for column in missing)
            raise ConfigError(
                f"DATABASE_URL: the table {table.name} lacks the column(s) "
                f"{', '.join(column.name for column in missing)}: the database was made by an older "
                f"pwpush; back it up, then add them ({adds}) or start on a new database")


def match_indexes(conn, tables):
    """Make again each index of tables whose table exists with an index of that name and
    another definition (columns, uniqueness, a partial index's condition: pwpush's first
    releases made two whole that the baseline has partial), and make those missing; log
    their names."""
    inspector = inspect(conn)
    have_tables = set(inspector.get_table_names())
    made = []
    for table in tables:
        if table.name not in have_tables:
            continue
        have = {index["name"]: _definition(index["column_names"], index["unique"],
                                           index.get("dialect_options", {}).get(f"{conn.dialect.name}_where"))
                for index in inspector.get_indexes(table.name)}
        for index in sorted(table.indexes, key=lambda index: index.name):
            wanted = _definition([column.name for column in index.columns], index.unique,
                                 index.dialect_kwargs.get(f"{conn.dialect.name}_where"))
            if have.get(index.name) != wanted:
                if index.name in have:
                    index.drop(conn)
                index.create(conn)
                made.append(index.name)
    if made:
        log.warning("database: the indexes %s differed from the baseline's: made again", ", ".join(made))


def _definition(columns, unique, where) -> tuple:
    """An index's definition, as the database reflects it or a table declares it: a
    condition's text without the parentheses PostgreSQL puts around it, in lower case."""
    where = " ".join(str(where).split()) if where is not None else ""
    if where.startswith("(") and where.endswith(")"):
        where = where[1:-1]
    return list(columns), bool(unique), where.lower()


def new_revision(message, migrations=MIGRATIONS) -> str:
    """Write the next revision script (numbered after the head), its operations those that
    bring a scratch SQLite database at the head to the models (Alembic's autogenerate);
    return its path."""
    import tempfile

    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    config = _alembic_config(migrations)
    head = ScriptDirectory.from_config(config).get_current_head()
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{os.path.join(folder, 'scratch.sqlite3')}")
        try:
            with engine.begin() as conn:
                # (Alembic's own upgrade: upgrade() would log a server database's stamping.)
                config.attributes["connection"] = conn
                command.upgrade(config, head)
                script = command.revision(config, message, autogenerate=True, rev_id=f"{int(head) + 1:04d}")
        finally:
            engine.dispose()
    return script.path
