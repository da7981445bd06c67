"""Accounts in the browser: sign up, sign in (throttled), sign out, the API token page, and
with account e-mails on (pwp.account_mail) password resets, confirmations and unlocks."""
import hashlib
import hmac
import math
import secrets
import unicodedata
from functools import partial, wraps
from urllib.parse import unquote, urlsplit

from flask import (Blueprint, abort, after_this_request, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from . import account_mail, auth, has_cookies, notify, pushes, twofactor
from .api import base_url
from .models import User, db
from .web import cookie_flags, qr_data_uri
from .words import plural

bp = Blueprint("accounts", __name__, url_prefix="/users")

# (counter, period in seconds, attempts allowed) per action. Sign-in: upstream's Rack::Attack
# rule, 5 per 20 seconds per IP, plus a per-account limit so many addresses cannot guess one
# password. Sign-up: each costs a password hash (~85 ms). A password change has its own
# per-account counter: sign-in failures by others must not keep the owner from changing it.
LIMITS = {"login": (("ip", 20, 5), ("email", 300, 10)),
          "signup": (("ip", 60, 5),),
          "password": (("ip", 20, 5), ("user", 300, 10)),
          # A request for a mailed link (reset, confirmation, unlock): per address, so that no
          # one can fill a mailbox with them (a browser known to the account counting apart).
          "mail": (("ip", 60, 5), ("email", 3600, 5)),
          # A code (a sign-in's after "login"'s counts, the forms' after the password), per account
          # from any address: what the lock allows with account e-mails on (MAXIMUM_ATTEMPTS in
          # UNLOCK_IN), with them off too. Only one with the password reaches it; a browser
          # known to the account counts apart (_known_device).
          "code": (("user", int(account_mail.UNLOCK_IN.total_seconds()), account_mail.MAXIMUM_ATTEMPTS),)}


def _404_unless(test):
    """A view decorator: 404 before anything else unless test() holds."""
    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not test():
                abort(404)
            return view(*args, **kwargs)
        return wrapped
    return decorate


# Logins disabled: no sign-in page to send anyone to.
_with_logins = _404_unless(lambda: not current_app.config["PWP__DISABLE_LOGINS"])
_with_account_mails = _404_unless(account_mail.enabled)


def safe_next(default: str) -> str:
    """Return the ?next= path when it stays on this site, else default.

    A same-site path starts with one "/" (not "//") and has no backslash, whitespace or
    control character: browsers read a backslash as "/", Werkzeug drops a tab from the
    Location header ("/<tab>/x" becomes "//x") and refuses a newline (a 500).
    """
    target = request.values.get("next") or ""
    if (target.startswith("/") and not target.startswith("//")
            and not any(c == "\\" or c.isspace() or unicodedata.category(c) == "Cc"
                        for c in target)):
        return target
    return default


# A browser that signed in to an account is known to it for a year (a "device cookie", as
# OWASP's advice against lock-outs): the account's own limits (per address, per account)
# count its attempts apart, so one who spends the account's (wrong passwords; wrong codes,
# with the password) does not keep the owner's browser out. Void once the password changes
# or two-factor authentication is turned on or off (a cookie got before then counts nothing).
# It names the last DEVICE_ACCOUNTS accounts signed in to: a browser two people share stays
# known to both.
DEVICE_COOKIE = "pwp_device"
DEVICE_WITHIN = 365 * 86400
DEVICE_ACCOUNTS = 5


def _device_mark(user) -> str:
    enabled = user.otp_enabled_at and pushes.unix_seconds(user.otp_enabled_at)
    return hashlib.sha256(f"{user.id}\0{user.password_hash}\0{enabled}".encode()).hexdigest()[:32]


def _device_accounts(now) -> list:
    """This browser's accounts (DEVICE_COOKIE), the last signed in to first, each known for
    DEVICE_WITHIN since its own sign-in."""
    data = pushes.open_token("device", request.cookies.get(DEVICE_COOKIE), DEVICE_WITHIN, now)
    known = data.get("a") if data and isinstance(data.get("a"), list) else []
    since = pushes.unix_seconds(now) - DEVICE_WITHIN
    return [entry for entry in known if isinstance(entry, dict) and isinstance(entry.get("t"), int)
            and entry["t"] > since]


def _remember_device(user):
    """Make this browser known to the account (DEVICE_COOKIE), with the response."""
    now = pushes.utcnow()
    entry = {"i": user.id, "h": _device_mark(user), "n": secrets.token_urlsafe(12), "t": pushes.unix_seconds(now)}
    others = [known for known in _device_accounts(now) if known.get("i") != user.id]
    token = pushes.seal_token("device", {"a": [entry, *others][:DEVICE_ACCOUNTS]}, now)

    @after_this_request
    def set_cookie(response):
        response.set_cookie(DEVICE_COOKIE, token, max_age=DEVICE_WITHIN, **cookie_flags())
        return response


def _known_device(user, now) -> str | None:
    """This browser's own counter for the account's limits, when it is known to it."""
    # The cookie opened whether or not the address is an account's: a link form's time must
    # not tell (the known one's decryption, for any browser that has one, was the difference).
    known = _device_accounts(now)
    for entry in known if user else ():
        if entry.get("i") == user.id and hmac.compare_digest(str(entry.get("h")), _device_mark(user)):
            return f"device:{entry.get('n')}"
    return None


def _throttled(action: str, now, email: str = "", user: User | None = None) -> str | None:
    """Count an attempt at an action (LIMITS) per IP and per account (or per this browser,
    when it is known to the account: _known_device). Over a limit, the message that says
    how long to wait (the rest of the limit's window), else None."""
    device = _known_device(user, now)
    who = {"ip": request.remote_addr or "",
           "email": device or hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32],
           "user": device or (user and user.id)}
    wait = 0
    for what, period, limit in LIMITS[action]:
        if pushes.count_attempt(f"{action}:{what}:{who[what]}", period, now) > limit:
            wait = max(wait, period - pushes.unix_seconds(now) % period)
    if not wait:
        return None
    words = plural(wait, "second") if wait < 60 else plural(math.ceil(wait / 60), "minute")
    what = {"login": "sign-in attempts", "code": "codes"}.get(action, "attempts")
    return f"Too many {what}. Please wait {words} and try again."


# The pages that send a signed-in user on (_signed_out): a ?next= naming one of them would
# send it round for ever.
_SENDING_ON = set()


def _already_signed_in():
    """Send a signed-in user on, as Devise's require_no_authentication does: its forms would
    switch accounts or make a second one. None when nobody is signed in."""
    if not current_user.is_authenticated:
        return None
    if request.method != "HEAD":  # (no page shows a HEAD's flash: the next one would)
        flash("You are already signed in.", "warning")
    home = url_for("web.home")
    target = safe_next(home)
    # Not back to these pages (?next=/users/sign_in): each would send it on again, for ever.
    try:
        endpoint, _ = current_app.create_url_adapter(request).match(unquote(urlsplit(target).path), method="GET")
    except HTTPException:  # (a 404, or a redirect to the canonical path: home will do)
        return redirect(home)
    return redirect(home if endpoint in _SENDING_ON else target)


def _signed_out(view):
    """_already_signed_in before the view, as Devise's SessionsController,
    RegistrationsController (new, create), PasswordsController and UnlocksController do (its
    ConfirmationsController does not: not for confirmations)."""
    _SENDING_ON.add(f"{bp.name}.{view.__name__}")
    @wraps(view)
    def wrapped(*args, **kwargs):
        return _already_signed_in() or view(*args, **kwargs)
    return wrapped


def _sign_in_again(email: str, error: str, status: int):
    """The sign-in form after a failure, the address kept; only a wrong address or password
    marks the fields wrong (a locked account answers as a wrong password, byte for byte)."""
    return render_template("accounts/sign_in.html", email=email, error=error,
                           wrong=error == auth.INVALID_SIGN_IN), status


@bp.route("/sign_in", methods=["GET", "POST"])
@_with_logins
@_signed_out
def sign_in():
    """Show the sign-in form; sign in."""
    # Only a POST signs in: Flask also routes HEAD here, and the CSRF check skips HEAD.
    if request.method != "POST":
        return render_template("accounts/sign_in.html", email="")
    email = request.form.get("email", "")
    user = auth.find_user(email)
    too_many = _throttled("login", pushes.utcnow(), email=email, user=user)
    if too_many:
        return _sign_in_again(email, too_many, 429)
    password_ok = auth.check_password(user, request.form.get("password", ""))
    # (Said only to a right password of an unlocked account: nothing else says anything of it.)
    second_factor = password_ok and twofactor.is_on(user)
    refusal = (account_mail.sign_in_refusal(user, password_ok, pushes.utcnow(), keep_count=second_factor)
               if account_mail.enabled() else None)
    if refusal:
        return _sign_in_again(email, refusal, 401)
    if second_factor:
        return _ask_for_second_factor(user)
    # (No session when the password changed while it was checked: start_session.)
    if not password_ok or not _sign_in(user):
        return _sign_in_again(email, auth.INVALID_SIGN_IN, 401)
    flash("Signed in successfully.", "success")
    return redirect(safe_next(url_for("web.home")))


# --------------------------------------------------------------- two-factor authentication

# How long the code page of a sign-in (its right password) waits for the code.
SECOND_FACTOR_WITHIN = 300
# How long the set-up page keeps the secret it showed (the app scanned, the code typed).
SETUP_WITHIN = 900
WRONG_CODE = "That code is not valid, or has been used already."
NOT_CURRENT_PASSWORD = "That is not your current password."


def _pending_mark(user) -> str:
    """A digest of the account's password hash and of what a code's use changes
    (twofactor.use_state): a pending sign-in ends with a password change, and once a code
    was used (its own sign-in succeeded: a copy of its cookie cannot sign in again)."""
    password_hash = db.session.scalar(select(User.password_hash).where(User.id == user.id))
    return hashlib.sha256(f"{password_hash}\0{twofactor.use_state(user)}".encode()).hexdigest()[:32]


def _ask_for_second_factor(user):
    """The password was right and the account has two-factor authentication: no session yet,
    but this browser's pending sign-in (sealed, SECOND_FACTOR_WITHIN) and the code page."""
    after = safe_next(url_for("web.home"))
    session.clear()
    session["otp_sign_in"] = pushes.seal_token("otp-sign-in", {
        "i": user.id, "h": _pending_mark(user), "n": after}, pushes.utcnow())
    return redirect(url_for("accounts.two_factor_sign_in"))


def _pending_sign_in(now):
    """(the account, where to go next) of this browser's pending sign-in, if still live, its
    account's password unchanged and no code used since (_pending_mark); else (None, None)."""
    data = pushes.open_token("otp-sign-in", session.get("otp_sign_in"), SECOND_FACTOR_WITHIN, now)
    user = auth.account(data["i"]) if data and isinstance(data.get("i"), int) else None
    if user is None or not user.password_hash or not twofactor.is_on(user) \
            or not hmac.compare_digest(_pending_mark(user), str(data.get("h"))):
        return None, None
    return user, data.get("n") or url_for("web.home")


def _sign_in_expired():
    """Back to the sign-in form: the pending sign-in is gone (expired, or used)."""
    session.pop("otp_sign_in", None)
    if request.method != "HEAD":  # (no page shows a HEAD's flash: the next one would)
        flash("Your sign-in has expired: please sign in again.", "warning")
    return redirect(url_for("accounts.sign_in"))


@bp.route("/two_factor/sign_in", methods=["GET", "POST"])
@_with_logins
@_signed_out
def two_factor_sign_in():
    """The second step of a sign-in with two-factor authentication: a code of the app, or a
    backup code. A wrong one counts as a wrong password does (throttled; with account e-mails
    on, towards the lock)."""
    now = pushes.utcnow()
    user, after = _pending_sign_in(now)
    if user is None:
        return _sign_in_expired()
    if request.method != "POST":
        return render_template("accounts/two_factor_sign_in.html")
    too_many = _throttled("login", now, email=user.email, user=user) or _throttled("code", now, user=user)
    if too_many:
        return render_template("accounts/two_factor_sign_in.html", error=too_many), 429
    # A locked account's code is not checked: a right one, refused, would be used up for nothing.
    locked = account_mail.enabled() and account_mail.locked(user, now)
    if not locked:
        # The pending sign-in checked again with the account's row held until the code's use
        # commits: of two copies of its cookie sent at once, each with another good code (the
        # app's and a backup code), the second waits, then finds a code used since.
        auth.hold(user)
        if _pending_sign_in(now)[0] is None:
            db.session.rollback()
            return _sign_in_expired()
    code_ok = not locked and twofactor.verify(user, request.form.get("code", ""), now)
    refusal = account_mail.sign_in_refusal(user, code_ok, now) if account_mail.enabled() else None
    if not code_ok or refusal:
        # (A locked account's right code is told as a wrong one, as its right password is.)
        error = refusal if refusal and refusal != auth.INVALID_SIGN_IN else WRONG_CODE
        return render_template("accounts/two_factor_sign_in.html", error=error), 401
    if not _sign_in(user):
        flash(auth.INVALID_SIGN_IN, "warning")
        return redirect(url_for("accounts.sign_in"))
    flash("Signed in successfully.", "success")
    return redirect(after)


def _shown_secret(user, now) -> str | None:
    """The secret the set-up page showed this browser last, if under SETUP_WITHIN ago."""
    data = pushes.open_token("otp-setup", session.get("otp_setup"), SETUP_WITHIN, now)
    return data["s"] if data and data.get("i") == user.id and isinstance(data.get("s"), str) else None


def _setup_secret(user, now) -> str:
    """The secret the set-up page shows this browser: the one it showed last (for
    SETUP_WITHIN: the app may have scanned it), else a new one."""
    shown = _shown_secret(user, now)
    if shown:
        return shown
    secret = twofactor.new_secret()
    session["otp_setup"] = pushes.seal_token("otp-setup", {"i": user.id, "s": secret}, now)
    return secret


def _two_factor_page(user, status=200, errors=None):
    """The account's two-factor page: set-up (a QR code of the secret, the secret, the code
    that confirms it) when off, else what can be done with it."""
    if twofactor.is_on(user):
        return render_template("accounts/two_factor.html", errors=errors or {},
                               codes_left=twofactor.backup_codes_left(user)), status
    secret = _setup_secret(user, pushes.utcnow())
    uri = twofactor.provisioning_uri(secret, user.email, current_app.config["PWP__BRAND__TITLE"] or "pwpush")
    # (Required: every other page sends the browser back here, so this one links to none of them.)
    return render_template("accounts/two_factor.html", errors=errors or {}, secret=secret, qr=qr_data_uri(uri),
                           grouped=" ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
                           required=current_app.config["PWP__REQUIRE_MFA"], next=safe_next("")), status


def _backup_codes_page(codes, heading):
    """The backup codes, shown once; "Done" leads to the set-up's ?next= (the page it was
    required for), else back to the two-factor page."""
    return render_template("accounts/two_factor_codes.html", codes=codes, heading=heading,
                           done=safe_next(url_for("accounts.two_factor")))


def _password_refusal(user, now):
    """The two-factor page's answer to a form whose current password is refused (counted as
    a password guess, LIMITS["password"], then checked); None when it is right."""
    too_many = _throttled("password", now, user=user)
    if too_many:
        return _two_factor_page(user, 429, {"current_password": too_many})
    if not auth.check_password(user, request.form.get("current_password", "")):
        return _two_factor_page(user, 422, {"current_password": NOT_CURRENT_PASSWORD})
    return None


@bp.route("/two_factor", methods=["GET", "POST"])
@_with_logins
@login_required
def two_factor():
    """Show two-factor authentication's page; POST: turn it on with the password (a signed-in
    browser alone must not: its owner's sign-ins would then need another's app) and a code of
    the secret shown (the app set up), then show the backup codes, once."""
    user = current_user._get_current_object()
    if request.method != "POST" or twofactor.is_on(user):
        return _two_factor_page(user)
    now = pushes.utcnow()
    refused = _password_refusal(user, now)
    if refused:
        return refused
    secret = _shown_secret(user, now)
    if secret is None:  # (the page then shows a new one)
        return _two_factor_page(user, 422, {"code": "The secret shown before has expired: a new one is shown, "
                                                    "scan it again (or type it) and enter its code."})
    codes = twofactor.turn_on(user, secret, request.form.get("code", ""), now)
    if codes is None:
        return _two_factor_page(user, 422, {"code": "That code is not the current one: check that the app has "
                                                    "the secret shown, and its device's clock."})
    session.pop("otp_setup", None)
    _remember_device(user)  # (its cookie from before counts nothing now)
    account_mail.two_factor_changed(user, True)
    return _backup_codes_page(codes, "Two-factor authentication is on")


def _with_password_and_code(view):
    """A change of an account with two-factor authentication on (else: its page): the form
    asks for the password and a code (or a backup code), counted as password guesses
    (LIMITS["password"]); the view runs, with the account, when both are right."""
    @wraps(view)
    def wrapped():
        user = current_user._get_current_object()
        if not twofactor.is_on(user):
            return redirect(url_for("accounts.two_factor"))
        now = pushes.utcnow()
        refused = _password_refusal(user, now)
        if refused:
            return refused
        # (The code only with the right password: a wrong one uses up no backup code.)
        too_many = _throttled("code", now, user=user)
        if too_many:
            return _two_factor_page(user, 429, {"code": too_many})
        if not twofactor.verify(user, request.form.get("code", ""), now):
            return _two_factor_page(user, 422, {"code": WRONG_CODE})
        return view(user)
    return wrapped


@bp.post("/two_factor/disable")
@_with_logins
@login_required
@_with_password_and_code
def disable_two_factor(user):
    """Turn two-factor authentication off."""
    twofactor.turn_off(user, "by its owner")
    _remember_device(user)
    account_mail.two_factor_changed(user, False)
    flash("Two-factor authentication is off.", "success")
    return redirect(url_for("accounts.two_factor"))


@bp.post("/two_factor/backup_codes")
@_with_logins
@login_required
@_with_password_and_code
def new_backup_codes(user):
    """Make new backup codes (the old ones stop working)."""
    return _backup_codes_page(twofactor.new_backup_codes(user), "New backup codes")


# The pages a signed-in account without two-factor authentication may open when it is
# required (PWP__REQUIRE_MFA): setting it up, signing out, the static files, the health check
# and robots.txt (as upstream's health check: a monitor may carry a signed-in cookie).
NOT_SENT_BEFORE_SET_UP = "What you sent was not saved: send it again once two-factor authentication is on."
_WITHOUT_SECOND_FACTOR = {"accounts.two_factor", "accounts.sign_out", "static", "pages.up", "pages.robots"}


def _require_second_factor():
    """PWP__REQUIRE_MFA: send a signed-in account without two-factor authentication to its
    set-up (the JSON APIs answer 403 instead: auth.api_auth)."""
    if (request.endpoint in _WITHOUT_SECOND_FACTOR or request.blueprint in ("api", "api_v1")
            or not has_cookies(request) or not current_user.is_authenticated or twofactor.is_on(current_user)):
        return None
    if request.method != "HEAD":
        flash(auth.MFA_REQUIRED, "warning")
    # The page asked for, to go on to once it is set up (a GET's); a form sent (a POST) is not
    # kept: the page says so rather than leave it lost unsaid.
    if request.method in ("GET", "HEAD"):
        return redirect(url_for("accounts.two_factor", next=request.full_path.rstrip("?")))
    flash(NOT_SENT_BEFORE_SET_UP, "warning")
    return redirect(url_for("accounts.two_factor"))


@bp.route("/sign_up", methods=["GET", "POST"])
@_404_unless(lambda: not (current_app.config["PWP__DISABLE_SIGNUPS"] or current_app.config["PWP__DISABLE_LOGINS"]))
@_signed_out
def sign_up():
    """Show the sign-up form; create an account and sign in."""
    # Only a POST creates an account: Flask also routes HEAD here, and the CSRF check skips HEAD.
    if request.method != "POST":
        return render_template("accounts/sign_up.html", email="", errors={})
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    too_many = _throttled("signup", pushes.utcnow())
    if too_many:
        return render_template("accounts/sign_up.html", email=email, errors={"email": too_many}), 429
    errors = _new_password_errors()
    if auth.normalize_email(email) is None:  # said with the password's problems, not after them
        errors["email"] = auth.INVALID_EMAIL if email.strip() else "Enter your e-mail address."
    confirm = account_mail.enabled()
    if not errors:
        try:
            user = auth.create_user(email, password, confirmed=not confirm)
        except ValueError as exc:
            errors["email"] = str(exc)
    if errors:
        return render_template("accounts/sign_up.html", email=email, errors=errors), 422
    if confirm:
        account_mail.issue("confirmation", user, pushes.utcnow())
        flash("A message with a confirmation link has been sent to your e-mail address. "
              "Follow it to activate your account.", "success")
        return redirect(url_for("accounts.sign_in"))
    _sign_in(user)
    flash("Welcome! Your account is ready.", "success")
    return redirect(url_for("web.home"))


def _sign_in(user) -> bool:
    """Start a new session for the user (its row: auth.start_session): nothing of the one
    before (its CSRF token, which someone may have planted or read) carries over. False when
    the account's password changed, or the account went, since it was read."""
    auth.end_session(session.get("_user_id"))  # (a browser signed in already: that session ends)
    session.clear()
    if auth.start_session(user, pushes.utcnow()) is None or not login_user(user):
        return False
    _remember_device(user)
    return True


def _new_password_errors() -> dict:
    """The form's password and password_confirmation, checked by auth's rule."""
    password = request.form.get("password", "")
    confirmation = request.form.get("password_confirmation", "")
    # Each problem at once: a short password that the confirmation does not match is both.
    errors = dict(filter(None, [auth.password_problem(password)]))
    if password != confirmation:
        errors["password_confirmation"] = auth.PASSWORDS_DIFFER
    return errors


@bp.route("/edit", methods=["GET", "POST"])
@_with_logins
@login_required
def edit():
    """Change one's password (the current one is asked for; LIMITS["password"] counts the
    guesses); every other session of the account is signed out."""
    if request.method != "POST":
        return render_template("accounts/edit.html", errors={})
    user = current_user._get_current_object()
    too_many = _throttled("password", pushes.utcnow(), user=user)
    if too_many:
        return render_template("accounts/edit.html", errors={"current_password": too_many}), 429
    errors = _new_password_errors()  # said with a wrong current password, not after it
    if not auth.check_password(user, request.form.get("current_password", "")):
        errors["current_password"] = NOT_CURRENT_PASSWORD
    if errors:
        return render_template("accounts/edit.html", errors=errors), 422
    account_mail.change_password(user, request.form["password"])
    _sign_in(user)  # this browser's new session (set_password ended every one)
    current_app.logger.info("user %s: password changed", user.id)
    flash("Your password has been changed. Your other sessions are signed out.", "success")
    return redirect(url_for("accounts.edit"))


@bp.post("/sign_out")
def sign_out():
    """Sign out: the session's row goes, so a copy of its cookie is anonymous too, and nothing
    of the session stays in the browser (its CSRF token included, as Devise clears it)."""
    auth.end_session(session.get("_user_id"))
    logout_user()
    session.clear()
    flash("Signed out.", "success")
    return redirect(url_for("web.home"))


@bp.get("/token")
@_with_logins
@login_required
def token():
    """Explain API tokens and offer to make a new one."""
    return render_template("accounts/token.html", new_token=None, base=base_url(),
                           has_token=current_user.api_token_digest is not None)


@bp.route("/token", methods=["POST", "DELETE"])
@_with_logins
@login_required
def regenerate_token():
    """Make a new API token (the old one stops working) and show it once (upstream
    regenerates with DELETE; the page's form POSTs)."""
    new_token = auth.issue_token(current_user._get_current_object())
    return render_template("accounts/token.html", new_token=new_token, base=base_url(),
                           has_token=True)


# ----------------------------------------------------------------------------- account e-mails

# Each form that asks for a link: its heading, what it says, its button, and the answer,
# the same whether the account exists or not (Devise's paranoid mode).
ASK = {
    "reset_password": ("Forgot your password?", "Enter your account's e-mail address: we will send it a link "
                       "to choose a new password (for 6 hours).", "Send me a reset link",
                       "If your e-mail address is in our database, you will receive a password recovery "
                       "link at it in a few minutes."),
    "confirmation": ("Resend the confirmation link", "Enter your account's e-mail address: we will send it a "
                     "new link that confirms it.", "Resend the confirmation link",
                     "If your e-mail address is in our database and not confirmed yet, you will receive a "
                     "new confirmation link at it in a few minutes."),
    "unlock": ("Resend the unlock link", "Enter your account's e-mail address: we will send it a new link "
               "that unlocks it. A locked account also unlocks by itself an hour after it was locked.",
               "Resend the unlock link",
               "If your account exists and is locked, you will receive an e-mail with a link that "
               "unlocks it in a few minutes."),
}
ASK_ENDPOINTS = {"reset_password": "accounts.create_password", "confirmation": "accounts.confirmation",
                 "unlock": "accounts.unlock"}


def _ask_page(kind: str, email: str = "", error: str | None = None):
    heading, intro, button, _answer = ASK[kind]
    return render_template("accounts/ask_for_link.html", heading=heading, intro=intro, button=button,
                           action=url_for(ASK_ENDPOINTS[kind]), email=email, error=error)


def _ask(kind: str):
    """A form's request for a link: counted (LIMITS["mail"]), mailed if the account needs
    it (account_mail.ask_for), and answered the same either way."""
    email = request.form.get("email", "")
    if not email.strip():
        return _ask_page(kind, email, "Enter your e-mail address."), 422
    now = pushes.utcnow()
    # (The account for its browsers' own count, a stranger spending the address's keeping out
    # no browser known to it; looked up for any address, the same work.)
    user = auth.find_user(email)
    notify.prepare_later()  # (any address: the thread that starts an account's work later)
    too_many = _throttled("mail", now, email=email, user=user)
    if too_many:
        return _ask_page(kind, email, too_many), 429
    app = current_app._get_current_object()

    @after_this_request
    def ask_once_sent(response):
        # Once the server has sent the answer and closes it: an account's work (its token
        # written, its mail) then neither delays the answer nor runs while it is being sent.
        # The same at close() for any address (nothing done there told one apart either), only
        # an account's taking a sending place later (a flood of other addresses takes none).
        response.call_on_close(partial(account_mail.ask_for, app, kind, email, now, user is not None))
        return response
    flash(ASK[kind][3], "success")
    return redirect(url_for("accounts.sign_in"))


@bp.get("/password/new")
@_with_account_mails
@_signed_out
def new_password():
    """Show the form that asks for a password reset link."""
    return _ask_page("reset_password")


@bp.post("/password")
@_with_account_mails
@_signed_out
def create_password():
    """Mail a password reset link to the address, if it is an account's."""
    return _ask("reset_password")


@bp.route("/password/edit", methods=["GET", "POST"])
@_with_account_mails
@_signed_out
def edit_password():
    """Show a reset link's new-password form; set the password (the link then stops
    working), unlock the account, sign out its sessions and sign this browser in."""
    token = request.values.get("reset_password_token", "")
    user = account_mail.holder("reset_password", token, pushes.utcnow())
    if user is None:
        return _ask_page("reset_password", error=account_mail.INVALID_LINK), 422
    # Only a POST sets it: Flask also routes HEAD here, and the CSRF check skips HEAD.
    if request.method != "POST":
        return render_template("accounts/edit_password.html", token=token, email=user.email, errors={})
    errors = _new_password_errors()
    if errors:
        return render_template("accounts/edit_password.html", token=token, email=user.email, errors=errors), 422
    try:
        account_mail.reset_password(user, token, request.form["password"])
    except auth.Refused:  # (the link used meanwhile, or the account deleted)
        return _ask_page("reset_password", error=account_mail.INVALID_LINK), 422
    current_app.logger.info("user %s: password reset by e-mail", user.id)
    if account_mail.confirmed(user) and twofactor.is_on(user):
        # The mailbox alone signs in past no second factor: the code is asked for, as at a sign-in.
        response = _ask_for_second_factor(user)
        flash("Your password has been changed. Enter a code to sign in.", "success")
        return response
    if account_mail.confirmed(user) and _sign_in(user):
        flash("Your password has been changed and you are signed in. Your other sessions are signed out.",
              "success")
        return redirect(url_for("web.home"))
    flash("Your password has been changed.", "success")
    return redirect(url_for("accounts.sign_in"))


@bp.get("/confirmation/new")
@_with_account_mails
def new_confirmation():
    """Show the form that asks for a new confirmation link."""
    return _ask_page("confirmation")


@bp.route("/confirmation", methods=["GET", "POST"])
@_with_account_mails
def confirmation():
    """Confirm the account of a mailed link; POST: mail a new link, if the address is an
    unconfirmed account's."""
    return _follow("confirmation", account_mail.confirm, "Your e-mail address has been confirmed: you can sign in.")


@bp.get("/unlock/new")
@_with_account_mails
@_signed_out
def new_unlock():
    """Show the form that asks for a new unlock link."""
    return _ask_page("unlock")


@bp.route("/unlock", methods=["GET", "POST"])
@_with_account_mails
@_signed_out
def unlock():
    """Unlock the account of a mailed link; POST: mail a new link, if the address is a
    locked account's."""
    return _follow("unlock", account_mail.unlock, "Your account has been unlocked: you can sign in.")


def _follow(kind: str, use, done: str):
    """POST: _ask(kind); GET: use the mailed link's token (confirm, unlock), then say done;
    HEAD (a mail scanner's, a link preview's): answer as a GET would, using nothing."""
    if request.method == "POST":
        return _ask(kind)
    token, now = request.args.get(f"{kind}_token", ""), pushes.utcnow()
    if request.method == "HEAD":
        live = account_mail.holder(kind, token, now) is not None
        return redirect(url_for("accounts.sign_in")) if live else (_ask_page(kind), 422)
    if not use(token, now):
        return _ask_page(kind, error=account_mail.INVALID_LINK), 422
    flash(done, "success")
    return redirect(url_for("accounts.sign_in"))


@bp.errorhandler(auth.Refused)
def account_gone(exc):
    """The account was deleted (by an administrator) between this request loading it and its
    write (auth raises Refused(ACCOUNT_GONE)): say so and end the session."""
    logout_user()
    flash(str(exc), "warning")
    return redirect(url_for("accounts.sign_in"))


def init_app(app):
    """Register the account pages; Flask-Login sends anonymous visitors to sign-in."""
    app.register_blueprint(bp)
    if app.config["PWP__REQUIRE_MFA"]:
        app.before_request(_require_second_factor)
    app.add_url_rule("/api_tokens", "api_tokens",
                     _with_logins(lambda: redirect(url_for("accounts.token"), 301)))
    auth.login_manager.login_view = "accounts.sign_in"
