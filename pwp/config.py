"""Settings: one table of every option, parsed with types from the environment.

Only this module reads the environment. Names are upstream Password Pusher's
(``PWP__SECTION__KEY``) so an existing configuration carries over. A bad value
stops start-up with the variable's name in the message.
"""
import os
import re
from urllib.parse import urlsplit

# The switch of each kind that can be turned off, and what a refused push is told.
KIND_SWITCH = {"file": ("PWP__ENABLE_FILE_PUSHES", "File pushes are disabled."),
               "url": ("PWP__ENABLE_URL_PUSHES", "URL pushes are disabled."),
               "qr": ("PWP__ENABLE_QR_PUSHES", "QR code pushes are disabled.")}


def kind_switched_off(config, kind: str) -> str | None:
    """What a push of this kind is told when its PWP__ENABLE_*_PUSHES setting is off, else None."""
    setting, message = KIND_SWITCH.get(kind, (None, None))
    return message if setting is not None and not config[setting] else None
# Upstream's settings section for each kind.
SECTION = {"text": "PW", "file": "FILES", "url": "URL", "qr": "QR"}

_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}
_UNITS = {
    "second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800,
    "month": 2629746, "year": 31556952,
}


class ConfigError(ValueError):
    """A setting has a value that cannot be used."""


class DatabaseUnavailable(ConfigError):
    """The database cannot be reached or used at start; waiting may mend it (a server
    restarting, a failover, a volume not yet mounted)."""


def parse_bool(name, raw):
    """Parse a boolean setting."""
    value = str(raw).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def parse_int(name, raw):
    """Parse a non-negative integer setting."""
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name}: must not be negative, got {raw!r}")
    return value


def one_of(*words):
    """A parser of a setting that is one of these words (any case)."""
    def parse(name, raw):
        value = str(raw).strip().lower()
        if value not in words:
            raise ConfigError(f"{name}: expected {', '.join(words[:-1])} or {words[-1]}, got {raw!r}")
        return value
    return parse


def parse_str(name, raw):
    """Keep a string setting; an empty string means unset."""
    value = str(raw).strip()
    return value or None


MAX_DURATION = 100 * 31556952  # purge periods: 100 years at most (dates past 9999 overflow)
MAX_DAYS = 36500  # expiry: 100 years at most
MAX_VIEWS = 1_000_000


def parse_limit(name, raw):
    """Parse a count that may be unlimited: 'nil', 'none' or 'unlimited' give None (upstream's
    nil). An empty value is the default, as for every setting: a blank line lifts no cap."""
    if str(raw).strip().lower() in ("nil", "none", "null", "unlimited"):
        return None
    return parse_int(name, raw)


# SMTP connection security: STARTTLS on a plain connection (required, not opportunistic:
# a server that does not offer it gets no mail), TLS from the first byte (port 465), or
# none (a relay on the same host or a private network only).
SMTP_SECURITY = {"starttls": 587, "tls": 465, "none": 25}


def mail_base_url(config) -> str | None:
    """Scheme and host of the links in notification e-mails: PWP__OVERRIDE_BASE_URL, else
    PWP__HOST_PROTOCOL://PWP__HOST_DOMAIN (https with FORCE_SSL); None without either. Never
    the request's: a sender could have the instance mail a link to a host of their own."""
    url = config.get("PWP__OVERRIDE_BASE_URL")
    if not url and config.get("PWP__HOST_DOMAIN"):
        url = parse_url("PWP__HOST_DOMAIN", f"{config.get('PWP__HOST_PROTOCOL') or 'https'}://"
                                            f"{config['PWP__HOST_DOMAIN'].strip()}")
    if url and config.get("FORCE_SSL") and url.startswith("http://"):
        url = "https://" + url[len("http://"):]
    return url


def parse_sender(name, raw):
    """Parse a From address: 'Name <addr@host>' or 'addr@host', on one line."""
    from email.utils import parseaddr

    value = parse_str(name, raw)
    if value is None:
        return None
    if re.search(r"[\x00-\x1f\x7f]", value) or "@" not in parseaddr(value)[1]:
        raise ConfigError(f"{name}: expected an address such as pwpush@example.com or "
                          f"'pwpush <pwpush@example.com>', got {raw!r}")
    return value


def parse_duration(name, raw):
    """Parse 'disabled' or '<int> <unit>' ('3 months', '1 year') into seconds or None."""
    value = str(raw).strip().lower()
    if value in ("disabled", "", "none"):
        return None
    match = re.fullmatch(r"(\d+)\s*\.?\s*([a-z]+?)s?", value)
    if not match or match.group(2) not in _UNITS:
        raise ConfigError(
            f"{name}: expected 'disabled' or '<number> <unit>' "
            f"(seconds, minutes, hours, days, weeks, months, years), got {raw!r}")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_DURATION:
        raise ConfigError(f"{name}: must be at most 100 years, got {raw!r}")
    return seconds


def _split_url(value: str):
    """urlsplit(value), or None when it or its port is not valid."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not one
    except ValueError:
        return None
    return parts


def parse_url(name, raw):
    """Parse a base URL: scheme, host and port only (the app is served from its host's
    root), returned without a trailing slash."""
    value = parse_str(name, raw)
    if value is None:
        return None
    parts = _split_url(value)
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or re.search(r"[\s\x00-\x1f\x7f]", value) or parts.username is not None
            or parts.path not in ("", "/") or parts.query or parts.fragment or value.endswith(("?", "#"))):
        raise ConfigError(f"{name}: expected scheme and host (and port), like "
                          f"https://pwpush.example.com, with no path, query or fragment; got {raw!r}")
    return value.rstrip("/")


# A data: logo: an image type browsers show in an <img> (an SVG there runs no script), which
# the CSP's img-src allows (data:); base64, or the image's text (an SVG's, spaces allowed).
# (";utf8", without "charset=", is a parameter browsers ignore: the form often pasted.)
_DATA_LOGO = re.compile(r"data:image/(?:png|jpeg|gif|webp|svg\+xml)(?:;charset=[A-Za-z0-9_-]+|;utf-?8)?"
                        r"(?:;base64,[A-Za-z0-9+/]*={0,2}|,(?P<text>[^\x00-\x1f\x7f]*))", re.IGNORECASE)
# Each page carries the logo (twice: light and dark): a data: one past this is better a file.
DATA_LOGO_MAX = 32 * 1024


def parse_logo(name, raw):
    """Parse a logo's address, an <img src>: an http:// or https:// URL, a path on this
    site, or a data: URL of an image (_DATA_LOGO, at most DATA_LOGO_MAX characters). Not
    another scheme (javascript:, file:), nor //host or /\\host (another site without a
    scheme), nor a user name or password (which the page would show to everyone)."""
    value = parse_str(name, raw)
    if value is None:
        return None
    if value[:5].lower() == "data:":
        if not (data := _DATA_LOGO.fullmatch(value)):
            raise ConfigError(f"{name}: a data: logo must be an image, data:image/TYPE;base64,... or "
                              "data:image/svg+xml,<svg ...>, TYPE png, jpeg, gif, webp or svg+xml; got "
                              f"{value[:40]!r}...")
        if len(value) > DATA_LOGO_MAX:
            raise ConfigError(f"{name}: a data: logo of {len(value)} characters is longer than the "
                              f"{DATA_LOGO_MAX} allowed (every page carries it): serve it as a file (a URL "
                              "or a path on this site)")
        if data["text"]:  # (a "#" there would start the URL's fragment, the image cut at it: fill='#f00')
            return value[:data.start("text")] + data["text"].replace("#", "%23")
        return value
    parts = _split_url(value)
    if (parts is None or re.search(r"[\s\x00-\x1f\x7f\\]", value) or parts.username is not None
            or ((parts.scheme or parts.netloc) and not (parts.scheme in ("http", "https") and parts.hostname))):
        got = "a URL with a user name or password" if parts and parts.username is not None else repr(raw)
        raise ConfigError(f"{name}: expected an http:// or https:// URL or a path on this site, like "
                          f"https://cdn.example.com/logo.png or /logo.png; got {got}")
    return value


def _kind_settings():
    """Per-kind expiry and option settings, upstream's defaults."""
    rows = []
    for kind, sec in SECTION.items():
        p = f"PWP__{sec}__"
        rows += [
            (p + "EXPIRE_AFTER_DAYS_DEFAULT", parse_int, 7),
            (p + "EXPIRE_AFTER_DAYS_MIN", parse_int, 1),
            (p + "EXPIRE_AFTER_DAYS_MAX", parse_int, 90),
            (p + "EXPIRE_AFTER_VIEWS_DEFAULT", parse_int, 5),
            (p + "EXPIRE_AFTER_VIEWS_MIN", parse_int, 1),
            (p + "EXPIRE_AFTER_VIEWS_MAX", parse_int, 100),
            (p + "ENABLE_RETRIEVAL_STEP", parse_bool, True),
            (p + "RETRIEVAL_STEP_DEFAULT", parse_bool, True),
        ]
        if kind != "url":
            rows += [
                (p + "ENABLE_DELETABLE_PUSHES", parse_bool, True),
                (p + "DELETABLE_PUSHES_DEFAULT", parse_bool, True),
            ]
        if kind in ("text", "file"):
            rows.append((p + "ENABLE_BLUR", parse_bool, True))
    return rows


# (name, parser, default). The README's settings table mirrors this list.
SETTINGS = [
    # Who may do what.
    ("PWP__ALLOW_ANONYMOUS", parse_bool, True),
    ("PWP__ENABLE_FILE_PUSHES", parse_bool, True),
    ("PWP__ENABLE_URL_PUSHES", parse_bool, True),
    ("PWP__ENABLE_QR_PUSHES", parse_bool, True),
    ("PWP__DISABLE_SIGNUPS", parse_bool, False),
    ("PWP__DISABLE_LOGINS", parse_bool, False),
    # Devise's confirmable, lockable and recoverable (pwp/account_mail.py): sign-ups confirm
    # their address, accounts lock after failed sign-ins, passwords reset by e-mail. Needs
    # PWP__MAIL__SMTP_ADDRESS.
    ("PWP__ENABLE_USER_ACCOUNT_EMAILS", parse_bool, False),
    # Upstream's two-factor requirement: signed-in accounts without two-factor authentication
    # are sent to its set-up, API callers without it answered 403 (pwp/twofactor.py).
    ("PWP__REQUIRE_MFA", parse_bool, False),
    # Public-gateway mode (upstream's name, one underscore): serve only what a recipient
    # needs to open a link; see pwp/gateway.py. true/1/yes/on turn it on, false/0/no/off
    # (or empty) off; upstream takes any value as on.
    ("PWP_PUBLIC_GATEWAY", parse_bool, False),
    # Links and cookies.
    ("PWP__OVERRIDE_BASE_URL", parse_url, None),
    # The host of the links in notification e-mails (upstream's host_domain/host_protocol),
    # when PWP__OVERRIDE_BASE_URL is unset: never the request's Host, which a client chooses.
    ("PWP__HOST_DOMAIN", parse_str, None),
    ("PWP__HOST_PROTOCOL", one_of("https", "http"), "https"),
    ("PWP__SECURE_COOKIES", parse_bool, False),
    # Upstream's: links always https://, cookies Secure (redirecting http is the proxy's job).
    ("FORCE_SSL", parse_bool, False),
    # Number of reverse proxies in front whose X-Forwarded-* headers are trusted.
    ("PWP__TRUSTED_PROXIES", parse_int, 0),
    # Data lifecycle.
    ("PWP__PURGE_AFTER", parse_duration, None),
    ("PWP__PURGE_ANONYMOUS_AFTER", parse_duration, 86400),
    # Files.
    ("PWP__FILES__MAX_FILE_UPLOADS", parse_int, 10),
    ("PWP__FILES__MAX_TOTAL_BYTES", parse_int, 25 * 1024 * 1024),
    # Per-IP request throttling (requests per minute / per second; 0 turns a limit off).
    ("PWP__THROTTLING__MINUTE", parse_int, 120),
    ("PWP__THROTTLING__SECOND", parse_int, 60),
    # Where throttling counters live: memory:// (per process) or redis://host:port/db.
    ("PWP__THROTTLING__STORAGE_URI", parse_str, "memory://"),
    # Notify by e-mail (upstream's notify_by_email section): available when enabled, an
    # SMTP server is set and logins are not disabled.
    ("PWP__NOTIFY_BY_EMAIL__ENABLED", parse_bool, True),
    # Recipients a user may notify per UTC day: nil/unlimited = no cap, 0 = none.
    ("PWP__NOTIFY_BY_EMAIL__DAILY_LIMIT", parse_limit, 500),
    # The SMTP server (upstream's mail section); unset: notify by e-mail is unavailable.
    ("PWP__MAIL__SMTP_ADDRESS", parse_str, None),
    ("PWP__MAIL__SMTP_PORT", parse_int, None),  # default: 587, 465 or 25 after the security
    ("PWP__MAIL__SMTP_SECURITY", one_of(*SMTP_SECURITY), "starttls"),
    ("PWP__MAIL__SMTP_USER_NAME", parse_str, None),
    ("PWP__MAIL__SMTP_PASSWORD", parse_str, None),  # never logged nor shown
    ("PWP__MAIL__SMTP_TIMEOUT", parse_int, 10),  # seconds to connect, and for each answer
    ("PWP__MAIL__MAILER_SENDER", parse_sender, None),  # the From: required with a server
    # Branding.
    ("PWP__BRAND__TITLE", parse_str, "pwpush"),
    ("PWP__BRAND__TAGLINE", parse_str, "Share a secret. It disappears after reading."),
    ("PWP__BRAND__DISCLAIMER", parse_str, None),
    ("PWP__BRAND__LIGHT_LOGO", parse_logo, None),
    ("PWP__BRAND__DARK_LOGO", parse_logo, None),
    ("PWP__BRAND__SHOW_FOOTER_MENU", parse_bool, True),
    ("PWP__SHOW_VERSION", parse_bool, True),
    # Password generator defaults (web UI).
    ("PWP__GEN__HAS_NUMBERS", parse_bool, True),
    ("PWP__GEN__TITLE_CASED", parse_bool, True),
    ("PWP__GEN__USE_SEPARATORS", parse_bool, True),
    ("PWP__GEN__CONSONANTS", parse_str, "bcdfghklmnprstvz"),
    ("PWP__GEN__VOWELS", parse_str, "aeiouy"),
    ("PWP__GEN__SEPARATORS", parse_str, "-_="),
    ("PWP__GEN__MAX_SYLLABLE_LENGTH", parse_int, 3),
    ("PWP__GEN__MIN_SYLLABLE_LENGTH", parse_int, 1),
    ("PWP__GEN__SYLLABLES_COUNT", parse_int, 3),
    *_kind_settings(),
    # Infrastructure (not PWP__: the usual names of the platform).
    ("DATABASE_URL", parse_str, None),  # default: SQLite in the instance folder
    ("SECRET_KEY", parse_str, None),  # default: generated into the instance folder
    ("PWPUSH_MASTER_KEY", parse_str, None),  # default: generated into the instance folder
    # WAL pages after which a commit checkpoints (default: SQLite's 1000); gunicorn.conf.py
    # sets 250 when one process serves (bench/RESULTS.md, 2026-12-04).
    ("PWPUSH_SQLITE_WAL_AUTOCHECKPOINT", parse_int, None),
    # The app's log level (logger `pwp`) in `flask` commands and `flask run`; under gunicorn
    # gunicorn.conf.py gives it to gunicorn, whose error log the app's logger then writes to.
    ("LOG_LEVEL", one_of("debug", "info", "warning", "error", "critical"), "info"),  # (gunicorn's names)
]


def from_environ(environ=None):
    """Return every setting, parsed from the environment (or the given mapping)."""
    environ = os.environ if environ is None else environ
    values = {}
    for name, parser, default in SETTINGS:
        raw = environ.get(name)
        # An empty value is the same as none (`PWP__ALLOW_ANONYMOUS=` turned anonymous
        # pushes off; an empty PWP__THROTTLING__STORAGE_URI stopped start-up).
        values[name] = default if raw is None or not raw.strip() else parser(name, raw)
    return values


def start_up_notes() -> bool:
    """Whether this process says the start-up notes (a mistyped setting, what notify by e-mail
    does, a file open to others): not a gunicorn worker but the first of a start or a reload,
    which says them (gunicorn.conf.py's pre_fork)."""
    return os.environ.get("PWPUSH_START_UP_NOTES") != "off"


def unknown_settings(environ=None) -> list[tuple[str, str | None]]:
    """The PWP__ variables that are no setting (a typo, or an upstream setting pwpush does
    not have: either is otherwise ignored without a word), each with the setting of its
    section it most likely meant (or None)."""
    import difflib

    environ = os.environ if environ is None else environ
    names = [name for name, _parser, _default in SETTINGS]
    unknown = []
    for name in sorted(environ):
        if name.startswith("PWP__") and name not in names:
            section = _section(name)
            # (Within its section: PWP__QR__ENABLE_BLUR does not mean PWP__PW__ENABLE_BLUR.
            # PWP_PUBLIC_GATEWAY, upstream's one name with one underscore, is outside sections.)
            near = [k for k in names if k.startswith("PWP") and _section(k) == section] or names
            unknown.append((name, next(iter(difflib.get_close_matches(name, near, n=1, cutoff=0.9)), None)))
    return unknown


def _section(name: str) -> str:
    """'PWP__MAIL__' of PWP__MAIL__SMTP_ADDRESS, 'PWP__' of a name outside sections."""
    head, sep, _rest = name[len("PWP__"):].partition("__")
    return f"PWP__{head}__" if sep else "PWP__"


def validate(config):
    """Check cross-setting rules (min <= default <= max) and raise ConfigError."""
    for sec in SECTION.values():
        for what, ceiling in (("DAYS", MAX_DAYS), ("VIEWS", MAX_VIEWS)):
            name = f"PWP__{sec}__EXPIRE_AFTER_{what}"
            lo, default, hi = (config[f"{name}_{end}"] for end in ("MIN", "DEFAULT", "MAX"))
            if lo < 1:
                raise ConfigError(f"{name}_MIN: must be at least 1, got {lo}")
            if not lo <= default <= hi:
                # Name all three: the one set may be a bound the default no longer fits.
                raise ConfigError(f"{name}_DEFAULT ({default}) must lie between {name}_MIN ({lo}) "
                                  f"and {name}_MAX ({hi})")
            if hi > ceiling:
                raise ConfigError(f"PWP__{sec}__EXPIRE_AFTER_{what}_MAX: must be at most {ceiling}, got {hi}")
    gen_lo, gen_hi = config["PWP__GEN__MIN_SYLLABLE_LENGTH"], config["PWP__GEN__MAX_SYLLABLE_LENGTH"]
    if not 1 <= gen_lo <= gen_hi:
        raise ConfigError("PWP__GEN__MIN_SYLLABLE_LENGTH: must be at least 1 and at most the max")
    # 0 would leave a feature on that can never work (every file push a 422, empty passwords).
    for name in ("PWP__FILES__MAX_FILE_UPLOADS", "PWP__FILES__MAX_TOTAL_BYTES", "PWP__GEN__SYLLABLES_COUNT"):
        if config[name] < 1:
            raise ConfigError(f"{name}: must be at least 1")
    if config.get("PWP__ENABLE_USER_ACCOUNT_EMAILS") and not config.get("PWP__MAIL__SMTP_ADDRESS"):
        raise ConfigError("PWP__ENABLE_USER_ACCOUNT_EMAILS: requires PWP__MAIL__SMTP_ADDRESS (and the other "
                          "PWP__MAIL__ settings): the account e-mails need an SMTP server")
    if config.get("PWP__MAIL__SMTP_ADDRESS") and not config.get("PWP__MAIL__MAILER_SENDER"):
        raise ConfigError("PWP__MAIL__MAILER_SENDER: required when PWP__MAIL__SMTP_ADDRESS is set "
                          "(the From: of notification e-mails, e.g. pwpush@example.com)")
    if config.get("PWP__HOST_DOMAIN"):
        try:
            mail_base_url({**config, "PWP__OVERRIDE_BASE_URL": None})
        except ConfigError:
            raise ConfigError("PWP__HOST_DOMAIN: expected a host name (and port), like pwpush.example.com, "
                              f"with no scheme or path; got {config['PWP__HOST_DOMAIN']!r}") from None
    if config.get("PWP__MAIL__SMTP_ADDRESS") and not mail_base_url(config):
        raise ConfigError("PWP__HOST_DOMAIN: required when PWP__MAIL__SMTP_ADDRESS is set (the host of the "
                          "links in notification e-mails, e.g. pwpush.example.com), unless "
                          "PWP__OVERRIDE_BASE_URL is set")
    if config.get("PWP__MAIL__SMTP_PORT") is not None and not 1 <= config["PWP__MAIL__SMTP_PORT"] <= 65535:
        raise ConfigError("PWP__MAIL__SMTP_PORT: must be between 1 and 65535")
    if config.get("PWP__MAIL__SMTP_TIMEOUT") == 0:
        raise ConfigError("PWP__MAIL__SMTP_TIMEOUT: must be at least 1")
    if config.get("PWPUSH_SQLITE_WAL_AUTOCHECKPOINT") == 0:  # 0 would let the WAL grow forever
        raise ConfigError("PWPUSH_SQLITE_WAL_AUTOCHECKPOINT: must be at least 1")


def kind_setting(config, kind, key):
    """Read a per-kind setting, e.g. kind_setting(cfg, 'text', 'EXPIRE_AFTER_DAYS_DEFAULT')."""
    return config.get(f"PWP__{SECTION[kind]}__{key}")


def database_uri(url):
    """Normalise DATABASE_URL for SQLAlchemy (postgres:// → postgresql+psycopg://); a
    ConfigError unless it names SQLite or PostgreSQL with a driver that is installed."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not url.startswith(("sqlite:///", "sqlite+pysqlite:///", "postgresql+psycopg://")):
        raise ConfigError("DATABASE_URL: expected postgresql://user:password@host:port/database "
                          f"(or sqlite:////path/to/file), got {_scheme(url)!r}")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        make_url(url)
    except (ArgumentError, ValueError):  # (a port that is not a number: ValueError)
        raise ConfigError(f"DATABASE_URL: not a database URL of the form {_scheme(url)}://...") from None
    return url


def _scheme(url):
    # Only the scheme in messages: the rest may hold a password.
    return url.partition(":")[0]
