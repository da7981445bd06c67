"""Owner pages: the dashboard of one's pushes and a push's audit log."""
from functools import wraps

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from . import params, pushes
from .api import secret_url
from .auth import sign_in_first
from .errors import Forbidden
from .models import AuditKind
from .web import switched_off, time_left

bp = Blueprint("owner", __name__)
PER_PAGE = 25


def signed_in(view):
    """Require a signed-in user (or say the page is unavailable when logins are disabled)."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        if current_app.config["PWP__DISABLE_LOGINS"]:
            flash("This page is only available when signed in.", "warning")
            return redirect(url_for("web.home"))
        if not current_user.is_authenticated:
            return sign_in_first()
        return view(*args, **kwargs)
    return wrapped


def _page_count(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


def _page(pages: int) -> int:
    """The ?page= asked for, past the last page meaning the last (pages have no cap here,
    unlike the API's 200)."""
    return min(params.page_param(limit=None), pages)


@bp.get("/p")
@signed_in
def dashboard():
    """List the signed-in user's active or expired pushes, 25 a page."""
    expired = request.args.get("filter") == "expired"
    user = current_user._get_current_object()
    counts = {"active": pushes.count_for(user, False), "expired": pushes.count_for(user, True)}
    pages = _page_count(counts["expired" if expired else "active"], PER_PAGE)
    page = _page(pages)
    now = pushes.utcnow()
    rows = [{"push": p, "note": pushes.note_of(p), "left": time_left(p, now),
             "views": pushes.views_remaining(p)}
            for p in pushes.list_for(user, expired, page, PER_PAGE)]
    return render_template("owner/dashboard.html", rows=rows, counts=counts,
                           filter="expired" if expired else "active", page=page, pages=pages)


@bp.get("/p/<token:url_token>/audit")
@signed_in
def audit(url_token):
    """Show a push's settings, status and audit events (owner only)."""
    try:
        push = pushes.owned(url_token, current_user._get_current_object())
    except Forbidden as exc:
        flash(exc.message, "warning")
        return redirect(url_for("web.home"))
    except pushes.NotFound:  # (an owner's link to a purged push: not the recipient's page)
        flash("That push no longer exists: expired pushes are deleted after a while.", "warning")
        return redirect(url_for("owner.dashboard"))
    if off := switched_off(push):
        return off
    now = pushes.utcnow()
    counts = pushes.view_counts(push)
    pages = _page_count(sum(counts.values()), pushes.PER_PAGE)
    page = _page(pages)
    return render_template(
        "owner/audit.html", push=push, url=secret_url(push), note=pushes.note_of(push),
        events=pushes.audit_log(push, page), page=page, pages=pages,
        views_ok=counts.get("view", 0), views_failed=counts.get("failed_view", 0),
        left=time_left(push, now), lifetime=time_left(push, push.created_at),
        views=pushes.views_remaining(push),
        kind_names={int(k): k.name for k in AuditKind})


def init_app(app):
    """Register the owner pages."""
    app.register_blueprint(bp)
