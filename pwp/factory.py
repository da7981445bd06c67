"""The application factory: settings, keys, database, blueprints (`pwp.create_app`)."""
import functools
import inspect
import logging
import os
import re

import click
from flask import Flask, current_app, request
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from . import ROOT, config, crypto, has_cookies, notify
from .params import Request, urlencoded_limit
from .pushes import TEXT_MAX

PG_CONNECT_TIMEOUT = 10  # seconds a PostgreSQL connection may take to open (unless DATABASE_URL says)

log = logging.getLogger("pwp")


class App(Flask):
    """Flask, asking once per function (not on every request) whether a hook or view is async;
    its requests are params.Request (forms read within limits, uploads held encrypted)."""

    request_class = Request

    def ensure_sync(self, func):
        """Return func, or a wrapper running it to completion when it is a coroutine function."""
        return self.async_to_sync(func) if _is_coroutine_function(func) else func


# Hooks and views are the same few functions on every request (bounded: bound methods of
# short-lived objects would otherwise accumulate).
_is_coroutine_function = functools.lru_cache(maxsize=512)(inspect.iscoroutinefunction)


def create_app(test_config=None, instance_path=None, command_line=None):
    """Build the application: settings, keys, database, blueprints.

    command_line (default: inside a click command, i.e. `flask --app pwpush ...`): create
    no tables, no instance folder or key file and write no key check, so that a command run
    without the server's environment (DATABASE_URL, PWPUSH_MASTER_KEY) neither makes a new
    database and keys that look like the real ones nor seals the real one's key check with a
    throwaway key; the commands that need the database say so (cli.needs_database) and
    `init-db` makes it (make_database)."""
    if command_line is None:
        command_line = _in_a_flask_command()
    app = App("pwp", root_path=ROOT, static_folder="static", template_folder="templates",
              instance_path=_instance_path(instance_path))
    app.session_interface = CookieSessionInterface()
    _configure(app, test_config, command_line)
    if not command_line and config.start_up_notes():
        _log_notify_by_email(app.config)
    _register_database(app)
    _register_extensions(app)
    _register_blueprints(app)
    _register_middleware(app)
    try:
        if not command_line:
            _create_tables(app)
            _check_master_key(app)
            _check_secret_key(app)
            _record_keys(app)
        elif not database_missing(app):
            _check_master_key(app, write=False)
    except OperationalError as exc:  # (the first statements sent: a server down, a wrong user)
        raise config.DatabaseUnavailable(f"DATABASE_URL: cannot use the database: {database_error(app, exc)}") from None
    except ProgrammingError as exc:  # (no right to create the tables: waiting will not help)
        raise config.ConfigError(f"DATABASE_URL: cannot use the database: {database_error(app, exc)}") from None
    # Close what start-up opened: under gunicorn --preload this process forks the workers,
    # and an SQLite connection open across a fork leaves the children's lock bookkeeping
    # believing in locks only the parent holds (SQLite: "do not open a database before
    # fork"); pwp.fastsql gives the children new pools for the rest.
    with app.app_context():
        from .models import db
        db.engine.dispose()
    return app


def _instance_path(given) -> str:
    """The instance folder: given, PWPUSH_INSTANCE_PATH or instance/ beside the code; an
    absolute path (Flask refuses others; a relative one would depend on the folder a server
    or command starts in), without a trailing slash."""
    path = given or os.environ.get("PWPUSH_INSTANCE_PATH") or os.path.join(ROOT, "instance")
    if not os.path.isabs(path):
        raise config.ConfigError(f"PWPUSH_INSTANCE_PATH: expected an absolute path, got {path!r}")
    return os.path.normpath(path)


def database_error(app, exc) -> str:
    """The driver's message on one line, without the URL's password should it appear."""
    from sqlalchemy.engine import make_url

    message = " ".join(str(exc.orig).split())
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    for password in (url.password, url.query.get("password")):  # (libpq's ?password= too)
        if isinstance(password, str) and password:
            message = message.replace(password, "***")
    return message


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, without building the signer for cookie-less requests.

    API clients send no cookie; an empty session then costs nothing to open or save.
    """

    def open_session(self, app, request):
        """Return an empty session at once when the request carries no session cookie."""
        if not has_cookies(request) or self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)

    def get_cookie_secure(self, app):
        """Secure when PWP__SECURE_COOKIES says so, and whenever the request came over HTTPS."""
        return app.config["SESSION_COOKIE_SECURE"] or request.is_secure

    def save_session(self, app, session, response):
        """Skip the work for an empty, unchanged session of a request without cookies.

        (Flask-Login reads the session after every request, so "accessed" is always set;
        the only output skipped is "Vary: Cookie" on no-store responses to cookie-less requests.)
        """
        if not session and not session.modified and not has_cookies(request):
            return
        super().save_session(app, session, response)


def _in_a_flask_command() -> bool:
    """Tell whether a `flask` command (not `flask run`, which serves) is loading the app: a
    click context alone is also that of `flask run` and of any click program embedding
    the app (a WSGI server's command line)."""
    context = click.get_current_context(silent=True)
    if context is None or context.info_name == "run" or context.command.name == "run":
        return False
    from flask.cli import FlaskGroup

    return isinstance(context.find_root().command, FlaskGroup)


def _configure(app, test_config, command_line):
    settings = config.from_environ()
    settings.update(test_config or {})
    config.validate(settings)
    app.config.update(settings)
    # Under gunicorn its logger class (pwp.logfilter) has given the app's logger gunicorn's
    # level and error log. Elsewhere (`flask` commands, `flask run`) Python's default level,
    # WARNING, hid the INFO lines (account changes, pushes created): LOG_LEVEL sets it, and
    # Flask's handler prints to stderr.
    if not log.handlers:
        log.setLevel(settings["LOG_LEVEL"].upper())
    url = settings["DATABASE_URL"] or "sqlite:///" + os.path.join(app.instance_path, "pwpush.sqlite3")
    app.config["SQLALCHEMY_DATABASE_URI"] = config.database_uri(url)
    if not command_line:
        _make_instance_folder(app)
    if os.path.isdir(app.instance_path) and _holds_secrets(app, settings):
        _warn_if_open_to_others(app.instance_path, "folder", "it holds the keys and the SQLite database")
    app.extensions["pwpush_secret_key_set"] = bool(settings["SECRET_KEY"])  # (else the instance folder's)
    app.config["SECRET_KEY"] = settings["SECRET_KEY"] or _key_file(
        app, "secret_key", lambda: os.urandom(32).hex(), write=not command_line)
    # (One an admin set: the generated one has 64.)
    if len(app.config["SECRET_KEY"]) < 32 and config.start_up_notes():
        log.warning("SECRET_KEY has %d characters: whoever guesses it can sign in as anyone; set 32 or "
                    "more random ones (python -c 'import secrets; print(secrets.token_hex(32))').",
                    len(app.config["SECRET_KEY"]))
    master = settings["PWPUSH_MASTER_KEY"]
    if not master and not os.path.exists(os.path.join(app.instance_path, "master.key")):
        # A new key, in memory: a server keeps it on disk once the database has taken it
        # (_check_master_key), so a database whose pushes another key encrypted gets no key
        # file; a command never does.
        master = app.extensions["pwpush_new_master_key"] = crypto.generate_key()
    master = master or _key_file(app, "master.key", crypto.generate_key)
    try:
        app.extensions["pwpush_keyring"] = crypto.Keyring(master.split(","))
    except ValueError as exc:
        raise config.ConfigError(f"{_master_key_source(app)}: {exc}") from None
    # hide_parameters: a logged SQL error must not echo bound values (url_tokens, ciphertext).
    if url.startswith("sqlite"):
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": 15}, "hide_parameters": True}
    else:
        # connect_timeout: a database that drops packets silently held a connecting request
        # (or the heartbeat) for the TCP timeout, minutes; DATABASE_URL's own wins.
        timeout = {} if "connect_timeout" in make_url(app.config["SQLALCHEMY_DATABASE_URI"]).query else {
            "connect_timeout": PG_CONNECT_TIMEOUT}
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": True, "hide_parameters": True,
                                                   "connect_args": timeout}
    # A multipart form's text field holds the longest payload (TEXT_MAX characters of up to 4
    # UTF-8 bytes; Flask's default 500 000 bytes refused a quarter of it, `curl -F` included).
    app.config["MAX_FORM_MEMORY_SIZE"] = 4 * TEXT_MAX + 1024
    # Files plus form overhead, and at least the longest payload as a URL-encoded form (a
    # lower file cap refused long text pushes too); a larger body is a 413 before it is read.
    app.config["MAX_CONTENT_LENGTH"] = max(settings["PWP__FILES__MAX_TOTAL_BYTES"] + 1024 * 1024,
                                           urlencoded_limit(app.config["MAX_FORM_MEMORY_SIZE"]))
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings["PWP__SECURE_COOKIES"] or settings["FORCE_SSL"],
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings["PWP__SECURE_COOKIES"] or settings["FORCE_SSL"],
        # No route answers OPTIONS unless it says so (upstream: 404s; only /p.json has CORS);
        # a page's 405 for OPTIONS becomes its list of methods (errors._http_error).
        PROVIDE_AUTOMATIC_OPTIONS=False)


def _log_notify_by_email(settings):
    """Say at start whether notify by e-mail is on, and warn of mistyped settings."""
    if unknown := config.unknown_settings():
        # One line naming them, never their values (a mistyped password's is a password).
        log.warning("Ignored, %s: %s. The README lists the settings.",
                    "not a pwpush setting" if len(unknown) == 1 else "not pwpush settings",
                    ", ".join(f"{name} (perhaps {meant} was meant)" if meant else name for name, meant in unknown))
    if settings["PWP_PUBLIC_GATEWAY"]:
        return  # (creates nothing, so sends nothing: it says what it is instead, pwp/gateway.py)
    if settings["PWP__ENABLE_USER_ACCOUNT_EMAILS"] and not settings["PWP__DISABLE_LOGINS"]:
        log.info("Account e-mails are on: password reset, unlock and confirmation links are mailed through %s.",
                 settings["PWP__MAIL__SMTP_ADDRESS"])
    if notify.available(settings):
        security = settings["PWP__MAIL__SMTP_SECURITY"]
        log.info("Notify by e-mail is on: SMTP server %s:%s (%s), From %s.", settings["PWP__MAIL__SMTP_ADDRESS"],
                 settings["PWP__MAIL__SMTP_PORT"] or config.SMTP_SECURITY[security], security,
                 settings["PWP__MAIL__MAILER_SENDER"])
        host = settings["PWP__MAIL__SMTP_ADDRESS"]
        if security == "none" and host.lower() not in ("localhost", "127.0.0.1", "::1"):
            log.warning("PWP__MAIL__SMTP_SECURITY is none: the mails (their secret links)%s cross the network to "
                        "%s unencrypted; use starttls or tls unless it is a private network.",
                        " and the SMTP password" if settings["PWP__MAIL__SMTP_USER_NAME"] else "", host)
    elif not settings["PWP__MAIL__SMTP_ADDRESS"]:
        log.info("Notify by e-mail is off: PWP__MAIL__SMTP_ADDRESS is not set.")
    elif not settings["PWP__NOTIFY_BY_EMAIL__ENABLED"]:
        log.info("Notify by e-mail is off: PWP__NOTIFY_BY_EMAIL__ENABLED is false.")
    else:
        log.warning("Notify by e-mail is off: PWP__DISABLE_LOGINS is true (senders must sign in).")


def _warn_if_open_to_others(path, what, why):
    """Log a warning when other users of the machine may read or enter path (an instance
    folder an admin made with mkdir, a key file copied in with 0644): made here, they are
    owner-only, but one that exists is used as it is."""
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077 and config.start_up_notes():
        log.warning("The instance %s %s is open to other users (mode %o), and %s: chmod %s it.",
                    what, path, mode, why, "700" if what == "folder" else "600")


def _holds_secrets(app, settings) -> bool:
    """Tell whether the instance folder holds a key file or the SQLite database: with both keys
    set and the database elsewhere (PostgreSQL, say) it holds nothing secret."""
    from sqlalchemy.engine import make_url

    if not settings["SECRET_KEY"] or not settings["PWPUSH_MASTER_KEY"]:
        return True
    database = _sqlite_file(make_url(app.config["SQLALCHEMY_DATABASE_URI"]))
    folder = os.path.abspath(app.instance_path)  # (a relative database path is in it)
    return database is not None and os.path.commonpath([os.path.abspath(os.path.join(folder, database)),
                                                        folder]) == folder


def _make_instance_folder(app):
    """The instance folder holds the keys and the SQLite database: owner-only."""
    try:
        os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise config.ConfigError(f"PWPUSH_INSTANCE_PATH: cannot use {exc.filename or app.instance_path}: "
                                 f"{exc.strerror or exc}") from None


def _key_file(app, name, make, write=True, announce=True) -> str:
    """A key kept in the instance folder (made on first start, and logged unless not
    announce); ConfigError naming the file when it cannot be read or holds nothing. Unless
    write, a missing one is made for this process alone: a command encrypts nothing a server
    reads (the key check is the server's)."""
    path = os.path.join(app.instance_path, name)
    if not write and not os.path.exists(path):
        return make()
    try:
        value = crypto.load_or_create(path, make, announce)
    except (OSError, UnicodeError) as exc:
        raise config.ConfigError(f"the key file {path}: cannot be used: "
                                 f"{getattr(exc, 'strerror', None) or 'not a key (not ASCII)'}") from None
    if not value:
        raise config.ConfigError(f"the key file {path}: is empty (delete it to have a new one made, "
                                 "if nothing was ever stored with it)")
    _warn_if_open_to_others(path, "key file", "it is a secret")
    return value


def _master_key_source(app) -> str:
    """Where the master keys came from, for messages."""
    if app.config["PWPUSH_MASTER_KEY"]:
        return "PWPUSH_MASTER_KEY"
    return f"the key file {os.path.join(app.instance_path, 'master.key')}"


def _sqlite_pragmas(wal_autocheckpoint, path=None):
    pragmas = ("journal_mode=WAL", "synchronous=NORMAL", "secure_delete=ON",
               "foreign_keys=ON", "busy_timeout=15000")
    if wal_autocheckpoint:
        pragmas += (f"wal_autocheckpoint={wal_autocheckpoint}",)

    def on_connect(dbapi_connection, _record):
        # Autocommit at the driver level so "begin" below decides how a transaction starts.
        dbapi_connection.isolation_level = None
        if path and os.path.isfile(path) and os.path.getsize(path) == 0:
            # Just made (the umask's 0644, whatever its folder): owner-only, as the keys, before
            # the WAL and shared-memory files are made, which SQLite gives the same mode.
            os.chmod(path, 0o600)
        cur = dbapi_connection.cursor()
        for pragma in pragmas:
            cur.execute("PRAGMA " + pragma)
        cur.close()
    return on_connect


def _sqlite_begin(conn):
    # Take the write lock up front: a WAL reader that later writes could otherwise
    # fail at once with SQLITE_BUSY_SNAPSHOT instead of waiting its turn.
    # Straight to the driver: this runs once per transaction, i.e. once per request.
    # A connection marked read_snapshot (a file download, pwp.pushes.open_file) only reads,
    # for as long as its download lasts: a plain BEGIN, which takes no write lock.
    read_only = conn.get_execution_options().get("read_snapshot")
    conn.connection.dbapi_connection.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _register_database(app):
    from . import fastsql
    from .models import db, use_postgresql

    db.init_app(app)
    # Flask-SQLAlchemy's own teardown removes the app context's session, as _session_ender's
    # does, but also when there is none (~10.7 k instructions, 2 % of a retrieval:
    # bench/PROFILE.md): ours alone ends it. Only that one is taken out, by its name in
    # Flask-SQLAlchemy 3.1 (another version's, or anything else it registers, stays).
    theirs = getattr(db, "_teardown_session", None)
    if theirs in app.teardown_appcontext_funcs:
        app.teardown_appcontext_funcs.remove(theirs)
    app.teardown_appcontext(_session_ender(db))
    with app.app_context():
        engine = db.engine
        fastsql.new_connections_after_fork(engine)
        if engine.dialect.name == "sqlite":
            fastsql.bind_without_adapting(engine.dialect.loaded_dbapi)
            wal_autocheckpoint = app.config.get("PWPUSH_SQLITE_WAL_AUTOCHECKPOINT")
            event.listen(engine, "connect", _sqlite_pragmas(wal_autocheckpoint, engine.url.database))
            event.listen(engine, "begin", _sqlite_begin)
        elif engine.dialect.name == "postgresql":
            use_postgresql()


def _session_ender(db):
    """The teardown that ends a request's session. Its rollback fails on a connection the
    database server ended during the request (a restart, pg_terminate_backend): the request
    has its answer already, the 500 that said so; raised from here, the exception would
    replace it with gunicorn's HTML page. SQLAlchemy drops such a connection; the pool's
    pre-ping checks the others."""
    from sqlalchemy.exc import DBAPIError

    registry = db.session.registry

    def end_session(_exc):
        if not registry.has():  # (most API requests never open one)
            return
        try:
            db.session.remove()
        except DBAPIError as error:
            registry.clear()
            current_app.logger.warning("database connection lost during a request (%s)",
                                       type(error.orig).__name__)
    return end_session


def _register_extensions(app):
    from . import auth, errors

    auth.init_app(app)
    errors.init_app(app)
    for name, value in CSRF_DEFAULTS.items():
        app.config.setdefault(name, value)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(_csrf_protect)


# Flask-WTF's CSRF protection is imported by the first form or page that needs a token:
# it brings WTForms (1.2 MiB per worker), which workers serving only the JSON API never
# use. Its settings, with the defaults CSRFProtect.init_app would give them:
CSRF_DEFAULTS = {"WTF_CSRF_ENABLED": True, "WTF_CSRF_METHODS": frozenset({"POST", "PUT", "PATCH", "DELETE"}),
                 "WTF_CSRF_FIELD_NAME": "csrf_token", "WTF_CSRF_HEADERS": ("X-CSRFToken", "X-CSRF-Token"),
                 # As long as the session (as upstream's Rails): an hour's limit refused a
                 # recipient who waited longer for a passphrase, and lost what a sender typed.
                 "WTF_CSRF_TIME_LIMIT": None,
                 # Not Flask-WTF's check that an HTTPS form post's Referer is this site: the
                 # pages send Referrer-Policy: no-referrer (secret links must not leak in
                 # Referer headers), so browsers send none and every form failed over HTTPS.
                 # _csrf_protect checks Sec-Fetch-Site and Origin instead.
                 "WTF_CSRF_SSL_STRICT": False}
# JSON clients authenticate with tokens; browser sessions are SameSite=Lax.
CSRF_EXEMPT_BLUEPRINTS = frozenset({"api", "api_v1"})


def csrf_token() -> str:
    """The session's CSRF token, for forms (templates call it)."""
    from flask_wtf.csrf import generate_csrf
    return generate_csrf()


@functools.cache
def _csrf():
    from flask_wtf.csrf import CSRFProtect
    return CSRFProtect()


def _csrf_protect():
    """Check the CSRF token of form submissions (not the token-authenticated JSON APIs), and
    that the browser does not say the form is another site's (auth.from_other_site)."""
    config = current_app.config
    if (request.method in config["WTF_CSRF_METHODS"] and config["WTF_CSRF_ENABLED"]
            and request.blueprint not in CSRF_EXEMPT_BLUEPRINTS):
        from flask_wtf.csrf import CSRFError
        try:
            _csrf().protect(apply_exemptions=True)  # (it ignores requests that match no route)
        except CSRFError:  # (its words: "The CSRF token is missing.")
            from .errors import FormNotSent
            raise FormNotSent() from None
        from .auth import from_other_site
        # (A browser without Sec-Fetch-Site posts our forms with "Origin: null": let it, on
        # the token's word.)
        if from_other_site(request, null_origin_is_other=False):
            raise CSRFError("The request came from another site.")


def _register_blueprints(app):
    from . import admin, api, api_v1, cli, gateway, web

    api.init_app(app)
    app.register_blueprint(api_v1.bp)
    web.init_app(app)
    admin.init_app(app)
    cli.init_app(app)
    gateway.init_app(app)  # (last: it keeps only the recipient's routes of all the above)


_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    ("Content-Security-Policy", _CSP), ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
    ("X-Robots-Tag", "noindex, nofollow"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), clipboard-write=(self)")]


# A logo URL's site, as a CSP source: scheme, host and port only (anything else, such as
# "https://host;script-src *", names no site and adds none).
_LOGO_SITE = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?=[/?#]|$)", re.IGNORECASE)


def security_headers(cfg) -> list:
    """SECURITY_HEADERS, the CSP's img-src naming the sites of the configured logos too (a
    logo on another site was blocked: a broken image on every page); with FORCE_SSL, HSTS
    for two years, as upstream's (Rails' force_ssl), this host only (browsers ignore it over
    plain http)."""
    logos = (cfg["PWP__BRAND__LIGHT_LOGO"], cfg["PWP__BRAND__DARK_LOGO"])
    sites = sorted({match.group(0) for url in logos if url and (match := _LOGO_SITE.match(url))})
    csp = _CSP.replace("img-src 'self' data:", " ".join(["img-src 'self' data:", *sites]))
    headers = [(name, csp if name == "Content-Security-Policy" else value) for name, value in SECURITY_HEADERS]
    if cfg["FORCE_SSL"]:
        headers.append(("Strict-Transport-Security", "max-age=63072000"))
    return headers


class SecurityHeaders:
    """WSGI middleware: the fixed security headers on every response, error pages included,
    and "Cache-Control: no-store" unless the view chose a cache policy (static assets do):
    secrets must never sit in a browser or proxy cache.

    At the WSGI edge it appends to the header list as is, where an after_request hook
    costs a Headers.extend that re-validates each fixed header on every request.
    """

    def __init__(self, wsgi_app, security=SECURITY_HEADERS):
        self.wsgi_app = wsgi_app
        self.security = security

    def __call__(self, environ, start_response):
        security = self.security

        def start(status, headers, exc_info=None):
            if not any(name.lower() == "cache-control" for name, _value in headers):
                headers.append(("Cache-Control", "no-store"))
            headers.extend(security)
            return start_response(status, headers, exc_info)
        return self.wsgi_app(environ, start)


def _register_middleware(app):
    """WSGI layers around Flask, innermost first: the API's hot path, per-IP throttling,
    the trusted proxies' headers, the security headers on every response."""
    from . import hotpath, throttling

    flask_wsgi_app = app.wsgi_app
    hotpath.init_app(app)
    throttling.init_app(app, flask_wsgi_app)
    n = app.config["PWP__TRUSTED_PROXIES"]
    if n:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)
    app.wsgi_app = SecurityHeaders(app.wsgi_app, security_headers(app.config))


def _keys_open(write: bool, before_upgrade=False) -> bool:
    """Whether the master keys open the database's key check (pushes.keys_are_the_databases;
    not write: without writing one), or, read-only on a database from before the key check
    (its upgrade adds the table), its stored secrets; before_upgrade, there: True (its
    pushes may lack columns the query names: the check after the upgrade speaks)."""
    from sqlalchemy import inspect as inspect_database

    from . import pushes
    from .models import db

    if write:
        return pushes.keys_are_the_databases()
    # (SQLite: a plain BEGIN, not waiting for the write lock of another process's upgrade.)
    if inspect_database(db.session.connection(execution_options={"read_snapshot": True})).has_table("key_check"):
        return pushes.keys_are_the_databases(write=False)
    return before_upgrade or pushes.keys_open_stored_secrets()


def _check_master_key(app, write=True, before_upgrade=False):
    """Refuse to start with master keys that do not open the stored pushes (a key file
    regenerated, another instance's key): every view would fail after counting.
    before_upgrade: a server's start on a database behind the code, before any revision runs
    (a mistyped key must not upgrade it first): read-only, its key file not yet written (a
    new key that another worker's kept file replaces is left to the check after it)."""
    from . import pushes

    path = os.path.join(app.instance_path, "master.key")
    new = (app.extensions.get if before_upgrade else app.extensions.pop)("pwpush_new_master_key", None)
    made, kept = new is not None, False
    if before_upgrade and made and os.path.exists(path):
        return
    with app.app_context():
        if made and write and not before_upgrade and (
                pushes.keys_are_the_databases(write=False) or os.path.exists(path)):
            # The database takes the new key, or another worker starting beside this one kept
            # its own first (and wrote it in the key check): the file's key is the one.
            # (Its making is logged once the database took the key: a start that then refuses
            # removes the file, and its log says only the refusal.)
            master = _key_file(app, "master.key", lambda: new, announce=False)
            app.extensions["pwpush_keyring"] = crypto.Keyring(master.split(","))
            made, kept = False, master == new
        if not _keys_open(write and not before_upgrade, before_upgrade):
            if kept:
                # Another instance (its own folder, no PWPUSH_MASTER_KEY) wrote its key check
                # first on this new database: the file kept here encrypted nothing.
                os.unlink(path)
                made = True
            if made and write:
                raise config.ConfigError(f"PWPUSH_MASTER_KEY is not set and there is no key file {path}, but the "
                                         "database already has a key (its pushes', or another instance's that "
                                         "started first): restore the key file from a backup, copy the other "
                                         "instance's, or set PWPUSH_MASTER_KEY")
            if made:  # (a command's own key)
                raise config.ConfigError(f"PWPUSH_MASTER_KEY is not set and there is no key file {path}: run "
                                         "this with the server's environment (DATABASE_URL, PWPUSH_MASTER_KEY, ...)")
            raise config.ConfigError(
                f"{_master_key_source(app)}: none of its keys decrypts the stored pushes; start "
                "with the key they were encrypted with (the instance folder's master.key or the "
                "PWPUSH_MASTER_KEY of the other instances)")
        if kept:
            crypto.announce_new(path)


def _record_keys(app):
    """Record which master keys this server holds while it runs (rotate-key asks)."""
    from .instances import Heartbeat

    app.extensions["pwpush_heartbeat"] = Heartbeat(app)
    app.extensions["pwpush_heartbeat"].start()


def _check_secret_key(app):
    """Warn when this server signs with another SECRET_KEY than the one started before it on
    this database: behind one load balancer, instances that differ refuse each other's
    sessions and form tokens."""
    from . import pushes

    with app.app_context():
        if not pushes.secret_key_is_the_databases(app.config["SECRET_KEY"]):
            mine = ("SECRET_KEY setting" if app.extensions["pwpush_secret_key_set"] else
                    f"SECRET_KEY, the one generated in {os.path.join(app.instance_path, 'secret_key')} "
                    "(SECRET_KEY is not set),")
            log.warning("SECRET_KEY: this instance's %s differs from the one another instance (or this one's last "
                        "start) signed with on this database: with several instances, each signs out the other's "
                        "users and refuses its forms (\"This form could not be sent\"); give every instance the "
                        "same SECRET_KEY (a change made on purpose: said once)", mine)


def database_missing(app) -> bool:
    """Tell whether the database has no pwpush tables yet (an SQLite file that does not
    exist is not created by asking)."""
    from sqlalchemy import inspect as inspect_database

    from .models import db

    with app.app_context():
        path = _sqlite_file(db.engine.url)
        if path is not None and not os.path.exists(path):
            return True
        return not inspect_database(db.engine).has_table("pushes")


def make_database(app) -> bool:
    """Bring the database to the code's schema (pwp.migrate), making it if need be (the
    instance folder first, for an SQLite database in it); tell whether it was new."""
    from . import migrate
    from .models import db

    new = database_missing(app)
    with app.app_context():
        if new and os.path.dirname(db.engine.url.database or "") == app.instance_path:
            _make_instance_folder(app)
        _check_sqlite_folder(db.engine.url)
        migrate.bring_up_to_date(app, db)
    return new


def _sqlite_file(url) -> str | None:
    """An SQLite database's path (as Flask-SQLAlchemy made it: a relative one in the instance
    folder); None for another database, one in memory or a file: URI."""
    path = url.database or ""
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def _check_sqlite_folder(url):
    """ConfigError when an SQLite database's folder does not exist or this user may not
    write there while SQLite would have to make a file in it (the database, its -wal or -shm):
    a path mistyped or a folder never made is said at start, not retried ("unable to open
    database file")."""
    path = _sqlite_file(url)
    if path is None:
        return
    # (SQLite follows a symbolic link to the database: its -wal and -shm go beside the file linked to.)
    real = os.path.realpath(path)
    folder = os.path.dirname(real)
    if os.path.isdir(folder):
        if not os.access(folder, os.W_OK | os.X_OK) and not all(
                os.access(real + end, os.W_OK) for end in ("", "-wal", "-shm")):
            if os.statvfs(folder).f_flag & os.ST_RDONLY:
                raise config.ConfigError(
                    f"DATABASE_URL: cannot use the SQLite database {path}: the folder {folder} is on a file system "
                    "mounted read-only (pwpush writes to its database, and SQLite makes the database's -wal and "
                    "-shm files there): mount it read-write, or correct DATABASE_URL")
            raise config.ConfigError(
                f"DATABASE_URL: cannot use the SQLite database {path}: the folder {folder} is not writable by "
                "this user (SQLite makes the database's -wal and -shm files there): let the server's user "
                "write there, or correct DATABASE_URL")
        return
    while not os.path.isdir(os.path.dirname(folder)):  # (the outermost one missing)
        folder = os.path.dirname(folder)
    what = "is not a folder" if os.path.exists(folder) else "does not exist"
    raise config.ConfigError(f"DATABASE_URL: cannot use the SQLite database {path}: the folder {folder} {what} "
                             "(make it, writable by the server's user, or correct DATABASE_URL)")


def database_name(app) -> str:
    """The database URL as a message may show it (no password: neither the one before the
    @, shown as ***, nor libpq's ?password=, left out)."""
    from .models import db

    with app.app_context():
        url = db.engine.url
    return url.difference_update_query(["password"]).render_as_string(hide_password=True)


def _create_tables(app):
    """Make the database or bring it to the code's schema (pwp.migrate; never drops):
    zero-configuration first start, and upgrades."""
    from . import migrate
    from .models import db

    with app.app_context():
        _check_sqlite_folder(db.engine.url)
        migrate.bring_up_to_date(app, db, lambda: _check_master_key(app, before_upgrade=True))
        if db.engine.url.get_backend_name() == "sqlite" and os.path.isfile(db.engine.url.database or ""):
            _warn_if_open_to_others(db.engine.url.database, "database",
                                    "it holds the accounts and the encrypted secrets")
