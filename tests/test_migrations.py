"""Schema revisions: the baseline, the stamping of older databases, upgrades under a lock,
refusing a database ahead of the code, and the models never drifting from the scripts."""
import itertools
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, inspect

from conftest import DATABASES, PG_BASE, make_config, sql, throwaway_pg_database, wait_for_a_lock_waiter
from pwp import ROOT, create_app, migrate
from pwp.config import ConfigError, database_uri
from pwp.models import db, use_postgresql

DATA = Path(__file__).parent / "data"
# The revision after the code's head, for tests.
LATER = f"{int(migrate.HEAD) + 1:04d}"
UPGRADED = f"database upgraded from {migrate.HEAD} to {LATER}"
# A later revision, for tests: a column, a table, and a row counting its runs.
LATER_REVISION = f'''
import sqlalchemy as sa
from alembic import op

revision = "{LATER}"
down_revision = "{migrate.HEAD}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("pushes", sa.Column("probe", sa.String(16)))
    op.create_table("probe_runs", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("INSERT INTO probe_runs (id) VALUES (1)")


def downgrade():
    pass
'''


@pytest.fixture
def new_database(tmp_path):
    """Make empty databases of a kind ("sqlite" or "postgresql"), each its own; return URLs."""
    with ExitStack() as stack:
        made = itertools.count()

        def make(kind):
            if kind == "sqlite":  # (its file is made by its first use: numbered here)
                return f"sqlite:///{tmp_path / f'db{next(made)}.sqlite3'}"
            return f"{PG_BASE}/{stack.enter_context(throwaway_pg_database('pwpush_mig'))}"
        yield make


@pytest.fixture(params=DATABASES)
def own_database(request, new_database):
    """One empty database of its own (the later revision must not reach the shared one)."""
    return new_database(request.param)


@pytest.fixture
def later_migrations(tmp_path):
    """The settings that give an app migrations/ plus a later revision (LATER) as its head."""
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / f"{LATER}_probe.py").write_text(LATER_REVISION)
    return {"PWPUSH_MIGRATIONS": str(folder), "PWPUSH_SCHEMA_HEAD": LATER}


def start(url, tmp_path, **settings):
    """Create the app on url, as a server's start does; dispose of its connections."""
    app = create_app(make_config(url, **settings), instance_path=str(tmp_path / "instance"), command_line=False)
    with app.app_context():
        db.engine.dispose()
    return app


def stored_revision(url):
    engine = create_engine(database_uri(url))
    try:
        with engine.connect() as conn:
            return migrate.revision(conn)
    finally:
        engine.dispose()


def test_head_is_the_scripts_head():
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(migrate.MIGRATIONS)
    assert scripts.get_heads() == [migrate.HEAD], "a new revision: set HEAD in pwp/migrate.py to its id"
    assert scripts.get_base() == migrate.BASELINE


def _schema(url):
    """Every table, column, constraint and index of a database (not the version table's row).
    SQLite's by what its pragmas say of them, not the text of its CREATE TABLE statements
    nor the numbers of its UNIQUE constraints' indexes: a revision's ADD COLUMN or batch copy
    spells a table, and orders its constraints, as create_all may not."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return sorted(
                (table,
                 sorted(row[1:] for row in conn.execute(f"PRAGMA table_xinfo('{table}')")),
                 sorted(row[2:] for row in conn.execute(f"PRAGMA foreign_key_list('{table}')")),
                 sorted(("" if name.startswith("sqlite_autoindex_") else name, unique, origin, partial,
                         [row[2] for row in conn.execute(f"PRAGMA index_info('{name}')")],
                         conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone())
                        for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list('{table}')")))
                for table in tables)
    with psycopg.connect(url) as conn:
        return [sorted(conn.execute(query)) for query in (
            "SELECT table_name, column_name, data_type, is_nullable, column_default, character_maximum_length "
            "FROM information_schema.columns WHERE table_schema = 'public'",
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace",
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")]


def _differences(url):
    """What Alembic's autogenerate finds between a database and the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(database_uri(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "compare_type": True, "compare_server_default": True, "version_table": migrate.VERSION_TABLE.name})
            return compare_metadata(context, db.metadata)
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", DATABASES)
def test_the_migrations_make_the_models_schema(kind, new_database, tmp_path):
    """The drift test: the scripts' head is the models' schema (a model changed without a
    revision fails here), and a new database made from the models, as a first start makes
    it, is that same schema stamped at the head."""
    by_scripts, by_start = new_database(kind), new_database(kind)
    if kind == "postgresql":
        use_postgresql()
    engine = create_engine(database_uri(by_scripts))
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn, migrate.MIGRATIONS, None, migrate.HEAD)
    finally:
        engine.dispose()
    assert _differences(by_scripts) == [], "the models changed: run `flask --app pwpush db-revision MESSAGE`"
    start(by_start, tmp_path)
    assert _schema(by_start) == _schema(by_scripts)  # (the version table included)
    assert stored_revision(by_start) == stored_revision(by_scripts) == migrate.HEAD
    assert _differences(by_start) == []


def test_db_revision_writes_the_next_revision_from_the_models(app, tmp_path, caplog):
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    with caplog.at_level(logging.WARNING, logger="pwp"):
        result = app.test_cli_runner().invoke(args=["db-revision", "add things", "--migrations", str(folder)])
    assert result.exit_code == 0, result.output
    # (Its scratch database is no server's: nothing said of stamping or upgrading one.)
    assert "schema revision" not in caplog.text and "upgraded" not in caplog.text, caplog.text
    (script,) = (folder / "versions").glob(f"{LATER}_*.py")
    assert f"wrote {script}" in result.output
    source = script.read_text()
    assert f"revision = '{LATER}'" in source and f"down_revision = '{migrate.HEAD}'" in source
    # The models are the head's schema: nothing to do.
    assert "def upgrade():\n    # ### commands auto generated by Alembic - please adjust! ###\n    pass" in source


def _execute(url, script):
    """Run SQL statements on a database, outside the app."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.executescript(script)
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(script)


def _make_from(url, schema_file, without=None):
    """A database as a release before migrations made it: its schema.sql, no version table."""
    script = (DATA / schema_file).read_text()
    if without:
        script += f"\nDROP TABLE {without};\n"
    _execute(url, script)


def test_a_database_from_before_migrations_is_stamped_at_the_baseline_and_works(own_database, tmp_path, caplog):
    kind = "sqlite" if own_database.startswith("sqlite") else "postgresql"
    # (Without a table the releases before notify by e-mail did not have: added.)
    _make_from(own_database, f"schema-0001-{kind}.sql", without="notify_by_emails")
    with caplog.at_level(logging.WARNING, logger="pwp"):
        app = start(own_database, tmp_path)
    assert stored_revision(own_database) == migrate.HEAD
    assert "database had no schema revision (made before pwpush had migrations): checked, and recorded as 0001" \
        in caplog.text
    assert _differences(own_database) == []
    assert "index" not in caplog.text  # (its indexes are the baseline's)
    client = app.test_client()
    created = client.post("/api/v2/pushes", json={"push": {"payload": "kept"}})
    assert created.status_code == 201
    assert client.get(f"/api/v2/pushes/{created.json['url_token']}").json["payload"] == "kept"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pwp"):
        start(own_database, tmp_path)
    assert "schema" not in caplog.text


def test_a_database_behind_the_code_is_upgraded_once(own_database, tmp_path, later_migrations, caplog):
    app = start(own_database, tmp_path)
    created = app.test_client().post("/api/v2/pushes", json={"push": {"payload": "before"}}).json
    with caplog.at_level(logging.WARNING, logger="pwp"):
        later = start(own_database, tmp_path, **later_migrations)
        start(own_database, tmp_path, **later_migrations)
    assert caplog.text.count(UPGRADED) == 1
    assert stored_revision(own_database) == LATER
    assert sql(later, "SELECT count(*) FROM probe_runs") == [(1,)]
    assert sql(later, "SELECT probe FROM pushes") == [(None,)]
    assert later.test_client().get(f"/api/v2/pushes/{created['url_token']}").json["payload"] == "before"


def test_a_database_from_before_migrations_gets_the_baseline_then_the_later_revisions(
        own_database, tmp_path, later_migrations, caplog):
    kind = "sqlite" if own_database.startswith("sqlite") else "postgresql"
    _make_from(own_database, f"schema-0001-{kind}.sql")
    with caplog.at_level(logging.WARNING, logger="pwp"):
        start(own_database, tmp_path, **later_migrations)
    assert "recorded as 0001" in caplog.text and caplog.text.count(f"database upgraded from 0001 to {LATER}") == 1
    assert stored_revision(own_database) == LATER


@pytest.mark.parametrize("kind", DATABASES)
def test_a_database_of_the_first_release_gets_the_baselines_indexes(kind, new_database, tmp_path, later_migrations,
                                                                    caplog):
    """pwpush's first release made two indexes whole that the baseline has partial (the
    models' since 5d44fff): stamped at the baseline as they were, they stayed whole for
    good. The baseline path makes them again, as the baseline's tables make them, in the
    transaction of the revisions (a later one failing leaves them as they were), the rows kept."""
    first, baseline = new_database(kind), new_database(kind)
    _make_from(first, f"schema-2026-11-27-{kind}.sql")
    _execute(first, "INSERT INTO pushes (id, kind, url_token, name, expire_after_days, expire_after_views, "
                    "expires_at, view_count, expired, expired_on, deleted, retrieval_step, created_at, updated_at) "
                    "VALUES (7, 0, 'kept', '', 1, 1, '2026-11-28', 0, true, '2026-11-27', false, false, "
                    "'2026-11-27', '2026-11-27')")
    _make_from(baseline, f"schema-0001-{kind}.sql")
    Path(later_migrations["PWPUSH_MIGRATIONS"], "versions", f"{LATER}_probe.py").write_text(LATER_REVISION_FAILS)
    before = _schema(first)
    with pytest.raises(ConfigError, match="the schema revisions from none to .* failed, nothing was changed"):
        start(first, tmp_path, **later_migrations)
    assert _schema(first) == before
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pwp"):
        app = start(first, tmp_path)
    assert "database: the indexes ix_pushes_expired_on, ix_pushes_user_expired_created differed from the " \
           "baseline's: made again" in caplog.text, caplog.text
    assert "recorded as 0001" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pwp"):
        start(baseline, tmp_path)
    assert "recorded as 0001" in caplog.text and "index" not in caplog.text
    assert stored_revision(first) == stored_revision(baseline) == migrate.HEAD
    assert _schema(first) == _schema(baseline), kind
    assert sql(app, "SELECT url_token FROM pushes") == [("kept",)]


STARTER = """
import json, sys
from pwp import create_app
create_app(json.loads(sys.argv[1]), instance_path=sys.argv[2], command_line=False)
"""


def _starters(url, tmp_path, settings, count):
    config = json.dumps(make_config(url, **settings))
    return [subprocess.Popen([sys.executable, "-c", STARTER, config, str(tmp_path / f"instance{i}")], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True) for i in range(count)]


def test_instances_starting_at_once_on_postgresql_upgrade_it_once(new_database, tmp_path, later_migrations):
    """Each start takes the advisory lock before it looks at the revision: held here while
    three starts wait for it, then released, one of them upgrades and the others find it done."""
    if "postgresql" not in DATABASES:
        pytest.skip("PostgreSQL is not among PWPUSH_TEST_DATABASES")
    url = new_database("postgresql")
    start(url, tmp_path)
    with psycopg.connect(url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (migrate._PG_LOCK,))
        starters = _starters(url, tmp_path, later_migrations, 3)
        try:
            wait_for_a_lock_waiter(url, "the starts", "%pg_advisory_xact_lock%", count=3, timeout=120)
        finally:
            holder.rollback()
        errors = [starter.communicate(timeout=120)[1] for starter in starters]
    assert [starter.returncode for starter in starters] == [0, 0, 0], errors
    assert sum(error.count(UPGRADED) for error in errors) == 1
    assert stored_revision(url) == LATER
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM probe_runs").fetchone() == (1,)


def test_instances_starting_at_once_on_sqlite_upgrade_it_once(new_database, tmp_path, later_migrations):
    url = new_database("sqlite")
    start(url, tmp_path)
    starters = _starters(url, tmp_path, later_migrations, 3)
    errors = [starter.communicate(timeout=120)[1] for starter in starters]
    assert [starter.returncode for starter in starters] == [0, 0, 0], errors
    assert sum(error.count(UPGRADED) for error in errors) == 1
    assert sqlite3.connect(url.removeprefix("sqlite:///")).execute("SELECT count(*) FROM probe_runs").fetchone() == (1,)


def _run(url, tmp_path, *args):
    env = {**os.environ, "DATABASE_URL": url, "PWPUSH_INSTANCE_PATH": str(tmp_path / "instance"),
           "PWPUSH_MASTER_KEY": make_config("")["PWPUSH_MASTER_KEY"]}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


AHEAD = (f"DATABASE_URL: the database's schema is at revision {LATER}, which this pwpush does not know (its newest "
         f"is {migrate.HEAD}): a newer pwpush upgraded it; run that version or a later one, or restore the backup taken "
         "before that upgrade")


def _refused_by_server_and_commands(url, tmp_path, message):
    """The server's start stops in one line, exit 3 (gunicorn's master stops), and the
    commands that use the database in one line, exit 1."""
    server = _run(url, tmp_path, "-c", "import pwpush")
    assert server.returncode == 3 and "Traceback" not in server.stderr
    assert server.stderr.splitlines()[-1] == f"pwpush: configuration error: {message}"
    for command in (["init-db"], ["purge-expired"]):
        refused = _run(url, tmp_path, "-m", "flask", "--app", "pwpush", *command)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.splitlines()[-1] == f"Error: {message}"


def test_a_database_ahead_of_the_code_is_refused_in_one_line(own_database, tmp_path, later_migrations):
    """An older release started on a database a newer one upgraded: it would fail request by
    request on columns it does not know, or drop what the newer one keeps."""
    start(own_database, tmp_path, **later_migrations)
    with pytest.raises(ConfigError) as refused:
        start(own_database, tmp_path)
    assert str(refused.value) == AHEAD
    _refused_by_server_and_commands(own_database, tmp_path, AHEAD)
    assert stored_revision(own_database) == LATER


WHICH = "NNNN the HEAD in pwp/migrate.py of the last pwpush that ran on it"
EMPTIED = ("DATABASE_URL: the table pwpush_schema_version is empty, so the database's schema revision is unknown: "
           "nothing was changed (no revision runs on tables it may not be written for); restore a backup, or put "
           f"the revision back (INSERT INTO pwpush_schema_version VALUES ('NNNN'), {WHICH}) and start again")


@pytest.mark.parametrize("kind", DATABASES)
def test_an_emptied_version_table_stops_start_up_in_one_line_and_runs_no_revision(kind, new_database, tmp_path,
                                                                                later_migrations):
    """Emptied by hand (or by a crash between its making and its row): a start took the
    database for one made before migrations and ran every revision from the baseline on
    tables a later one had changed already (here the later revision's column: added again)."""
    url = new_database(kind)
    start(url, tmp_path, **later_migrations)
    _execute(url, "DELETE FROM pwpush_schema_version")
    before = _schema(url)
    with pytest.raises(ConfigError) as refused:
        start(url, tmp_path, **later_migrations)
    assert str(refused.value) == EMPTIED
    assert _schema(url) == before and stored_revision(url) is None
    _execute(url, f"INSERT INTO pwpush_schema_version VALUES ('{later_migrations['PWPUSH_SCHEMA_HEAD']}')")
    start(url, tmp_path, **later_migrations)
    # At the code's own head, through the server and the commands.
    url = new_database(kind)
    start(url, tmp_path)
    _execute(url, "DELETE FROM pwpush_schema_version")
    _refused_by_server_and_commands(url, tmp_path, EMPTIED)
    assert stored_revision(url) is None


def not_a_revision(value):
    return (f"DATABASE_URL: the table pwpush_schema_version holds {value!r}, which is not a pwpush revision (those "
            "are numbered 0001, 0002, ...; corrupt or edited by hand?): nothing was changed; restore a backup, or "
            f"put the right one there (UPDATE pwpush_schema_version SET version_num = 'NNNN', {WHICH}) and "
            "start again")


@pytest.mark.parametrize("value", ["ae1027a6acf", "0000", "1", "0001 ", "00002", "", "x\ny"])
def test_a_recorded_revision_that_is_no_pwpush_revision_is_not_taken_for_a_newer_one(new_database, tmp_path, value):
    """Only a number above the head is a newer release's: a value corrupt or edited by hand
    was refused as "a newer pwpush upgraded it", sending the admin after a release that
    does not exist."""
    url = new_database("sqlite")
    start(url, tmp_path)
    _execute(url, f"UPDATE pwpush_schema_version SET version_num = '{value}'")
    with pytest.raises(ConfigError) as refused:
        start(url, tmp_path)
    assert str(refused.value) == not_a_revision(value)
    assert stored_revision(url) == value


def test_a_revision_that_is_no_pwpush_revision_is_refused_in_one_line(own_database, tmp_path):
    start(own_database, tmp_path)
    _execute(own_database, "UPDATE pwpush_schema_version SET version_num = 'ae1027a6acf'")
    _refused_by_server_and_commands(own_database, tmp_path, not_a_revision("ae1027a6acf"))
    assert stored_revision(own_database) == "ae1027a6acf"
    _execute(own_database, "UPDATE pwpush_schema_version SET version_num = '9999'")
    with pytest.raises(ConfigError, match="at revision 9999, which this pwpush does not know .* a newer pwpush"):
        start(own_database, tmp_path)


def test_init_db_applies_the_pending_revisions(own_database, tmp_path, later_migrations):
    start(own_database, tmp_path)
    app = create_app(make_config(own_database, **later_migrations), instance_path=str(tmp_path / "instance"),
                     command_line=True)
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert stored_revision(own_database) == LATER


def test_a_start_on_an_up_to_date_database_does_not_load_alembic(own_database, tmp_path):
    """A start compares the stored revision with migrate.HEAD: Alembic (~0.25 s to import) is
    loaded only to change the schema."""
    new = _run(own_database, tmp_path, "-c", "import sys, pwpush; print('alembic' in sys.modules)")
    assert new.returncode == 0 and new.stdout.split() == ["False"], new.stderr  # (a new database)
    again = _run(own_database, tmp_path, "-c", "import sys, pwpush; print('alembic' in sys.modules)")
    assert again.returncode == 0 and again.stdout.split() == ["False"], again.stderr
    assert stored_revision(own_database) == migrate.HEAD


# A later revision that alters two tables others refer to: SQLite's batch mode rebuilds them
# (copy, DROP TABLE, rename), PostgreSQL alters them in place.
LATER_REVISION_REBUILDS = f'''
import sqlalchemy as sa
from alembic import op

revision = "{LATER}"
down_revision = "{migrate.HEAD}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("pushes") as batch:
        batch.alter_column("name", existing_type=sa.String(255), type_=sa.String(300), existing_nullable=False)
    with op.batch_alter_table("users") as batch:
        batch.alter_column("email", existing_type=sa.String(255), type_=sa.String(300), existing_nullable=False)


def downgrade():
    pass
'''


def test_a_revision_rebuilding_tables_keeps_the_rows_referring_to_them(own_database, tmp_path, later_migrations):
    """On SQLite a batch operation drops the old table: with foreign keys on, that DROP
    deletes its rows first, cascading to the audit logs, files, sessions (ON DELETE
    CASCADE) and orphaning the pushes of the accounts (SET NULL)."""
    Path(later_migrations["PWPUSH_MIGRATIONS"], "versions", f"{LATER}_probe.py").write_text(LATER_REVISION_REBUILDS)
    app = start(own_database, tmp_path, PWP__ENABLE_FILE_PUSHES=True)
    with app.app_context():
        from pwp.auth import create_user, issue_token
        token = issue_token(create_user("owner@example.com", password="a good long password"))
    client = app.test_client()
    owned = client.post("/api/v2/pushes", headers={"Authorization": f"Bearer {token}"},
                        data={"push[files][]": (__import__("io").BytesIO(b"file body"), "a.txt")})
    assert owned.status_code == 201, owned.data
    assert client.get(f"/api/v2/pushes/{owned.json['url_token']}").status_code == 200
    counts = "SELECT (SELECT count(*) FROM audit_logs), (SELECT count(*) FROM push_files), " \
             "(SELECT count(*) FROM push_file_parts), (SELECT count(user_id) FROM pushes)"
    before = sql(app, counts)
    assert before[0][0] >= 2 and before[0][1:] != (0, 0, 0)
    later = start(own_database, tmp_path, PWP__ENABLE_FILE_PUSHES=True, **later_migrations)
    assert stored_revision(own_database) == LATER
    assert sql(later, counts) == before
    listed = later.test_client().get("/api/v2/pushes/active", headers={"Authorization": f"Bearer {token}"})
    assert [push["url_token"] for push in listed.json] == [owned.json["url_token"]]


LATER_REVISION_FAILS = LATER_REVISION.replace(
    'op.add_column("pushes", sa.Column("probe", sa.String(16)))',
    'op.add_column("pushes", sa.Column("probe", sa.String(16), nullable=False))')  # (rows without it)
FAILED = (f"DATABASE_URL: the schema revisions from {migrate.HEAD} to {LATER} failed, nothing was changed (back up the "
          "database, then fix it or the revision and start again): ")


def test_a_revision_that_fails_stops_start_up_in_one_line_and_changes_nothing(own_database, tmp_path,
                                                                             later_migrations):
    """Not a traceback (PostgreSQL: an IntegrityError), nor, on SQLite, "cannot use the
    database" (an OperationalError), which gunicorn's workers retried every 5 s forever."""
    Path(later_migrations["PWPUSH_MIGRATIONS"], "versions", f"{LATER}_probe.py").write_text(LATER_REVISION_FAILS)
    app = start(own_database, tmp_path)
    assert app.test_client().post("/api/v2/pushes", json={"push": {"payload": "kept"}}).status_code == 201
    with pytest.raises(ConfigError) as refused:
        start(own_database, tmp_path, **later_migrations)
    assert str(refused.value).startswith(FAILED) and "\n" not in str(refused.value), refused.value
    assert "null" in str(refused.value).removeprefix(FAILED).lower()  # (the database's reason)
    assert stored_revision(own_database) == migrate.HEAD
    assert sql(app, "SELECT count(*) FROM pushes") == [(1,)]
    with pytest.raises(Exception, match="probe_runs"):
        sql(app, "SELECT count(*) FROM probe_runs")
    cli_app = create_app(make_config(own_database, **later_migrations), instance_path=str(tmp_path / "instance"),
                         command_line=True)
    with cli_app.app_context():
        result = cli_app.test_cli_runner().invoke(args=["purge-expired"])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {FAILED}"), result.output


def test_a_start_with_a_wrong_master_key_is_refused_before_any_revision_runs(own_database, tmp_path,
                                                                            later_migrations):
    """A wrong PWPUSH_MASTER_KEY (its database's key check not opened) was refused only after
    the start had upgraded the schema: a mistyped key changed the database for nothing (and
    with the key file lost, the release before could no longer run on it)."""
    from cryptography.fernet import Fernet

    app = start(own_database, tmp_path)
    assert app.test_client().post("/api/v2/pushes", json={"push": {"payload": "kept"}}).status_code == 201
    with pytest.raises(ConfigError, match="none of its keys decrypts the stored pushes"):
        start(own_database, tmp_path, PWPUSH_MASTER_KEY=Fernet.generate_key().decode(), **later_migrations)
    assert stored_revision(own_database) == migrate.HEAD
    with pytest.raises(Exception, match="probe_runs"):
        sql(app, "SELECT count(*) FROM probe_runs")
    start(own_database, tmp_path, **later_migrations)  # (the right key: upgraded)
    assert stored_revision(own_database) == LATER


def test_a_start_waiting_on_sqlite_for_another_upgrade_waits_past_busy_timeout_then_says_so(
        new_database, tmp_path, later_migrations, monkeypatch):
    """A start waits for the write lock while another process upgrades (a long revision:
    the connections' busy_timeout, 15 s, made the others' BEGIN IMMEDIATE fail, a raw
    sqlite3 traceback, and gunicorn's master, seeing a worker fail to boot, stopped the
    server, the upgrading worker with it). Past migrate.LOCK_WAIT it gives up in one
    line, as a database unavailable (gunicorn tries again)."""
    from pwp.config import DatabaseUnavailable

    url = new_database("sqlite")
    start(url, tmp_path)
    assert migrate.LOCK_WAIT >= 600
    monkeypatch.setattr(migrate, "LOCK_WAIT", 0.2)
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseUnavailable) as waited:
            start(url, tmp_path, **later_migrations)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert str(waited.value) == ("DATABASE_URL: cannot use the database: another process held its write lock for "
                                 "0.2 s (an upgrade of its schema still running?)")
    start(url, tmp_path, **later_migrations)
    assert stored_revision(url) == LATER


def test_a_start_waiting_on_postgresql_for_another_upgrade_says_so_and_gives_up(
        new_database, tmp_path, later_migrations, monkeypatch, caplog):
    """A start waits for the advisory lock while another process upgrades, as on SQLite: it
    logs that it waits, and past migrate.LOCK_WAIT gives up in one line, as a database
    unavailable (gunicorn tries again). It waited without a word for ever: an upgrade stuck
    on its host (a process stopped, a host gone without closing its connection) kept every
    start and `init-db` hanging silently."""
    from pwp.config import DatabaseUnavailable

    if "postgresql" not in DATABASES:
        pytest.skip("PostgreSQL is not among PWPUSH_TEST_DATABASES")
    url = new_database("postgresql")
    start(url, tmp_path)
    monkeypatch.setattr(migrate, "LOCK_WAIT", 0.2)
    with psycopg.connect(url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (migrate._PG_LOCK,))
        try:
            with caplog.at_level(logging.WARNING, logger="pwp"), pytest.raises(DatabaseUnavailable) as waited:
                start(url, tmp_path, **later_migrations)
        finally:
            holder.rollback()
    assert str(waited.value) == ("DATABASE_URL: cannot use the database: another process held the lock of schema "
                                 "upgrades for 0.2 s (an upgrade of its schema still running?)")
    assert "database: waiting for another process's schema upgrade (its lock is held)" in caplog.messages
    start(url, tmp_path, **later_migrations)
    assert stored_revision(url) == LATER


def test_a_start_waiting_on_postgresql_keeps_the_sessions_own_timeouts(new_database, tmp_path, later_migrations):
    """The wait for another process's upgrade sets its timeouts for itself only: a session's
    own lock_timeout (set after connecting, as pgbouncer's connect_query does) was replaced
    by the server's default for the revisions after it, and a statement_timeout below the
    wait cancelled it with a raw 57014 error."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool
    import threading

    if "postgresql" not in DATABASES:
        pytest.skip("PostgreSQL is not among PWPUSH_TEST_DATABASES")
    url = new_database("postgresql")
    start(url, tmp_path)
    Path(later_migrations["PWPUSH_MIGRATIONS"], "versions", f"{LATER}_probe.py").write_text(LATER_REVISION.replace(
        'op.execute("INSERT INTO probe_runs (id) VALUES (1)")',
        'op.execute("CREATE TABLE probe_settings AS SELECT current_setting(\'lock_timeout\') AS lock_timeout, '
        'current_setting(\'statement_timeout\') AS statement_timeout")'))

    def session_settings(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '7s'; SET statement_timeout = '200ms'")
        dbapi_connection.commit()

    failed = []

    def starting():
        try:
            start(url, tmp_path, **later_migrations)
        except Exception as exc:
            failed.append(exc)

    event.listen(Pool, "connect", session_settings)
    try:
        with psycopg.connect(url) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (migrate._PG_LOCK,))
            starter = threading.Thread(target=starting)
            starter.start()
            try:
                # (Past its statement_timeout, by the database's clock.)
                with psycopg.connect(url, autocommit=True) as watch:
                    while not watch.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock' "
                            "AND query LIKE '%pg_advisory_xact_lock%' AND now() - query_start > interval '600 ms'"
                            ).fetchone()[0]:
                        assert starter.is_alive(), failed
            finally:
                holder.rollback()
            starter.join(120)
    finally:
        event.remove(Pool, "connect", session_settings)
    assert failed == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT lock_timeout, statement_timeout FROM probe_settings").fetchall() == [("7s", "200ms")]


def test_a_database_shared_with_another_alembic_app_is_not_taken_for_a_newer_pwpush(own_database, tmp_path):
    """Another application's Alembic keeps its revision in alembic_version: pwpush keeps its own
    in a table of its own, neither refusing that database (its revision "unknown", "a newer
    pwpush upgraded it") nor stamping its own into the other's table."""
    _execute(own_database, "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY); "
                           "INSERT INTO alembic_version VALUES ('ae1027a6acf')")
    app = start(own_database, tmp_path)
    assert stored_revision(own_database) == migrate.HEAD
    assert sql(app, "SELECT version_num FROM alembic_version") == [("ae1027a6acf",)]
    assert app.test_client().post("/api/v2/pushes", json={"push": {"payload": "x"}}).status_code == 201


def _upgraded_from(url, tmp_path, caplog, revision, statement=None):
    """Bring an empty database to an earlier revision, run a statement there (if any), then
    start the app on it (its log captured); return the app."""
    engine = create_engine(database_uri(url))
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn, migrate.MIGRATIONS, None, revision)
            if statement:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
    with caplog.at_level(logging.WARNING, logger="pwp"):
        return start(url, tmp_path)


def test_revision_0002_keeps_the_accounts_and_marks_them_confirmed(own_database, tmp_path, caplog):
    """Account e-mails' columns: an account made before them signs in once the setting is on
    (confirmed), nothing of it lost."""
    app = _upgraded_from(own_database, tmp_path, caplog, "0001",
                         "INSERT INTO users (email, password_hash, api_token_digest, is_admin, created_at) "
                         "VALUES ('old@example.com', 'hash', 'digest', true, '2026-01-02 03:04:05')")
    assert f"database upgraded from 0001 to {migrate.HEAD}" in caplog.text
    assert stored_revision(own_database) == migrate.HEAD
    assert _differences(own_database) == []
    assert sql(app, "SELECT email, password_hash, api_token_digest, is_admin, confirmed_at = created_at, "
                    "failed_attempts, locked_at FROM users") == [("old@example.com", "hash", "digest", True, True, 0, None)]


@pytest.mark.parametrize("kind", DATABASES)
def test_revision_0002_gives_a_first_release_database_recorded_at_0001_the_baselines_indexes(kind, new_database,
                                                                                         tmp_path, caplog):
    """The release before the baseline path matched indexes recorded a first release's
    database at 0001 with its two whole indexes: 0002 makes them again, once."""
    first, current = new_database(kind), new_database(kind)
    _make_from(first, f"schema-0001-{kind}.sql")  # (the tables it added, the first release's indexes)
    _execute(first, "DROP INDEX ix_pushes_expired_on; DROP INDEX ix_pushes_user_expired_created; "
                    "CREATE INDEX ix_pushes_expired_on ON pushes (expired_on); "
                    "CREATE INDEX ix_pushes_user_expired_created ON pushes (user_id, expired, created_at); "
                    "CREATE TABLE pwpush_schema_version (version_num VARCHAR(32) NOT NULL, "
                    "CONSTRAINT pwpush_schema_version_pkc PRIMARY KEY (version_num)); "
                    "INSERT INTO pwpush_schema_version VALUES ('0001')")
    with caplog.at_level(logging.WARNING, logger="pwp"):
        start(first, tmp_path)
    assert "the indexes ix_pushes_expired_on, ix_pushes_user_expired_created differed from the baseline's: " \
           "made again" in caplog.text, caplog.text
    start(current, tmp_path)
    assert stored_revision(first) == stored_revision(current) == migrate.HEAD
    def pushes_indexes(url):
        if kind == "sqlite":
            with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
                return sorted(conn.execute("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'pushes' "
                                           "AND type = 'index' AND sql IS NOT NULL"))
        with psycopg.connect(url) as conn:
            return sorted(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'pushes'"))
    assert pushes_indexes(first) == pushes_indexes(current) != []


def test_revision_0003_adds_two_factor_off_for_every_account(own_database, tmp_path, caplog):
    """Two-factor authentication's columns and backup codes' table: an account made at 0002
    keeps everything and has two-factor authentication off."""
    app = _upgraded_from(own_database, tmp_path, caplog, "0002",
                         "INSERT INTO users (email, password_hash, api_token_digest, is_admin, created_at, "
                         "confirmed_at) VALUES ('old@example.com', 'hash', 'digest', true, '2026-01-02 03:04:05', "
                         "'2026-01-02 03:04:05')")
    assert f"database upgraded from 0002 to {migrate.HEAD}" in caplog.text
    assert stored_revision(own_database) == migrate.HEAD
    assert _differences(own_database) == []
    assert sql(app, "SELECT email, password_hash, api_token_digest, otp_enabled_at, otp_secret_ciphertext, "
                    "otp_last_step FROM users") == [("old@example.com", "hash", "digest", None, None, None)]
    assert sql(app, "SELECT count(*) FROM otp_backup_codes") == [(0,)]


def test_revision_0005_keeps_the_recorded_processes_and_goes_back_down(own_database, tmp_path, caplog):
    """Where a process runs (instance_keys.process): a row recorded at 0004 stays, with none
    (the 5-minute rule alone); the revision's downgrade takes the column away, rows kept."""
    app = _upgraded_from(own_database, tmp_path, caplog, "0004",
                         "INSERT INTO instance_keys (id, host, pid, keys, started_at, seen_at) VALUES "
                         "('old', 'web-1', 12, 'abc', '2026-01-02 03:04:05', '2100-01-02 03:04:05')")  # (not pruned)
    assert f"database upgraded from 0004 to {migrate.HEAD}" in caplog.text
    assert stored_revision(own_database) == migrate.HEAD
    assert _differences(own_database) == []
    assert sql(app, "SELECT host, pid, keys, process FROM instance_keys WHERE id = 'old'") == [
        ("web-1", 12, "abc", None)]
    with _downgraded(own_database, "0004") as conn:
        assert "process" not in {c["name"] for c in inspect(conn).get_columns("instance_keys")}
        assert conn.exec_driver_sql("SELECT host, pid FROM instance_keys WHERE id = 'old'").all() == [("web-1", 12)]
    assert stored_revision(own_database) == "0004"


@contextmanager
def _downgraded(url, revision):
    """Run the revisions' downgrades to revision; yield a connection to the database."""
    from alembic import command

    config = migrate._alembic_config(migrate.MIGRATIONS)
    engine = create_engine(database_uri(url))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def test_revision_0006_adds_the_retired_keys_which_rotate_key_fills_and_goes_back_down(own_database, tmp_path,
                                                                                      caplog):
    """The keys rotate-key retired (retired_keys): a database at 0005 gets the table, empty,
    and its next rotation records the key it moved off; the downgrade takes the table away,
    the pushes kept."""
    from cryptography.fernet import Fernet

    from conftest import TEST_MASTER_KEY
    from pwp.crypto import fingerprint

    app = _upgraded_from(own_database, tmp_path, caplog, "0005")
    assert f"database upgraded from 0005 to {migrate.HEAD}" in caplog.text
    assert _differences(own_database) == []
    assert sql(app, "SELECT count(*) FROM retired_keys") == [(0,)]
    assert app.test_client().post("/api/v2/pushes", json={"push": {"payload": "kept"}}).status_code == 201
    sql(app, "DELETE FROM instance_keys")  # (the app's own, on the old key: it has ended)
    rotating = create_app(make_config(own_database, PWPUSH_MASTER_KEY=f"{Fernet.generate_key().decode()},"
                                                                      f"{TEST_MASTER_KEY}"),
                          instance_path=str(tmp_path / "cli"), command_line=True)
    with rotating.app_context():
        ran = rotating.test_cli_runner().invoke(args=["rotate-key"])
        db.engine.dispose()
    assert ran.exit_code == 0 and "done, 1 pushes re-encrypted" in ran.output, ran.output
    assert sql(app, "SELECT fingerprint FROM retired_keys") == [(fingerprint(TEST_MASTER_KEY),)]
    with _downgraded(own_database, "0005") as conn:
        assert not inspect(conn).has_table("retired_keys")
        assert conn.exec_driver_sql("SELECT count(*) FROM pushes").all() == [(1,)]
    assert stored_revision(own_database) == "0005"


def test_revision_0007_keeps_the_recorded_processes_running_and_goes_back_down(own_database, tmp_path, caplog):
    """When a process ended (instance_keys.ended_at): a row recorded at 0006 stays, running
    (none), and a process's end now marks its row; the downgrade takes the column away and the
    ended rows with it, as 0006 deleted a row as its process ended (kept, an ended process read
    as one running, seen as it ended: 0006's rotate-key refused for 5 minutes)."""
    app = _upgraded_from(own_database, tmp_path, caplog, "0006",
                         "INSERT INTO instance_keys (id, host, pid, keys, started_at, seen_at) VALUES "
                         "('old', 'web-1', 12, 'abc', '2026-01-02 03:04:05', '2100-01-02 03:04:05')")  # (not pruned)
    assert f"database upgraded from 0006 to {migrate.HEAD}" in caplog.text
    assert _differences(own_database) == []
    assert sql(app, "SELECT host, pid, ended_at FROM instance_keys WHERE id = 'old'") == [("web-1", 12, None)]
    app.extensions["pwpush_heartbeat"].end()
    assert sql(app, "SELECT count(*) FROM instance_keys WHERE ended_at IS NOT NULL") == [(1,)]
    with _downgraded(own_database, "0006") as conn:
        assert "ended_at" not in {c["name"] for c in inspect(conn).get_columns("instance_keys")}
        assert conn.exec_driver_sql("SELECT id FROM instance_keys").all() == [("old",)]
    assert stored_revision(own_database) == "0006"
