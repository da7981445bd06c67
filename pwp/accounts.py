"""Accounts in the browser: sign up, sign in (throttled), sign out, and the API token page."""
import hashlib
import math
import unicodedata
from functools import wraps

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from . import auth, pushes
from .api import base_url
from .words import plural

bp = Blueprint("accounts", __name__, url_prefix="/users")

# (counter, period in seconds, attempts allowed) per action. Sign-in: upstream's Rack::Attack
# rule, 5 per 20 seconds per IP, plus a per-account limit so many addresses cannot guess one
# password. Sign-up: each costs a password hash (~85 ms). A password change has its own
# per-account counter: sign-in failures by others must not keep the owner from changing it.
LIMITS = {"login": (("ip", 20, 5), ("email", 300, 10)),
          "signup": (("ip", 60, 5),),
          "password": (("ip", 20, 5), ("user", 300, 10))}


def _with_logins(view):
    """404 before anything else when logins are disabled (no sign-in page to send anyone to)."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        if current_app.config["PWP__DISABLE_LOGINS"]:
            abort(404)
        return view(*args, **kwargs)
    return wrapped


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


def _throttled(action: str, now, email: str = "", user_id: int | None = None) -> str | None:
    """Count an attempt at an action (LIMITS) per IP and per account. Over a limit, the
    message that says how long to wait (the rest of the limit's window), else None."""
    who = {"ip": request.remote_addr or "",
           "email": hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32], "user": user_id}
    wait = 0
    for what, period, limit in LIMITS[action]:
        if pushes.count_attempt(f"{action}:{what}:{who[what]}", period, now) > limit:
            wait = max(wait, period - pushes.unix_seconds(now) % period)
    if not wait:
        return None
    words = plural(wait, "second") if wait < 60 else plural(math.ceil(wait / 60), "minute")
    return f"Too many {'sign-in attempts' if action == 'login' else 'attempts'}. Please wait {words} and try again."


@bp.route("/sign_in", methods=["GET", "POST"])
@_with_logins
def sign_in():
    """Show the sign-in form; sign in."""
    # Only a POST signs in: Flask also routes HEAD here, and the CSRF check skips HEAD.
    if request.method != "POST":
        return render_template("accounts/sign_in.html", email="")
    email = request.form.get("email", "")
    too_many = _throttled("login", pushes.utcnow(), email=email)
    if too_many:
        return render_template("accounts/sign_in.html", email=email, error=too_many), 429
    user = auth.find_user(email)
    # (No session when the password changed while it was checked: start_session.)
    if not auth.check_password(user, request.form.get("password", "")) or not _sign_in(user):
        return render_template("accounts/sign_in.html", email=email,
                               error="Invalid e-mail address or password."), 401
    flash("Signed in successfully.", "success")
    return redirect(safe_next(url_for("web.home")))


@bp.route("/sign_up", methods=["GET", "POST"])
def sign_up():
    """Show the sign-up form; create an account and sign in."""
    cfg = current_app.config
    if cfg["PWP__DISABLE_SIGNUPS"] or cfg["PWP__DISABLE_LOGINS"]:
        abort(404)
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
        errors["email"] = auth.INVALID_EMAIL
    if not errors:
        try:
            user = auth.create_user(email, password)
        except ValueError as exc:
            errors["email"] = str(exc)
    if errors:
        return render_template("accounts/sign_up.html", email=email, errors=errors), 422
    _sign_in(user)
    flash("Welcome! Your account is ready.", "success")
    return redirect(url_for("web.home"))


def _sign_in(user) -> bool:
    """Start a new session for the user (its row: auth.start_session): nothing of the one
    before (its CSRF token, which someone may have planted or read) carries over. False when
    the account's password changed, or the account went, since it was read."""
    auth.end_session(session.get("_user_id"))  # (a browser signed in already: that session ends)
    session.clear()
    return auth.start_session(user, pushes.utcnow()) is not None and login_user(user)


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
    too_many = _throttled("password", pushes.utcnow(), user_id=user.id)
    if too_many:
        return render_template("accounts/edit.html", errors={"current_password": too_many}), 429
    errors = _new_password_errors()  # said with a wrong current password, not after it
    if not auth.check_password(user, request.form.get("current_password", "")):
        errors["current_password"] = "That is not your current password."
    if errors:
        return render_template("accounts/edit.html", errors=errors), 422
    auth.set_password(user, request.form["password"])
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
    app.add_url_rule("/api_tokens", "api_tokens",
                     _with_logins(lambda: redirect(url_for("accounts.token"), 301)))
    auth.login_manager.login_view = "accounts.sign_in"
