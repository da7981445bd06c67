"""Authentication: browser sessions (Flask-Login) and API tokens, stored as digests."""
import hmac
import re
import secrets
import unicodedata
from datetime import datetime, timedelta
from functools import cache, wraps

from flask import abort, after_this_request, current_app, flash, g, redirect, request, session, url_for
from flask_login import LoginManager, current_user
from sqlalchemy import DateTime, delete, insert, literal, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from werkzeug.security import check_password_hash, generate_password_hash

from . import has_cookies, pushes
from .crypto import digest_token
from .errors import SignInRequired, api_error
from .models import User, UserSession, db
from .pushes import Actor, utcnow


class _LoginManager(LoginManager):
    """Flask-Login, minus its after-request session lookups when the session is empty."""

    def _update_remember_cookie(self, response):
        # Remember-me state lives in the session: an empty one (every API call) has none.
        if not session:
            return response
        return super()._update_remember_cookie(response)

    def unauthorized(self):
        # A session just signed out was told why (_load_user): sign_in_first adds nothing.
        return sign_in_first() if "pwp_signed_out" in g else super().unauthorized()


login_manager = _LoginManager()
login_manager.login_message = SignInRequired.message
login_manager.login_message_category = "warning"
# Longer tokens than this are refused without hashing them.
_MAX_TOKEN_LENGTH = 256


# How long a sign-in lasts at most: upstream (Devise) signs a browser out after 2 hours
# without a request, or after a week with "remember me" (not extended by use). With no
# "remember me" here and no write per request, a sign-in ends a week after it was made,
# whatever its use; its browser's cookie ends sooner when the browser closes. purge-expired
# deletes older rows.
SESSION_LIFETIME = timedelta(days=7)


@login_manager.user_loader
def _load_user(session_id):
    """The session's user: the cookie's session id must have its row (pwp.models.UserSession)."""
    if current_app.config["PWP_PUBLIC_GATEWAY"]:
        # A public gateway signs no one in (pwp/gateway.py): a session cookie its host shares
        # with the internal instance's must not bring accounts to it.
        return None
    user = session_user(session_id, pushes.utcnow())
    if "pwp_signed_out" in g:
        if request.method == "HEAD":
            # The session has ended: the next page must say why. Flashed after the response,
            # as a HEAD's page (rendered, its body dropped) would use the message up.
            after_this_request(_flash_signed_out)
        else:
            _flash_signed_out()
    return user


def _flash_signed_out(response=None):
    flash(g.pwp_signed_out, "warning")
    return response


def session_user(session_id, now: datetime) -> User | None:
    """The user of a web session, in one query: its row exists (not signed out, nor its
    password changed since, nor its account deleted) and is under SESSION_LIFETIME old.
    An account without a password (API-only) signs in nowhere, so it has no session.
    With account e-mails on, the session of an account that may not stay signed in (locked,
    unconfirmed: account_mail.inactive) ends, as Devise's, and g.pwp_signed_out says why."""
    if not isinstance(session_id, str) or len(session_id) > _MAX_TOKEN_LENGTH:
        return None
    from . import account_mail
    checked = (User.locked_at, User.confirmed_at) if account_mail.enabled() else ()
    # Looked up by its digest, as an API token: the time taken tells nothing of the id.
    row = db.session.execute(
        select(User, *checked).join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.digest == digest_token(session_id), UserSession.created_at > now - SESSION_LIFETIME,
               User.password_hash.is_not(None))).first()
    if row is None:
        return None
    why = checked and account_mail.inactive(row[1], row[2], now)
    if why:
        end_session(session_id)
        g.pwp_signed_out = why
        return None
    row[0].session_id = session_id
    return row[0]


def start_session(user: User, now: datetime) -> str | None:
    """Make a web session for the user, whose password (as the object holds it) was just
    checked; return its random id for the cookie (the row keeps only its digest, so a read
    of the database signs no one in). None when that password changed, the account was
    deleted, or two-factor authentication was turned on (the object holding it off: no code
    was asked) meanwhile: a row made after a password change or the turn-on deleted the
    account's sessions would outlive it."""
    if not user.password_hash:
        return None
    session_id = secrets.token_urlsafe(32)
    # FOR SHARE (PostgreSQL): a password change, turn-on or deletion under way holds the
    # account's row; this waits for it, then sees the new hash, the second factor or no row.
    # SQLite's BEGIN IMMEDIATE already makes the two one after the other.
    unchanged = select(literal(digest_token(session_id)), User.id, literal(now, DateTime())).where(
        User.id == user.id, User.password_hash == user.password_hash,
        *([User.otp_enabled_at.is_(None)] if user.otp_enabled_at is None else [])).with_for_update(read=True)
    made = db.session.scalar(insert(UserSession).from_select(
        ["digest", "user_id", "created_at"], unchanged).returning(UserSession.user_id))
    db.session.commit()
    if made is None:
        return None
    user.session_id = session_id
    return session_id


def end_session(session_id):
    """Sign a web session out on the server: its row goes, so a copy of its cookie taken
    before signs no one in."""
    if isinstance(session_id, str) and len(session_id) <= _MAX_TOKEN_LENGTH:
        db.session.execute(delete(UserSession).where(UserSession.digest == digest_token(session_id)))
        db.session.commit()


def purge_sessions(now: datetime) -> int:
    """Delete the web sessions past SESSION_LIFETIME (browsers that never signed out); return
    how many went."""
    count = db.session.execute(delete(UserSession).where(
        UserSession.created_at <= now - SESSION_LIFETIME)).rowcount
    db.session.commit()
    return count


def sign_in_first():
    """Send a visitor who must sign in to the sign-in page, and back here afterwards."""
    if "pwp_signed_out" not in g:  # (else the session just ended, told why: _load_user)
        flash(SignInRequired.message, "warning")
    return redirect(url_for("accounts.sign_in", next=request.full_path.rstrip("?")))


def init_app(app):
    """Set up Flask-Login."""
    login_manager.init_app(app)


# ----------------------------------------------------------------------------- users

def _storable_email(email: str | None) -> str | None:
    """The e-mail address trimmed and in lower case, or None when no column holds it:
    over 255 characters, or control characters (such as the NUL PostgreSQL refuses)."""
    email = (email or "").strip().lower()
    if len(email) > 255 or any(unicodedata.category(c) == "Cc" for c in email):
        return None
    return email


INVALID_EMAIL = "That e-mail address is not valid."
INVALID_SIGN_IN = "Invalid e-mail address or password."
# Unicode's default-ignorable code points that are not format characters (Cf): shown as
# nothing, or as a blank, beside a letter (variation selectors, the combining grapheme
# joiner, Hangul fillers, Mongolian selectors, the reserved ones).
_IGNORABLE = re.compile(r"[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2065\u3164\ufe00-\ufe0f"
                        r"\uffa0\ufff0-\ufff8\U000e0000-\U000e0fff]")


# RFC 5322's specials other than "@" and ".": an address with one is a quoted local part or a
# domain literal at best, and in a header it is read as something else.
_HEADER_SPECIALS = frozenset('<>()[]:;,"\\')


def normalize_email(email: str | None) -> str | None:
    """The e-mail address as stored, or None when it is not valid: storable, no whitespace,
    no invisible or direction characters (format characters: a zero-width space or a soft
    hyphen made an address that looked like another one, U+202E one read backwards; the
    other default-ignorable ones, such as a variation selector), and a non-empty name on
    each side of a single "@", with none of the characters that mean something in a mail
    header (an address written 'x<victim@example.com>' is a name and victim's address to a
    mail library: another account whose mails reach victim)."""
    email = _storable_email(email)
    local, _, domain = (email or "").partition("@")
    if not local or not domain or "@" in domain or _IGNORABLE.search(email) \
            or any(c.isspace() or unicodedata.category(c) == "Cf" or c in _HEADER_SPECIALS for c in email):
        return None
    return email


def create_user(email: str, password: str | None = None, admin: bool = False, confirmed: bool = True) -> User:
    """Create a user (e-mail unique, case-insensitive); ValueError if taken or invalid.
    Unconfirmed: a sign-up that must confirm its address (pwp.account_mail)."""
    email = normalize_email(email)
    if email is None:
        raise ValueError(INVALID_EMAIL)
    now = utcnow()
    user = User(email=email, is_admin=admin, created_at=now, confirmed_at=now if confirmed else None,
                password_hash=generate_password_hash(password) if password else None)
    db.session.add(user)
    # The unique index decides (no look first): of two sign-ups at once, one wins.
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ValueError("That e-mail address is already registered.") from None
    return user


def find_user(email: str) -> User | None:
    """Return the user with this e-mail address (None, without a query, for one that no
    column holds). Not normalize_email: an account made before its rules were stricter
    still signs in."""
    email = _storable_email(email)
    if email is None:
        return None
    return db.session.scalar(select(User).where(User.email == email))


def account(user_id: int) -> User | None:
    """Return the user with this id, if any."""
    return db.session.get(User, user_id)


def hold(user: User) -> bool:
    """Lock the account's row until the transaction ends (PostgreSQL; SQLite's BEGIN
    IMMEDIATE already holds the database's write lock): of two requests at once, the second
    waits here, then reads what the first wrote. False: the account was deleted. FOR NO KEY UPDATE, as an update of the row
    takes: not FOR UPDATE, which also waits for the key-share lock that a row referring to
    the account takes (new backup codes delete the old ones, then insert theirs: a sign-in
    holding the row, then waiting for its backup code's, was a deadlock)."""
    return db.session.scalar(select(User.id).where(User.id == user.id).with_for_update(key_share=True)) is not None


class Refused(Exception):
    """A change to an account that its rules refuse; the message says why."""


ACCOUNT_GONE = "That account no longer exists."
NOT_AN_ADMIN = "You are no longer an administrator."
YOURSELF = ("You cannot revoke your own administration or delete your own account here: you would lock "
            "yourself out. Another administrator can, or the command line (flask --app pwpush users ...).")


def _lock_for_change(user: User, by: User | None):
    """Lock the account's row and, for a change an administrator (by) makes on the
    administration page, every administrator's row, in id order: two administrators' changes
    at once then run one after the other, the second seeing the first's (SQLite's BEGIN
    IMMEDIATE already makes them). Refused: an account deleted meanwhile, a change by one
    who is no longer an administrator, or to one's own account. So the last administrator
    is never revoked or deleted from the page: `by`, another one, remains."""
    rows = select(User.id, User.is_admin).where(
        User.id == user.id if by is None else or_(User.id == user.id, User.is_admin == true()))
    found = dict(db.session.execute(rows.order_by(User.id).with_for_update()).all())
    problem = None
    if by is not None and not found.get(by.id):
        problem = NOT_AN_ADMIN
    elif user.id not in found:
        problem = ACCOUNT_GONE
    elif by is not None and user.id == by.id:
        problem = YOURSELF
    if problem:
        db.session.rollback()  # (the locks)
        raise Refused(problem)


def _by(by: User | None) -> str:
    return f"by user {by.id}" if by is not None else "from the command line"


def set_admin(user: User, admin: bool, by: User | None = None) -> bool:
    """Make the user an administrator (views of others' pushes logged, not counted), or no
    longer one; by: the administrator doing it on the administration page (None: the
    command line), under _lock_for_change's rules. False (and nothing logged) when the
    account already was what was asked."""
    _lock_for_change(user, by)
    # A statement, not the attribute: the object may hold a value changed since it was read.
    changed = db.session.execute(update(User).where(User.id == user.id, User.is_admin != admin)
                                 .values(is_admin=admin)).rowcount == 1
    db.session.commit()
    if changed:
        current_app.logger.info("user %s: %s %s", user.id, "made an administrator" if admin
                                else "no longer an administrator", _by(by))
    return changed


def any_admin() -> bool:
    """Tell whether any account is an administrator."""
    return db.session.scalar(select(User.id).where(User.is_admin == true()).limit(1)) is not None


DELETE_TRIES = 5  # (then it deletes anyway: its owner's creates keep coming)


def delete_account(user: User, by: User | None = None) -> int:
    """Delete an account, its API token, its web sessions (ON DELETE CASCADE) and all its
    pushes (pushes.delete_account); by as for set_admin. Return how many pushes went."""
    user_id = user.id
    for _ in range(DELETE_TRIES):
        locked = pushes.lock_pushes_of(user_id)  # (before the account's row: see there)
        _lock_for_change(user, by)
        if pushes.count_pushes_of(user_id) == locked:
            break
        # A push made while this waited for the account's row (its create held it) is not
        # locked: a view of it by its owner or an admin, waiting for the account's row to log
        # its event, and this, deleting it, would wait for each other. Again, with it.
        db.session.rollback()
        user = db.session.get(User, user_id)
        if user is None:
            raise Refused(ACCOUNT_GONE)
    count = pushes.delete_account(user)
    current_app.logger.info("user %s: account deleted with its %d pushes %s", user_id, count, _by(by))
    return count


def check_password(user: User | None, password: str) -> bool:
    """Check a password; spends the same time when the user does not exist."""
    if user is None or not user.password_hash:
        check_password_hash(_dummy_hash(), password or "")
        return False
    return check_password_hash(user.password_hash, password or "")


@cache
def _dummy_hash() -> str:
    # Made on first use, not at import: a password hash costs ~0.1 s of every worker's start.
    return generate_password_hash(secrets.token_hex(8))


MIN_PASSWORD = 8
PASSWORDS_DIFFER = "The two passwords do not match."


def password_problem(password: str) -> tuple[str, str] | None:
    """("password", message) for a password that may not be set (too short, not text), else None."""
    if len(password) < MIN_PASSWORD:
        return "password", f"Use at least {MIN_PASSWORD} characters."
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:  # (an environment variable's undecodable bytes)
        return "password", "The password is not valid UTF-8 text."
    return None


def _write_account(user: User, *then, where=(), **values):
    """Write values to the account's row (if it meets the conditions where), run the
    statements `then`, and commit; Refused(ACCOUNT_GONE) if it was deleted meanwhile (`users
    password` waits for its prompt: as an attribute change the commit ended in SQLAlchemy's
    StaleDataError or ObjectDeletedError, a traceback), or no longer meets them."""
    done = db.session.execute(update(User).where(User.id == user.id, *where).values(**values))
    if done.rowcount != 1:
        db.session.rollback()
        raise Refused(ACCOUNT_GONE)
    for statement in then:
        db.session.execute(statement)
    db.session.commit()


def set_password(user: User, password: str, *where, **values):
    """Store a new password hash, forget any password reset link (as Devise), and sign out
    every web session of the account (the password change page then starts one for its
    browser); where and values: _write_account's conditions and more columns to write."""
    password_hash = generate_password_hash(password)
    # The account's row first (locked by the update), then its sessions: a sign-in that
    # checked the old password meanwhile makes no row (start_session).
    _write_account(user, delete(UserSession).where(UserSession.user_id == user.id), where=where,
                   password_hash=password_hash, reset_password_token_digest=None, reset_password_sent_at=None,
                   **values)
    set_committed_value(user, "password_hash", password_hash)


def issue_token(user: User) -> str:
    """Give the user a new API token (the old one stops working); return it once."""
    token = secrets.token_urlsafe(24)
    _write_account(user, api_token_digest=digest_token(token))
    current_app.logger.info("user %s: new API token issued", user.id)
    return token


def user_for_token(token: str) -> User | None:
    """Return the user owning this API token, if any."""
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        return None
    digest = digest_token(token)
    user = db.session.scalar(select(User).where(User.api_token_digest == digest))
    if user is None or not hmac.compare_digest(user.api_token_digest, digest):
        return None
    return user


# ----------------------------------------------------------------------------- API callers

def _header_token():
    """Return (token, a token header was sent) by upstream's rules."""
    environ = request.environ
    if "HTTP_AUTHORIZATION" not in environ and "HTTP_X_USER_TOKEN" not in environ:
        return None, False  # anonymous: no header lookups
    email = request.headers.get("X-User-Email")
    x_token = request.headers.get("X-User-Token")
    authorization = request.headers.get("Authorization")
    sent = authorization is not None or x_token is not None
    if email is not None and x_token is not None:
        return x_token.strip(), sent
    if authorization is not None:
        words = authorization.split()
        # The last word: "Bearer abc" and a bare "abc" both give "abc".
        return (words[-1] if words else ""), sent
    return None, sent


def api_caller() -> User | None:
    """Resolve the API caller; abort with an empty 401 when a token header does not resolve."""
    # Browser sessions and remember-me live in cookies: without any, skip Flask-Login.
    if has_cookies(request) and _session_may_act() and current_user.is_authenticated:
        return current_user._get_current_object()
    token, sent = _header_token()
    user = user_for_token(token) if token else None
    if user is None and sent:
        abort(api_error(401))
    return user


def _session_may_act() -> bool:
    """Whether a browser session may stand for the API caller: on reads; on writes only from
    a page of this site or a client that names no origin. (The API takes no CSRF token, as
    upstream; SameSite=Lax keeps other sites' forms from sending the cookie, but not a
    sibling subdomain's, whose posts would then act as the signed-in user.)"""
    return request.method in ("GET", "HEAD") or not from_other_site(request, null_origin_is_other=True)


def from_other_site(req, null_origin_is_other: bool) -> bool:
    """Whether the browser says the request comes from another site's page.

    Sec-Fetch-Site, which current browsers send whatever the page's referrer policy,
    decides when present: anything but "same-origin" (or "none", the user's own
    navigation). Else the Origin header, if any, must be this site's. Browsers send
    "Origin: null" for a form posted from a page under Referrer-Policy: no-referrer (ours),
    but also for sandboxed frames and other sites' no-referrer pages."""
    fetch_site = req.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = req.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":
        return null_origin_is_other
    return origin != req.host_url.rstrip("/")


# Upstream's answer to an API caller without two-factor authentication (PWP__REQUIRE_MFA).
MFA_REQUIRED = "Two-factor authentication is required. Please set it up to continue."


def api_auth(required=False):
    """Decorate an API view: resolve g.caller and apply the anonymous rules (empty 401s), and
    PWP__REQUIRE_MFA's to a caller without two-factor authentication (403)."""
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            g.caller = api_caller()
            if g.caller is None and (required or not current_app.config["PWP__ALLOW_ANONYMOUS"]):
                return api_error(401)
            if g.caller is not None and g.caller.otp_enabled_at is None and current_app.config["PWP__REQUIRE_MFA"]:
                return api_error(403, {"error": MFA_REQUIRED})
            return view(*args, **kwargs)
        return wrapped
    return decorator


def actor(user=None) -> Actor:
    """Describe the current request's user, IP, user agent and referrer for the audit log."""
    return actor_from(request.environ, user)


def actor_from(environ, user=None) -> Actor:
    """The audit log's Actor from a WSGI environ (header values as the server decoded them)."""
    return Actor(user=user, ip=_loggable(environ.get("REMOTE_ADDR") or ""),  # (X-Forwarded-For's, behind a proxy)
                 user_agent=_loggable(environ.get("HTTP_USER_AGENT", "")),
                 referrer=_loggable(environ.get("HTTP_REFERER", "")))


def _loggable(value: str) -> str:
    """A header value as the audit log keeps it: 255 characters, without NUL (gunicorn refuses
    one in a header, other WSGI servers pass it on, and PostgreSQL's text cannot hold it)."""
    return (value.replace("\0", "") if "\0" in value else value)[:255]
