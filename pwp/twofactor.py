"""Two-factor authentication of web accounts: TOTP (RFC 6238 as authenticator apps default
to: 30-second steps, 6 digits, SHA-1) and single-use backup codes, as upstream's.

The secret is kept as a master key token (pwp.crypto; rotate-key re-encrypts it), each
backup code as a digest only. A code is good in its step and the steps on either side (a
clock a little off), and once: the account keeps the last step accepted, and a code of that
step or an earlier one is refused (a code seen over a shoulder or in a proxy's log cannot
sign in again). The log names the account's id, never a code or the secret.
"""
import base64
import hashlib
import hmac
import logging
import secrets
from datetime import datetime

import pyotp
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from . import auth
from .crypto import digest_token
from .models import OtpBackupCode, User, UserSession, db
from .pushes import keyring, unix_seconds

log = logging.getLogger("pwp")  # (the app's logger: its RedactFilter sees every record)

STEP = 30  # seconds
DIGITS = 6
WINDOW = 1  # steps either side of now's
BACKUP_CODES = 10


def new_secret() -> str:
    """A new TOTP secret: 160 random bits in base32, as authenticator apps take it."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans (its QR code)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).provisioning_uri(name=email, issuer_name=issuer)


def code_at(secret: str, now: datetime) -> str:
    """The code of the step now is in (for tests and the command line)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).at(unix_seconds(now))


def _step_of(secret: str, code: str, now: datetime) -> int | None:
    """The step (within WINDOW of now's) whose code this is, else None; each compared in
    constant time."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP)
    current = unix_seconds(now) // STEP
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(totp.at(step * STEP), code):
            found = step
    return found


def _clean(code: str) -> str:
    """A typed code without the spaces and hyphens that group it, in lower case."""
    return "".join(c for c in (code or "")[:64] if c not in " -\t").lower()


def _digest(user_id: int, code: str) -> str:
    return hashlib.sha256(f"pwpush backup code\0{user_id}\0{code}".encode()).hexdigest()


def _new_backup_codes(user_id: int) -> list[str]:
    """Replace the account's backup codes with BACKUP_CODES new ones (80 bits each, shown as
    xxxx-xxxx-xxxx-xxxx); uncommitted. Return them: they are shown once."""
    codes = [base64.b32encode(secrets.token_bytes(10)).decode().lower() for _ in range(BACKUP_CODES)]
    db.session.execute(delete(OtpBackupCode).where(OtpBackupCode.user_id == user_id))
    db.session.execute(insert(OtpBackupCode), [{"user_id": user_id, "digest": _digest(user_id, code)}
                                              for code in codes])
    return ["-".join(code[i:i + 4] for i in range(0, 16, 4)) for code in codes]


def is_on(user: User) -> bool:
    """Tell whether the account has two-factor authentication on."""
    return user.otp_enabled_at is not None


def turn_on(user: User, secret: str, code: str, now: datetime) -> list[str] | None:
    """Turn two-factor authentication on with this secret, when the code is the secret's now
    (the app was set up right); return the new backup codes, else None (a wrong code, or on
    already: another tab turned it on meanwhile). The account's other web sessions end."""
    step = _step_of(secret, _clean(code), now)
    if step is None:
        return None
    done = db.session.execute(update(User).where(User.id == user.id, User.otp_enabled_at.is_(None)).values(
        otp_enabled_at=now, otp_secret_ciphertext=keyring().encrypt(secret.encode()),
        otp_last_step=step)).rowcount == 1
    if not done:
        db.session.rollback()
        return None
    codes = _new_backup_codes(user.id)
    # The account's other web sessions end (made without a code: a copied cookie, a browser
    # left open), as a new password ends them; this browser's (user.session_id) stays.
    db.session.execute(delete(UserSession).where(UserSession.user_id == user.id,
                                                 UserSession.digest != digest_token(user.session_id or "")))
    db.session.commit()
    set_committed_value(user, "otp_enabled_at", now)
    log.info("user %s: two-factor authentication turned on", user.id)
    return codes


def verify(user: User, code: str, now: datetime) -> bool:
    """Check a code of the account's authenticator app or one of its backup codes, and use
    it up (a TOTP step once, a backup code once); commit. False for anything else, and
    for an account without two-factor authentication."""
    code = _clean(code)
    if len(code) == DIGITS:
        secret = db.session.scalar(select(User.otp_secret_ciphertext).where(User.id == user.id))
        step = _step_of(keyring().decrypt(secret).decode(), code, now) if secret is not None else None
        # Accepted once: of two uses of a code (or of a later step's, then this one's), one wins.
        used = step is not None and db.session.execute(update(User).where(
            User.id == user.id, or_(User.otp_last_step.is_(None), User.otp_last_step < step))
            .values(otp_last_step=step)).rowcount == 1
    else:
        used = bool(code) and db.session.execute(delete(OtpBackupCode).where(
            OtpBackupCode.user_id == user.id, OtpBackupCode.digest == _digest(user.id, code))).rowcount == 1
        if used:
            log.info("user %s: a two-factor backup code used (%d left)", user.id, backup_codes_left(user))
    db.session.commit()
    return used


def use_state(user: User) -> str:
    """What each use of a code changes, as it stands: the last step accepted (only ever
    later) and the unused backup codes' digests (fewer, or new random ones). A pending
    sign-in bound to it ends once a code was used."""
    step = db.session.scalar(select(User.otp_last_step).where(User.id == user.id))
    digests = db.session.scalars(select(OtpBackupCode.digest).where(OtpBackupCode.user_id == user.id))
    return f"{step}:{','.join(sorted(digests))}"


def backup_codes_left(user: User) -> int:
    """How many unused backup codes the account has."""
    return db.session.scalar(select(func.count()).select_from(OtpBackupCode).where(OtpBackupCode.user_id == user.id))


def new_backup_codes(user: User) -> list[str]:
    """Give the account new backup codes (the old ones stop working); return them once.
    Refused(ACCOUNT_GONE) when the account was deleted meanwhile."""
    # The account's row first, as its deletion and a sign-in's code lock it: the old codes
    # deleted, then the new ones' foreign key waiting for that row, was a deadlock.
    if not auth.hold(user):
        db.session.rollback()
        raise auth.Refused(auth.ACCOUNT_GONE)
    codes = _new_backup_codes(user.id)
    db.session.commit()
    log.info("user %s: new two-factor backup codes made", user.id)
    return codes


def turn_off(user: User, by: str) -> bool:
    """Turn two-factor authentication off (its secret and backup codes deleted); by: who, for
    the log ("by its owner", "from the command line"). False when it was off."""
    done = db.session.execute(update(User).where(User.id == user.id, User.otp_enabled_at.is_not(None)).values(
        otp_enabled_at=None, otp_secret_ciphertext=None, otp_last_step=None)).rowcount == 1
    db.session.execute(delete(OtpBackupCode).where(OtpBackupCode.user_id == user.id))
    db.session.commit()
    set_committed_value(user, "otp_enabled_at", None)
    if done:
        log.info("user %s: two-factor authentication turned off %s", user.id, by)
    return done
