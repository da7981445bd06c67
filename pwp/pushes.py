"""The push lifecycle: the one place that reads and writes pushes.

Web, API v2, API v1 and the command line call these functions; they never
touch the session themselves. Time is a parameter (`now`, naive UTC).
"""
import functools
import hmac
import io
import itertools
import json
import math
import re
import secrets
import socket
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, NamedTuple
from urllib.parse import urlsplit

from flask import Flask, current_app
from sqlalchemy import and_, bindparam, delete, false, func, insert, inspect, or_, select, true, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from werkzeug.urls import iri_to_uri

from . import crypto
from .config import kind_setting, kind_switched_off
from .errors import (Forbidden, KeysOutOfDate, NotDeletable, NotFound, PassphraseIncorrect, SignInRequired, TooManyAttempts,
                     ValidationFailed)
from .fastsql import Statement, Transaction
from .instances import database_now
from .models import (AuditKind, AuditLog, KeyCheck, Kind, NotifyByEmail, Push, PushFile, PushFilePart, PushRow,
                     RetiredKey, Throttle, User, db)
from .words import human_size, plural

PER_PAGE = 50
AUDIT_CAP = 2000
PASSPHRASE_ATTEMPTS_PER_MINUTE = 5
# How long the file links of a retrieval keep working (as upstream's 5-minute blob URLs).
FILE_LINK_SECONDS = 300
TEXT_MAX = 1_048_576
QR_MAX = 1024
# Upstream has no limits on these; ours keep a URL within what a proxy passes in a Location
# header (nginx's 4 KiB buffer) and an anonymous create from storing megabytes of note.
URL_MAX = 2048
NOTE_MAX = 10_000
# Nor on a passphrase: this is more than anyone types or pastes, is the scrypt input's bound,
# and leaves a form with the longest payload, note and name within its body (past ~20 KB it
# was a 413), and an ASCII one percent-encoded within gunicorn's request line (?passphrase=).
PASSPHRASE_MAX = 1024
TEXT_TOO_LARGE = f"The payload is too large.  You can only push up to {TEXT_MAX} bytes."  # (upstream's)
URL_HOST_AMBIGUOUS = ("has a host name that browsers and this server spell differently (with \u00df, \u1e9e, "
                      "\u03c2, a zero-width joiner or a character newer than Unicode 3.2): write it in "
                      "punycode (xn--...)")
URL_TOO_LONG = (f"is too long (maximum is {URL_MAX} characters, each one outside ASCII counted as its "
                "percent-encoding)")
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_TOKEN_LENGTH = 24
# Bytes below 252 (7 x 36) map uniformly onto the alphabet; new_url_token drops the rest.
_TOKEN_KEPT = 256 - 256 % len(_TOKEN_ALPHABET)
_TOKEN_TABLE = bytes(ord(_TOKEN_ALPHABET[b % len(_TOKEN_ALPHABET)]) for b in range(256))
_TOKEN_REJECTED = bytes(range(_TOKEN_KEPT, 256))


def _claimable(now):
    """The claim condition: not expired and within its limits (shared by both claim paths)."""
    return and_(Push.expired == false(), ~Push.past_limits(now))


# Hot paths use these Core statements (fastsql): no unit of work, no reload after the
# commit, no per-call execution machinery.
_PUSHES = Push.__table__
_PUSH_KEYS = tuple(_PUSHES.c.keys())


def _without_id(table):
    return [key for key in table.c.keys() if key != "id"]


_INSERT_PUSH = Statement(insert(_PUSHES).returning(_PUSHES.c.id), _without_id(_PUSHES))
_INSERT_AUDIT = Statement(insert(AuditLog.__table__), _without_id(AuditLog.__table__))
_INSERT_FILE = Statement(insert(PushFile.__table__).returning(PushFile.__table__.c.id),
                         _without_id(PushFile.__table__))
_INSERT_FILE_PART = Statement(insert(PushFilePart.__table__), _without_id(PushFilePart.__table__))
# The common retrieval as one conditional write (see _claim_open): a live push that asks
# for no passphrase and has no files; the second form also skips the caller's own pushes
# (owner views are logged, not counted).
_CLAIM_OPEN_SQL = (
    update(_PUSHES)
    .where(_PUSHES.c.url_token == bindparam("token"), _claimable(bindparam("now")),
           _PUSHES.c.passphrase_verifier.is_(None), _PUSHES.c.kind != int(Kind.file))
    .values(view_count=_PUSHES.c.view_count + 1, updated_at=bindparam("now"))
    .returning(*_PUSHES.c))
_CLAIM_OPEN_NOT_OWNED_SQL = _CLAIM_OPEN_SQL.where(
    or_(_PUSHES.c.user_id.is_(None), _PUSHES.c.user_id != bindparam("caller_id")))


_EVENT_KEYS = ("user_id", "kind", "ip", "user_agent", "referrer")


def _with_event(statement):
    """PostgreSQL: a write of one push and its audit event in one statement (one round
    trip, not two).

    WITH changed AS (INSERT or UPDATE ... RETURNING ...), logged AS (INSERT INTO
    audit_logs SELECT changed.id, :event_user_id, ... FROM changed) SELECT * FROM changed:
    no row written, no event.
    """
    changed = statement.cte("changed")
    audit = AuditLog.__table__
    event = select(changed.c.id, *(bindparam("event_" + key, type_=audit.c[key].type)
                                   for key in _EVENT_KEYS),
                   bindparam("now", type_=audit.c.created_at.type))
    logged = insert(audit).from_select(["push_id", *_EVENT_KEYS, "created_at"], event).cte("logged")
    return select(changed).add_cte(logged)


# The insert as a CTE needs its own bind names (a column's name is reserved in VALUES).
_INSERT_PUSH_LOGGED = Statement(_with_event(insert(_PUSHES).values(
    {key: bindparam("p_" + key, type_=_PUSHES.c[key].type) for key in _without_id(_PUSHES)})
    .returning(_PUSHES.c.id)))
# [caller is anonymous, caller is signed in]
_CLAIM_OPEN = [Statement(_CLAIM_OPEN_SQL), Statement(_CLAIM_OPEN_NOT_OWNED_SQL)]
_CLAIM_OPEN_LOGGED = [Statement(_with_event(_CLAIM_OPEN_SQL)),
                      Statement(_with_event(_CLAIM_OPEN_NOT_OWNED_SQL))]
# Expiry deletes the payload and the passphrase (files: see _expire).
_EXPIRED_VALUES = {"expired": True, "payload_ciphertext": None, "passphrase_salt": None,
                   "passphrase_verifier": None}
_EXPIRE = Statement(update(_PUSHES).where(_PUSHES.c.id == bindparam("push_id")).values(
    expired_on=bindparam("now"), updated_at=bindparam("now"), **_EXPIRED_VALUES))
# A deletion: only a live push, so of concurrent deletions one alone logs its event.
_DELETE = Statement(update(_PUSHES).where(_PUSHES.c.id == bindparam("push_id"), _PUSHES.c.expired == false())
                    .values(expired_on=bindparam("now"), updated_at=bindparam("now"), deleted=True,
                            **_EXPIRED_VALUES).returning(_PUSHES.c.id))

# expire_after_duration (what the pwpush CLI sends): index -> length.
DURATIONS = [timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=30),
             timedelta(hours=1), timedelta(hours=4), timedelta(hours=12)] + [
    timedelta(days=d) for d in (1, 2, 3, 4, 5, 6, 7, 14, 21, 30, 60, 90)]


def utcnow() -> datetime:
    """Return the current time as naive UTC, the form stored in the database.

    (combine: the same fields without a tzinfo; `replace(tzinfo=None)` parses keywords,
    ~9 k instructions, 1-1.6 % of a create or a retrieval: bench/PROFILE.md.)"""
    now = datetime.now(timezone.utc)
    return datetime.combine(now, now.time())


def day_start(now: datetime) -> datetime:
    """The UTC midnight that began now's day (the notify cap's day)."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def unix_seconds(now: datetime) -> int:
    """Return a naive UTC datetime as Unix seconds (for Fernet token times and counters)."""
    return int(now.replace(tzinfo=timezone.utc).timestamp())


@dataclass
class Actor:
    """Who is acting, and from where (for the audit log)."""

    user: User | None = None
    ip: str = ""
    user_agent: str = ""
    referrer: str = ""


@dataclass
class Upload:
    """A file to attach: name, type and contents, as bytes or a binary file (a form's upload,
    which is read a part at a time and never held whole)."""

    filename: str
    content_type: str
    data: bytes | BinaryIO
    size: int = field(init=False)

    def __post_init__(self):
        if isinstance(self.data, bytes):
            self.data = io.BytesIO(self.data)  # (shares the bytes' buffer)
        self.size = self.data.seek(0, io.SEEK_END)
        self.data.seek(0)


@dataclass
class NewPush:
    """What a client asked for, parsed into Python types but not yet validated."""

    kind: str = "text"
    payload: str | None = None
    files: list[Upload] = field(default_factory=list)
    files_given: bool = False
    expire_after_days: int | None = None
    expire_after_duration: int | None = None
    expire_after_views: int | None = None
    deletable_by_viewer: bool | None = None
    retrieval_step: bool | None = None
    passphrase: str | None = None
    name: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Changes:
    """An owner's edit of a live push (the web's edit form): what is left from now, and
    the settings a recipient meets."""

    days_left: int
    views_left: int
    retrieval_step: bool
    deletable_by_viewer: bool
    name: str
    note: str
    # What the form showed as left when it was opened (None: not sent): a number equal to it,
    # or to what is left now, is left as is, so views counted or days passed while the form
    # was open are not given back by a save that changed only the name.
    days_shown: int | None = None
    views_shown: int | None = None
    # Files to add (a file push), and the push's passphrase, which their key is derived from.
    files: tuple[Upload, ...] = ()
    passphrase: str | None = field(default=None, repr=False)

    def keeps(self, what: str, left: int) -> bool:
        """Tell whether the days or views typed are what the form showed, or what is left now
        (a form sent again with the browser's Back after a save): that limit then stays as it
        is, in the form's bounds or not."""
        return getattr(self, f"{what}_left") in (left, getattr(self, f"{what}_shown"))


@dataclass
class Retrieval:
    """The result of a retrieval: the push, and its payload when the view was granted."""

    push: Push | PushRow  # a PushRow from the common path (_claim_open)
    payload: str | None = None
    files: list[PushFile] = field(default_factory=list)
    file_key: bytes | None = None
    # The view that used the last allowed view: shown as still live, then expired.
    last_view: bool = False
    granted: bool = False


# ----------------------------------------------------------------------------- helpers

def the_app() -> Flask:
    """The app of this context itself, for the hot paths' reads of its attributes.

    Each attribute read through the current_app proxy first fails on the proxy (an
    AttributeError raised and cleared: ~9 k instructions) before the proxy forwards it;
    this is ~2 k, then plain reads (2-4 % of a create or a retrieval, bench/PROFILE.md).
    """
    return current_app._get_current_object()


def keyring() -> crypto.Keyring:
    """Return the app's master key set."""
    return the_app().extensions["pwpush_keyring"]


def new_url_token() -> str:
    """Return a fresh url_token: 24 characters of [a-z0-9] (about 124 bits)."""
    # 32 random bytes mapped in C (bytes.translate), rejected bytes dropped: 24 are
    # left but for about one draw in 10^9, which draws again.
    while True:
        chars = secrets.token_bytes(32).translate(_TOKEN_TABLE, _TOKEN_REJECTED)
        if len(chars) >= _TOKEN_LENGTH:
            return chars[:_TOKEN_LENGTH].decode("ascii")


def days_remaining(push: Push, now: datetime) -> int:
    """Whole days left before the push expires by time (upstream's arithmetic)."""
    seconds = (push.expires_at - now).total_seconds()
    return max(0, math.ceil(seconds / 86400))


def views_remaining(push: Push) -> int:
    """Counted views left."""
    return max(0, push.expire_after_views - push.view_count)


def note_of(push: Push) -> str:
    """Decrypt the owner's note ('' when none)."""
    if push.note_ciphertext is None:
        return ""
    return keyring().decrypt(push.note_ciphertext).decode("utf-8")


def _run(statement: Statement, params, tx: Transaction | None = None) -> list[tuple]:
    """Run a hot-path statement in tx, or else in the session's transaction."""
    if tx is not None:
        return tx.run(statement, params)
    connection = db.session.connection()
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        return statement.run(cursor, connection.dialect, params)
    finally:
        cursor.close()


def _load_caller(actor: Actor):
    """Reload the caller's columns now if a rollback expired them, before a fast transaction.

    Inside it, an expired User would reload through the session: on SQLite a second
    connection of this request, waiting for the first one's write lock.
    """
    user = actor.user
    if user is not None and inspect(user).expired_attributes:
        db.session.refresh(user)


def _log(push: Push, kind: AuditKind, actor: Actor, now: datetime, capped=True,
         tx: Transaction | None = None):
    """Add an audit event; events stop at the per-push cap (as upstream), except views.

    Views are bounded by the push's view limit and always logged (upstream cannot log one
    past the cap and expires the push instead); failed views of an expired push are not,
    so they stop at the cap like the rest.
    """
    if capped and kind != AuditKind.view:
        count = db.session.scalar(select(func.count()).where(AuditLog.push_id == push.id))
        if count >= AUDIT_CAP:
            return
    # A plain INSERT: the event is never read back in this request.
    _run(_INSERT_AUDIT, {"push_id": push.id, "created_at": now, **_event(kind, actor)}, tx)


def _event(kind: AuditKind, actor: Actor, prefix="") -> dict:
    """The columns of an audit event that describe the request (names prefixed for _with_event)."""
    return {prefix + "user_id": actor.user.id if actor.user else None, prefix + "kind": int(kind),
            prefix + "ip": (actor.ip or "")[:64], prefix + "user_agent": (actor.user_agent or "")[:255],
            prefix + "referrer": (actor.referrer or "")[:255]}


def audit_event(kind: AuditKind, actor: Actor) -> dict:
    """The columns of an audit event of this request (for events written elsewhere: notify)."""
    return _event(kind, actor)


def find(url_token: str) -> Push:
    """The push as stored (no lazy expiry: see get); NotFound if there is none."""
    push = db.session.scalar(select(Push).where(Push.url_token == url_token))
    if push is None:
        raise NotFound()
    return push


def _expire(push: Push, now: datetime, tx: Transaction | None = None, deletion=False) -> bool:
    """Expire: delete the payload, passphrase and files in this transaction. A deletion
    writes only a live push and tells whether it did (False: another request was first)."""
    params = {"push_id": push.id, "now": now}
    if deletion:
        if not _run(_DELETE, params, tx):
            return False
    else:
        _run(_EXPIRE, params, tx)
    # The row is written; keep the object (Push or PushRow) in step with it.
    push.keep_written({**_EXPIRED_VALUES, "expired_on": now, "updated_at": now,
                       **({"deleted": True} if deletion else {})})
    if push.kind == Kind.file:
        db.session.execute(delete(PushFile).where(PushFile.push_id == push.id))
    return True


def _expire_if_past_limits(push: Push, now: datetime, keep_files=False) -> bool:
    """Expire a push past its limits (the lazy expiry of every read); keep_files: not while
    its last view's file links are fresh. Tell whether it expired it (uncommitted)."""
    if push.expired or not push.past_limits(now) \
            or (keep_files and push.in_download_window(now, FILE_LINK_SECONDS)):
        return False
    _expire(push, now)
    return True


def views_count(push: Push, user: User | None) -> bool:
    """Tell whether this user's views count against the push's limit (its owner's and
    admins' are logged, not counted)."""
    return user is None or not (user.is_admin or is_owner(push, user))


def is_owner(push: Push, user: User | None) -> bool:
    """Tell whether the user owns the push (anonymous pushes are owned by nobody)."""
    return user is not None and push.user_id is not None and push.user_id == user.id


# ----------------------------------------------------------------------------- create

def _bounded(value, kind, what, cfg):
    """Upstream's rule: a missing or out-of-range value becomes the kind's default."""
    lo = kind_setting(cfg, kind, f"EXPIRE_AFTER_{what}_MIN")
    hi = kind_setting(cfg, kind, f"EXPIRE_AFTER_{what}_MAX")
    if value is None or not lo <= value <= hi:
        return kind_setting(cfg, kind, f"EXPIRE_AFTER_{what}_DEFAULT")
    return value


def _option(value, kind, enable_key, default_key, cfg):
    if not kind_setting(cfg, kind, enable_key):
        return False
    return kind_setting(cfg, kind, default_key) if value is None else value


def _validate(new: NewPush, cfg) -> dict:
    errors = {}
    kind = new.kind
    if kind not in Kind.__members__:
        return {"kind": ["is not included in the list"]}
    switched_off = kind_switched_off(cfg, kind)
    if switched_off:
        return {"kind": [switched_off]}
    payload = new.payload or ""
    if kind != "file" and not payload.strip():
        errors["payload"] = ["Payload is required."]
    elif kind in ("text", "file") and len(payload) > TEXT_MAX:  # (file: its message; upstream: no cap)
        errors["payload"] = [TEXT_TOO_LARGE]
    elif kind == "qr" and len(payload.encode("utf-8")) > QR_MAX:  # bytes: what the code holds
        errors["payload"] = [f"The QR code payload is too large.  You can only push up to {QR_MAX} bytes."]
    elif kind == "url":
        errors.update(_url_errors(payload))
    if new.note and len(new.note) > NOTE_MAX:
        errors["note"] = [f"is too long (maximum is {NOTE_MAX} characters)"]
    if new.passphrase and len(new.passphrase) > PASSPHRASE_MAX:
        errors["passphrase"] = [f"is too long (maximum is {PASSPHRASE_MAX} characters)"]
    if kind == "file":
        errors.update(_validate_files(new.files, cfg))
    if new.expire_after_duration is not None and not 0 <= new.expire_after_duration < len(DURATIONS):
        errors["expire_after_duration"] = ["is not included in the list"]
    return errors


def _validate_files(files, cfg, kept: tuple[int, int] = (0, 0)) -> dict:
    """The files' errors; kept: the count and bytes of the files the push has already (an
    edit adds files to them, within the same limits)."""
    max_files, max_bytes = cfg["PWP__FILES__MAX_FILE_UPLOADS"], cfg["PWP__FILES__MAX_TOTAL_BYTES"]
    kept_count, kept_bytes = kept
    if not files:
        return {"files": ["At least one file is required for a file push."]}
    if kept_count + len(files) > max_files:
        has = f" This push has {plural(kept_count, 'file')} already." if kept_count else ""
        return {"files": [f"You can only attach up to {max_files} files per push.{has}"]}
    if kept_bytes + sum(f.size for f in files) > max_bytes:
        has = f" This push has {human_size(kept_bytes)} already." if kept_count else ""
        return {"files": [f"The files are too large.  You can only push up to {human_size(max_bytes, limit=True)} in total.{has}"]}
    return {}


def _url_errors(value: str) -> dict:
    # The limit counts the Location header as sent (a character outside ASCII is sent as up
    # to 9); the encoded form is never shorter than the text, so a long text is not encoded.
    too_long = {"payload": [URL_TOO_LONG]}
    if len(value.strip()) > URL_MAX:
        return too_long
    location = url_location(value)
    if location is None:
        host = _HOST.match(value)
        return {"payload": [URL_HOST_AMBIGUOUS if host and _spelled_differently(host[1].lower()) else
                            "must be a valid HTTP or HTTPS URL."]}
    return too_long if len(location) > URL_MAX else {}


# Control characters and line breaks: no header can carry them.
_NOT_IN_A_LOCATION = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
# In a host: what upstream's parser refuses (whitespace, <>{}\"), what a browser cannot
# follow (| ^) or reads as the path's start (\).
_NOT_IN_A_HOST = re.compile(r'[\s<>{}"\\|^]')
# The characters Python's IDNA 2003 (Unicode 3.2's) maps otherwise than browsers' (UTS #46,
# IDNA 2008): \u00df and \u1e9e to ss, \u03c2 to \u03c3, the joiners and \u1806 to nothing, where
# browsers keep them (faß.de would send the recipient to fass.de); Hangul fillers and Khmer's
# inherent vowels kept, where browsers drop them; five CJK ideographs Unicode 4 decomposed
# anew. (Each seen in Chromium, as those _spelled_differently adds.)
_IDNA_DEVIATIONS = re.compile("[\u00df\u1e9e\u03c2\u200c\u200d\u1806\u115f\u1160\u3164\uffa0\u17b4\u17b5"
                              "\U0002f868\U0002f874\U0002f91f\U0002f95f\U0002f9bf]")
_IDNA_DOTS = re.compile("[\u3002\uff0e\uff61]")
# An http(s) URL's host, between its userinfo (up to the last @) and its port.
_HOST = re.compile(r"\s*https?://(?:[^/?#]*@)?(\[[^/?#\]]*\]|[^/?#:]*)", re.IGNORECASE)


def url_location(value: str) -> str | None:
    """The Location a URL push sends its viewer to (host IDNA-encoded, the rest
    percent-encoded), or None when the value is no http(s) URL a browser can be sent to:
    checked when the push is made, so its view never fails after being counted."""
    text = value.strip()
    if _NOT_IN_A_LOCATION.search(text):
        return None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not one
        location = iri_to_uri(text)
        # The response encodes its Location again: a host the mapping gave an empty label
        # (\u2488 is "1.", so \u2488.com is 1..com) fails there, after the view was counted.
        iri_to_uri(location)
    except (ValueError, UnicodeError):
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if _NOT_IN_A_HOST.search(parts.hostname) or _spelled_differently(parts.hostname):
        return None
    # The mapping may make punctuation of a letter (\uff3c: a backslash, read as the path's
    # start; \u2488: "1."; \uff05: %), which no browser does.
    if not parts.hostname.isascii() and _punctuation(parts.hostname) != _punctuation(urlsplit(location).hostname):
        return None
    return location


def _spelled_differently(host: str) -> bool:
    """Whether a host has a character Python's IDNA maps otherwise than browsers do: one of
    _IDNA_DEVIATIONS, or one Unicode 3.2 did not have, which Python keeps as it is and
    browsers may map (\U0001f130, squared A, to a; Cherokee's small letters to capitals)."""
    return not host.isascii() and bool(
        _IDNA_DEVIATIONS.search(host) or any(unicodedata.ucd_3_2_0.category(c) == "Cn" for c in host))


def _punctuation(host: str) -> list:
    return [c for c in _IDNA_DOTS.sub(".", host) if c.isascii() and not c.isalnum() and c != "-"]


def _expiry(new: NewPush, cfg, now):
    """Return (expire_after_days, expires_at) from days or the CLI's duration index."""
    if new.expire_after_duration is not None:
        length = DURATIONS[new.expire_after_duration]
        if length < timedelta(days=1):
            return 1, now + length
        days = _bounded(length.days, new.kind, "DAYS", cfg)
    else:
        days = _bounded(new.expire_after_days, new.kind, "DAYS", cfg)
    return days, now + timedelta(days=days)


def validation_errors(new: NewPush) -> dict:
    """A new push's errors by field (upstream's messages); empty when it can be stored."""
    return _validate(new, current_app.config)


def new_row(new: NewPush, actor: Actor, now: datetime) -> tuple[dict, bytes | None]:
    """Validate a new push and build its row, encrypted but not stored; also the passphrase key.

    create() stores one; bench/fill_direct.py stores many at once.
    """
    cfg = the_app().config
    errors = _validate(new, cfg)
    if errors:
        raise ValidationFailed(errors)
    kind = new.kind
    days, expires_at = _expiry(new, cfg, now)
    row = dict(
        kind=int(Kind[kind]), url_token=new_url_token(),
        user_id=actor.user.id if actor.user else None, name=new.name or "",
        expire_after_days=days, expires_at=expires_at,
        expire_after_views=_bounded(new.expire_after_views, kind, "VIEWS", cfg),
        view_count=0, expired=False, expired_on=None, deleted=False,
        deletable_by_viewer=None if kind == "url" else _option(
            new.deletable_by_viewer, kind, "ENABLE_DELETABLE_PUSHES", "DELETABLE_PUSHES_DEFAULT", cfg),
        retrieval_step=_option(
            new.retrieval_step, kind, "ENABLE_RETRIEVAL_STEP", "RETRIEVAL_STEP_DEFAULT", cfg),
        passphrase_salt=None, passphrase_verifier=None, note_ciphertext=None,
        created_at=now, updated_at=now)
    key = None
    if new.passphrase:
        row["passphrase_salt"] = crypto.new_salt()
        row["passphrase_verifier"], key = crypto.derive(new.passphrase, row["passphrase_salt"])
    ring = keyring()  # (refuses to seal once this process's keys are out of date)
    row["payload_ciphertext"] = ring.seal((new.payload or "").encode("utf-8"), key)
    if new.note:
        row["note_ciphertext"] = ring.encrypt(new.note.encode("utf-8"))
    return row, key


def create(new: NewPush, actor: Actor, now: datetime, then=None) -> PushRow:
    """Validate and store a new push; log its creation; `then(push)`, if given, writes more
    in the session in the same transaction (notify's sending).

    Returns the stored values as a PushRow (read like a detached Push).
    """
    row, key = new_row(new, actor, now)
    kind = new.kind
    _load_caller(actor)
    if then is not None:
        db.session.connection()  # (the session's transaction begun: the statements below join it)
    try:
        with Transaction() as tx:
            # PostgreSQL logs the creation inside the insert; SQLite has no DML in CTEs.
            logged = tx.dialect.name == "postgresql"
            if logged:
                if kind != "file":
                    tx.autocommit_single_statement()  # the push and its event: one statement
                params = {"p_" + key: value for key, value in row.items()}
                push_id = tx.run(_INSERT_PUSH_LOGGED, {
                    **params, "now": now, **_event(AuditKind.creation, actor, "event_")})[0][0]
            else:
                push_id = tx.run(_INSERT_PUSH, row)[0][0]
            push = PushRow({"id": push_id, **row})
            if kind == "file":
                _store_files(push.id, new.files, key, tx)
            if not logged:
                _log(push, AuditKind.creation, actor, now, capped=False, tx=tx)
            if then is not None:
                then(push)
    except Exception as exc:
        if _account_gone(exc, actor.user):
            raise SignInRequired() from None
        raise
    # DEBUG, not INFO: the audit log records each creation, and a line per create is the hot
    # path's cost (bench/instructions.py create: 747 k instructions, 906 k writing it at INFO).
    the_app().logger.debug("push %s created (kind %s)", push.id, kind)
    return push


def _account_gone(exc: Exception, user: User | None) -> bool:
    """Tell whether a write failed on the foreign key of its caller's account, deleted
    meanwhile (delete_account holds the account's row: the insert waited, then met the key):
    the caller is no one now (SignInRequired, a 401, not a 500)."""
    if user is None or not isinstance(exc, (IntegrityError, db.engine.dialect.loaded_dbapi.IntegrityError)):
        return False
    user_id, = inspect(user).identity  # (not user.id: the rollback expires the object, a reload raises)
    db.session.rollback()
    return db.session.scalar(select(User.id).where(User.id == user_id)) is None


def _caller_may_be_gone(action):
    """For an action whose event is logged with its caller's user_id (a view, a wrong
    passphrase, a viewer's deletion, of another's push; an admin's view): the caller's
    account deleted meanwhile broke that foreign key; the caller is no one now
    (SignInRequired, a 401, as a create's), not a 500. Its own pushes need not this: the
    deletion locks them first, so such an action on one waits, then finds it gone."""
    @functools.wraps(action)
    def run(*args, **kwargs):
        try:
            return action(*args, **kwargs)
        except Exception as exc:
            actor = next((value for value in (*args, *kwargs.values()) if isinstance(value, Actor)), None)
            if actor is not None and _account_gone(exc, actor.user):
                raise SignInRequired() from None
            raise
    return run


def _store_files(push_id: int, uploads, key: bytes | None, tx: Transaction | None = None):
    """Store files of a push, encrypted a part (a MiB) at a time, inside the passphrase
    layer when a passphrase key is given; in tx, or else in the session's transaction."""
    ring = keyring()
    for upload in uploads:
        file_id = _run(_INSERT_FILE, {
            "push_id": push_id, "filename": upload.filename[:255] or "file",
            "content_type": (upload.content_type or "application/octet-stream")[:255],
            "size": upload.size, "ciphertext": b""}, tx)[0][0]
        for part in ring.seal_parts(upload.data, upload.size, key):  # (a part at a time)
            _run(_INSERT_FILE_PART, {"file_id": file_id, "ciphertext": part}, tx)


# ----------------------------------------------------------------------------- read

def get(url_token: str, now: datetime) -> Push:
    """Return a push without counting a view (preview pages, owner pages, HEAD). A file
    push's last view keeps its files for the viewer's links: a look that counts nothing
    does not expire it then (the next retrieval does, as upstream)."""
    push = find(url_token)
    if _expire_if_past_limits(push, now, keep_files=True):
        db.session.commit()
    return push


def retrieval_step_live(push: Push, actor: Actor, now: datetime) -> bool:
    """For the retrieval-step page of a push (from get): tell whether it can be viewed,
    counting no view; if not, a failed view, as every read of an expired push (upstream). A
    file push used up by its last view is not live, though its files wait for that viewer."""
    if push.expired or push.past_limits(now):
        _failed_view(push, actor, now)
        return False
    return True


def throttle_hit(key: str, period: int, now: datetime) -> int:
    """Count one event for key in the current fixed window of `period` seconds; return the count.

    The counter lives in the database, so every worker and app instance shares it.
    Commits are left to the caller.
    """
    ts = unix_seconds(now)
    window = ts - ts % period  # the window's start, in Unix seconds
    table = Throttle.__table__
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table).values(key=key[:64], window=window, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.key, table.c.window], set_={"count": table.c.count + 1},
    ).returning(table.c.count)
    return db.session.execute(stmt).scalar_one()


def _throttle_passphrase(push: Push, now: datetime):
    """Count one passphrase attempt; raise TooManyAttempts past 5 a minute."""
    if throttle_hit(f"passphrase:{push.id}", 60, now) > PASSPHRASE_ATTEMPTS_PER_MINUTE:
        db.session.commit()
        raise TooManyAttempts()


def _passphrase_gate(push: Push, passphrase: str | None, unlock_key: bytes | None,
                     actor: Actor, now: datetime) -> bytes:
    """Return the payload key from a passphrase or a held key; log and raise when neither fits."""
    if unlock_key is not None and crypto.key_matches(unlock_key, push.passphrase_verifier):
        return unlock_key
    if passphrase:
        key = crypto.check_passphrase(passphrase, push.passphrase_salt, push.passphrase_verifier)
        if key is not None:
            return key
    if not hold(push):  # deleted during the check (its account deleted): nothing to log against
        db.session.rollback()
        raise NotFound()
    _log(push, AuditKind.failed_passphrase, actor, now)
    db.session.commit()
    raise PassphraseIncorrect()


@_caller_may_be_gone
def unlock(url_token: str, passphrase: str, actor: Actor, now: datetime) -> bytes | None:
    """Check a passphrase (web form); return the payload key, None if the push needs none.

    Counts toward the per-push attempt limit; a wrong one is logged and raises.
    """
    push = find(url_token)
    _expire_if_past_limits(push, now)
    if push.expired or not push.has_passphrase:
        db.session.commit()
        return None
    # Every form submission counts, even an empty one (as upstream's /access).
    _throttle_passphrase(push, now)
    key = _passphrase_gate(push, passphrase, None, actor, now)
    db.session.commit()
    return key


def needs_passphrase(push: Push) -> bool:
    """Tell whether a live push asks for a passphrase before its payload."""
    return not push.expired and push.has_passphrase


def _claim(push: Push, now: datetime) -> bool:
    """Count one view with a single conditional write; True if this request won it."""
    # The WHERE clause decides: N concurrent readers of V remaining views get V wins.
    return _count_view(push, [_claimable(now)], updated_at=now)


def _count_view(push: Push, where, **values) -> bool:
    """Add one to the push's view_count where the conditions hold; False when no row did."""
    count = db.session.execute(
        update(Push).where(Push.id == push.id, *where)
        .values(view_count=Push.view_count + 1, **values)
        .returning(Push.view_count).execution_options(synchronize_session=False)).scalar_one_or_none()
    if count is None:
        return False
    push.keep_written({"view_count": count, **values})
    return True


def _claim_open(tx: Transaction, url_token: str, actor: Actor, now: datetime) -> PushRow | None:
    """Count and log a view of a live push without passphrase or files, not the caller's own.

    One conditional write, as _claim; returns the updated push as a PushRow, or None
    when the request needs the general path (which decides without this write).
    """
    user = actor.user
    if user is not None and user.is_admin:
        return None
    params = {"token": url_token, "now": now, "caller_id": user.id if user else None}
    # PostgreSQL logs the view inside the claim statement; SQLite has no DML in CTEs.
    logged = tx.dialect.name == "postgresql"
    if logged:
        rows = tx.run(_CLAIM_OPEN_LOGGED[user is not None],
                      {**params, **_event(AuditKind.view, actor, "event_")})
    else:
        rows = tx.run(_CLAIM_OPEN[user is not None], params)
    if not rows:
        return None
    push = PushRow(dict(zip(_PUSH_KEYS, rows[0])))
    if not logged:
        _log(push, AuditKind.view, actor, now, tx=tx)
    return push


def _failed_view(push: Push, actor: Actor, now: datetime) -> Retrieval:
    """Answer a read of an expired push; upstream counts it as a view."""
    if not _count_view(push, []):  # purged since it was looked up (purge-expired running meanwhile)
        db.session.rollback()
        raise NotFound()
    _log(push, AuditKind.failed_view, actor, now)
    db.session.commit()
    return Retrieval(push=push)


def retrieve_open(url_token: str, actor: Actor, now: datetime) -> Retrieval | None:
    """The common retrieval in one short transaction: a live push without passphrase or
    files, not the caller's own, counted and logged. None when the request needs the
    general path of `retrieve` (nothing was written then)."""
    _load_caller(actor)
    with Transaction() as tx:
        push = _claim_open(tx, url_token, actor, now)
        if push is None:
            tx.end(commit=False)
            return None
        ciphertext = push.payload_ciphertext
        last = push.views_used_up
        if last:  # decrypt before the expiry deletes the ciphertext (a failure rolls back)
            payload = _open_payload(ciphertext, None, push.id)
            _expire(push, now, tx)
    if not last:
        # After the commit, so the write lock is not held through the decryption (a
        # third of a retrieval's transaction, while other writers wait for the lock):
        # a failure costs a counted view, never the payload, and keys that do not open it
        # (another instance's) not even that.
        try:
            payload = _open_payload(ciphertext, None, push.id)
        except KeysOutOfDate:
            _give_back_view(push.id, actor, now)
            raise
    return Retrieval(push=push, payload=payload, last_view=last, granted=True)


def _open_payload(ciphertext: bytes, key: bytes | None, push_id: int) -> str:
    try:
        return keyring().open(ciphertext, key).decode("utf-8")
    except crypto.InvalidToken:
        raise _keys_out_of_date(push_id) from None


def _keys_out_of_date(push_id: int) -> KeysOutOfDate:
    """The failure of a payload this instance's master keys do not decrypt (the passphrase,
    if any, was right), logged with why (a line a minute at most: log_undecryptable)."""
    if keys_left_behind():
        why = ("rotate-key has moved the database to a key this instance lacks; it refuses new pushes and "
               "answers 503 (/up too) until it is restarted with the other instances' PWPUSH_MASTER_KEY")
    else:
        why = ("another instance encrypts with a key this one lacks. Give every instance every key (README, "
               "Key rotation: OLD,NEW everywhere first, then NEW,OLD); answered 503, no view spent")
    log_undecryptable(f"push {push_id}", why)
    return KeysOutOfDate()


# An instance left behind by a key rotation meets a secret it cannot open on most requests:
# one line each flooded a busy one's log.
UNDECRYPTABLE_LOG_EVERY = timedelta(minutes=1)


class _Unlogged:
    """This process's undecryptable secrets since its last line about one."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_line = None  # (the time from which the next may be logged)
        self.count = 0


def log_undecryptable(what: str, why: str):
    """Log at ERROR that this instance's master keys do not decrypt a stored secret (what: which,
    never a token): at most a line every UNDECRYPTABLE_LOG_EVERY in a process, each saying how
    many there were since the line before."""
    now = utcnow()
    unlogged = current_app.extensions.setdefault("pwpush_undecryptable", _Unlogged())
    with unlogged.lock:
        if unlogged.next_line is not None and now < unlogged.next_line:
            unlogged.count += 1
            return
        count, unlogged.count, unlogged.next_line = unlogged.count, 0, now + UNDECRYPTABLE_LOG_EVERY
    more = f" (and {plural(count, 'other stored secret')} since the last such line)" if count else ""
    current_app.logger.error("%s: this instance's PWPUSH_MASTER_KEY cannot decrypt it%s: %s.", what, more, why)


def keys_left_behind(connection=None) -> bool:
    """Whether rotate-key has moved the database's key check to keys this process lacks, or
    retired the key it encrypts with (its first: started after rotate-key with OLD,NEW, it
    opens the check with its second key, and what it stored under the first would be lost
    once the others drop that). Read on a connection of its own (the one given, or one from
    the pool), reading only (a request's may hold SQLite's write lock); a check seen to open
    before is not read again (rotate-key retires keys as it re-encrypts the check). Once
    found (said once in the log), the process stays out of date (keyring().out_of_date): it
    refuses new pushes and /up answers 503."""
    ring = keyring()
    if ring.out_of_date:
        return True
    if connection is None:
        with db.engine.connect().execution_options(read_snapshot=True) as connection:
            return keys_left_behind(connection)
    check = connection.scalar(select(KeyCheck.token).where(KeyCheck.id == KEY_CHECK_ID))
    if check is None or check == ring.check_opened:
        return False
    retired = retired_at(ring.fingerprints[0], connection)
    if retired is None and ring.opens(check):
        ring.check_opened = check
        return False
    ring.out_of_date = True
    if retired is None:
        current_app.logger.error(
            "rotate-key has moved the database to a key this instance's PWPUSH_MASTER_KEY lacks: until it is "
            "restarted with the other instances' PWPUSH_MASTER_KEY it refuses new pushes and answers 503 (/up too).")
    else:
        current_app.logger.error(
            "PWPUSH_MASTER_KEY on %s: its first key (fingerprint %s), the one this instance encrypts with, was retired "
            "by rotate-key at %s UTC (the other instances drop it): until it is restarted with the new key first in "
            "PWPUSH_MASTER_KEY (the other instances' NEW or NEW,OLD, not OLD,NEW), it refuses new pushes and answers "
            "503 (/up too); it still serves the pushes it can open.",
            socket.gethostname(), ring.fingerprints[0], f"{retired:%Y-%m-%d %H:%M}")
    return True


def retired_at(fingerprint: str, connection=None) -> datetime | None:
    """When rotate-key retired the master key of this fingerprint (on the connection given,
    else the app's session); None if it never did."""
    return (connection or db.session).scalar(select(RetiredKey.retired_at)
                                             .where(RetiredKey.fingerprint == fingerprint))


def _give_back_view(push_id: int, actor: Actor, now: datetime):
    """Undo a counted view whose payload was not served: its count and its event (this
    request's: another viewer's at the same instant stays). Not on a push that another view
    used up meanwhile: that view was served as the last, the push expired with this count."""
    if db.session.execute(update(Push).where(Push.id == push_id, Push.expired == false(), Push.view_count > 0)
                          .values(view_count=Push.view_count - 1)).rowcount:
        event = _event(AuditKind.view, actor)
        mine = (select(AuditLog.id).where(AuditLog.push_id == push_id, AuditLog.created_at == now,
                                          *(AuditLog.__table__.c[key] == event[key] for key in _EVENT_KEYS))
                .order_by(AuditLog.id.desc()).limit(1).scalar_subquery())
        db.session.execute(delete(AuditLog).where(AuditLog.id == mine))
    db.session.commit()


@_caller_may_be_gone
def retrieve(url_token: str, actor: Actor, now: datetime, passphrase: str | None = None,
             unlock_key: bytes | None = None, open_tried: bool = False) -> Retrieval:
    """Count one view (owners and admins are logged, not counted) and decrypt the payload.

    Raises NotFound, PassphraseIncorrect, TooManyAttempts. An expired push
    answers with no payload. The view that uses the last allowed view still
    gets the payload; the push expires in the same transaction (file pushes
    stay until their next access so the files can be downloaded).
    open_tried: retrieve_open already found nothing for this request (the API's hot path).
    """
    granted = None if open_tried else retrieve_open(url_token, actor, now)
    if granted is not None:
        return granted
    # Everything else: unknown, expired, passphrase, owner or admin, or a lost race.
    push = find(url_token)
    _expire_if_past_limits(push, now)
    key = None
    if needs_passphrase(push):
        if passphrase:
            _throttle_passphrase(push, now)
        key = _passphrase_gate(push, passphrase, unlock_key, actor, now)
    if push.expired:
        return _failed_view(push, actor, now)
    user = actor.user
    counted = views_count(push, user)
    if not (_claim(push, now) if counted else hold(push, now)):
        # Another reader took the last view, or a deletion came, between our read and our write.
        _reread(push)
        _expire_if_past_limits(push, now)
        return _failed_view(push, actor, now)
    _log(push, AuditKind.view if counted else AuditKind.admin_view if user.is_admin else AuditKind.owner_view,
         actor, now)
    return _grant(push, key, now)


def hold(push: Push, now: datetime | None = None) -> bool:
    """Before an event logged without a conditional write of the push (a view that counts
    nothing, its owner's or an admin's; a wrong passphrase; a notify action, before it locks
    its sender's row: an account deletion locks the push's first): tell whether the push is still
    there (and, given now, live), holding its row (FOR KEY SHARE, what the event's foreign
    key takes) until the commit: deleted since it was read, the event broke the foreign key
    (a 500)."""
    return db.session.scalar(select(Push.id).where(Push.id == push.id, *([_claimable(now)] if now else []))
                             .with_for_update(read=True, key_share=True)) is not None


def files_of(push: Push) -> list[PushFile]:
    """A file push's files, in the order they were attached (without their content)."""
    return list(db.session.scalars(select(PushFile).where(PushFile.push_id == push.id).order_by(PushFile.id)))


def _grant(push: Push, key: bytes | None, now: datetime) -> Retrieval:
    # Decrypt before expiring: expiry nulls the ciphertext.
    payload = _open_payload(push.payload_ciphertext, key, push.id)
    files = files_of(push) if push.kind == Kind.file else []
    last = push.views_used_up
    if last and push.kind != Kind.file:
        _expire(push, now)
    db.session.commit()
    return Retrieval(push=push, payload=payload, files=files, file_key=key,
                     last_view=last, granted=True)


def seal_token(purpose: str, data: dict, now: datetime) -> str:
    """An opaque token of data, readable for a few minutes. File links and the unlock
    cookie are sealed with the same keys: each token says what it is for."""
    return keyring().encrypt_at(json.dumps({"u": purpose, **data}).encode(),
                                unix_seconds(now)).decode("ascii")


def open_token(purpose: str, token: str | None, seconds: int, now: datetime) -> dict | None:
    """The data of a token sealed for this purpose under `seconds` ago, else None."""
    if not token or not token.isascii():
        return None
    try:
        raw = keyring().decrypt_fresh(token.encode("ascii"), seconds, unix_seconds(now))
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeError):
        return None
    return data if isinstance(data, dict) and data.get("u") == purpose else None


def file_link_token(push_file: PushFile, key: bytes | None, now: datetime) -> str:
    """Return an opaque download token for one file of a granted view, valid a few minutes.
    It names the push by its creation time too (to the microsecond), as ids are not enough:
    SQLite gives the highest ids again once their rows are deleted, so within the link's
    minutes another sender's new file push could have them."""
    push = db.session.get(Push, push_file.push_id)  # (the view's push: no query)
    return seal_token("file", {"f": push_file.id, "p": push_file.push_id, "c": _link_time(push.created_at),
                               "k": key.decode("ascii") if key else None}, now)


def _link_time(created_at: datetime) -> str:
    return created_at.isoformat(timespec="microseconds")


def open_file(token: str, now: datetime) -> "FileDownload":
    """One file of a download token, open on a read snapshot of its own (see FileDownload);
    NotFound when stale or the push expired or ran out of time."""
    data = open_token("file", token, FILE_LINK_SECONDS, now)
    if not (data and isinstance(data.get("f"), int) and isinstance(data.get("p"), int)
            and isinstance(data.get("c"), str) and isinstance(data.get("k"), (str, type(None)))):
        raise NotFound()
    key = data["k"].encode("ascii") if data.get("k") else None
    conn = db.engine.connect()
    try:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        conn.execution_options(read_snapshot=True)
        row = conn.execute(
            select(PushFile.id, PushFile.filename, PushFile.size, PushFile.ciphertext, Push.expired,
                   Push.expires_at, Push.created_at)
            .join(Push, Push.id == PushFile.push_id)
            .where(PushFile.id == data["f"], PushFile.push_id == data["p"])).first()
        # Out of time is expired, whether or not a read has written it so yet.
        if (row is None or _link_time(row.created_at) != data["c"]
                or row.expired or row.expires_at <= now):
            raise NotFound()
    except BaseException:
        conn.close()
        raise
    return FileDownload(row, conn, key)


class FileDownload:
    """A file of a download token (row: filename, size) and the snapshot its bytes are read
    from: a connection of its own for as long as the download lasts (no write lock:
    PostgreSQL REPEATABLE READ, SQLite a plain BEGIN in WAL mode), so that a download under
    way ends whole even if the push expires meanwhile (the last viewer's window), and never
    mixes parts of two files. select() chooses the bytes; the object is then the response's
    body, its parts read and decrypted one at a time as they are sent (only the parts those
    bytes are in); the snapshot ends once they are, or at close() (the server's, also when
    nothing was sent: a HEAD, a 416)."""

    def __init__(self, row: Row, conn, key: bytes | None):
        self.row, self.size, self._conn, self._key = row, row.size, conn, key
        self.etag: str | None = None
        self._chunks: Iterator[bytes] = iter(())
        self._pending = None  # the generator behind _chunks, to close

    def select(self, start: int, stop: int) -> None:
        """Send bytes start..stop-1. The first part they are in is decrypted here, so that a
        key that does not open it fails before the response starts; it sets etag, a strong
        validator of the file: a digest of the random mark its parts carry, which tells
        nothing of its content or the keys (None for a file stored before parts)."""
        self._close_chunks()
        chunks = self._read(start, stop)
        first = next(chunks)
        self._chunks = itertools.chain([first], chunks)
        self._pending = chunks

    def _read(self, start: int, stop: int) -> Iterator[bytes]:
        if self.row.ciphertext:  # stored before files had parts: one token
            yield keyring().open(self.row.ciphertext, self._key)[start:stop]
            return
        size, chunk = self.size, crypto.FILE_CHUNK
        first, last = start // chunk, max(start, stop - 1) // chunk
        result = self._conn.execute(
            select(PushFilePart.ciphertext).where(PushFilePart.file_id == self.row.id).order_by(PushFilePart.id)
            .offset(first).limit(last - first + 1).execution_options(yield_per=1))
        try:
            parts = keyring().open_part_run(result.scalars(), self._key, first, last + 1,
                                            count=max(1, -(-size // chunk)))
            for index, (mark, data) in enumerate(parts, first):
                if len(data) != min(chunk, size - index * chunk):  # (the row's size is the parts')
                    raise crypto.InvalidToken()
                self.etag = crypto.file_tag(mark)
                yield data[max(0, start - index * chunk):stop - index * chunk]
        finally:
            result.close()

    def _close_chunks(self) -> None:
        if self._pending is not None:
            self._pending.close()

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._chunks
        finally:  # (sent whole, or the client went away)
            self.close()

    def close(self) -> None:
        """End the snapshot: its transaction, and the connection back to the pool."""
        try:
            self._close_chunks()
        finally:
            self._conn.close()


# ----------------------------------------------------------------------------- manage

def _reread(push: Push):
    """Load the push's row again, which another request has just written; NotFound when a
    purge-expired has deleted it meanwhile (a refresh would raise: a 500)."""
    if db.session.scalar(select(Push).where(Push.id == push.id)
                         .execution_options(populate_existing=True)) is None:
        db.session.rollback()
        raise NotFound()


@_caller_may_be_gone
def expire_now(url_token: str, actor: Actor, now: datetime) -> tuple[Push, bool]:
    """Delete a push's content at once: its owner, or anyone if deletable_by_viewer.
    Return the push and whether this call deleted it (False: it had already expired)."""
    push = find(url_token)
    if not (is_owner(push, actor.user) or push.deletable_by_viewer is True):
        raise NotDeletable()
    deleted = not push.expired and _expire(push, now, deletion=True)
    if deleted:
        _log(push, AuditKind.expire, actor, now)
        current_app.logger.info("push %s deleted", push.id)
    elif not push.expired:  # a concurrent request expired it first: answer as it left the row
        _reread(push)
    db.session.commit()
    return push, deleted


def what_is_left(push: Push, now: datetime) -> dict:
    """The days (upstream's whole days) and views a push has left."""
    return {"days": days_remaining(push, now), "views": views_remaining(push)}


def edit_bounds(push: Push, now: datetime, view_count: int | None = None) -> dict:
    """The days and views an edit may leave from now: the kind's minimum, and what its
    maximum, counted from creation (days) and from the first view (views: view_count, else
    the push's as read), leaves."""
    cfg, kind = current_app.config, push.kind_name

    def setting(what, end):
        return kind_setting(cfg, kind, f"EXPIRE_AFTER_{what}_{end}")

    used = {"DAYS": (now - push.created_at).days, "VIEWS": push.view_count if view_count is None else view_count}
    return {what.lower(): (setting(what, "MIN"), max(setting(what, "MIN"), setting(what, "MAX") - used[what]))
            for what in ("DAYS", "VIEWS")}


def edit(url_token: str, changes: Changes, actor: Actor, now: datetime,
         form_errors: dict | None = None) -> tuple[Push, bool] | None:
    """Its owner changes a live push: the days and views left from now (a number equal to
    what is left leaves it, so a push made for 5 minutes keeps its minutes), the retrieval
    step, viewer deletion (as the kind's settings allow), name and note, and adds files to a
    file push (within a new push's limits, counted with the files it has); one transaction,
    logged as `edit`. The payload, passphrase (part of the payload's key) and kind stay.
    Returns the push and whether anything was written (a save that changes nothing writes
    and logs nothing). Forbidden for anyone else; None when the push has expired, before or
    while it is edited; ValidationFailed, or TooManyAttempts (see _files_key), with nothing
    written. form_errors (the web form's emptied number boxes, None in changes) are said with
    the edit's own errors: with any, ValidationFailed whatever the rest."""
    push = get(url_token, now)
    if not is_owner(push, actor.user):
        raise Forbidden()
    if push.expired or push.past_limits(now):  # (its last viewer's files wait: not an edit's)
        return None
    values = _edit_values(push, changes, now, form_errors)
    key = _files_key(push, changes, actor, now) if changes.files else None
    # The push's row locked first, then the limits checked again: of two edits at once,
    # the second counts the files the first added (else both could pass the caps).
    if not _lock_live(push, now):
        db.session.rollback()  # a view used it up meanwhile
        return None
    if not changes.files and _unchanged(push, values, changes.note):
        db.session.rollback()  # (the lock) Nothing to write, nor to log.
        return push, False
    if changes.files:
        errors = _validate_files(changes.files, current_app.config, _kept_files(push))
        if errors:
            db.session.rollback()
            raise ValidationFailed(errors)
        _store_files(push.id, changes.files, key)
    if "expire_after_views" in values:
        # The count under the lock: views counted since the push was read (before the lock, or
        # before a passphrase check's commit) use up the kind's maximum too, else the total
        # passed it by as many.
        count = db.session.scalar(select(Push.view_count).where(Push.id == push.id))
        values["expire_after_views"] = count + min(changes.views_left, edit_bounds(push, now, count)["views"][1])
    db.session.execute(update(Push).where(Push.id == push.id).values(values)
                       .execution_options(synchronize_session=False))
    _log(push, AuditKind.edit, actor, now)
    db.session.commit()
    if changes.files:
        current_app.logger.info("push %s: %d files added", push.id, len(changes.files))
    _reread(push)
    return push, True


def _unchanged(push: Push, values: dict, note: str) -> bool:
    """Tell whether an edit's new values (_edit_values') are the push's own."""
    limits = ("expires_at", "expire_after_days", "expire_after_views")
    return (not any(k in values for k in limits) and note == note_of(push)
            and all(values[k] == getattr(push, k) for k in ("name", "retrieval_step", "deletable_by_viewer")
                    if k in values))


def _edit_values(push: Push, changes: Changes, now: datetime, form_errors: dict | None = None) -> dict:
    """Validate an edit (the files against what the push has now: edit checks them again
    under the row's lock; a passphrase to add them must be given, checked by _files_key
    only once all else is valid, as the check counts) and return the push's new column
    values. form_errors: as edit's, said with these."""
    cfg, kind = current_app.config, push.kind_name
    errors = dict(form_errors or {})
    bounds = edit_bounds(push, now)
    left = what_is_left(push, now)
    for what, value in (("days", changes.days_left), ("views", changes.views_left)):
        low, high = bounds[what]
        if value is not None and not changes.keeps(what, left[what]) and not low <= value <= high:
            errors[f"expire_after_{what}"] = [f"must be from {low} to {high}"]
    if len(changes.note) > NOTE_MAX:
        errors["note"] = [f"is too long (maximum is {NOTE_MAX} characters)"]
    if changes.files:
        errors.update({"files": ["Only a file push has files."]} if push.kind != Kind.file
                      else _validate_files(changes.files, cfg, _kept_files(push)))
        if push.kind == Kind.file and push.has_passphrase and not changes.passphrase:
            errors["passphrase"] = [PASSPHRASE_FOR_FILES]
    if errors:
        raise ValidationFailed(errors)
    values = {"name": changes.name, "updated_at": now,
              "retrieval_step": changes.retrieval_step and bool(kind_setting(cfg, kind, "ENABLE_RETRIEVAL_STEP")),
              "note_ciphertext": keyring().encrypt(changes.note.encode("utf-8")) if changes.note else None}
    if push.kind != Kind.url:
        values["deletable_by_viewer"] = changes.deletable_by_viewer and bool(
            kind_setting(cfg, kind, "ENABLE_DELETABLE_PUSHES"))
    if not changes.keeps("days", left["days"]):
        # Never past the kind's longest life from creation (upstream bounds the total).
        longest = push.created_at + timedelta(days=kind_setting(cfg, kind, "EXPIRE_AFTER_DAYS_MAX"))
        values["expires_at"] = min(now + timedelta(days=changes.days_left), longest)
        values["expire_after_days"] = (now - push.created_at).days + changes.days_left
    if not changes.keeps("views", left["views"]):
        values["expire_after_views"] = None  # (edit counts it under the row's lock)
    return values


PASSPHRASE_FOR_FILES = "Enter this push's passphrase to add files: they are encrypted with it."
PASSPHRASE_NOT_THE_PUSHS = "That is not this push's passphrase: enter the one it was made with."


def _files_key(push: Push, changes: Changes, actor: Actor, now: datetime) -> bytes | None:
    """The key to seal files added to a push with: none without a passphrase, else the key
    derived from its passphrase, which the changes carry (_edit_values says when they do
    not; the server keeps no key that opens the files). Checked as a recipient's is: counted, 5 a minute (TooManyAttempts),
    and committed before the edit's transaction; a wrong one logged as failed_passphrase."""
    if not push.has_passphrase:
        return None
    _throttle_passphrase(push, now)
    try:
        key = _passphrase_gate(push, changes.passphrase, None, actor, now)
    except PassphraseIncorrect:
        raise ValidationFailed({"passphrase": [PASSPHRASE_NOT_THE_PUSHS]}) from None
    db.session.commit()  # (the attempt counts, whatever the edit meets next)
    return key


def _lock_live(push: Push, now: datetime) -> bool:
    """Lock the push's row until this transaction ends; tell whether it is still live (SQLite:
    its BEGIN IMMEDIATE holds the database's write lock). Of two writers at once, the second
    then reads what the first left."""
    return db.session.scalar(
        select(Push.id).where(Push.id == push.id, _claimable(now)).with_for_update()) is not None


def _kept_files(push: Push) -> tuple[int, int]:
    """How many files a push has, and their bytes."""
    count, size = db.session.execute(select(func.count(), func.coalesce(func.sum(PushFile.size), 0))
                                     .where(PushFile.push_id == push.id)).one()
    return count, int(size)


def remove_file(url_token: str, file_id: int, actor: Actor, now: datetime) -> str | None:
    """Its owner removes one file of a live file push, never the last (upstream's
    delete_file); logged as `edit`. Return the removed file's name; None when the push has
    expired or the file is not one of its, or is its last (nothing written). Forbidden for
    anyone else."""
    push = get(url_token, now)
    if not is_owner(push, actor.user):
        raise Forbidden()
    # The push's row locked first: of two removals at once, the second counts what the
    # first left (else both could see two files and leave none).
    files = files_of(push) if _lock_live(push, now) else []
    removed = next((f for f in files if f.id == file_id), None)
    if removed is None or len(files) < 2:
        db.session.rollback()
        return None
    name = removed.filename
    db.session.execute(delete(PushFile).where(PushFile.id == removed.id))  # (its parts: ON DELETE CASCADE)
    _log(push, AuditKind.edit, actor, now)
    db.session.commit()
    return name


KEY_CHECK_ID = 1
KEY_CHECK_VALUE = b"pwpush master key check"


def keys_are_the_databases(write: bool = True) -> bool:
    """Tell whether the master keys open the database's key check. A database without one
    (new, or from before the check) gets it, under the first key, if the keys open a stored
    secret (unless not write: the command line's); when several instances start at once,
    the first to write it wins."""
    token = db.session.scalar(select(KeyCheck.token).where(KeyCheck.id == KEY_CHECK_ID))
    if token is None:
        if not keys_open_stored_secrets():
            return False
        if not write:
            db.session.commit()
            return True
        db.session.add(KeyCheck(id=KEY_CHECK_ID, token=keyring().encrypt(KEY_CHECK_VALUE)))
        try:
            db.session.commit()
        except IntegrityError:  # another instance wrote it first
            db.session.rollback()
        token = db.session.scalar(select(KeyCheck.token).where(KeyCheck.id == KEY_CHECK_ID))
    db.session.commit()
    return keyring().opens(token)


SECRET_KEY_CHECK_ID = 2  # (a digest, not a Fernet token: SECRET_KEY signs; it encrypts nothing)


def secret_key_is_the_databases(secret_key: str) -> bool:
    """Record a digest of the SECRET_KEY this instance signs sessions and forms with; tell
    whether the one recorded before (by another instance, or this one's last start) was the
    same. Several instances behind one load balancer must share it; a deliberate change
    differs once, at its first start."""
    digest = hmac.new(secret_key.encode("utf-8"), b"pwpush secret key check", "sha256").digest()
    check = db.session.get(KeyCheck, SECRET_KEY_CHECK_ID, with_for_update=True)
    same = check is None or hmac.compare_digest(check.token, digest)
    if check is None:
        db.session.add(KeyCheck(id=SECRET_KEY_CHECK_ID, token=digest))
    elif not same:
        check.token = digest
    try:
        db.session.commit()
    except IntegrityError:  # another instance starting meanwhile wrote its own first
        db.session.rollback()
        return secret_key_is_the_databases(secret_key)
    return same


def keys_open_stored_secrets() -> bool:
    """Tell whether the master keys open the stored secrets, tried on one: a live push's
    payload (found through the expiry index), else an owned push's note (kept after expiry;
    through the owner index). True when there is neither."""
    token = db.session.scalar(
        select(Push.payload_ciphertext).where(Push.expired == false(), Push.payload_ciphertext.is_not(None))
        .order_by(Push.expires_at.desc()).limit(1))
    if token is None:
        token = db.session.scalar(select(Push.note_ciphertext).where(
            Push.user_id.is_not(None), Push.note_ciphertext.is_not(None)).limit(1))
    return token is None or keyring().opens(token)


def owned(url_token: str, user: User | None) -> Push:
    """Return a push its owner asks about; Forbidden for anyone else (as upstream)."""
    push = find(url_token)
    if not is_owner(push, user):
        raise Forbidden()
    return push


def audit_log(push: Push, page: int) -> list[AuditLog]:
    """One page (50) of a push's audit events, oldest first."""
    return list(db.session.scalars(
        select(AuditLog).where(AuditLog.push_id == push.id).order_by(AuditLog.id)
        .limit(PER_PAGE).offset((page - 1) * PER_PAGE)))


def list_for(user: User, expired: bool, page: int, per_page: int = PER_PAGE) -> list[Push]:
    """One page of a user's active or expired pushes, newest first."""
    return list(db.session.scalars(
        select(Push).where(Push.user_id == user.id, Push.expired == expired)
        .order_by(Push.created_at.desc(), Push.id.desc())
        .limit(per_page).offset((page - 1) * per_page)))


def count_for(user: User, expired: bool) -> int:
    """How many active or expired pushes a user has."""
    return db.session.scalar(
        select(func.count()).where(Push.user_id == user.id, Push.expired == expired))


class Account(NamedTuple):
    """An account as `users list` and the administration page show it."""

    user: User
    live_pushes: int


def accounts(page: int = 1, per_page: int | None = None) -> list[Account]:
    """The accounts, oldest first, each with how many live (not expired) pushes it has: one
    page of them, or all without per_page."""
    live = (select(func.count()).where(Push.user_id == User.id, Push.expired == false())
            .correlate(User).scalar_subquery())
    query = select(User, live).order_by(User.id)
    if per_page:
        query = query.limit(per_page).offset((page - 1) * per_page)
    return [Account(user, count) for user, count in db.session.execute(query)]


def count_accounts() -> int:
    """How many accounts there are."""
    return db.session.scalar(select(func.count()).select_from(User))


def view_counts(push: Push) -> dict:
    """How many events of each kind (by name) the push's audit log holds: the owner's pages
    show its views, failed views and failed passphrases."""
    rows = db.session.execute(
        select(AuditLog.kind, func.count()).where(AuditLog.push_id == push.id)
        .group_by(AuditLog.kind)).all()
    return {AuditKind(k).name: n for k, n in rows}


# ----------------------------------------------------------------------------- maintenance

def _delete_pushes(where) -> int:
    ids = select(Push.id).where(*where)
    db.session.execute(delete(PushFile).where(PushFile.push_id.in_(ids)))
    db.session.execute(delete(NotifyByEmail).where(NotifyByEmail.push_id.in_(ids)))
    db.session.execute(delete(AuditLog).where(AuditLog.push_id.in_(ids)))
    return db.session.execute(delete(Push).where(*where)).rowcount


def lock_pushes_of(user_id: int) -> int:
    """Lock an account's pushes' rows, in id order, until the transaction ends; return how
    many. A deletion of the account does so before it locks the account's row. A request
    holding one of the rows (a view counted) logs its event next, whose user_id waits for the
    account's row: held already, the two waited for each other (PostgreSQL aborts one as a
    deadlock: a 500)."""
    locked = select(Push.id).where(Push.user_id == user_id).order_by(Push.id).with_for_update().subquery()
    return db.session.scalar(select(func.count()).select_from(locked))  # (not the rows: 50 000 cost 0.2 s)


def count_pushes_of(user_id: int) -> int:
    """How many pushes an account has (a deletion's check that it locked them all)."""
    return db.session.scalar(select(func.count()).where(Push.user_id == user_id))


def delete_account(user: User) -> int:
    """Delete an account with its API token, its web sessions (ON DELETE CASCADE) and its
    pushes (payloads, files, audit logs), as upstream's admin deletes a user; its entries in
    other pushes' audit logs stay, without it (the foreign key sets NULL). Return how many
    pushes went."""
    # The account's row locked first: a push it creates meanwhile waits, then fails on the
    # foreign key, rather than outlive it as an anonymous push (SQLite: BEGIN IMMEDIATE).
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    count = _delete_pushes([Push.user_id == user.id])
    db.session.execute(delete(User).where(User.id == user.id))
    db.session.commit()
    return count


def purge(now: datetime) -> dict:
    """Expire what is past its limits and delete what expired long enough ago.

    Idempotent; returns counts for the summary line. On PostgreSQL each of its two steps is
    one statement, its own transaction, that first locks the pushes it acts on in id order
    (a CTE ... ORDER BY id FOR UPDATE: lock_pushes_of's and rotation_batch's order: an
    account's deletion and this purge, each locking in its own order, waited for each other,
    a deadlock) and then writes those pushes, their files and rows alone: pushes that begin
    to match meanwhile wait for the next run, not locked out of order. SQLite: one
    transaction, which holds the database's write lock from its start (BEGIN IMMEDIATE): no
    other writer, no order to keep.
    """
    steps = {name: where for name, where in _purge_steps(now).items() if where is not None}
    if db.session.get_bind().dialect.name == "postgresql":
        counts = _purge_in_id_order(steps, now)
    else:
        counts = _purge_at_once(steps, now)
    # Counter windows are at most a day long: anything that started a day ago is dead.
    db.session.execute(delete(Throttle).where(
        Throttle.window < unix_seconds(now) - 86400))
    db.session.commit()
    return counts


def _purge_at_once(steps: dict, now: datetime) -> dict:
    counts = dict.fromkeys(("expired", "files_deleted", "anonymous_deleted", "owned_deleted"), 0)
    counts["expired"] = db.session.execute(
        update(Push).where(steps["expire"]).values(expired_on=now, updated_at=now, **_EXPIRED_VALUES)
        .execution_options(synchronize_session=False)).rowcount
    counts["files_deleted"] = db.session.execute(delete(PushFile).where(
        PushFile.push_id.in_(select(Push.id).where(Push.expired == true())))).rowcount
    for name in ("anonymous", "owned"):
        if name in steps:
            counts[name + "_deleted"] = _delete_pushes([steps[name]])
    return counts


def _purge_in_id_order(steps: dict, now: datetime) -> dict:
    # 1. Expire, and delete the files of what is expired (in the same transaction).
    locked = (select(Push.id, steps["expire"].label("due")).where(or_(steps["expire"], steps["files"]))
              .order_by(Push.id).with_for_update().cte("locked"))
    expired = (update(Push).where(Push.id.in_(select(locked.c.id).where(locked.c.due)), steps["expire"])
               .values(expired_on=now, updated_at=now, **_EXPIRED_VALUES).returning(Push.id).cte("expired"))
    files = delete(PushFile).where(PushFile.push_id.in_(select(locked.c.id))).returning(PushFile.id).cte("files")
    row = db.session.execute(select(select(func.count()).select_from(expired).scalar_subquery(),
                                    select(func.count()).select_from(files).scalar_subquery())).one()
    db.session.commit()
    counts = {"expired": row[0], "files_deleted": row[1], "anonymous_deleted": 0, "owned_deleted": 0}
    # 2. Delete what expired long enough ago, with its files, e-mails and audit log.
    kept = [steps[name] for name in ("anonymous", "owned") if name in steps]
    if kept:
        locked = select(Push.id).where(or_(*kept)).order_by(Push.id).with_for_update().cte("locked")
        ids = select(locked.c.id)
        children = [delete(table).where(table.push_id.in_(ids)).returning(table.push_id).cte(f"gone_{i}")
                    for i, table in enumerate((PushFile, NotifyByEmail, AuditLog))]
        gone = delete(Push).where(Push.id.in_(ids)).returning(Push.user_id).cte("gone")
        row = db.session.execute(
            select(select(func.count()).select_from(gone).where(gone.c.user_id.is_(None)).scalar_subquery(),
                   select(func.count()).select_from(gone).where(gone.c.user_id.is_not(None)).scalar_subquery(),
                   *(select(func.count()).select_from(c).scalar_subquery() for c in children))).one()
        db.session.commit()
        counts["anonymous_deleted"], counts["owned_deleted"] = row[0], row[1]
    return counts


def _purge_steps(now: datetime) -> dict:
    """Which pushes purge expires, has files to delete, and deletes (anonymous, owned: None
    when the setting keeps them)."""
    cfg = current_app.config
    steps = {
        # A file push whose last view was just now keeps its files for that viewer's links.
        "expire": and_(Push.expired == false(), Push.past_limits(now),
                       ~Push.in_download_window(now, FILE_LINK_SECONDS)),
        "anonymous": None, "owned": None}
    # (those it expires now too: their files go with their ciphertext)
    steps["files"] = and_(or_(Push.expired == true(), steps["expire"]),
                          select(PushFile.id).where(PushFile.push_id == Push.id).exists())
    if cfg["PWP__PURGE_ANONYMOUS_AFTER"] is not None:
        steps["anonymous"] = and_(Push.expired == true(), Push.user_id.is_(None),
                                  Push.expired_on <= now - timedelta(seconds=cfg["PWP__PURGE_ANONYMOUS_AFTER"]))
    if cfg["PWP__PURGE_AFTER"] is not None:
        # One that sent mail today waits for tomorrow's run: the sender's daily cap counts them.
        sent_today = select(NotifyByEmail.id).where(NotifyByEmail.push_id == Push.id,
                                                    NotifyByEmail.created_at >= day_start(now))
        steps["owned"] = and_(Push.expired == true(), Push.user_id.is_not(None),
                              Push.expired_on <= now - timedelta(seconds=cfg["PWP__PURGE_AFTER"]),
                              ~sent_today.exists())
    return steps


def _rotated(ring: crypto.Keyring, token: bytes | None, push_id: int) -> bytes | None:
    if token is None:
        return None
    try:
        return ring.rotate(token)
    except crypto.KeyMismatch:
        raise crypto.KeyMismatch(f"push {push_id}") from None


def _rotate_user_secrets(ring):
    """Re-encrypt the accounts' two-factor secrets (pwp.twofactor) under the first key, in one
    transaction, their rows locked (a change meanwhile would be undone)."""
    rows = db.session.execute(select(User.id, User.otp_secret_ciphertext).where(
        User.otp_secret_ciphertext.is_not(None)).order_by(User.id).with_for_update()).all()
    for user_id, token in rows:
        try:
            rotated = ring.rotate(token)
        except crypto.KeyMismatch:
            db.session.rollback()
            raise crypto.KeyMismatch(f"user {user_id}'s two-factor secret") from None
        db.session.execute(update(User).where(User.id == user_id).values(otp_secret_ciphertext=rotated))
    db.session.commit()


def _rotate_key_check(ring):
    """Re-encrypt the key check under the first key, once every push is (an interrupted
    rotation leaves it under the old key: the new key alone cannot start yet), and retire
    the key it was under in the same commit (the other keys given, without a check): a
    server process that encrypts with that one (OLD,NEW) finds it at its next look at the
    changed check (keys_left_behind). A run that moves the database off no key (the check
    already under the first: a re-run, or one run with OLD,NEW) retires nothing, so the
    key meant next is not lost to a mistaken run."""
    first, *others = ring.fingerprints
    check = db.session.scalar(select(KeyCheck).where(KeyCheck.id == KEY_CHECK_ID).with_for_update())
    if check is not None:
        others = [ring.opener(check.token)]
        try:
            check.token = ring.rotate(check.token)
        except crypto.KeyMismatch:
            db.session.rollback()
            raise crypto.KeyMismatch("the database's key check") from None
    retired = set(db.session.scalars(select(RetiredKey.fingerprint)))
    now = database_now()
    for fingerprint in dict.fromkeys(others):
        if fingerprint not in retired and fingerprint != first:
            db.session.add(RetiredKey(fingerprint=fingerprint, retired_at=now))
    db.session.commit()


def rotation_batch(after_id: int, batch_size: int) -> list[Push]:
    """The next pushes to re-encrypt, locked until the batch commits: a view or a purge
    meanwhile would otherwise be undone by the batch's write (the ciphertext of an expired
    push back in its row). SQLite's transactions hold the write lock from their start."""
    return list(db.session.scalars(
        select(Push).where(Push.id > after_id).order_by(Push.id).limit(batch_size).with_for_update()))


def _stored_files(push_ids: list[int]) -> list[tuple]:
    """(table, row id, push id) of every stored file value of these pushes, in order."""
    whole_files = (select(PushFile.id, PushFile.push_id)  # (stored before files had parts)
                   .where(PushFile.push_id.in_(push_ids), func.length(PushFile.ciphertext) > 0))
    parts = (select(PushFilePart.id, PushFile.push_id).join(PushFile, PushFile.id == PushFilePart.file_id)
             .where(PushFile.push_id.in_(push_ids)).order_by(PushFilePart.id))
    return [(table, *row) for table, query in ((PushFile, whole_files), (PushFilePart, parts))
            for row in db.session.execute(query).all()]


def _rotate_stored(ring, table, row_id: int, push_id: int):
    """Re-encrypt one stored file value (a MiB at most) in a transaction of its own: a
    batch's files can be far larger than the memory, and take minutes to re-encrypt, with
    no push's row locked meanwhile. A value gone since (its push expired) stays gone."""
    token = db.session.scalar(select(table.ciphertext).where(table.id == row_id))
    if token:
        db.session.execute(update(table).where(table.id == row_id)
                           .values(ciphertext=_rotated(ring, token, push_id))
                           .execution_options(synchronize_session=False))
    db.session.commit()


def rotate_keys(batch_size: int = 1000, after_id: int = 0, progress=None, before_seal=None) -> int:
    """Re-encrypt every stored secret under the first master key, batch by batch: a batch's
    payloads and notes in one transaction, then their files a value at a time; at the end
    the accounts' two-factor secrets, then the key check, retiring the key it was under.

    Each batch commits, so an interrupted run resumes with after_id = the last id printed.
    before_seal: called once every push is re-encrypted (it may raise to stop before the
    two-factor secrets and the key check); the pushes stored meanwhile are re-encrypted after.
    """
    ring = keyring()
    done = 0
    while True:
        pushes = rotation_batch(after_id, batch_size)
        if not pushes and before_seal is not None:
            before_seal()
            before_seal = None
            continue
        if not pushes:
            _rotate_user_secrets(ring)
            _rotate_key_check(ring)
            return done
        ids = [p.id for p in pushes]
        try:
            for push in pushes:
                push.payload_ciphertext = _rotated(ring, push.payload_ciphertext, push.id)
                push.note_ciphertext = _rotated(ring, push.note_ciphertext, push.id)
            files = _stored_files(ids)
            db.session.commit()
            db.session.expunge_all()
            for table, row_id, push_id in files:
                _rotate_stored(ring, table, row_id, push_id)
        except crypto.KeyMismatch:
            db.session.rollback()
            raise
        done += len(pushes)
        after_id = ids[-1]
        if progress:
            progress(after_id, done)


# --- added for the web UI

def count_attempt(key: str, period: int, now: datetime) -> int:
    """Count one event (a sign-in attempt) in a shared fixed window, commit; return the count."""
    count = throttle_hit(key, period, now)
    db.session.commit()
    return count
