"""Owner pages: the dashboard of one's pushes, a push's audit log and its edit form."""
import dataclasses
import re
from datetime import timedelta
from functools import wraps

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from . import notify, params, pushes
from .api import NOTIFY_QUEUED, secret_url
from .auth import actor, sign_in_first
from .errors import Forbidden, TooManyAttempts, TooManyNotifyRequests, ValidationFailed
from .models import AuditKind, Kind
from .words import plural
from .web import (FILES_NOT_STORED, NOTHING_CHANGED, PUSH_UPDATED, form_options, form_values, render_preview,
                  say_bounded, signed_in_user, switched_off, time_left, within_bounds)

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


def paging(total: int, per_page: int) -> tuple[int, int]:
    """The page asked for (?page=; past the last page meaning the last: pages have no cap
    here, unlike the API's 200) and the page count, for a list of total items."""
    pages = max(1, -(-total // per_page))
    return min(params.page_param(limit=None), pages), pages


@bp.get("/p")
@signed_in
def dashboard():
    """List the signed-in user's active or expired pushes, 25 a page."""
    expired = request.args.get("filter") == "expired"
    user = current_user._get_current_object()
    counts = {"active": pushes.count_for(user, False), "expired": pushes.count_for(user, True)}
    page, pages = paging(counts["expired" if expired else "active"], PER_PAGE)
    now = pushes.utcnow()
    listed = pushes.list_for(user, expired, page, PER_PAGE)
    mailed = notify.summaries([p.id for p in listed])
    rows = [{"push": p, "note": pushes.note_of(p), "left": time_left(p, now),
             "views": pushes.views_remaining(p), "mailed": mailed.get(p.id)}
            for p in listed]
    return render_template("owner/dashboard.html", rows=rows, counts=counts,
                           filter="expired" if expired else "active", page=page, pages=pages)


def owned(view):
    """Give the view its push, for the signed-in owner; anyone else is redirected, told why."""
    @wraps(view)
    @signed_in
    def wrapped(url_token):
        try:
            push = pushes.owned(url_token, current_user._get_current_object())
        except Forbidden as exc:
            flash(exc.message, "warning")
            return redirect(url_for("web.home"))
        except pushes.NotFound:  # (an owner's link to a purged push: not the recipient's page)
            flash("That push no longer exists: expired pushes are deleted after a while.", "warning")
            return redirect(url_for("owner.dashboard"))
        return switched_off(push) or view(push)
    return wrapped


def _lifetime(push) -> str:
    """How long the push was made (or edited) to last, from its creation: its days, as the
    API's expire_after_days (its expiry time less its creation time is a day more once an
    edit made seconds or hours after it added whole days), or hours and minutes when shorter."""
    if push.expires_at - push.created_at >= timedelta(hours=23):
        return plural(push.expire_after_days, "day")
    return time_left(push, push.created_at)


@bp.get("/p/<token:url_token>/audit")
@owned
def audit(push):
    """Show a push's settings, status and audit events (owner only)."""
    now = pushes.utcnow()
    counts = pushes.view_counts(push)
    page, pages = paging(sum(counts.values()), pushes.PER_PAGE)
    events = pushes.audit_log(push, page)
    sendings = notify.of_events([e.id for e in events if e.kind == AuditKind.creation_email_send])
    return render_template(
        "owner/audit.html", push=push, url=secret_url(push), note=pushes.note_of(push),
        events=events, sendings=sendings, page=page, pages=pages,
        views_ok=counts.get("view", 0), views_failed=counts.get("failed_view", 0),
        passphrases_failed=counts.get("failed_passphrase", 0),
        left=time_left(push, now), lifetime=_lifetime(push),
        views=pushes.views_remaining(push),
        kind_names={int(k): k.name for k in AuditKind})


def _already_expired(url_token):
    flash("That push has already expired: it can no longer be changed.", "warning")
    return redirect(url_for("owner.audit", url_token=url_token))


def _edit_options(push, now, shown):
    """The form's options, with the bounds an edit of this push may use, widened to what the
    form shows (what is left may lie outside them, e.g. under a minimum raised since: the
    slider, whose value a browser keeps within its bounds, would otherwise change it)."""
    options = form_options(push.kind_name)
    for what, (low, high) in pushes.edit_bounds(push, now).items():
        options[f"{what}_min"], options[f"{what}_max"] = min(low, shown[what]), max(high, shown[what])
    return options


def _edit_form(push, values, errors=None, status=200, shown=None):
    """The edit form; shown: the days and views left it showed when first opened (hidden
    fields, so a save after views were counted meanwhile gives none back)."""
    now = pushes.utcnow()
    left = pushes.what_is_left(push, now)
    shown = {**left, **(shown or {})}
    return render_template("owner/edit.html", push=push, values=values, errors=errors or {},
                           files=pushes.files_of(push) if push.kind_name == "file" else [],
                           shown=shown, options=_edit_options(push, now, shown),
                           left=time_left(push, now), views=left["views"]), status


# The edit page's fields, in its order: its errors are said in it.
_EDIT_FIELDS = ("files", "passphrase", "expire_after_days", "expire_after_views", "name", "note")


def _edit_form_again(push, fields, left, errors, status):
    """The edit form as it was sent, with its errors in the page's order (files are chosen
    again, and the passphrase typed again: neither goes back into the page)."""
    errors = dict(sorted(errors.items(), key=lambda item: _EDIT_FIELDS.index(item[0])
                         if item[0] in _EDIT_FIELDS else len(_EDIT_FIELDS)))
    shown = {what: value for what in ("days", "views") if (value := params.shown(fields, what)) is not None}
    # (A number box sent empty: what the form showed, not a new push's default.)
    values = form_values(push.kind_name, fields, {f"expire_after_{what}": shown.get(what, left[what])
                                                  for what in ("days", "views")})
    return _edit_form(push, values, errors, status, shown)


@bp.get("/p/<token:url_token>/edit")
@owned
def edit(push):
    """The owner's form to change a live push: days and views left, options, name, note."""
    now = pushes.utcnow()
    if push.expired or push.past_limits(now):
        return _already_expired(push.url_token)
    left = pushes.what_is_left(push, now)
    return _edit_form(push, {
        "expire_after_days": left["days"], "expire_after_views": left["views"],
        "retrieval_step": push.retrieval_step, "deletable_by_viewer": bool(push.deletable_by_viewer),
        "name": push.name, "note": pushes.note_of(push)})


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _as_the_form_showed(push, fields: dict) -> dict:
    """The form's fields, with the name and note kept as stored where it sent them back as it
    showed them: a <textarea> (the note's, and the name's when it has line breaks, which a
    one-line box would drop) sends each line break as CR LF, so a save must not rewrite them
    (nor find a name of 255 characters with line breaks too long). Before the checks."""
    stored = {"name": push.name or "", "note": pushes.note_of(push)}
    return {**fields, **{key: value for key, value in stored.items()
                         if fields.get(key) == _LINE_BREAK.sub("\r\n", value)}}


@bp.post("/p/<token:url_token>/edit")
@owned
def update(push):
    """Apply the edit form (upstream: PATCH /p/:token), files added included; 302 to the
    preview, or 422 (429: passphrase guesses) with the form."""
    url_token, step_was = push.url_token, bool(push.retrieval_step)
    fields = _as_the_form_showed(push, params.root(params.body_params(), "push"))
    now = pushes.utcnow()
    left = pushes.what_is_left(push, now)
    emptied: dict = {}  # (a number box sent empty, as without JavaScript: said with the form's other errors)
    params.form_numbers(fields, emptied, left=" left")
    try:
        changes = params.push_changes(fields)
        # Only a file push's page has a file box: files sent for another kind are left out, said below.
        dropped = changes.files if push.kind != Kind.file else ()
        # Typed past a bound, the bound; a number kept as shown stays what it is, in bounds or not.
        asked = changes
        changes = within_bounds(dataclasses.replace(changes, files=() if dropped else changes.files), "{}_left",
                                pushes.edit_bounds(push, now),
                                kept=[what for what in ("days", "views") if changes.keeps(what, left[what])])
        edited = pushes.edit(url_token, changes, actor(signed_in_user()), now, emptied)
    except ValidationFailed as exc:
        return _edit_form_again(push, fields, left, {**emptied, **exc.errors}, 422)
    except TooManyAttempts as exc:
        return _edit_form_again(push, fields, left, {"passphrase": [exc.message]}, 429)
    if edited is None:
        return _already_expired(url_token)
    edited, written = edited
    flash(*((PUSH_UPDATED, "success") if written else (NOTHING_CHANGED, "info")))
    if changes.files:
        count = len(pushes.files_of(edited))
        flash(f"Added {plural(len(changes.files), 'file')}: the push now has {plural(count, 'file')}.", "success")
    if dropped:
        flash(FILES_NOT_STORED, "warning")
    # Said, not done silently: a number put within its bounds, and a link that changed.
    say_bounded(asked, changes, "{}_left", "this push")
    if bool(edited.retrieval_step) != step_was:
        flash("The secret link changed: send the new one below. A link you already sent still opens "
              + ("without the retrieval step." if edited.retrieval_step else "with the retrieval step."), "warning")
    return redirect(url_for("web.preview", url_token=url_token))


@bp.route("/p/<token:url_token>/delete_file", methods=["POST", "DELETE"])
@owned
def remove_file(push):
    """Remove one file of a live file push (?file_id= or a form's file_id), never its last;
    back to the edit page saying what happened."""
    file_id = params.cast_int(request.values.get("file_id"))
    name = file_id and pushes.remove_file(push.url_token, file_id, actor(signed_in_user()), pushes.utcnow())
    if name:
        flash(f"Removed the file {name}.", "success")
    elif push.expired or push.past_limits(pushes.utcnow()):
        return _already_expired(push.url_token)
    else:
        flash("That file could not be removed: a file push keeps at least one file (to send other "
              "files, expire this push and make a new one).", "warning")
    return redirect(url_for("owner.edit", url_token=push.url_token))


@owned
def notify_emails(push):
    """Send the push's link to up to 5 addresses (upstream: POST /p/:token/notify_emails);
    back to the preview saying it is queued, or the preview with the form's errors (422, 429)."""
    now = pushes.utcnow()
    to = request.form.get("notify_emails_to", "")
    if push.expired or push.past_limits(now):
        flash("That push has expired: its link can no longer be sent.", "warning")
        return redirect(url_for("owner.audit", url_token=push.url_token))
    try:
        notify.notify(push.url_token, to, request.form.get("notify_emails_to_locale"),
                      actor(signed_in_user()), now)
    except ValidationFailed as exc:
        return render_preview(push, now, status=422, notify_form={"notify_emails_to": to},
                               notify_errors=exc.errors)
    except TooManyNotifyRequests as exc:
        return render_preview(push, now, status=429, notify_form={"notify_emails_to": to},
                               notify_errors={"base": [exc.message]})
    flash(NOTIFY_QUEUED, "success")
    return redirect(url_for("web.preview", url_token=push.url_token))


def init_app(app):
    """Register the owner pages (notify_emails only when PWP__NOTIFY_BY_EMAIL__ENABLED)."""
    app.register_blueprint(bp)
    if app.config["PWP__NOTIFY_BY_EMAIL__ENABLED"]:
        app.add_url_rule("/p/<token:url_token>/notify_emails", "owner.notify_emails", notify_emails,
                         methods=["POST"])
