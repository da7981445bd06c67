"""Database models: users and their web sessions, pushes, their files and files' parts, the
audit log, e-mail notifications, throttle counters, the key check and the running instances'
keys."""
import enum
import os
import re
import unicodedata
from datetime import datetime, timedelta

from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, Text,
                        LargeBinary, SmallInteger, String, TypeDecorator, false, text)
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import DeclarativeBase, Mapped, configure_mappers, mapped_column
from sqlalchemy.orm.attributes import set_committed_value


class Base(DeclarativeBase):
    """Declarative base for every model."""


# Objects keep what they hold across a commit (the code keeps them in step with what it
# writes: keep_written). Expired on commit, an answer built after the commit reloaded its
# push, and a purge-expired deleting the row in between made that a 500 after the view
# was counted: the payload lost.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


class Kind(enum.IntEnum):
    """Push kinds, stored as upstream's integers."""

    text = 0
    file = 1
    url = 2
    qr = 3


class AuditKind(enum.IntEnum):
    """Audit log event kinds, stored as upstream's integers."""

    creation = 0
    view = 1
    failed_view = 2
    expire = 3
    failed_passphrase = 4
    admin_view = 5
    owner_view = 6
    edit = 7
    creation_email_send = 8


class User(UserMixin, db.Model):
    """An account: signs in on the web, authenticates the API with a token."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 hex digest of the API token; the token itself is shown once.
    api_token_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # Account e-mails (PWP__ENABLE_USER_ACCOUNT_EMAILS, pwp.account_mail), Devise's columns:
    # each mailed token kept as its SHA-256 digest, as the API token. Deferred: loading a
    # session's user on each request does not read them.
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime, deferred=True, deferred_group="mail")
    confirmation_token_digest: Mapped[str | None] = mapped_column(
        String(64), unique=True, index=True, deferred=True, deferred_group="mail")
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(DateTime, deferred=True, deferred_group="mail")
    reset_password_token_digest: Mapped[str | None] = mapped_column(
        String(64), unique=True, index=True, deferred=True, deferred_group="mail")
    reset_password_sent_at: Mapped[datetime | None] = mapped_column(DateTime, deferred=True, deferred_group="mail")
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"), deferred=True,
                                                 deferred_group="mail")
    unlock_token_digest: Mapped[str | None] = mapped_column(
        String(64), unique=True, index=True, deferred=True, deferred_group="mail")
    locked_at: Mapped[datetime | None] = mapped_column(DateTime, deferred=True, deferred_group="mail")
    # Two-factor authentication (pwp.twofactor): when it was turned on (None: off; read with
    # the account, as PWP__REQUIRE_MFA asks of every request), the TOTP secret as a master
    # key token (re-encrypted by rotate-key), and the last time step accepted (a code is
    # good once).
    otp_enabled_at: Mapped[datetime | None] = mapped_column(DateTime)
    otp_secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True, deferred_group="otp")
    otp_last_step: Mapped[int | None] = mapped_column(BigInteger, deferred=True, deferred_group="otp")

    # The web session this object was loaded or signed in for (pwp.auth): what Flask-Login
    # keeps in the session cookie. Not a column.
    session_id = None

    def get_id(self) -> str | None:
        """What a session cookie keeps of its user: the random id of its UserSession row."""
        return self.session_id

    # UserMixin compares users by get_id(): two accounts loaded without a session would be
    # equal. The identity map gives one object per row: compare objects (and hash them so:
    # a class that sets __eq__ alone is unhashable).
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__


class UserSession(db.Model):
    """One browser's sign-in (pwp.auth): the cookie holds a random id, this row its digest,
    so a copy of the database signs no one in. Signing out deletes the row, a new password
    deletes the account's, and so does the account's deletion (ON DELETE CASCADE)."""

    __tablename__ = "user_sessions"
    # SHA-256 hex digest of the session id.
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class OtpBackupCode(db.Model):
    """One unused backup code of an account's two-factor authentication (pwp.twofactor), as
    its digest: a use deletes the row, and so does the account's deletion (ON DELETE CASCADE)."""

    __tablename__ = "otp_backup_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64))


# Partial indexes: a create of an anonymous push (most of them) writes two index entries
# fewer. The queries' `user_id = ?` and `expired_on <= ?` imply the conditions. The
# PostgreSQL spelling is added by use_postgresql(): declared here, it would load
# SQLAlchemy's PostgreSQL dialect into every SQLite worker (~2 MiB each).
_PARTIAL = {"ix_pushes_user_expired_created": "user_id IS NOT NULL",
            "ix_pushes_expired_on": "expired_on IS NOT NULL"}


class PushRules:
    """What a push tells from its own columns: shared by the mapped Push and by PushRow."""

    @hybrid_method
    def past_limits(self, now):
        """The expiry rule, in Python on a row and in SQL on the class: out of time or views."""
        return (self.expires_at <= now) | (self.view_count >= self.expire_after_views)

    @hybrid_method
    def in_download_window(self, now, seconds):
        """A file push viewed under `seconds` ago and not out of time: its viewer's download
        links still work (in Python on a row, in SQL on the class)."""
        return ((self.kind == int(Kind.file)) & (self.expires_at > now)
                & (self.updated_at > now - timedelta(seconds=seconds)))

    @property
    def views_used_up(self) -> bool:
        """Tell whether the view just counted was the last one allowed."""
        return self.view_count >= self.expire_after_views

    @property
    def has_passphrase(self) -> bool:
        """Tell whether a passphrase guards the payload."""
        return self.passphrase_verifier is not None

    @property
    def kind_name(self) -> str:
        """Return the kind as upstream's word (text, file, url, qr)."""
        return Kind(self.kind).name


class PushRow(PushRules):
    """A push's columns as the hot paths wrote or claimed them (pwp.fastsql), read like a
    detached Push: plain attributes, without the ORM's per-object state and instrumented
    attribute reads (~75k instructions per create or retrieval, bench/PROFILE.md)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)

    def keep_written(self, values: dict):
        """Take in column values just written to its row."""
        self.__dict__.update(values)


class Push(PushRules, db.Model):
    """A secret with its limits; the payload is gone once it expires."""

    __tablename__ = "pushes"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[int] = mapped_column(SmallInteger)
    url_token: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(255), default="")
    expire_after_days: Mapped[int] = mapped_column(Integer)
    expire_after_views: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    # Counted views: 'view' and 'failed_view' events, as upstream counts them.
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[bool] = mapped_column(Boolean, default=False)
    expired_on: Mapped[datetime | None] = mapped_column(DateTime)
    # True once a person deleted it (an 'expire' audit event exists).
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    deletable_by_viewer: Mapped[bool | None] = mapped_column(Boolean)
    retrieval_step: Mapped[bool] = mapped_column(Boolean, default=False)
    payload_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    note_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    passphrase_salt: Mapped[bytes | None] = mapped_column(LargeBinary)
    passphrase_verifier: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        # Dashboards and the v2 active/expired lists: one user's pushes, newest first.
        # Partial (see _PARTIAL): anonymous pushes, most of them, never enter it.
        Index("ix_pushes_user_expired_created", "user_id", "expired", "created_at",
              sqlite_where=text(_PARTIAL["ix_pushes_user_expired_created"])),
        # purge-expired: what is live but past its time, and what expired long ago.
        Index("ix_pushes_expired_expires_at", "expired", "expires_at"),
        Index("ix_pushes_expired_on", "expired_on", sqlite_where=text(_PARTIAL["ix_pushes_expired_on"])),
    )

    def keep_written(self, values: dict):
        """Take in column values just written to its row, as loaded (not pending) values."""
        for key, value in values.items():
            set_committed_value(self, key, value)


# What a file's name may not hold (each one becomes "-"): control characters, which no header
# or saved name carries; bidi controls, which show "evil\u202etxt.exe" as "evilexe.txt"; path
# separators, which a client saving the file by its name would follow. (Upstream's storage,
# ActiveStorage::Filename#sanitized, replaces U+202E, tab, CR, LF, slashes and `%$|:;`; those
# five are harmless here, as the download's filename* percent-encodes them.)
_NOT_IN_A_FILE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069/\\]")


FILE_NAME_MAX = 255  # bytes in UTF-8: file systems' limit (ext4, APFS; NTFS counts 255 UTF-16 units)
_LONGEST_TYPE = 16  # a longer "extension" is no file type worth keeping over the name's start


def file_name(sent: str) -> str:
    """An uploaded file's name as stored, shown and downloaded: trimmed, each character of
    _NOT_IN_A_FILE_NAME replaced by "-"; "" for a name of nothing visible (zero-width and
    other format characters: its link could be neither seen nor clicked), or of dots only
    (.. no client can save); a name longer
    than a file system allows cut before its extension, which keeps the file's type."""
    name = _NOT_IN_A_FILE_NAME.sub("-", sent.strip())
    if all(c.isspace() or c == "." or unicodedata.category(c) == "Cf" for c in name):
        return ""
    if len(name.encode("utf-8", "surrogatepass")) > FILE_NAME_MAX:
        stem, extension = os.path.splitext(name)
        if len(extension) > _LONGEST_TYPE:
            stem, extension = name, ""
        room = FILE_NAME_MAX - len(extension.encode("utf-8", "surrogatepass"))
        # (a character cut in the middle is dropped)
        name = stem.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore") + extension
    return name


class FileName(TypeDecorator):
    """A file's name column, read as a new upload's name is stored (file_name; "file" when
    nothing is left): a row written before uploads were sanitized is output safe too, by
    every reader (JSON, pages, the download's Content-Disposition)."""

    impl = String
    cache_ok = True

    def process_result_value(self, value, dialect):
        return None if value is None else file_name(value) or "file"


class PushFile(db.Model):
    """One attached file, encrypted; deleted when its push expires."""

    __tablename__ = "push_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    push_id: Mapped[int] = mapped_column(ForeignKey("pushes.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(FileName(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    # A file stored before PushFilePart (the whole file, one token; loaded only where it is
    # opened or re-encrypted); empty since: the file is in its parts.
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class PushFilePart(db.Model):
    """One encrypted part of a file (crypto.FILE_CHUNK bytes of it): a file goes to and from
    the database driver a part at a time, never whole; deleted with its file (ON DELETE
    CASCADE)."""

    __tablename__ = "push_file_parts"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("push_files.id", ondelete="CASCADE"), index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class AuditLog(db.Model):
    """One event in a push's history."""

    __tablename__ = "audit_logs"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    push_id: Mapped[int] = mapped_column(ForeignKey("pushes.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    kind: Mapped[int] = mapped_column(SmallInteger)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    referrer: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_audit_logs_push_id_id", "push_id", "id"),)


class NotifyStatus(str, enum.Enum):
    """Where a notification by e-mail stands (upstream's words)."""

    pending = "pending"
    processing = "processing"
    completed = "completed"
    partially_failed = "partially_failed"
    failed = "failed"


class NotifyByEmail(db.Model):
    """One sending of a push's link to up to 5 addresses (upstream's NotifyByEmail); its
    creation_email_send audit event shows it. Deleted with its push."""

    __tablename__ = "notify_by_emails"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    push_id: Mapped[int] = mapped_column(ForeignKey("pushes.id", ondelete="CASCADE"), index=True)
    audit_log_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("audit_logs.id", ondelete="CASCADE"),
        index=True)
    # The sender, for the daily cap (kept if the account goes: the push goes with it).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Validated addresses, comma-separated as sent ("a@example.com,b@example.com").
    recipients: Mapped[str] = mapped_column(String(1300))
    locale: Mapped[str] = mapped_column(String(16), default="en")
    # Scheme and host of the link: the configured one when it was queued (config.mail_base_url;
    # never the request's Host). No token.
    base_url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=NotifyStatus.pending.value)
    successful_sends: Mapped[str | None] = mapped_column(String(1300))
    error_message: Mapped[str | None] = mapped_column(String(1000))
    proceed_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        # The daily cap: one user's sendings since midnight.
        Index("ix_notify_by_emails_user_created", "user_id", "created_at"),
        # Recovery (purge-expired): what was left pending.
        Index("ix_notify_by_emails_status_created", "status", "created_at"),
    )

    @property
    def recipient_list(self) -> list[str]:
        """The addresses, one by one."""
        return [r for r in self.recipients.split(",") if r]


class Throttle(db.Model):
    """A fixed-window counter shared by every worker and instance (passphrase, sign-in,
    sign-up and password-change attempts)."""

    __tablename__ = "throttles"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class KeyCheck(db.Model):
    """A known value encrypted under the master keys of the database's secrets (one row,
    written at the first start, re-encrypted by rotate-key): start-up refuses keys that do
    not open it, even with no push stored, where an instance that made its own key would
    otherwise write pushes that the others cannot read."""

    __tablename__ = "key_check"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[bytes] = mapped_column(LargeBinary)


class RetiredKey(db.Model):
    """A master key rotate-key moved the database off (the one its key check was under),
    as its fingerprint (never the key), written with the key check's re-encryption: a server
    process whose first key is one encrypts nothing with it (pwp.pushes.keys_left_behind);
    rotate-key refuses to move the database back to one."""

    __tablename__ = "retired_keys"
    fingerprint: Mapped[str] = mapped_column(String(16), primary_key=True)
    retired_at: Mapped[datetime] = mapped_column(DateTime)


class InstanceKeys(db.Model):
    """A server process's master keys, as fingerprints (never the keys): written at its start
    and every minute, marked ended as it ends (pwp.instances); rotate-key refuses while a
    process seen lately lacks its new key."""

    __tablename__ = "instance_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # (random, the process's)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    keys: Mapped[str] = mapped_column(Text)  # fingerprints, comma-separated, the encrypting one first
    started_at: Mapped[datetime] = mapped_column(DateTime)
    seen_at: Mapped[datetime] = mapped_column(DateTime)
    # Its machine's boot, PID namespace, start time and process group (pwp.instances.process_mark;
    # None where there is no /proc): rotate-key there tells a process killed without ending is
    # gone once no process is left in its group.
    process: Mapped[str | None] = mapped_column(String(120), nullable=True)
    # When it ended (None: running, or killed): kept, rotate-key's looks before and after its
    # seal count a process on the old key that ran during the rotation.
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


# At import (a worker's start) rather than inside its first request.
configure_mappers()


def use_postgresql():
    """Give the partial indexes their PostgreSQL condition (before creating tables there)."""
    for index in Push.__table__.indexes:
        if index.name in _PARTIAL:
            index.dialect_kwargs["postgresql_where"] = text(_PARTIAL[index.name])


def schema_sql(dialect_name="sqlite") -> str:
    """Render the CREATE statements for every table and index."""
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    if dialect_name == "postgresql":
        use_postgresql()
    dialect = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}[dialect_name]
    parts = []
    for table in Base.metadata.sorted_tables:
        parts.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";")
        for index in sorted(table.indexes, key=lambda i: i.name):
            parts.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";")
    return "\n\n".join(parts) + "\n"

