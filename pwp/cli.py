"""Command line: flask --app pwpush init-db | purge-expired | rotate-key | users ... | schema |
db-revision."""
import functools

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from . import account_mail, auth, crypto, instances, notify, pushes, twofactor
from .config import ConfigError
from .factory import database_error, database_missing, database_name, make_database
from .models import KeyCheck, db, schema_sql
from .words import account_deleted, plural


def needs_database(command):
    """Refuse to run on a database without pwpush's tables, which the app made none of
    (run without the server's DATABASE_URL, a command would otherwise report on, or
    create users in, a new empty database that looks like the real one). Add the tables a
    newer version brought and its pending schema revisions, as the server's start does."""
    @functools.wraps(command)
    def checked(*args, **kwargs):
        if database_missing(current_app):
            raise click.ClickException(
                f"no pwpush database at {database_name(current_app)}: for the server's, run this "
                "with the server's environment (DATABASE_URL, PWPUSH_MASTER_KEY, ...); for a new "
                "one, start the server once or run `flask --app pwpush init-db`.")
        _bring_up_to_date()
        return command(*args, **kwargs)
    return checked


users = AppGroup("users", help="Manage users and their API tokens.")


@click.command("init-db")
def init_db():
    """Create the database, or apply the pending schema revisions; never drops data."""
    _make_database()  # (stops naming the columns a table from an older pwpush lacks)
    click.echo(f"init-db: database ready ({database_name(current_app)})")


def _bring_up_to_date() -> bool:
    """Bring the database to the code's schema (pwp.migrate); tell whether it was new. A
    database that cannot be (a newer release's, a table lacking columns) stops the command."""
    try:
        return make_database(current_app)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except (OperationalError, ProgrammingError) as exc:  # (an SQLite file that cannot be made)
        raise click.ClickException(
            f"DATABASE_URL: cannot use the database: {database_error(current_app, exc)}") from None


def _make_database():
    """Make or upgrade the database, saying so when it is new: run without the server's
    environment, a command would otherwise make a stray one unnoticed."""
    if _bring_up_to_date():
        click.echo(f"pwpush: made a new database at {database_name(current_app)}: if your server uses "
                   "another, run this with its environment (DATABASE_URL, PWPUSH_MASTER_KEY, ...).", err=True)


@click.command("purge-expired")
@click.option("--quiet", "-q", is_flag=True,
              help="Print no summary: only what went wrong or was left pending (on stderr), for cron.")
@needs_database
def purge_expired(quiet):
    """Expire pushes past their limits and delete old expired ones; send notification
    e-mails left pending over a minute; delete web sessions past their lifetime (for cron)."""
    now = pushes.utcnow()
    counts = pushes.purge(now)
    counts["notifications_sent"], left = notify.send_pending(now)
    counts["sessions_deleted"] = auth.purge_sessions(now)
    if not quiet:  # (cron mails whatever a job prints: hourly, a mail an hour)
        click.echo("purge-expired: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
                   + f" ({database_name(current_app)})")
    if left:
        click.echo(f"purge-expired: {plural(left, 'notification e-mail')} left pending: "
                   + ("PWP__MAIL__SMTP_ADDRESS is not set here (give this command the server's environment)"
                      if not current_app.config["PWP__MAIL__SMTP_ADDRESS"] else "notify by e-mail is off"), err=True)


@click.command("rotate-key")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Pushes per transaction.")
@click.option("--after-id", default=0, type=click.IntRange(min=0),
              help="Resume after this push id (printed as progress).")
@click.option("--force", is_flag=True,
              help="Rotate even while running instances do not encrypt with the new key (they lose their reads and "
                   "writes, or write under the old key).")
@needs_database
def rotate_key(batch_size, after_id, force):
    """Re-encrypt every stored secret under the first key of PWPUSH_MASTER_KEY and retire the
    key it was under; refused while a running instance does not encrypt with that key (unless --force),
    and for a key an earlier run retired."""
    fingerprint = pushes.keyring().fingerprints[0]
    # (Its start, by the database's clock: a process on the old key that ran since, even one
    # ended by the looks before and after the seal, may have stored under it.)
    since = instances.database_now()
    retired = pushes.retired_at(fingerprint)
    if retired is not None:  # (not even with --force: every server would then refuse to store a push)
        raise click.ClickException(
            f"the first key of PWPUSH_MASTER_KEY (fingerprint {fingerprint}) was retired by rotate-key at "
            f"{retired:%Y-%m-%d %H:%M} UTC, and a retired key stays retired: no server encrypts with it. Put the "
            "database's current key first (then this command has nothing to do), or make a new key "
            "(generate-key) and rotate to that (README, Key rotation).")
    # (Where a Ctrl-C would stop it: said instead of click's bare "Aborted!".)
    stopped = ["before re-encrypting anything: the database is unchanged"]
    try:
        _rotate(fingerprint, force, batch_size, after_id, since, stopped)
    except BaseException as error:
        if not _interrupted(error):
            raise
        click.echo(f"rotate-key: interrupted ({stopped[0]}); every secret still opens with NEW,OLD: keep the "
                   "old key in PWPUSH_MASTER_KEY and run rotate-key again, which is safe at any point; it is done "
                   "once it says so (README, Key rotation).", err=True)
        raise SystemExit(130) from None


def _interrupted(error) -> bool:
    """Whether a Ctrl-C ended the command: the KeyboardInterrupt itself, or an error raised as it
    was handled (SQLAlchemy's pool resetting a connection the interrupt left mid-query, its
    pre-ping: psycopg's "can't change 'autocommit' now", which printed a traceback instead)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _rotate(fingerprint, force, batch_size, after_id, since, stopped):
    """rotate-key's looks at the instances and its walk; stopped[0]: what it has done so far."""
    _instances_behind(fingerprint, force, (
        "Once the database is under the new key, a process without it can no longer open its secrets nor store any, "
        "and what one holding it second stores stays under the old key, unreadable once that key is dropped: give "
        "them NEW,OLD and restart them first (README, Key rotation), or run with --force."))
    # Again before the key check (after it, the old key may be dropped): one started since
    # with the old key first stores under it. Nothing is lost yet: the old key opens that.
    def sealing():
        stopped[0] = "every push re-encrypted; the two-factor secrets and the key check not yet, or being"
        _instances_behind(fingerprint, force, (
            "They ran while rotate-key ran: every push is re-encrypted, but the two-factor secrets and the key "
            "check are left under the old key, which still opens what they stored: give those still running "
            "NEW,OLD and restart them, then run rotate-key again (README, Key rotation), or run with --force."),
            since)

    # (Run with the first step's OLD,NEW, a bare "done" hid that nothing moved to NEW.)
    already = _key_check_opener() == fingerprint

    def progress(last_id, done):
        stopped[0] = f"pushes re-encrypted up to id {last_id}, each batch whole or not at all"
        click.echo(f"rotate-key: {done} pushes re-encrypted, up to id {last_id}")

    try:
        total = pushes.rotate_keys(batch_size=batch_size, after_id=after_id, progress=progress, before_seal=sealing)
    except crypto.KeyMismatch as exc:
        raise click.ClickException(
            f"{exc}: no key in PWPUSH_MASTER_KEY decrypts it. Keep the old key after the new one "
            "(NEW,OLD) until rotate-key is done, then resume with --after-id as printed (what this "
            "run changed since stays readable with both keys).") from None
    stopped[0] = "the key check re-encrypted, the key it was under retired; its last look at the instances not done"
    # And after it: one that started as it committed read the key check from before it.
    _instances_behind(fingerprint, force, (
        "They ran as rotate-key re-encrypted the key check, so rotate-key is not done: what they stored "
        "meanwhile is under the old key. Keep the old key (NEW,OLD), give those still running NEW,OLD and restart "
        "them, then run rotate-key again (README, Key rotation)."), since)
    click.echo(f"rotate-key: done, {total} pushes re-encrypted ({database_name(current_app)})")
    if already:
        click.echo(
            f"rotate-key: the database was already under the first key of PWPUSH_MASTER_KEY (fingerprint "
            f"{fingerprint}) when this run started, so it moved to no new key and retired no key: to rotate to a "
            "new key, it must come first (NEW,OLD), here and in the instances (README, Key rotation). (Expected "
            "when re-running after a run that said it was not done or was cut short at its end.)", err=True)


def _key_check_opener() -> str | None:
    """The fingerprint of the key of PWPUSH_MASTER_KEY the database's key check is under (None:
    no check yet)."""
    token = db.session.scalar(select(KeyCheck.token).where(KeyCheck.id == pushes.KEY_CHECK_ID))
    db.session.commit()  # (SQLite: no read transaction held through the walk's writes)
    return token and pushes.keyring().opener(token)


def _instances_behind(fingerprint: str, force: bool, refusal: str, since=None):
    """Stop the command (refusal: why and what to do) while a running server process does not
    encrypt with the key, or (since: the command's start) one that did not ran since and ended,
    naming them; with force, say so and go on. Say which recorded processes were found gone
    (pwp.instances.judge)."""
    now = instances.database_now()  # (the web hosts' records are in its time, not this host's)
    behind, judged = instances.not_encrypting_with(fingerprint, now, since)
    for line in judged:
        click.echo(f"rotate-key: {line}", err=True)
    if not behind:
        return
    running = [row for row in behind if row.ended_at is None]
    ended = [row for row in behind if row.ended_at is not None]
    which = "; ".join(
        [f"{plural(len(running), 'running server process', 'running server processes')} "
         f"{'does' if len(running) == 1 else 'do'} not encrypt with the new key (the first in "
         f"PWPUSH_MASTER_KEY): {instances.describe(running, now)}"] * bool(running)
        + [f"{plural(len(ended), 'server process', 'server processes')} that did not encrypt with the new key "
           f"ran during this run and ended since: {instances.describe(ended, now)}"] * bool(ended))
    if force:
        click.echo(f"rotate-key: --force: {which}; they lose their reads and writes, or write under the old key.",
                   err=True)
        return
    # (What to do for one in fact gone on another host: its row counts until then.)
    gone = (" One killed without ending (kill -9, the OOM killer) counts until not seen for 5 minutes (if this runs "
            "on its machine and in its container, no longer: it is seen to have ended): for one that has ended, run "
            "this again then." if running else "")
    raise click.ClickException(f"{which}.{gone} {refusal}")


@click.command("generate-key")
def generate_key():
    """Print a new master key (prepend it to PWPUSH_MASTER_KEY, then run rotate-key)."""
    click.echo(crypto.generate_key())


@click.command("schema")
@click.option("--dialect", type=click.Choice(["sqlite", "postgresql"]), default="sqlite")
def schema(dialect):
    """Print the schema generated from the models (schema.sql is this output)."""
    click.echo(schema_sql(dialect), nl=False)


@click.command("db-revision")
@click.argument("message")
@click.option("--migrations", default=None, hidden=True, help="The scripts' folder (tests).")
def db_revision(message, migrations):
    """Write the next schema revision from the models' changes (for developers)."""
    from . import migrate

    path = migrate.new_revision(message, migrations or migrate.MIGRATIONS)
    click.echo(f"db-revision: wrote {path}: check it (a partial index needs postgresql_where as well as "
               "sqlite_where), then set HEAD in pwp/migrate.py to its revision id")


@users.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--password", envvar="PWPUSH_USER_PASSWORD", default=None,
              help="Web sign-in password (or PWPUSH_USER_PASSWORD); without it, API only.")
def users_create(email, admin, password):
    """Create a user; the API token is printed alone on the last line."""
    _check_password(password)
    _make_database()  # (the first admin may be made before the server's first start)
    try:
        user = auth.create_user(email, password=password, admin=admin)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {'admin ' if admin else ''}user {user.email} in {database_name(current_app)}. "
               "API token:")
    click.echo(auth.issue_token(user))


@users.command("list")
@needs_database
def users_list():
    """List the accounts: e-mail, admin, web sign-in (a password), two-factor authentication,
    live pushes, created."""
    rows = [("e-mail", "admin", "web sign-in", "two-factor", "live pushes", "created (UTC)")] + [
        (user.email, "yes" if user.is_admin else "no", "yes" if user.password_hash else "no",
         "yes" if twofactor.is_on(user) else "no", str(live), user.created_at.strftime("%Y-%m-%d %H:%M"))
        for user, live in pushes.accounts()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())
    # (Which database, as every command says; on stderr, so the table stays the table.)
    click.echo(f"{plural(len(rows) - 1, 'account')} in {database_name(current_app)}", err=True)


def _user(email):
    user = auth.find_user(email)
    if user is None:
        raise click.ClickException(f"No user with the e-mail address {email}.")
    return user


def _end_reads():
    """End the reads' transaction before asking the operator: on SQLite it holds the
    database's write lock, which the server's writes would wait for, then fail."""
    db.session.commit()


def _refusable(change, *args):
    """Run an account change; the reason it was refused as the command's error."""
    try:
        return change(*args)
    except auth.Refused as exc:  # (an account deleted meanwhile)
        raise click.ClickException(str(exc)) from None


def _check_password(password):
    problem = password is not None and auth.password_problem(password)
    if problem:
        raise click.ClickException(problem[1])


@users.command("password")
@click.argument("email")
@click.option("--password", envvar="PWPUSH_USER_PASSWORD", default=None,
              help="The new password (or PWPUSH_USER_PASSWORD; asked if not given).")
@needs_database
def users_password(email, password):
    """Set a user's web sign-in password; the user's web sessions are signed out."""
    user = _user(email)  # before asking for a password
    if password is None:
        _end_reads()
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    _check_password(password)
    _refusable(account_mail.change_password, user, password)
    click.echo(f"Password set for {user.email} in {database_name(current_app)}; their web sessions are "
               "signed out.")


@users.command("token")
@click.argument("email")
@needs_database
def users_token(email):
    """Issue a new API token (the old one stops working), printed on the last line."""
    user = _user(email)
    click.echo(f"New API token for {user.email} in {database_name(current_app)} (the previous one no "
               "longer works):")
    click.echo(_refusable(auth.issue_token, user))


@users.command("reset-2fa")
@click.argument("email")
@needs_database
def users_reset_2fa(email):
    """Turn a user's two-factor authentication off (a lost phone and backup codes): the next
    sign-in asks for the password only."""
    user = _user(email)
    if twofactor.turn_off(user, "from the command line"):
        account_mail.two_factor_changed(user, False)
        click.echo(f"Two-factor authentication turned off for {user.email} in {database_name(current_app)}.")
    else:
        click.echo(f"{user.email} has no two-factor authentication: nothing changed ({database_name(current_app)}).")


@users.command("admin")
@click.argument("email")
@click.option("--revoke", is_flag=True, help="Take administration away instead.")
@needs_database
def users_admin(email, revoke):
    """Make a user an administrator (views of others' pushes logged, not counted), or --revoke."""
    user = _user(email)
    was_admin = user.is_admin
    if _refusable(auth.set_admin, user, not revoke):
        click.echo(f"{user.email} is {'no longer' if revoke else 'now'} an administrator "
                   f"({database_name(current_app)}).")
    else:
        click.echo(f"{user.email} is {'not' if revoke else 'already'} an administrator: nothing changed "
                   f"({database_name(current_app)}).")
    _warn_if_no_admin(was_admin)


@users.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@needs_database
def users_delete(email, yes):
    """Delete an account, its API token and all its pushes (their links stop working)."""
    user = _user(email)
    was_admin = user.is_admin
    if not yes:
        live = pushes.count_for(user, expired=False)
        total = live + pushes.count_for(user, expired=True)
        _end_reads()
        what = (f" and its {plural(total, 'push', 'pushes')} ({live or 'none'} still live)" if total
                else " (it has no pushes)")
        click.confirm(f"Delete {user.email}{what}?", abort=True)
    count = _refusable(auth.delete_account, user)
    click.echo(f"{account_deleted(user.email, count)} ({database_name(current_app)}).")
    _warn_if_no_admin(was_admin)


def _warn_if_no_admin(was_admin: bool):
    """Say so when revoking or deleting an administrator left none (the command line does
    it, unlike the administration page: it is how a site is mended)."""
    if was_admin and not auth.any_admin():
        click.echo("warning: no administrator is left; make one with: "
                   "flask --app pwpush users admin EMAIL", err=True)


def init_app(app):
    """Register the commands."""
    for command in (init_db, purge_expired, rotate_key, generate_key, schema, db_revision, users):
        app.cli.add_command(command)
