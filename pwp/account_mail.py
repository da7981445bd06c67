"""Account e-mails (PWP__ENABLE_USER_ACCOUNT_EMAILS): Devise's confirmable, lockable and
recoverable, with upstream's settings (its config/initializers/devise.rb), and its notice
of a password change (change_password).

Each mailed link carries a random token; the account's row keeps only its digest (as an API
token), and a use clears it. The links are on the configured base URL (config.mail_base_url),
never the request's Host. A mail goes after the commit, from a thread that holds no database
transaction while the SMTP server answers; it names the account's id in the log, never its
address or link. The forms that mail answer the same whether the account exists or not
(Devise's paranoid mode) and count each request (pwp.accounts LIMITS["mail"]).
"""
import logging
import secrets
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import urlencode

from flask import current_app
from sqlalchemy import select, update

from . import notify
from .auth import INVALID_SIGN_IN, find_user, normalize_email, set_password
from .config import mail_base_url
from .crypto import digest_token
from .models import User, db

log = logging.getLogger("pwp")  # (the app's logger: its RedactFilter sees every record)

# Upstream's Devise settings.
RESET_PASSWORD_WITHIN = timedelta(hours=6)
CONFIRM_WITHIN = timedelta(days=3)  # (allow_unconfirmed_access_for: 0 days)
MAXIMUM_ATTEMPTS = 20  # failed sign-ins that lock the account (lock_strategy :failed_attempts)
UNLOCK_IN = timedelta(hours=1)  # unlock_strategy :both: this long, or the mailed link
# A link form's work for an account (ask_for) starts this long after the answer's close(), in
# seconds, at random between the two, its thread started then (notify.later): run at close(),
# it delayed the server's close of the connection (the GIL with it), which a client reading to
# the end could time: ~3.7 ms in the median on a real gunicorn, ~1.1 ms of it the thread's
# start. Random: nor does it land on the request sent next.
ASK_DELAY = (0.05, 0.3)

UNCONFIRMED = "You have to confirm your e-mail address before continuing: follow the link in the e-mail we sent you."
LOCKED = "Your account is locked."  # (Devise's, to a session signed in before the lock)
INVALID_LINK = "That link is not valid, has been used or has expired: ask for a new one."

MAILS = {
    "reset_password": ("Reset password instructions", "accounts.edit_password",
                       "Hello {email}!\n\nSomeone has asked for a link to change your password. You can do "
                       "this through the link below (for {hours} hours).\n\n{link}\n\nIf you did not ask for "
                       "this, please ignore this e-mail.\nYour password will not change until you open the "
                       "link above and choose a new one.\n"),
    "confirmation": ("Confirmation instructions", "accounts.confirmation",
                     "Welcome {email}!\n\nYou can confirm your account's e-mail address through the link "
                     "below:\n\n{link}\n"),
    "unlock": ("Unlock instructions", "accounts.unlock",
               "Hello {email}!\n\nYour account has been locked after too many failed sign-in attempts.\n\n"
               "Follow the link below to unlock it (or wait an hour):\n\n{link}\n"),
    # Devise's send_password_change_notification: its link has no token, only the way to a new one.
    "password_change": ("Password changed", "accounts.new_password",
                        "Hello {email}!\n\nYour pwpush password was changed. If it was not you, reset it "
                        "through the link below:\n\n{link}\n"),
    # (Upstream's Devise mails two-factor changes too.) Links without a token, as above.
    "two_factor_on": ("Two-factor authentication turned on", "accounts.new_password",
                      "Hello {email}!\n\nTwo-factor authentication was turned on for your pwpush account: signing "
                      "in now also asks for a code of your authenticator app. If it was not you, reset your "
                      "password through the link below and tell the site's administrator:\n\n{link}\n"),
    "two_factor_off": ("Two-factor authentication turned off", "accounts.new_password",
                       "Hello {email}!\n\nTwo-factor authentication was turned off for your pwpush account: "
                       "signing in now asks for your password only. If it was not you, reset your password "
                       "through the link below and tell the site's administrator:\n\n{link}\n"),
}
# Per kind: what a token's digest and time are kept in, and how long it is valid (an unlock
# link: as long as the account is locked).
COLUMNS = {"reset_password": (User.reset_password_token_digest, User.reset_password_sent_at, RESET_PASSWORD_WITHIN),
           "confirmation": (User.confirmation_token_digest, User.confirmation_sent_at, CONFIRM_WITHIN),
           "unlock": (User.unlock_token_digest, None, None)}
# Per kind: what an account needs to be mailed a link that it asked for (ask_for).
NEEDS = {"reset_password": lambda now: User.password_hash.is_not(None),
         "confirmation": lambda now: User.confirmed_at.is_(None),
         "unlock": lambda now: User.locked_at > now - UNLOCK_IN}


def enabled() -> bool:
    """Tell whether account e-mails are on (config.validate makes sure an SMTP server is set)."""
    config = current_app.config
    return bool(config["PWP__ENABLE_USER_ACCOUNT_EMAILS"] and not config["PWP__DISABLE_LOGINS"])


def inactive(locked_at: datetime | None, confirmed_at: datetime | None, now: datetime) -> str | None:
    """Why an account with these columns may not stay signed in (Devise's
    active_for_authentication?: locked, for UNLOCK_IN; unconfirmed), or None."""
    if locked_at is not None and locked_at > now - UNLOCK_IN:
        return LOCKED
    return UNCONFIRMED if confirmed_at is None else None


def locked(user: User, now: datetime) -> bool:
    """Tell whether the account is locked now (for UNLOCK_IN)."""
    state = _state(user.id)
    return state is not None and inactive(state[1], state[2], now) == LOCKED


def _state(user_id: int):
    """The account's lock and confirmation columns, read now (they are deferred)."""
    return db.session.execute(select(User.failed_attempts, User.locked_at, User.confirmed_at)
                              .where(User.id == user_id)).one_or_none()


def issue(kind: str, user: User, now: datetime, *where, here: bool = False, **values) -> bool:
    """Give the account a new token of a kind (the one before stops working), write values
    with it, commit, and mail its link (here: from this thread, a sending one); where:
    conditions on the account's row (none met: nothing done, False)."""
    token = secrets.token_urlsafe(32)
    digest_column, time_column, _within = COLUMNS[kind]
    if time_column is not None:
        values[time_column.key] = now
    done = db.session.execute(update(User).where(User.id == user.id, *where).values(
        **{digest_column.key: digest_token(token)}, **values)).rowcount
    db.session.commit()
    if done:
        _mail(kind, user, {f"{kind}_token": token}, here)
    return bool(done)


def _mail(kind: str, user: User, query: dict, here: bool = False):
    """Mail the account a mail of MAILS, its link's query that; from a thread (_send), or
    here, from this one (a sending thread already)."""
    subject, endpoint, text = MAILS[kind]
    if normalize_email(user.email) is None:
        # An address stored before sign-up refused it ('x<victim@example.com>'): the SMTP
        # envelope would take another address out of it (smtplib's RCPT TO, the one in <>).
        log.warning("user %s: %s e-mail not sent: its address is not valid", user.id, subject.lower())
        return
    # (The map, not url_for: `users password` changes a password outside any request.)
    path = current_app.url_map.bind("localhost").build(endpoint)
    link = mail_base_url(current_app.config) + path + ("?" + urlencode(query) if query else "")
    body = text.format(email=user.email, link=link, hours=int(RESET_PASSWORD_WITHIN.total_seconds() // 3600))
    if here:
        _send(current_app.config, user.id, user.email, subject, body)
    # (Queued past the sending threads: a burst of resets loses no one's mail.)
    elif not notify.in_thread(_send, (current_app.config, user.id, user.email, subject, body),
                            f"account-mail-{user.id}", queued=True):
        log.warning("user %s: %s e-mail not sent: %d e-mails are being sent and %d wait already", user.id,
                    subject.lower(), notify.MAX_SENDING_THREADS, notify.MAX_QUEUED)


def _send(config, user_id: int, email: str, subject: str, body: str):
    try:
        sent, _error, why = notify.deliver(config, [email], body, subject)
    except Exception as exc:  # (a thread's traceback would reach stderr unredacted, the link with it)
        sent, why = [], type(exc).__name__
    if sent:
        log.info("user %s: %s e-mail sent", user_id, subject.lower())
    else:
        log.warning("user %s: %s e-mail not sent: %s", user_id, subject.lower(), why or "refused")


def holder(kind: str, token: str, now: datetime) -> User | None:
    """The account whose live token of a kind this is (looked up by its digest), or None."""
    if not isinstance(token, str) or not token or len(token) > 256:
        return None
    digest_column, time_column, within = COLUMNS[kind]
    query = select(User).where(digest_column == digest_token(token))
    if within is not None:
        query = query.where(time_column > now - within)
    return db.session.scalar(query)


def _unlock(user_id: int, *where) -> bool:
    """Unlock the account (and forget its failed sign-ins) if it meets where; commit; tell
    whether it did."""
    done = db.session.execute(update(User).where(User.id == user_id, *where).values(
        failed_attempts=0, locked_at=None, unlock_token_digest=None)).rowcount == 1
    db.session.commit()
    return done


def sign_in_refusal(user: User | None, password_ok: bool, now: datetime, keep_count: bool = False) -> str | None:
    """Count a failed sign-in of an account, locking it at MAXIMUM_ATTEMPTS (its unlock link
    mailed), and say why a right password may not sign in (unconfirmed); None when it may.
    What a wrong password is told does not depend on the account, and a locked account's
    right password is counted and told as a wrong one (Devise's paranoid mode): else the
    lock would tell a guesser which password is right, the guessing going on meanwhile.
    An account without a password (API only) has no sign-in to guard: nothing counted.
    keep_count: a right password that does not sign in yet (a code is asked next): its
    failed sign-ins are forgotten only once the code is right, else each right password
    would reset the count of wrong codes."""
    state = _state(user.id) if user is not None and user.password_hash is not None else None
    if state is None:
        return None
    failed, locked_at, confirmed_at = state
    if locked_at is not None and locked_at <= now - UNLOCK_IN:
        _unlock(user.id, User.locked_at == locked_at)
        failed, locked_at = 0, None
    if not password_ok or locked_at is not None:
        failed = db.session.scalar(update(User).where(User.id == user.id).values(
            failed_attempts=User.failed_attempts + 1).returning(User.failed_attempts))
        db.session.commit()
        if failed is not None and failed >= MAXIMUM_ATTEMPTS and locked_at is None \
                and issue("unlock", user, now, User.locked_at.is_(None), locked_at=now):
            log.warning("user %s: locked after %d failed sign-ins", user.id, failed)
        return INVALID_SIGN_IN if password_ok else None
    if confirmed_at is None:
        return UNCONFIRMED
    if failed and not keep_count:
        db.session.execute(update(User).where(User.id == user.id).values(failed_attempts=0))
        db.session.commit()
    return None


def ask_for(app, kind: str, email: str, now: datetime, account: bool):
    """A form's request for a link (reset_password, confirmation or unlock): mailed when the
    account exists and needs it (has a password; is unconfirmed; is locked), else nothing.
    From a sending thread, once the answer is sent: the request's time then tells nothing of
    the account (its token's write and its mail took ~9 ms that an unknown address did not),
    ASK_DELAY later: nor does the connection's close (the server's, after close()), which
    does this for any address alike (account: the request found one), only an account's
    taking a sending place when due (_ask_now)."""
    notify.later(secrets.SystemRandom().uniform(*ASK_DELAY), partial(_ask_now, app, kind, email, now, account))


def _ask_now(app, kind: str, email: str, now: datetime, account: bool):
    if account and not notify.in_thread(_ask_in_app, (app, kind, email, now), f"account-ask-{kind}", queued=True):
        log.warning("a %s e-mail asked for not sent: %d e-mails are being sent and %d wait already",
                    MAILS[kind][0].lower(), notify.MAX_SENDING_THREADS, notify.MAX_QUEUED)


def _ask_in_app(app, kind: str, email: str, now: datetime):
    with app.app_context():
        try:
            user = find_user(email)
            if user is not None:
                issue(kind, user, now, NEEDS[kind](now), here=True)
        finally:
            db.session.remove()


def confirm(token: str, now: datetime) -> bool:
    """Confirm the account whose live confirmation token this is; tell whether one was."""
    user = holder("confirmation", token, now)
    done = user is not None and db.session.execute(update(User).where(
        User.id == user.id, User.confirmation_token_digest == digest_token(token)).values(
        confirmed_at=now, confirmation_token_digest=None)).rowcount == 1
    db.session.commit()
    return done


def unlock(token: str, now: datetime) -> bool:
    """Unlock the account whose unlock token this is; tell whether one was."""
    user = holder("unlock", token, now)
    # (The token in the write too: a use of the link meanwhile leaves this one nothing to do.)
    return user is not None and _unlock(user.id, User.unlock_token_digest == digest_token(token))


def change_password(user: User, password: str, *where, **values):
    """auth.set_password, then (account e-mails on) tell a confirmed address that its password
    changed (Devise's send_password_change_notification, which also tells an account's first
    password: any change of encrypted_password)."""
    set_password(user, password, *where, **values)
    if enabled() and confirmed(user):
        _mail("password_change", user, {})


def two_factor_changed(user: User, on: bool):
    """Tell a confirmed address (account e-mails on) that two-factor authentication was
    turned on or off."""
    if enabled() and confirmed(user):
        _mail("two_factor_on" if on else "two_factor_off", user, {})


def reset_password(user: User, token: str, password: str):
    """Set the password by a reset link (its token still the account's: one use), unlock
    the account, and sign out its sessions (change_password); Refused if the link was
    used meanwhile."""
    change_password(user, password, User.reset_password_token_digest == digest_token(token),
                    failed_attempts=0, locked_at=None, unlock_token_digest=None)


def confirmed(user: User) -> bool:
    """Tell whether the account's address is confirmed (False for one deleted meanwhile)."""
    state = _state(user.id)
    return state is not None and state[2] is not None
