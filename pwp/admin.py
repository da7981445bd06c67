"""The administration page (administrators only): the accounts, made administrators or not, deleted."""
from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from . import auth, params, pushes
from .owner import PER_PAGE, paging, signed_in
from .words import account_deleted

bp = Blueprint("admin", __name__, url_prefix="/admin")
# An account id as the database's integer column holds it (a larger one: the not-found page,
# not PostgreSQL's out-of-range error).
ACCOUNT = "/users/<int(max=2147483647):user_id>"


def admins_only(view):
    """Require a signed-in administrator. Anyone else signed in gets the not-found page, as
    upstream's admin routes, which exist only for administrators: nothing says what is here."""
    @wraps(view)
    @signed_in
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(404)
        return view(*args, **kwargs)
    return wrapped


def with_account(view):
    """Give an administrator's view the account of the URL's id (one deleted meanwhile:
    back to the list, told so)."""
    @wraps(view)
    @admins_only
    def wrapped(user_id):
        user = auth.account(user_id)
        if user is None:
            flash(auth.ACCOUNT_GONE, "warning")
            return redirect(url_for("admin.users"))
        return view(user)
    return wrapped


@bp.get("")
@admins_only
def index():
    """Send administrators to the accounts."""
    return redirect(url_for("admin.users"))


@bp.get("/users")
@admins_only
def users():
    """List the accounts, 25 a page: e-mail, administrator, web sign-in, live pushes, created."""
    page, pages = paging(pushes.count_accounts(), PER_PAGE)
    return render_template("admin/users.html", accounts=pushes.accounts(page, PER_PAGE), page=page, pages=pages)


def _list_page(source=None) -> str:
    """The list's page the form (or the delete link) was on (a value that is no page: the first)."""
    page = params.cast_int((request.form if source is None else source).get("page"))
    return url_for("admin.users", page=page) if page and page > 1 else url_for("admin.users")


def _change(change, user, done, back: str, **kwargs):
    """Make a change to an account as the signed-in administrator; flash done(its result),
    or why it was refused; redirect back (or, for one no longer an administrator, home)."""
    try:
        result = change(user, by=current_user._get_current_object(), **kwargs)
    except auth.Refused as exc:
        flash(str(exc), "warning")
        return redirect(url_for("web.home") if str(exc) == auth.NOT_AN_ADMIN else back)
    flash(done(result), "success")
    return redirect(back)


@bp.post(ACCOUNT + "/admin")
@with_account
def make_admin(user):
    """Make the account an administrator."""
    return _change(auth.set_admin, user, lambda _: f"{user.email} is now an administrator.", _list_page(),
                   admin=True)


@bp.post(ACCOUNT + "/revoke_admin")
@with_account
def revoke_admin(user):
    """Make the account no longer an administrator (not one's own)."""
    return _change(auth.set_admin, user, lambda _: f"{user.email} is no longer an administrator.",
                   _list_page(), admin=False)


@bp.get(ACCOUNT + "/delete")
@with_account
def confirm_delete(user):
    """Say what deleting the account deletes, and ask."""
    if user.id == current_user.id:
        flash(auth.YOURSELF, "warning")
        return redirect(url_for("admin.users"))
    live, expired = pushes.count_for(user, False), pushes.count_for(user, True)
    return render_template("admin/delete.html", user=user, live=live, total=live + expired,
                           back=_list_page(request.args), page=params.cast_int(request.args.get("page")))


@bp.post(ACCOUNT + "/delete")
@with_account
def delete(user):
    """Delete the account, its API token and all its pushes (not one's own)."""
    email = user.email  # (read before the row goes)
    # (Not "and its API token": an account may have none. The page before said what goes.)
    return _change(auth.delete_account, user, lambda count: f"{account_deleted(email, count)}.", _list_page())


def init_app(app):
    """Register the administration page."""
    app.register_blueprint(bp)
