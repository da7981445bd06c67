"""Start-up: settings, zero-configuration keys, schema.sql, command-line commands."""
import contextlib
import io
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import click
import psycopg
import pytest
from flask.cli import run_command
from sqlalchemy import text

import servers
from conftest import (DATABASES, PG_ADMIN_URL, PG_BASE, TEST_MASTER_KEY, bearer, make_config, sql,
                      throwaway_pg_database)
from pwp import ROOT, auth, config, create_app, fastsql
from pwp.models import AuditKind, db, schema_sql


def test_schema_sql_matches_the_models():
    committed = Path(ROOT, "schema.sql").read_text()
    assert committed == schema_sql("sqlite"), "schema.sql drifted: run `flask --app pwpush schema > schema.sql`"


@pytest.mark.parametrize("name,value", [
    ("PWP__ALLOW_ANONYMOUS", "maybe"), ("PWP__PW__EXPIRE_AFTER_DAYS_DEFAULT", "seven"),
    ("PWP__PURGE_AFTER", "3 fortnights"), ("PWP__OVERRIDE_BASE_URL", "pwpush.example.com"),
    # Links are base + "/p/TOKEN": after a query or fragment the token would be lost, and the
    # pages are served from the host's root (no path).
    ("PWP__OVERRIDE_BASE_URL", "https://pw.example.com/?a=1"), ("PWP__OVERRIDE_BASE_URL", "https://pw.example.com#x"),
    ("PWP__OVERRIDE_BASE_URL", "https://pw.example.com:99999"), ("PWP__OVERRIDE_BASE_URL", "http://a b.example.com"),
    ("PWP__OVERRIDE_BASE_URL", "https://pw.example.com/secrets"),
    ("PWP__PW__EXPIRE_AFTER_DAYS_DEFAULT", "500"), ("PWP__FILES__MAX_FILE_UPLOADS", "-1"),
    ("PWP__FILES__MAX_TOTAL_BYTES", "0"), ("PWP__GEN__SYLLABLES_COUNT", "0"),
    ("PWPUSH_MASTER_KEY", "not-a-fernet-key"), ("PWPUSH_SQLITE_WAL_AUTOCHECKPOINT", "0"),
    ("PWPUSH_SQLITE_WAL_AUTOCHECKPOINT", "many"), ("PWP__THROTTLING__STORAGE_URI", "bogus://x"),
    ("PWP__PURGE_AFTER", "20000 years"), ("PWP__PURGE_ANONYMOUS_AFTER", "99999999999999999999 days"),
    ("PWP__PW__EXPIRE_AFTER_DAYS_MAX", "4000000"), ("PWP__URL__EXPIRE_AFTER_VIEWS_MAX", "99999999999"),
    ("DATABASE_URL", "mysql://u:hunter2@h/d"), ("DATABASE_URL", "nonsense"),
    ("DATABASE_URL", "postgresql://u:hunter2@h:99x/d"), ("DATABASE_URL", "postgresql+psycopg2://u@h/d"),
    ("PWP__MAIL__SMTP_SECURITY", "ssl"), ("PWP__MAIL__SMTP_ADDRESS", "smtp.example.com"),  # (no sender)
    ("PWP__MAIL__MAILER_SENDER", "pwpush"), ("PWP__NOTIFY_BY_EMAIL__DAILY_LIMIT", "lots"), ("LOG_LEVEL", "loud"),
    ("PWP__HOST_DOMAIN", "https://pw.example.com"), ("PWP__HOST_DOMAIN", "pw.example.com/p"),
    ("PWP__HOST_DOMAIN", "a b.example.com"), ("PWP__HOST_PROTOCOL", "ftp"),
    ("PWP__REQUIRE_MFA", "maybe"),
    # Account e-mails without an SMTP server: none could be sent.
    ("PWP__ENABLE_USER_ACCOUNT_EMAILS", "true"),
    # The range's bounds: the line names the one set, not only the default it no longer fits.
    ("PWP__PW__EXPIRE_AFTER_VIEWS_MIN", "0"), ("PWP__URL__EXPIRE_AFTER_DAYS_MAX", "0"),
    ("PWP__QR__EXPIRE_AFTER_VIEWS_MAX", "3"),
    # A logo is an <img src>: a page's script or another scheme has no business there.
    ("PWP__BRAND__LIGHT_LOGO", "javascript:alert(1)"), ("PWP__BRAND__DARK_LOGO", "//cdn.example.com/logo.png"),
])
def test_bad_setting_stops_start_up_naming_the_variable(tmp_path, name, value):
    env = {**os.environ, name: value, "PWPUSH_INSTANCE_PATH": str(tmp_path),
           "PWP__THROTTLING__MINUTE": "60"}  # (so the throttle's storage is set up)
    proc = subprocess.run([sys.executable, "-c", "import pwpush"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert name in proc.stderr
    # One line for the admin, not a traceback; never the password of a URL.
    assert proc.stderr.splitlines()[-1].startswith("pwpush: configuration error: ")
    assert "Traceback" not in proc.stderr
    assert "hunter2" not in proc.stderr


@pytest.mark.parametrize("links", [{}, {"PWP__HOST_PROTOCOL": "http"}])
def test_an_smtp_server_without_a_configured_link_host_stops_start_up(tmp_path, links):
    """Mail links are never built on the request's Host (a sender could point them at a host of
    their own): an SMTP server needs PWP__HOST_DOMAIN or PWP__OVERRIDE_BASE_URL, said in one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PWP")}
    env.update(links, PWPUSH_INSTANCE_PATH=str(tmp_path), PWP__MAIL__SMTP_ADDRESS="smtp.example.com",
               PWP__MAIL__SMTP_PASSWORD="hunter2", PWP__MAIL__MAILER_SENDER="pwpush@example.com")
    proc = subprocess.run([sys.executable, "-c", "import pwpush"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "hunter2" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("pwpush: configuration error: PWP__HOST_DOMAIN: required when "
                                                   "PWP__MAIL__SMTP_ADDRESS is set")
    for enough in ({"PWP__HOST_DOMAIN": "pwpush.example.com"}, {"PWP__OVERRIDE_BASE_URL": "https://pw.example.com"}):
        proc = subprocess.run([sys.executable, "-c", "import pwpush"], cwd=ROOT, env={**env, **enough},
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


def test_mail_links_base():
    from pwp.config import mail_base_url
    assert mail_base_url({"PWP__HOST_DOMAIN": "pw.example.com:8443", "PWP__HOST_PROTOCOL": "https"}) \
        == "https://pw.example.com:8443"
    assert mail_base_url({"PWP__HOST_DOMAIN": "pw.example.com", "PWP__HOST_PROTOCOL": "http", "FORCE_SSL": True}) \
        == "https://pw.example.com"
    assert mail_base_url({"PWP__HOST_DOMAIN": "pw.example.com", "PWP__OVERRIDE_BASE_URL": "http://o.example.com"}) \
        == "http://o.example.com"  # (upstream's override_base_url wins, as for every link)
    assert mail_base_url({"PWP__HOST_DOMAIN": None}) is None


@pytest.mark.parametrize("url", ["postgresql://postgres:hunter2@127.0.0.1:1/pwpush",
                                 "postgresql://no_such_role:hunter2@127.0.0.1:5432/postgres"])
def test_a_database_that_cannot_be_used_yet_is_one_line_and_exit_1(tmp_path, url):
    # Not a configuration error (exit 3 would stop gunicorn's master for good): a server
    # restarting may mend it.
    proc = _start({"PWPUSH_INSTANCE_PATH": str(tmp_path), "DATABASE_URL": url})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "hunter2" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("pwpush: DATABASE_URL: cannot use the database: ")


@pytest.mark.parametrize("query, seconds", [("", "10"), ("?connect_timeout=3", "3")])
def test_postgresql_connections_give_up_connecting_after_a_timeout(tmp_path, query, seconds):
    """A database that drops packets silently held a connecting request (or the heartbeat)
    for the TCP timeout, minutes: libpq's connect_timeout is 10 s unless DATABASE_URL sets
    its own. (Read back from the connection: a real connect to a blackhole is not reliable.)"""
    if "postgresql" not in DATABASES:
        pytest.skip("PostgreSQL is not among PWPUSH_TEST_DATABASES")
    with throwaway_pg_database("h_keys2_timeout") as name:
        app = create_app(make_config(f"{PG_BASE}/{name}{query}"), instance_path=str(tmp_path / "instance"))
        with app.app_context():
            with db.engine.connect() as connection:
                parameters = connection.connection.dbapi_connection.info.get_parameters()
            db.engine.dispose()
        assert parameters.get("connect_timeout") == seconds


@pytest.fixture
def pg_without_create_right():
    """A PostgreSQL database and a role that may connect but not create tables in it."""
    with throwaway_pg_database("pwpush_noperm") as name:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{name}" LOGIN')
        try:
            with psycopg.connect(f"{PG_BASE}/{name}", autocommit=True) as conn:
                conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            yield f"postgresql://{name}:hunter2@{PG_BASE.split('@', 1)[1]}/{name}"
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP OWNED BY "{name}"')
                conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_a_database_the_role_may_not_create_tables_in_is_a_configuration_error(tmp_path, pg_without_create_right):
    proc = _start({"PWPUSH_INSTANCE_PATH": str(tmp_path), "DATABASE_URL": pg_without_create_right})
    assert proc.returncode == 3 and "Traceback" not in proc.stderr and "hunter2" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(
        "pwpush: configuration error: DATABASE_URL: cannot use the database: permission denied")


def test_a_table_made_by_an_older_version_stops_start_up_naming_its_missing_columns(app, database_url, tmp_path):
    # create_all adds missing tables, never columns: every request touching the table failed.
    # (A database from before migrations: no version table. One with it gets its revisions.)
    with app.app_context():
        db.session.execute(text("ALTER TABLE pushes DROP COLUMN note_ciphertext"))
        db.session.execute(text("DROP TABLE pwpush_schema_version"))
        db.session.commit()
        db.engine.dispose()
    try:
        # (Its key: a start whose keys do not open the database is refused before its upgrade.)
        proc = _start({"PWPUSH_INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url,
                       "PWPUSH_MASTER_KEY": TEST_MASTER_KEY})
    finally:  # (the run's PostgreSQL database serves the tests after this one)
        with app.app_context():
            binary = "BYTEA" if db.engine.dialect.name == "postgresql" else "BLOB"
            db.session.execute(text(f"ALTER TABLE pushes ADD COLUMN note_ciphertext {binary}"))
            db.session.commit()
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    line = proc.stderr.splitlines()[-1]
    assert line.startswith(
        "pwpush: configuration error: DATABASE_URL: the table pushes lacks the column(s) note_ciphertext: ")
    assert f"(ALTER TABLE pushes ADD COLUMN note_ciphertext {binary})" in line  # what the finally ran


def test_gunicorn_keeps_trying_a_database_that_cannot_be_used_yet(tmp_path):
    # The PostgreSQL database appears after gunicorn started (a server restarting, a
    # failover): the worker that failed exits 1, gunicorn starts another, and that one serves.
    if "postgresql" not in DATABASES:
        pytest.skip("PostgreSQL is not among PWPUSH_TEST_DATABASES")
    log_path = tmp_path / "gunicorn.log"
    name = f"pwpush_later_{os.getpid()}"
    env = servers.server_env(tmp_path / "instance", f"{PG_BASE}/{name}")

    def make_once_refused(poll=threading.Event()):
        for _ in range(servers.START_ATTEMPTS):
            if log_path.exists() and "cannot use the database" in log_path.read_text():
                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                return
            poll.wait(0.1)

    maker = threading.Thread(target=make_once_refused)
    maker.start()
    try:
        with servers.gunicorn(env, log_path) as server:
            status, created = server.json("POST", "/api/v2/pushes", {"push": {"payload": "x"}})
            assert status == 201
            assert server.json("GET", f"/api/v2/pushes/{created['url_token']}")[1]["payload"] == "x"
    finally:
        maker.join()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    logs = log_path.read_text()
    assert 'pwpush: DATABASE_URL: cannot use the database: connection failed: ' in logs
    assert f'database "{name}" does not exist' in logs
    assert "exited with code 1" in logs and "Worker failed to boot" not in logs


@contextlib.contextmanager
def _not_writable(folder):
    """folder, which this user may not write in: its mode for others, immutable for root
    (whom no mode stops)."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("root here cannot make a folder immutable (chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def _no_folder(path, folder, what="does not exist"):
    return (f"DATABASE_URL: cannot use the SQLite database {path}: the folder {folder} {what} (make it, writable "
            "by the server's user, or correct DATABASE_URL)")


def _unwritable(path, folder):
    return (f"DATABASE_URL: cannot use the SQLite database {path}: the folder {folder} is not writable by this "
            "user (SQLite makes the database's -wal and -shm files there): let the server's user write there, "
            "or correct DATABASE_URL")


def test_an_sqlite_database_in_a_folder_missing_or_not_writable_stops_start_up_in_one_line(tmp_path):
    """A configuration error (exit 3: gunicorn's master stops), not a database to wait for:
    its worker retried "unable to open database file" every 5 s forever."""
    instance = str(tmp_path / "instance")
    missing = tmp_path / "missing" / "sub" / "pwpush.sqlite3"
    proc = _start({"PWPUSH_INSTANCE_PATH": instance, "DATABASE_URL": f"sqlite:///{missing}"})
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == f"pwpush: configuration error: {_no_folder(missing, tmp_path / 'missing')}"
    (tmp_path / "a-file").write_text("")
    blocked = tmp_path / "a-file" / "pwpush.sqlite3"
    proc = _start({"PWPUSH_INSTANCE_PATH": instance, "DATABASE_URL": f"sqlite:///{blocked}"})
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[-1] == \
        f"pwpush: configuration error: {_no_folder(blocked, tmp_path / 'a-file', 'is not a folder')}"
    closed = tmp_path / "closed"
    closed.mkdir()
    with _not_writable(closed):
        proc = _start({"PWPUSH_INSTANCE_PATH": instance, "DATABASE_URL": f"sqlite:///{closed / 'pwpush.sqlite3'}"})
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == \
        f"pwpush: configuration error: {_unwritable(closed / 'pwpush.sqlite3', closed)}"
    assert os.listdir(closed) == []


def test_an_sqlite_database_whose_files_exist_starts_in_a_folder_it_may_not_write(tmp_path):
    """A database, its -wal and -shm files already there (SQLite cannot delete them in such a
    folder): SQLite needs nothing more of the folder, so the start goes on (a read-only folder
    over writable files is an admin's choice), where a missing file stops it as above."""
    instance, folder = tmp_path / "instance", tmp_path / "data"
    folder.mkdir()
    env = {"PWPUSH_INSTANCE_PATH": str(instance), "DATABASE_URL": f"sqlite:///{folder / 'pwpush.sqlite3'}"}
    assert _start(env).returncode == 0
    holder = sqlite3.connect(folder / "pwpush.sqlite3")  # (its -wal and -shm stay while it is open)
    try:
        holder.execute("SELECT count(*) FROM pushes").fetchone()
        assert sorted(os.listdir(folder)) == ["pwpush.sqlite3", "pwpush.sqlite3-shm", "pwpush.sqlite3-wal"]
        with _not_writable(folder):
            proc = _start(env)
    finally:
        holder.close()
    assert proc.returncode == 0, proc.stderr


def test_an_sqlite_database_reached_through_a_symbolic_link_is_checked_where_it_is(tmp_path):
    """SQLite follows a symbolic link to the database and makes its -wal and -shm files in
    the folder of the file linked to: the link's own folder need not be writable (a
    configuration folder linking to the data folder), and a data folder that is not is named."""
    links, data = tmp_path / "links", tmp_path / "data"
    links.mkdir()
    data.mkdir()
    (links / "pwpush.sqlite3").symlink_to(data / "pwpush.sqlite3")
    env = {"PWPUSH_INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": f"sqlite:///{links / 'pwpush.sqlite3'}"}
    with _not_writable(links):
        proc = _start(env)
    assert proc.returncode == 0, proc.stderr
    assert "pwpush.sqlite3" in os.listdir(data)
    (data / "pwpush.sqlite3").unlink()
    with _not_writable(data):
        proc = _start(env)
    assert proc.returncode == 3 and proc.stderr.splitlines()[-1] == \
        f"pwpush: configuration error: {_unwritable(links / 'pwpush.sqlite3', data)}"


def test_an_sqlite_database_on_a_file_system_mounted_read_only_is_said_so(tmp_path):
    """No mode makes such a folder writable: the line says the mount (it said to let the
    server's user write there; before the folder check, a database to wait for, forever)."""
    data, mounted = tmp_path / "data", tmp_path / "mounted"
    data.mkdir()
    mounted.mkdir()
    assert _start({"PWPUSH_INSTANCE_PATH": str(tmp_path / "instance"),
                   "DATABASE_URL": f"sqlite:///{data / 'pwpush.sqlite3'}"}).returncode == 0
    if subprocess.run(["mount", "--bind", "-o", "ro", str(data), str(mounted)], capture_output=True).returncode:
        pytest.skip("this user cannot mount a folder read-only")
    try:
        if os.access(mounted, os.W_OK):  # (older mount(8): the read-only flag needs a remount)
            subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True)
        proc = _start({"PWPUSH_INSTANCE_PATH": str(tmp_path / "instance"),
                       "DATABASE_URL": f"sqlite:///{mounted / 'pwpush.sqlite3'}"})
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    assert proc.returncode == 3 and proc.stderr.splitlines()[-1] == (
        f"pwpush: configuration error: DATABASE_URL: cannot use the SQLite database {mounted / 'pwpush.sqlite3'}: "
        f"the folder {mounted} is on a file system mounted read-only (pwpush writes to its database, and SQLite "
        "makes the database's -wal and -shm files there): mount it read-write, or correct DATABASE_URL")


def test_gunicorn_stops_on_an_sqlite_database_in_a_folder_that_does_not_exist(tmp_path):
    """Its master stops (the workers' exit 3), with two workers as with one: it restarted
    worker after worker, each waiting 5 s, for good. (Its own exit status is 3, or 1 when
    the second worker's exit 3 comes while it stops: gunicorn's HaltServer raised again
    inside its halt, a traceback.)"""
    missing = tmp_path / "missing" / "pwpush.sqlite3"
    log_path = tmp_path / "gunicorn.log"
    with pytest.raises(RuntimeError, match="gunicorn exited with [13];"):
        with servers.gunicorn(servers.server_env(tmp_path / "instance", f"sqlite:///{missing}"), log_path,
                              workers=2):
            pass
    logs = log_path.read_text()
    assert f"pwpush: configuration error: {_no_folder(missing, missing.parent)}" in logs
    assert "Worker failed to boot" in logs and "cannot use the database" not in logs


def test_an_instance_folder_or_key_file_open_to_others_is_warned_about(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    quiet = _start({"PWPUSH_INSTANCE_PATH": str(instance), "PWPUSH_MASTER_KEY": "", "SECRET_KEY": ""})
    assert quiet.returncode == 0 and "open to other users" not in quiet.stderr
    instance.chmod(0o755)  # (made by an admin's mkdir)
    (instance / "master.key").chmod(0o644)
    proc = _start({"PWPUSH_INSTANCE_PATH": str(instance), "PWPUSH_MASTER_KEY": "", "SECRET_KEY": ""})
    assert proc.returncode == 0
    assert f"The instance folder {instance} is open to other users (mode 755)" in proc.stderr
    assert f"The instance key file {instance / 'master.key'} is open to other users (mode 644)" in proc.stderr
    assert "secret_key is open" not in proc.stderr
    # The SQLite database made at the first start is owner-only, its WAL too, whatever the
    # folder's mode and the umask (0644 before); one made readable later is warned about.
    database = instance / "pwpush.sqlite3"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600 and "pwpush.sqlite3 is open" not in proc.stderr
    wal = instance / "pwpush.sqlite3-wal"
    assert not wal.exists() or stat.S_IMODE(wal.stat().st_mode) == 0o600
    database.chmod(0o644)
    again = _start({"PWPUSH_INSTANCE_PATH": str(instance), "PWPUSH_MASTER_KEY": "", "SECRET_KEY": ""})
    assert f"The instance database {database} is open to other users (mode 644)" in again.stderr


def test_an_open_instance_folder_that_holds_nothing_is_not_warned_about(tmp_path):
    """With both keys set and the database elsewhere (PostgreSQL, or SQLite in another folder)
    the instance folder holds nothing secret: its mode was warned about at every start and on
    stderr for every `purge-expired --quiet` (an hourly cron mail). One that holds a key file
    or the database still is (the test above)."""
    from cryptography.fernet import Fernet

    instance, data = tmp_path / "instance", tmp_path / "data"
    instance.mkdir(mode=0o755)
    data.mkdir(mode=0o700)
    env = {"PWPUSH_INSTANCE_PATH": str(instance), "PWPUSH_MASTER_KEY": Fernet.generate_key().decode(),
           "SECRET_KEY": "s" * 64, "DATABASE_URL": f"sqlite:///{data / 'pwpush.sqlite3'}"}
    instance.chmod(0o755)  # (whatever the umask)
    proc = _start(env)
    assert proc.returncode == 0, proc.stderr
    assert "open to other users" not in proc.stderr
    assert "open to other users (mode 755)" in _start({**env, "SECRET_KEY": ""}).stderr  # (its secret_key)


def test_a_new_sqlite_database_outside_the_instance_folder_is_owner_only(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    database = folder / "elsewhere.sqlite3"
    app = create_app(make_config(f"sqlite:///{database}"), instance_path=str(tmp_path / "i"))
    assert app.test_client().post("/api/v2/pushes", json={"push": {"payload": "x"}}).status_code == 201
    for path in (database, folder / "elsewhere.sqlite3-wal"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_short_secret_key_is_warned_about(tmp_path):
    env = {"PWPUSH_INSTANCE_PATH": str(tmp_path / "instance"), "PWPUSH_MASTER_KEY": ""}
    proc = _start({**env, "SECRET_KEY": "changeme"})
    assert proc.returncode == 0
    assert "SECRET_KEY has 8 characters: whoever guesses it can sign in as anyone" in proc.stderr
    assert "changeme" not in proc.stderr
    proc = _start({**env, "SECRET_KEY": "k" * 32})
    assert proc.returncode == 0 and "SECRET_KEY has" not in proc.stderr


def _start(env):
    return subprocess.run([sys.executable, "-c", "import pwpush"], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_an_unusable_instance_folder_or_key_file_stops_start_up_in_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {"PWPUSH_INSTANCE_PATH": str(blocker / "instance"), "PWPUSH_MASTER_KEY": "", "SECRET_KEY": ""}
    proc = _start(env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("pwpush: configuration error: PWPUSH_INSTANCE_PATH: cannot use ")
    proc = _start({**env, "PWPUSH_INSTANCE_PATH": "instance"})  # (Flask's ValueError, a traceback)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == ("pwpush: configuration error: PWPUSH_INSTANCE_PATH: expected an "
                                            "absolute path, got 'instance'")
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "master.key").write_text("damaged\n")
    proc = _start({**env, "PWPUSH_INSTANCE_PATH": str(instance)})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"configuration error: the key file {instance / 'master.key'}: each comma-separated key" in proc.stderr
    (instance / "master.key").write_bytes("d\u00e9j\u00e0\n".encode())
    proc = _start({**env, "PWPUSH_INSTANCE_PATH": str(instance)})
    assert f"configuration error: the key file {instance / 'master.key'}: cannot be used: not a key" in proc.stderr
    (instance / "master.key").unlink()
    (instance / "secret_key").write_text("")  # (an empty one made every page a 500)
    proc = _start({**env, "PWPUSH_INSTANCE_PATH": str(instance)})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"configuration error: the key file {instance / 'secret_key'}: is empty" in proc.stderr


@pytest.mark.parametrize("uri", ["reddis://:hunter2@127.0.0.1:6379/14", "redis://:hunter2@127.0.0.1:notaport/14"])
def test_a_bad_throttling_storage_uri_is_named_without_its_password(tmp_path, uri):
    proc = _start({"PWPUSH_INSTANCE_PATH": str(tmp_path), "PWP__THROTTLING__STORAGE_URI": uri,
                   "PWP__THROTTLING__MINUTE": "60"})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "configuration error: PWP__THROTTLING__STORAGE_URI: cannot use" in proc.stderr
    assert "hunter2" not in proc.stderr


@pytest.mark.parametrize("raw,seconds", [("disabled", None), ("3 months", 3 * 2629746), ("1 year", 31556952),
                                         ("100 years", 100 * 31556952),
                                         ("2 days", 172800), ("12 hours", 43200)])
def test_purge_after_durations(raw, seconds):
    assert config.parse_duration("PWP__PURGE_AFTER", raw) == seconds


def test_environment_values_are_typed():
    values = config.from_environ({"PWP__ALLOW_ANONYMOUS": "false", "PWP__QR__EXPIRE_AFTER_VIEWS_MAX": "7",
                                  "PWP__OVERRIDE_BASE_URL": "https://x.example/"})
    assert values["PWP__ALLOW_ANONYMOUS"] is False
    assert values["PWP__QR__EXPIRE_AFTER_VIEWS_MAX"] == 7
    assert values["PWP__OVERRIDE_BASE_URL"] == "https://x.example"
    assert values["PWP__PW__EXPIRE_AFTER_DAYS_DEFAULT"] == 7


@pytest.mark.parametrize("logo", ["https://cdn.example.com:8443/brand/light.png", "HTTP://cdn.example.com/l.png",
                                  "/static/favicon.svg", "brand/logo.png"])
def test_a_logo_is_an_http_url_or_a_path(logo):
    assert config.from_environ({"PWP__BRAND__LIGHT_LOGO": logo})["PWP__BRAND__LIGHT_LOGO"] == logo


@pytest.mark.parametrize("logo", ["data:image/png;base64,iVBORw0KGgo=", "DATA:Image/WebP;base64,UklGRg==",
                                  "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' width='9'/>",
                                  "data:image/svg+xml;charset=utf-8,%3Csvg%2F%3E",
                                  # (the form often pasted: browsers read ;utf8 as text, a parameter
                                  # they ignore)
                                  "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' width='9'/>",
                                  "data:image/svg+xml;UTF-8,<svg/>", "data:image/svg+xml;charset=UTF-8,<svg/>",
                                  "data:image/gif;base64,"
                                  + "R0lG" * (config.DATA_LOGO_MAX // 4 - 6)])
def test_a_data_logo_of_an_image_is_taken_as_the_csp_allows_data_images(logo):
    """The CSP's img-src allows data: (an SVG in an <img> runs no script): a data: logo was refused."""
    assert len(logo) <= config.DATA_LOGO_MAX
    assert config.from_environ({"PWP__BRAND__LIGHT_LOGO": logo})["PWP__BRAND__LIGHT_LOGO"] == logo


def test_a_data_logos_hash_sign_is_written_as_the_url_escape_it_must_be():
    """A "#" in a data: URL starts its fragment: an SVG logo with a colour such as fill='#f00'
    was an image cut there, which Chromium showed as a broken one (naturalWidth 0)."""
    logo = "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'><rect fill='#f00'/></svg>"
    taken = config.from_environ({"PWP__BRAND__LIGHT_LOGO": logo})["PWP__BRAND__LIGHT_LOGO"]
    assert taken == logo.replace("#", "%23")


@pytest.mark.parametrize("logo,said", [
    ("data:text/html,<script>alert(1)</script>", "must be an image"), ("data:,x", "must be an image"),
    ("data:image/svg+xml;base64,PHN2Zy8+ PC9zdmc+", "must be an image"), ("data:image/png,\x01", "must be an image"),
    ("data:image/png;base64," + "A" * config.DATA_LOGO_MAX, "serve it as a file")])
def test_a_data_logo_that_is_no_image_or_too_long_is_refused_saying_why(logo, said):
    with pytest.raises(config.ConfigError) as refused:
        config.from_environ({"PWP__BRAND__DARK_LOGO": logo})
    assert str(refused.value).startswith("PWP__BRAND__DARK_LOGO: a data: logo ") and said in str(refused.value)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 300


@pytest.mark.parametrize("logo", ["javascript:alert(1)", " JavaScript:alert(1)", "java\tscript:alert(1)",
                                  "file:///etc/passwd", "ftp://x.example/l.png",
                                  "//cdn.example.com/l.png", "/\\cdn.example.com/l.png", "https:///l.png",
                                  "https://cdn.example.com:8443;script-src *", "https://u:hunter2@x.example/l.png",
                                  "/logo.png onerror=x"])
def test_a_logo_of_another_scheme_or_site_without_a_scheme_is_refused(logo):
    with pytest.raises(config.ConfigError) as refused:
        config.from_environ({"PWP__BRAND__DARK_LOGO": logo})
    assert str(refused.value).startswith("PWP__BRAND__DARK_LOGO: expected an http:// or https:// URL or a path")
    assert "hunter2" not in str(refused.value) and "\n" not in str(refused.value)


def test_unknown_pwp_variables_are_named_in_one_warning_without_their_values(database_url, tmp_path, caplog,
                                                                           monkeypatch):
    # Found by hand: typos (and settings of sections that lack them) were ignored without a word.
    monkeypatch.setenv("PWP__QR__ENABLE_BLUR", "value-one")
    monkeypatch.setenv("PWP__URL__ENABLE_DELETABLE_PUSHES", "value-two")
    monkeypatch.setenv("PWP__ALOW_ANONYMOUS", "value-three")
    monkeypatch.setenv("PWP__PUBLIC_GATEWAY", "value-four")
    monkeypatch.setenv("PWP__PW__EXPIRE_AFTER_DAYS_DEFAULT", "3")  # (a setting: not named)
    with caplog.at_level(logging.INFO, logger="pwp"):
        app = create_app(make_config(database_url), instance_path=str(tmp_path / "instance"), command_line=False)
    with app.app_context():
        db.engine.dispose()
    warnings = [r.getMessage() for r in caplog.records if "not pwpush settings" in r.getMessage()]
    assert warnings == ["Ignored, not pwpush settings: PWP__ALOW_ANONYMOUS (perhaps PWP__ALLOW_ANONYMOUS was "
                        "meant), PWP__PUBLIC_GATEWAY (perhaps PWP_PUBLIC_GATEWAY was meant), "
                        "PWP__QR__ENABLE_BLUR, PWP__URL__ENABLE_DELETABLE_PUSHES. The README lists the settings."]
    assert "value-" not in caplog.text and "EXPIRE_AFTER_DAYS_DEFAULT" not in caplog.text


def test_an_empty_value_is_the_default():
    empty = config.from_environ({name: " " for name, _parser, _default in config.SETTINGS})
    assert empty == config.from_environ({})
    assert empty["PWP__ALLOW_ANONYMOUS"] is True and empty["PWP__THROTTLING__STORAGE_URI"] == "memory://"


def test_postgres_urls_are_normalised():
    assert config.database_uri("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert config.database_uri("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"


def test_a_key_file_that_cannot_be_written_leaves_nothing_behind(tmp_path):
    from pwp import crypto

    def full_disk():
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError):
        crypto.load_or_create(str(tmp_path / "master.key"), full_disk)
    assert os.listdir(tmp_path) == []  # no master.key.<pid>.<hex> left in the instance folder
    assert crypto.load_or_create(str(tmp_path / "master.key"), lambda: "k") == "k"
    assert os.listdir(tmp_path) == ["master.key"]


def test_zero_configuration_generates_keys_and_database(tmp_path, caplog):
    instance = tmp_path / "instance"
    cfg = {"TESTING": True, "DATABASE_URL": None, "SECRET_KEY": None, "PWPUSH_MASTER_KEY": None}
    app = create_app(cfg, instance_path=str(instance))
    for name in ("master.key", "secret_key"):  # (the master key's once the database took it)
        assert caplog.text.count(f"Generated a new secret at {instance / name} (mode 0600)") == 1, name
    for name in ("master.key", "secret_key"):
        mode = stat.S_IMODE((instance / name).stat().st_mode)
        assert mode == 0o600, name
    assert (instance / "pwpush.sqlite3").exists()
    key = (instance / "master.key").read_text()
    again = create_app(cfg, instance_path=str(instance))
    assert (instance / "master.key").read_text() == key
    assert again.config["SECRET_KEY"] == app.config["SECRET_KEY"]
    assert caplog.text.count("Generated a new secret") == 2
    r = app.test_client().post("/api/v2/pushes", json={"push": {"payload": "zero"}})
    assert r.status_code == 201
    assert again.test_client().get(f"/api/v2/pushes/{r.json['url_token']}").json["payload"] == "zero"


def test_sqlite_runs_with_wal_and_secure_delete(tmp_path):
    app = create_app(make_config(f"sqlite:///{tmp_path / 'db.sqlite3'}"), instance_path=str(tmp_path / "i"))
    assert sql(app, "PRAGMA journal_mode")[0][0] == "wal"
    assert sql(app, "PRAGMA secure_delete")[0][0] == 1
    assert sql(app, "PRAGMA wal_autocheckpoint")[0][0] == 1000  # SQLite's default unless set


def test_sqlite_checkpoint_size_is_a_setting(tmp_path):
    cfg = make_config(f"sqlite:///{tmp_path / 'db.sqlite3'}", PWPUSH_SQLITE_WAL_AUTOCHECKPOINT=250)
    app = create_app(cfg, instance_path=str(tmp_path / "i"))
    assert sql(app, "PRAGMA wal_autocheckpoint")[0][0] == 250
    with app.app_context():  # and on the fast path's own connection (creates, retrievals)
        fast = fastsql._own_connection(db.engine)
    assert fast.execute("PRAGMA wal_autocheckpoint").fetchone() == (250,)


def run_flask(database_url, instance, *args, input_env=None, stdin=""):
    env = {**os.environ, "DATABASE_URL": database_url, "PWPUSH_INSTANCE_PATH": str(instance),
           "PWPUSH_MASTER_KEY": make_config("")["PWPUSH_MASTER_KEY"], **(input_env or {})}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "pwpush", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_cli_users_and_maintenance_commands(app, database_url, tmp_path):
    instance = tmp_path / "instance"
    created = run_flask(database_url, instance, "users", "create", "cli@example.com", "--admin")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    client = app.test_client()
    assert client.get("/api/v2/pushes/active", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    again = run_flask(database_url, instance, "users", "create", "cli@example.com")
    assert again.returncode != 0 and "already registered" in again.stderr
    renewed = run_flask(database_url, instance, "users", "token", "cli@example.com")
    new_token = renewed.stdout.strip().splitlines()[-1]
    assert new_token != token
    assert client.get("/api/v2/pushes/active", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/api/v2/pushes/active", headers={"Authorization": f"Bearer {new_token}"}).status_code == 200
    assert run_flask(database_url, instance, "users", "token", "nobody@example.com").returncode != 0
    # A password for the web, for an account made without one (API only until then).
    assert client.post("/users/sign_in", data={"email": "cli@example.com", "password": "battery staple"}
                       ).status_code == 401
    short = run_flask(database_url, instance, "users", "password", "cli@example.com",
                      input_env={"PWPUSH_USER_PASSWORD": "short"})
    assert short.returncode == 1 and "Use at least 8 characters." in short.stderr
    assert run_flask(database_url, instance, "users", "password", "nobody@example.com",
                     input_env={"PWPUSH_USER_PASSWORD": "battery staple"}).returncode == 1
    unknown = run_flask(database_url, instance, "users", "password", "nobody@example.com")
    assert unknown.returncode == 1 and "No user" in unknown.stderr and "Password" not in unknown.stdout
    weak = run_flask(database_url, instance, "users", "create", "weak@example.com", "--password", "abc")
    assert weak.returncode == 1 and "Use at least 8 characters." in weak.stderr
    done = run_flask(database_url, instance, "users", "password", "cli@example.com",
                     input_env={"PWPUSH_USER_PASSWORD": "battery staple"})
    assert done.returncode == 0 and "Password set for cli@example.com" in done.stdout
    assert client.post("/users/sign_in", data={"email": "cli@example.com", "password": "battery staple"}
                       ).status_code == 302
    run_flask(database_url, instance, "users", "create", "api@example.com")
    listed = run_flask(database_url, instance, "users", "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["e-mail", "admin", "web", "sign-in", "two-factor", "live", "pushes", "created",
                                "(UTC)"]
    assert lines[1].split()[:5] == ["cli@example.com", "yes", "yes", "no", "0"]
    assert lines[2].split()[:5] == ["api@example.com", "no", "no", "no", "0"]  # (API only)
    assert token not in listed.stdout and new_token not in listed.stdout
    # init-db twice never drops data.
    client.post("/api/v2/pushes", json={"push": {"payload": "keep"}})
    for _ in range(2):
        assert run_flask(database_url, instance, "init-db").returncode == 0
    assert sql(app, "SELECT count(*) FROM pushes")[0][0] == 1
    purge = run_flask(database_url, instance, "purge-expired")
    assert purge.returncode == 0
    lines = purge.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("purge-expired: expired 0")
    rotate = run_flask(database_url, instance, "rotate-key")
    assert rotate.returncode == 0 and "done, 1 pushes" in rotate.stdout
    for bad in (["--batch-size", "0"], ["--batch-size", "-1"], ["--after-id", "-5"]):
        refused = run_flask(database_url, instance, "rotate-key", *bad)
        assert refused.returncode == 2 and "Invalid value" in refused.stderr and "done" not in refused.stdout


def test_cli_users_admin_and_delete(app, database_url, make_user, tmp_path):
    instance = tmp_path / "instance"
    _, token = make_user("gone@example.com")
    _, other = make_user("stays@example.com")
    client = app.test_client()
    live = client.post("/api/v2/pushes", json={"push": {"payload": "mine"}}, headers=bearer(token)).json
    files = client.post("/api/v2/pushes", headers=bearer(token), data={
        "push[files][]": (io.BytesIO(b"file bytes"), "a.txt")}).json
    theirs = client.post("/api/v2/pushes", json={"push": {"payload": "theirs"}}, headers=bearer(other)).json
    assert client.get(f"/api/v2/pushes/{theirs['url_token']}", headers=bearer(token)).status_code == 200
    # Promote and revoke: an admin's view of another's push is logged, not counted.
    promoted = run_flask(database_url, instance, "users", "admin", "gone@example.com")
    assert promoted.returncode == 0 and "gone@example.com is now an administrator (" in promoted.stdout
    client.get(f"/api/v2/pushes/{theirs['url_token']}", headers=bearer(token))
    revoked = run_flask(database_url, instance, "users", "admin", "gone@example.com", "--revoke")
    assert revoked.returncode == 0 and "no longer an administrator" in revoked.stdout
    assert [k for (k,) in sql(app, "SELECT kind FROM audit_logs WHERE user_id IS NOT NULL ORDER BY id")
            if k in (AuditKind.view, AuditKind.admin_view)] == [AuditKind.view, AuditKind.admin_view]
    assert run_flask(database_url, instance, "users", "admin", "nobody@example.com").returncode == 1
    # Deleting asks first; "n" changes nothing.
    kept = run_flask(database_url, instance, "users", "delete", "gone@example.com", stdin="n\n")
    assert kept.returncode == 1 and "(2 still live)" in kept.stdout
    assert client.get("/api/v2/pushes/active", headers=bearer(token)).status_code == 200
    deleted = run_flask(database_url, instance, "users", "delete", "gone@example.com", stdin="y\n")
    assert deleted.returncode == 0 and "Deleted gone@example.com and its 2 pushes (" in deleted.stdout
    assert client.get("/api/v2/pushes/active", headers=bearer(token)).status_code == 401
    for push in (live, files):
        assert client.get(f"/api/v2/pushes/{push['url_token']}").status_code == 404
    assert sql(app, "SELECT count(*) FROM push_files")[0][0] == 0
    assert sql(app, "SELECT count(*) FROM push_file_parts")[0][0] == 0
    # Its views of another's push stay in that push's log, without the account.
    assert sql(app, "SELECT count(*), count(user_id) FROM audit_logs WHERE push_id = "
               "(SELECT id FROM pushes WHERE url_token = :t) AND kind IN (:v, :a)",
               t=theirs["url_token"], v=AuditKind.view, a=AuditKind.admin_view)[0] == (2, 0)
    assert client.get(f"/api/v2/pushes/{theirs['url_token']}", headers=bearer(other)).json["payload"] == "theirs"
    assert "gone@example.com" not in run_flask(database_url, instance, "users", "list").stdout
    assert run_flask(database_url, instance, "users", "delete", "gone@example.com", "--yes").returncode == 1


NO_ADMIN_LEFT = "warning: no administrator is left; make one with: flask --app pwpush users admin EMAIL"


def test_cli_says_when_a_revoke_or_delete_leaves_no_administrator(app, make_user):
    """The command line may revoke or delete the last administrator (it is how a site is
    mended), but says so; a change that leaves one, or was not an administrator's, says nothing."""
    make_user("first@example.com", admin=True)
    make_user("second@example.com", admin=True)
    make_user("plain@example.com")
    run = app.test_cli_runner().invoke
    revoked = run(args=["users", "admin", "first@example.com", "--revoke"])
    assert revoked.exit_code == 0 and NO_ADMIN_LEFT not in revoked.output
    deleted = run(args=["users", "delete", "second@example.com", "--yes"])
    assert deleted.exit_code == 0 and deleted.stderr.strip() == NO_ADMIN_LEFT
    plain = run(args=["users", "delete", "plain@example.com", "--yes"])
    assert plain.exit_code == 0 and NO_ADMIN_LEFT not in plain.output
    assert run(args=["users", "admin", "first@example.com"]).exit_code == 0
    revoked = run(args=["users", "admin", "first@example.com", "--revoke"])
    assert revoked.exit_code == 0 and revoked.stderr.strip() == NO_ADMIN_LEFT


def test_cli_admin_change_that_changes_nothing_says_so_and_logs_nothing(app, make_user, caplog):
    # "bob is no longer an administrator" of an account that never was one, with the INFO
    # line that records a change: the log claimed a change that was not made.
    make_user("boss@example.com", admin=True)
    make_user("plain@example.com")
    run = app.test_cli_runner().invoke
    caplog.set_level("INFO", logger="pwp")
    revoked = run(args=["users", "admin", "plain@example.com", "--revoke"])
    assert revoked.exit_code == 0
    assert "plain@example.com is not an administrator: nothing changed (" in revoked.stdout
    made = run(args=["users", "admin", "boss@example.com"])
    assert made.exit_code == 0 and "boss@example.com is already an administrator: nothing changed (" in made.stdout
    assert "administrator" not in caplog.text
    assert run(args=["users", "admin", "plain@example.com"]).stdout.startswith("plain@example.com is now an")
    assert "user 2: made an administrator from the command line" in caplog.text


@pytest.mark.parametrize("command", [["users", "delete", "asked@example.com"],
                                     ["users", "password", "asked@example.com"]])
def test_cli_questions_wait_without_the_databases_write_lock(app, database_url, make_user, command):
    """A command that asks the operator something (delete's confirmation, a password) does not
    hold SQLite's write lock, which its first read took, while the question waits: the
    server's creates and views would wait for it, then fail."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's reads take no write lock")
    import sqlite3

    from sqlalchemy.engine import make_url
    make_user("asked@example.com")
    path, free = make_url(database_url).database, []

    class Operator(io.BytesIO):
        def read1(self, *args):  # (the prompt reads the answer: meanwhile, can another write?)
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                free.append(True)
            except sqlite3.OperationalError:  # database is locked
                free.append(False)
            finally:
                other.close()
            return super().read1(*args)
    app.test_cli_runner().invoke(args=command, input=Operator(b"n\nn\n"))
    assert free and all(free), free


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_commands_make_no_database_and_seal_no_key_check(database, tmp_path):
    """Run without the server's environment (a cron line missing its env file, a PaaS
    shell before PWPUSH_MASTER_KEY is set), a command neither reports on nor creates users
    in a new empty database, and generate-key does not seal the real database's key check
    with the instance folder's throwaway key (which locked the server out for good)."""
    instance, no_key = tmp_path / "cli-instance", {"PWPUSH_MASTER_KEY": ""}
    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            path = tmp_path / "new.sqlite3"
            url = f"sqlite:///{path}"
        else:
            url = f"{PG_BASE}/{stack.enter_context(throwaway_pg_database('pwpush_cli'))}"
        generated = run_flask(url, instance, "generate-key", input_env=no_key)
        assert generated.returncode == 0, generated.stderr
        key = generated.stdout.strip().splitlines()[-1]
        for command in (["users", "list"], ["users", "token", "a@example.com"], ["purge-expired"],
                        ["rotate-key"]):
            refused = run_flask(url, instance, *command, input_env=no_key)
            assert refused.returncode == 1 and "no pwpush database at" in refused.stderr, command
            assert "init-db" in refused.stderr
        if database == "sqlite":
            assert not path.exists()
        # The server with the printed key starts on it and stores a push.
        server = create_app(make_config(url, PWPUSH_MASTER_KEY=key), instance_path=str(tmp_path / "server"))
        assert server.test_client().post("/api/v2/pushes", json={"push": {"payload": "x"}}).status_code == 201
        # A command with another key than the server's is stopped; with its key it runs.
        wrong = run_flask(url, instance, "users", "list")  # (the tests' key)
        assert wrong.returncode == 3 and "none of its keys decrypts" in wrong.stderr
        right = run_flask(url, instance, "users", "create", "a@example.com", input_env={"PWPUSH_MASTER_KEY": key})
        assert right.returncode == 0, right.stderr
        with server.app_context():
            db.engine.dispose()


def test_init_db_or_the_first_user_makes_the_database(tmp_path):
    url, instance = f"sqlite:///{tmp_path / 'made.sqlite3'}", tmp_path / "instance"
    made = run_flask(url, instance, "init-db")
    assert made.returncode == 0 and f"init-db: database ready ({url})" in made.stdout
    # (An upgrade's init-db run without the server's environment made a stray database and said
    # only "database ready": it says it made one, as the first user does.)
    assert f"pwpush: made a new database at {url}: if your server uses another" in made.stderr
    again = run_flask(url, instance, "init-db")
    assert again.returncode == 0 and "made a new database" not in again.stderr
    assert run_flask(url, instance, "users", "list").returncode == 0
    # The first admin, made before the server's first start, makes it too, and says where.
    url = f"sqlite:///{tmp_path / 'first.sqlite3'}"
    first = run_flask(url, instance, "users", "create", "first@example.com", "--admin")
    assert first.returncode == 0 and f"pwpush: made a new database at {url}" in first.stderr
    assert "first@example.com" in run_flask(url, instance, "users", "list").stdout
    again = run_flask(url, instance, "users", "create", "second@example.com")
    assert again.returncode == 0 and "made a new database" not in again.stderr


# From the admin's walk: a command run without the server's environment (an upgrade's init-db
# or a cron line without the env file, generate-key) wrote key files in the code's instance/,
# logging "Generated a new secret at .../master.key; keep it and back it up" beside the real
# keys elsewhere, even when it then refused to run; with a database but not its key, that
# was followed by "the key file .../master.key: none of its keys decrypts".
def test_a_command_writes_no_key_files(tmp_path):
    no_keys = {"PWPUSH_MASTER_KEY": "", "SECRET_KEY": ""}
    url, instance = f"sqlite:///{tmp_path / 'server.sqlite3'}", tmp_path / "code-instance"
    for command in (["generate-key"], ["purge-expired"], ["users", "list"]):
        ran = run_flask(url, instance, *command, input_env=no_keys)
        assert "Generated a new secret" not in ran.stderr, command
    assert ran.returncode == 1 and "no pwpush database at" in ran.stderr
    assert not instance.exists()
    # The server's database, its keys in its own folder: a command lacking the key names it.
    server = create_app(make_config(url, SECRET_KEY=None, PWPUSH_MASTER_KEY=None),
                        instance_path=str(tmp_path / "server-instance"), command_line=False)
    with server.app_context():
        db.engine.dispose()
    lacking = run_flask(url, instance, "users", "list", input_env=no_keys)
    assert lacking.returncode == 3 and "Traceback" not in lacking.stderr
    assert (f"configuration error: PWPUSH_MASTER_KEY is not set and there is no key file "
            f"{instance / 'master.key'}: run this with the server's environment") in lacking.stderr
    assert not instance.exists()
    # A database made by a command in the instance folder: the folder is owner-only, and the
    # server's first start makes the keys (a command encrypts nothing).
    made = run_flask("", f"{instance}/", "init-db", input_env=no_keys)
    assert made.returncode == 0, made.stderr
    assert sorted(os.listdir(instance)) == ["pwpush.sqlite3"]
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert _start({"PWPUSH_INSTANCE_PATH": str(instance), **no_keys}).returncode == 0
    assert {"master.key", "secret_key"} <= set(os.listdir(instance))


def _assert_refused_without_its_key(refused, instance, caplog):
    """A start without its key on a database that has one: refused in one line, leaving no key
    file and no log of one made."""
    assert str(refused.value) == (
        f"PWPUSH_MASTER_KEY is not set and there is no key file {instance / 'master.key'}, but the database "
        "already has a key (its pushes', or another instance's that started first): restore the key file "
        "from a backup, copy the other instance's, or set PWPUSH_MASTER_KEY")
    assert not (instance / "master.key").exists()
    assert "Generated a new secret" not in caplog.text


# From the admin's walk: a server started on an existing database without its key (no
# PWPUSH_MASTER_KEY, no key file) wrote a new master.key and logged "keep it and back it up"
# before refusing, leaving a key file that opens nothing beside the real data.
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_server_without_its_key_writes_no_key_file(tmp_path, database, caplog):
    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite:///{tmp_path / 'data.sqlite3'}"
        else:
            url = f"{PG_BASE}/{stack.enter_context(throwaway_pg_database('pwpush_nokey'))}"
        first = create_app(make_config(url), instance_path=str(tmp_path / "first"))  # (the tests' key)
        assert first.test_client().post("/api/v2/pushes", json={"push": {"payload": "x"}}).status_code == 201
        with first.app_context():
            db.engine.dispose()
        instance = tmp_path / "keyless"
        with pytest.raises(config.ConfigError) as refused:
            create_app(make_config(url, PWPUSH_MASTER_KEY=None), instance_path=str(instance), command_line=False)
        _assert_refused_without_its_key(refused, instance, caplog)
        # With the key file restored it starts, and reads the push.
        (instance / "master.key").write_text(make_config(url)["PWPUSH_MASTER_KEY"] + "\n")
        again = create_app(make_config(url, PWPUSH_MASTER_KEY=None), instance_path=str(instance), command_line=False)
        with again.app_context():
            db.engine.dispose()


def test_workers_starting_at_once_on_a_new_database_keep_one_key(tmp_path):
    """Each worker makes its new key in memory; the first one kept on disk is every worker's
    (one that kept none would write pushes the others cannot read, or refuse to start)."""
    instance, log_path = tmp_path / "instance", tmp_path / "gunicorn.log"
    with servers.gunicorn(servers.server_env(instance), log_path, workers=4) as server:
        made = [server.json("POST", "/api/v2/pushes", {"push": {"payload": f"p{i}"}})[1]["url_token"]
                for i in range(16)]
        read = [server.json("GET", f"/api/v2/pushes/{token}") for token in made]
    assert [(status, body["payload"]) for status, body in read] == [(200, f"p{i}") for i in range(16)]
    logs = log_path.read_text()
    assert logs.count(f"Generated a new secret at {instance / 'master.key'}") == 1, logs
    assert "Worker failed to boot" not in logs and "none of its keys" not in logs


# Two instances (own instance folders, no PWPUSH_MASTER_KEY) started at once on a new
# database: the one whose key check came second kept its new key file, logged "keep it and
# back it up", and refused: a key file that opens nothing (found by running them). The
# other instance's key check is written just before this one's, as in that race. Its log
# then said it generated a key it dropped: it says only the refusal.
def test_an_instance_second_to_a_new_database_keeps_no_key_file(tmp_path, caplog):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from pwp import crypto, pushes

    other = crypto.generate_key()
    with throwaway_pg_database("pwpush_second") as name:
        written = []

        def other_instance_first(_conn, _cursor, statement, *_args):
            if statement.startswith("INSERT INTO key_check") and not written:
                written.append(True)
                with psycopg.connect(f"{PG_BASE}/{name}", autocommit=True) as conn:
                    conn.execute("INSERT INTO key_check (id, token) VALUES (%s, %s)", (
                        pushes.KEY_CHECK_ID, crypto.Keyring([other]).encrypt(pushes.KEY_CHECK_VALUE)))

        instance = tmp_path / "second"
        event.listen(Engine, "before_cursor_execute", other_instance_first)
        try:
            with pytest.raises(config.ConfigError) as refused:
                create_app(make_config(f"{PG_BASE}/{name}", PWPUSH_MASTER_KEY=None), instance_path=str(instance),
                           command_line=False)
        finally:
            event.remove(Engine, "before_cursor_execute", other_instance_first)
        _assert_refused_without_its_key(refused, instance, caplog)
        # Started again (after the other instance, the database still without pushes): the same.
        with pytest.raises(config.ConfigError) as again_refused:
            create_app(make_config(f"{PG_BASE}/{name}", PWPUSH_MASTER_KEY=None), instance_path=str(instance),
                       command_line=False)
        assert str(again_refused.value) == str(refused.value)
        assert not (instance / "master.key").exists()
        # With the other instance's key it starts.
        (instance / "master.key").write_text(other + "\n")
        again = create_app(make_config(f"{PG_BASE}/{name}", PWPUSH_MASTER_KEY=None), instance_path=str(instance),
                           command_line=False)
        with again.app_context():
            db.engine.dispose()


# `flask run` loads the app inside click's `run` context: it was taken for a command, so a
# fresh install served 500s (no tables) where it used to create them.
def test_flask_run_is_not_a_command(database_url, tmp_path):
    with click.Context(run_command, info_name="run"):
        app = create_app(make_config(database_url), instance_path=str(tmp_path / "instance"))
    try:
        made = app.test_client().post("/api/v2/pushes", json={"push": {"payload": "x"}})
        assert made.status_code == 201
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# From an upgrade review: a release before the command-line rules made a database of its
# own whenever one of its commands ran without the server's environment (instance/ beside the
# code, its key check under that folder's throwaway key). Kept through an in-place upgrade,
# it is not "missing" and its key check opens, so a command run without the environment works
# on it: each command says which database it worked on.
def _stray_database_as_an_old_command_made_it(url, instance):
    # The old release's create_app, run by any command: tables and a key check, under the
    # instance folder's generated key (as a server start does today).
    app = create_app({"DATABASE_URL": url, "TESTING": False}, instance_path=str(instance), command_line=False)
    with app.app_context():
        db.engine.dispose()


def test_commands_name_the_database_they_worked_on(tmp_path):
    stray = tmp_path / "code-instance" / "pwpush.sqlite3"
    url, instance = f"sqlite:///{stray}", tmp_path / "code-instance"
    _stray_database_as_an_old_command_made_it(url, instance)
    assert stray.exists()

    purged = run_flask(url, instance, "purge-expired", input_env={"PWPUSH_MASTER_KEY": ""})
    assert purged.returncode == 0, purged.stderr
    assert str(stray) in purged.stdout + purged.stderr, purged.stdout

    created = run_flask(url, instance, "users", "create", "admin@example.com", "--admin",
                        input_env={"PWPUSH_MASTER_KEY": ""})
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1]  # (the token, alone on the last line)
    assert str(stray) in created.stdout + created.stderr, created.stdout

    # The list too (what an admin checking which database a shell reaches runs first), on
    # stderr: its table stays the table for scripts that read it.
    listed = run_flask(url, instance, "users", "list", input_env={"PWPUSH_MASTER_KEY": ""})
    assert listed.returncode == 0, listed.stderr
    assert str(stray) in listed.stderr and str(stray) not in listed.stdout
    assert listed.stdout.splitlines()[0].startswith("e-mail") and len(listed.stdout.splitlines()) == 2


def test_readme_documents_every_setting():
    readme = Path(ROOT, "README.md").read_text()
    for name, _parser, _default in config.SETTINGS:
        section = next((s for s in config.SECTION.values() if name.startswith(f"PWP__{s}__")), None)
        if section and name != "PWP__FILES__MAX_FILE_UPLOADS" and name != "PWP__FILES__MAX_TOTAL_BYTES":
            key = name[len(f"PWP__{section}__"):]
            base = key.rsplit("_", 1)[0] if key.endswith(("_MIN", "_MAX", "_DEFAULT")) else key
            assert f"PWP__SECTION__{base}" in readme, name
        else:
            assert name in readme, name


def test_readme_starts_with_the_two_commands():
    lines = Path(ROOT, "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1:lines.index("```sh") + 3]
    assert block[0].startswith("pip install -r requirements.txt && gunicorn pwpush:app")
    assert block[1].startswith("pip install -r requirements-dev.txt && python -m pytest")


def test_partial_indexes_exist_on_both_databases(app):
    """The owner and expired_on indexes leave out anonymous and live pushes."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        rows = sql(app, "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '%WHERE%'")
    else:
        rows = sql(app, "SELECT indexname, indexdef FROM pg_indexes WHERE indexdef LIKE '%WHERE%'")
    found = {name: definition for name, definition in rows}
    assert "user_id IS NOT NULL" in found["ix_pushes_user_expired_created"]
    assert "expired_on IS NOT NULL" in found["ix_pushes_expired_on"]


LAZY_CHECK = """
import sys, pwpush
lazy = ("sqlalchemy.dialects.postgresql", "qrcode", "wtforms", "flask_wtf")
client = pwpush.app.test_client()
assert client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).status_code == 201
print(*(name in sys.modules for name in lazy))
assert 'name="csrf_token"' in client.get("/").get_data(as_text=True)
print(*(name in sys.modules for name in lazy))
"""


def test_api_workers_do_not_load_what_only_other_paths_use(tmp_path):
    """Per worker: the PostgreSQL dialect (~2 MiB) is imported only when it is used, qrcode
    only for QR pushes, Flask-WTF and WTForms (1.2 MiB) only by the first form page."""
    env = {**os.environ, "PWPUSH_INSTANCE_PATH": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-c", LAZY_CHECK], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    after_api, after_form_page = proc.stdout.splitlines()
    assert after_api.split() == ["False", "False", "False", "False"]
    assert after_form_page.split() == ["False", "False", "True", "True"]


def test_async_check_is_remembered_but_still_made(app):
    """ensure_sync asks once per function; plain functions pass through unchanged and a
    coroutine function is still handed to Flask's async support (absent here: no asgiref)."""
    def view():
        return "x"

    async def async_view():
        return "x"

    assert app.ensure_sync(view) is view
    assert app.ensure_sync(view) is view
    with pytest.raises(RuntimeError, match="async"):
        app.ensure_sync(async_view)


def test_gunicorn_stops_on_a_bad_setting(tmp_path):
    """Under gunicorn a bad setting stops the server with its one line (a worker that
    exits with 1 is replaced, forever, while the port accepts and never answers)."""
    env = {**os.environ, "PWP__PURGE_AFTER": "3 mnths", "PWPUSH_INSTANCE_PATH": str(tmp_path),
           "BIND": "127.0.0.1:0"}
    proc = subprocess.run([sys.executable, "-m", "gunicorn", "pwpush:app"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.count("pwpush: configuration error: PWP__PURGE_AFTER") == 1


@pytest.mark.parametrize(("command", "answers"), [
    (["users", "password", "raced@example.com"], b"new-password-1\nnew-password-1\n"),
    (["users", "delete", "raced@example.com"], b"y\n"),
])
def test_cli_account_deleted_while_the_question_waits_is_one_line_and_exit_1(app, make_user, command, answers):
    """Another operator (or the administration page) deletes the account while the command's
    question waits: `users password` ended in SQLAlchemy's StaleDataError traceback."""
    user_id, _token = make_user("raced@example.com")

    class Operator(io.BytesIO):
        def read1(self, *args):
            if not self.tell():  # (the first answer: the account goes meanwhile)
                sql(app, "DELETE FROM users WHERE id = :id", id=user_id)
            return super().read1(*args)
    result = app.test_cli_runner().invoke(args=command, input=Operator(answers))
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.output.rstrip().splitlines()[-1] == "Error: That account no longer exists."


@pytest.mark.parametrize("change", ["token", "admin", "password"])
def test_an_account_change_after_the_account_went_is_refused(app, make_user, change):
    """`users token` and `users admin` read the account, then write it: one deleted in between
    is refused with ACCOUNT_GONE (the commands' one-line error), not a traceback."""
    user_id, _token = make_user("between@example.com")
    with app.app_context():
        user = auth.find_user("between@example.com")
        db.session.commit()  # (on SQLite the read holds the write lock)
        sql(app, "DELETE FROM users WHERE id = :id", id=user_id)
        with pytest.raises(auth.Refused, match=auth.ACCOUNT_GONE):
            {"token": lambda: auth.issue_token(user), "admin": lambda: auth.set_admin(user, True),
             "password": lambda: auth.set_password(user, "new-password-1")}[change]()


@pytest.mark.parametrize("command", [["purge-expired"], ["users", "list"]])
def test_a_command_on_a_database_of_an_older_version_adds_the_new_tables(app, database_url, tmp_path, command):
    """A database made before notify by e-mail has no notify_by_emails table: a `flask`
    command (cron's purge-expired) run on it before the upgraded server's first start
    ended in NoSuchTableError's traceback. Missing tables are added, as the server adds them.
    (Such a database, from before migrations, has no version table.)"""
    sql(app, "DROP TABLE notify_by_emails")
    sql(app, "DROP TABLE pwpush_schema_version")
    cli_app = create_app(make_config(database_url), instance_path=str(tmp_path / "instance"), command_line=True)
    with cli_app.app_context():
        result = cli_app.test_cli_runner().invoke(args=command)
    assert result.exit_code == 0 and result.exception is None, result.output
    assert sql(app, "SELECT count(*) FROM notify_by_emails") == [(0,)]
    sql(app, "DROP TABLE notify_by_emails")
    sql(app, "DROP TABLE pwpush_schema_version")
    create_app(make_config(database_url), instance_path=str(tmp_path / "instance"), command_line=False)
    assert sql(app, "SELECT count(*) FROM notify_by_emails") == [(0,)]


@pytest.mark.parametrize("command", [["init-db"], ["users", "create", "first@example.com"]])
def test_a_command_making_a_database_it_cannot_open_says_so_in_one_line(tmp_path, command):
    """An SQLite path in a folder that does not exist, or one this user may not write in:
    init-db and users create (which make the database) printed the driver's traceback,
    then its "unable to open database file"; now, as the server's start, the path and the folder."""
    path = tmp_path / "no-such-folder" / "pwpush.sqlite3"
    cli_app = create_app(make_config(f"sqlite:///{path}"), instance_path=str(tmp_path / "instance"),
                         command_line=True)
    with cli_app.app_context():
        result = cli_app.test_cli_runner().invoke(args=command)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.splitlines()[-1] == f"Error: {_no_folder(path, path.parent)}"
    path.parent.mkdir()
    with _not_writable(path.parent):
        cli_app = create_app(make_config(f"sqlite:///{path}"), instance_path=str(tmp_path / "instance"),
                             command_line=True)
        with cli_app.app_context():
            result = cli_app.test_cli_runner().invoke(args=command)
    assert result.exit_code == 1 and result.output.splitlines()[-1] == f"Error: {_unwritable(path, path.parent)}"


@pytest.mark.parametrize("command", [["init-db"], ["purge-expired"]])
def test_a_command_on_a_database_from_before_the_key_check_upgrades_it(app, database_url, tmp_path, command):
    """A database made before the key check (2026-12-05) has no key_check table: the key check
    a command makes before its work failed on it ("no such table: key_check"), so the upgrade's
    init-db (the Procfile's release step) and cron's purge-expired stopped until the server had
    started once. The keys are checked against a stored push instead; a wrong key still stops."""
    client = app.test_client()
    assert client.post("/api/v2/pushes", json={"push": {"payload": "kept"}}).status_code == 201
    for table in ("key_check", "user_sessions", "notify_by_emails", "pwpush_schema_version"):
        sql(app, f"DROP TABLE {table}")

    def run(**settings):
        cli_app = create_app(make_config(database_url, **settings), instance_path=str(tmp_path / "instance"),
                             command_line=True)
        with cli_app.app_context():
            return cli_app.test_cli_runner().invoke(args=command)

    from cryptography.fernet import Fernet
    with pytest.raises(config.ConfigError, match="none of its keys decrypts the stored pushes"):
        run(PWPUSH_MASTER_KEY=Fernet.generate_key().decode())
    result = run()
    assert result.exit_code == 0 and result.exception is None, result.output
    assert sql(app, "SELECT count(*) FROM key_check") == [(0,)]  # (the server's start writes it)


@pytest.mark.skipif("postgresql" not in DATABASES, reason="PostgreSQL's libpq takes ?password=")
@pytest.mark.parametrize("command", [["init-db"], ["users", "list"], ["purge-expired"]])
def test_a_command_does_not_print_a_password_given_in_the_urls_query(tmp_path, command):
    """libpq's ?password= (postgresql://ann@host/db?password=...) is a URL's password too:
    every command printed it where it names its database, hide_password hiding only
    the one before the @ (users list on stderr since it names its database)."""
    with throwaway_pg_database("pwpush_test_query_pw") as name:
        url = f"{PG_BASE}/{name}?password=s3cret-in-query&connect_timeout=5"
        cli_app = create_app(make_config(url), instance_path=str(tmp_path / "instance"), command_line=True)
        with cli_app.app_context():
            output = cli_app.test_cli_runner().invoke(args=["init-db"]).output
            result = cli_app.test_cli_runner().invoke(args=command)
        assert result.exit_code == 0, result.output
        assert "s3cret" not in output
        assert name in result.output and "connect_timeout=5" in result.output
        assert "s3cret" not in result.output


def test_users_delete_words_one_push_and_none(app, make_user):
    # Found by a newcomer's walk: "Deleted x and its 1 pushes", "all its pushes (0 still live)?".
    _, token = make_user("one@example.com")
    make_user("none@example.com")
    assert app.test_client().post("/api/v2/pushes", json={"push": {"payload": "p"}},
                                  headers=bearer(token)).status_code == 201
    runner = app.test_cli_runner()
    asked = runner.invoke(args=["users", "delete", "one@example.com"], input="n\n")
    assert asked.exit_code == 1 and "Delete one@example.com and its 1 push (1 still live)?" in asked.output
    deleted = runner.invoke(args=["users", "delete", "one@example.com"], input="y\n")
    assert deleted.exit_code == 0 and "Deleted one@example.com and its 1 push (" in deleted.output
    asked = runner.invoke(args=["users", "delete", "none@example.com"], input="y\n")
    assert asked.exit_code == 0, asked.output
    assert "Delete none@example.com (it has no pushes)?" in asked.output
    assert "Deleted none@example.com; it had no pushes (" in asked.output
