"""Browser UI for pushes: create, push-created preview, retrieval step, passphrase, payload, expire.

Every read and write goes through `pushes`; these views parse input, call one
lifecycle function and render. Secrets never appear in a URL, a title or a log.
"""
import base64
import dataclasses
import io
import json
import math
import re
from datetime import timedelta

from flask import (Blueprint, abort, current_app, flash, get_flashed_messages, make_response, redirect,
                   render_template, request, url_for)
from flask_login import current_user

from . import account_mail, notify, params, pushes
from .api import NOTIFY_QUEUED, file_link_path, request_locale, secret_url
from .auth import actor, sign_in_first
from .config import kind_setting, kind_switched_off
from .errors import NotDeletable, NotFound, PassphraseIncorrect, TooManyAttempts, ValidationFailed
from .models import Kind
from .words import human_size, plural

bp = Blueprint("web", __name__)

# (tab in the URL, kind, label), in upstream's order.
TABS = (("text", "text", "Text"), ("files", "file", "Files"), ("url", "url", "URL"),
        ("qr", "qr", "QR code"))
TAB_OF = {kind: tab for tab, kind, _label in TABS}
KIND_OF = {tab: kind for tab, kind, _label in TABS}
# How long the browser may hold a passphrase-unlocked payload key (as upstream's cookie).
UNLOCK_SECONDS = 180
BAD_PASSPHRASE = ("That passphrase is incorrect.  Please try again or contact the person or "
                  "organization that sent you this link.")


def signed_in_user():
    """Return the signed-in user, or None."""
    return current_user._get_current_object() if current_user.is_authenticated else None


def kind_enabled(kind: str) -> bool:
    """Tell whether the settings allow creating this kind in the browser."""
    cfg = current_app.config
    if kind == "file" and cfg["PWP__DISABLE_LOGINS"]:
        return False
    return kind_switched_off(cfg, kind) is None


def visible_tabs():
    """The creation tabs the settings allow, as (tab, kind, label)."""
    return [t for t in TABS if kind_enabled(t[1])]


def qr_data_uri(text: str) -> str | None:
    """Render text as a QR code SVG data URI (the CSP allows data: images only); None when
    the text is more than a QR code holds (a push stored before its size was counted in
    bytes: its page shows the text instead)."""
    code = qr_image(text)
    return code and code["src"]


# A QR push's code is drawn QR_MODULE_PX CSS pixels a module at least, QR_MIN_PX in all: a
# phone's camera reads a dense code off a screen (1 KiB: 125 modules); a narrow screen
# scales it down to fit. QR_FRAME_PX: the image's padding and border (static/app.css, .qr img).
QR_MODULE_PX, QR_MIN_PX, QR_FRAME_PX = 4, 300, 18


def qr_image(text: str) -> dict | None:
    """The QR code of text: {"src": its SVG data URI, "size": the CSS pixels to draw it at
    on a QR push's page}; None when the text is more than a QR code holds, or a run of NULs."""
    # Imported here: only QR pages need it (about 2 MiB per worker otherwise).
    import qrcode.exceptions
    import qrcode.image.svg
    import qrcode.util

    # qrcode 8.2 fails ("glog(0)") on a block of data codewords all zero: a run of zeros in
    # its numeric mode ("000" is ten zero bits) or of NULs. Byte mode draws the zeros; NULs
    # it draws in no mode (fixed after 8.2: lincolnloop/python-qrcode#330).
    for data in (text, qrcode.util.QRData(text.encode("utf-8"), mode=qrcode.util.MODE_8BIT_BYTE)):
        try:
            img = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathFillImage, border=2)
            break
        except qrcode.exceptions.DataOverflowError:
            return None
        except ValueError:  # "glog(0)", or "Invalid version 41" (too long in every mode)
            continue
    else:
        return None
    buf = io.BytesIO()
    img.save(buf)
    modules = img.width + 2 * img.border
    return {"src": "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
            "size": max(QR_MIN_PX, QR_MODULE_PX * modules + QR_FRAME_PX)}


def _sign_in_redirect(kind=None):
    """Send a visitor who must sign in to the sign-in page; with logins disabled there is
    none: file pushes send to the text form (as upstream), anything else is refused."""
    if current_app.config["PWP__DISABLE_LOGINS"]:
        if kind == "file":
            flash("File pushes are unavailable while logins are disabled.", "warning")
            return redirect(url_for("web.new", tab="text"))
        abort(403, description="This needs a signed-in user, and sign-in is disabled here.")
    return sign_in_first()


# ----------------------------------------------------------------------------- create

def form_options(kind: str) -> dict:
    """Limits and toggles of a kind's form, from the settings."""
    cfg = current_app.config

    def get(key):
        return kind_setting(cfg, kind, key)

    return {
        "days_min": get("EXPIRE_AFTER_DAYS_MIN"), "days_max": get("EXPIRE_AFTER_DAYS_MAX"),
        "views_min": get("EXPIRE_AFTER_VIEWS_MIN"), "views_max": get("EXPIRE_AFTER_VIEWS_MAX"),
        "retrieval_step": bool(get("ENABLE_RETRIEVAL_STEP")),
        "deletable": kind != "url" and bool(get("ENABLE_DELETABLE_PUSHES")),
        "max_files": cfg["PWP__FILES__MAX_FILE_UPLOADS"],
        "max_total": cfg["PWP__FILES__MAX_TOTAL_BYTES"],
    }


def form_values(kind: str, fields: dict | None = None, blank: dict | None = None) -> dict:
    """The form's values: the settings' defaults, or what the user submitted, a number box
    sent empty showing blank's value (by default the settings')."""
    cfg = current_app.config
    if fields is None:
        return {"payload": "", "passphrase": "", "name": "", "note": "", "notify_emails_to": "",
                "expire_after_days": kind_setting(cfg, kind, "EXPIRE_AFTER_DAYS_DEFAULT"),
                "expire_after_views": kind_setting(cfg, kind, "EXPIRE_AFTER_VIEWS_DEFAULT"),
                "retrieval_step": bool(kind_setting(cfg, kind, "RETRIEVAL_STEP_DEFAULT")),
                "deletable_by_viewer": bool(kind_setting(cfg, kind, "DELETABLE_PUSHES_DEFAULT"))}
    # (Text a JSON body spelled with lone surrogates, refused as not UTF-8, is not shown
    # again: the page could not be encoded, a 500.)
    values = {k: fields.get(k) if isinstance(fields.get(k), str) and params.is_utf8(fields.get(k)) else ""
              for k in ("payload", "passphrase", "name", "note", "notify_emails_to")}
    blank = blank or form_values(kind)
    for key in ("expire_after_days", "expire_after_views"):
        number = params.form_number(fields.get(key))
        values[key] = blank[key] if number is None else number
    for key in ("retrieval_step", "deletable_by_viewer"):
        values[key] = params.cast_bool(fields.get(key), False)
    return values


# "Remember these settings": a kind's days, views and options as the form's defaults in
# this browser (a cookie per tab, as upstream's "Save the above settings as the page default").
_DEFAULTS_COOKIE = "pwp_defaults_{}"
_DEFAULTS_FORMAT = re.compile(r"(\d{1,5})\.(\d{1,5})\.([01])\.([01])")
_DEFAULTS_SECONDS = 365 * 24 * 3600


def saved_defaults(kind: str) -> dict:
    """The days, views and options this browser saved for the kind's form, within the form's
    bounds now; {} when none (or the cookie is not one this site wrote)."""
    match = _DEFAULTS_FORMAT.fullmatch(request.cookies.get(_DEFAULTS_COOKIE.format(TAB_OF[kind]), ""))
    if not match:
        return {}
    options = form_options(kind)
    days, views, step, deletable = (int(group) for group in match.groups())
    values = {"expire_after_days": min(max(days, options["days_min"]), options["days_max"]),
              "expire_after_views": min(max(views, options["views_min"]), options["views_max"]),
              "save_defaults": True, "defaults_saved": True}
    if options["retrieval_step"]:
        values["retrieval_step"] = bool(step)
    if options["deletable"]:
        values["deletable_by_viewer"] = bool(deletable)
    return values


def save_defaults(response, push, kind: str):
    """Remember the new push's days, views and options as its kind's form defaults."""
    value = "{}.{}.{:d}.{:d}".format(push.expire_after_days, push.expire_after_views,
                                     bool(push.retrieval_step), bool(push.deletable_by_viewer))
    response.set_cookie(_DEFAULTS_COOKIE.format(TAB_OF[kind]), value, max_age=_DEFAULTS_SECONDS, **cookie_flags())
    return response


def cookie_flags() -> dict:
    """The flags of this site's own cookies but the session's: script-proof, sent on
    top-level navigation from other sites, and over HTTPS only where the session's is."""
    return {"httponly": True, "samesite": "Lax",
            "secure": current_app.session_interface.get_cookie_secure(current_app)}


def gen_options() -> dict:
    """The password generator's defaults, from PWP__GEN__* (read by static/app.js)."""
    cfg = current_app.config
    return {key.lower(): cfg[f"PWP__GEN__{key}"] for key in (
        "HAS_NUMBERS", "TITLE_CASED", "USE_SEPARATORS", "CONSONANTS", "VOWELS", "SEPARATORS",
        "MAX_SYLLABLE_LENGTH", "MIN_SYLLABLE_LENGTH", "SYLLABLES_COUNT")}


# The API's messages (upstream's words) that name no field of the form, in its fields' words.
_FORM_MESSAGES = {
    ("text", "Payload is required."): "Enter the secret text or password.",
    ("url", "Payload is required."): "Enter the URL to share.",
    ("qr", "Payload is required."): "Enter the content of the QR code.",
    ("url", "must be a valid HTTP or HTTPS URL."): "Enter a whole address, starting with https:// or http://.",
    ("url", pushes.URL_HOST_AMBIGUOUS): "The address's host has \u00df, \u1e9e, \u03c2, a zero-width joiner or "
                                        "a character newer than Unicode 3.2, which browsers and this server "
                                        "read as different hosts: write it in punycode (xn--...).",
    ("url", pushes.URL_TOO_LONG): f"The URL is too long: at most {pushes.URL_MAX} characters, each one "
                                  "outside ASCII counted as its percent-encoding (up to 9).",
    ("text", pushes.TEXT_TOO_LARGE): f"The secret is too long: at most {pushes.TEXT_MAX} characters.",
    ("file", pushes.TEXT_TOO_LARGE): f"The message is too long: at most {pushes.TEXT_MAX} characters.",
}


def render_form(kind: str, fields=None, errors=None, status=200):
    """Render the creation form of one kind."""
    errors = {field: [_FORM_MESSAGES.get((kind, message), message) for message in messages]
              for field, messages in (errors or {}).items()}
    if fields is None:
        values = {**form_values(kind), "save_defaults": False, **saved_defaults(kind)}
    else:
        blank = {**form_values(kind), **saved_defaults(kind)}  # (a box sent empty: as the form was shown)
        values = {**form_values(kind, fields, blank),
                  "save_defaults": params.cast_bool(fields.get("save_defaults"), False),
                  "defaults_saved": params.cast_bool(fields.get("defaults_saved"), False)}
    return render_template(
        "web/new.html", kind=kind, tab=TAB_OF[kind], tabs=visible_tabs(),
        values=values, options=form_options(kind), errors=errors,
        notify_on=notify.available() and current_user.is_authenticated,
        notify_max=notify.MAX_RECIPIENTS, gen=json.dumps(gen_options())), status


def _creation_refused(kind: str):
    """Return a redirect when this visitor may not create this kind, else None."""
    if kind == "file" and current_app.config["PWP__DISABLE_LOGINS"]:
        return _sign_in_redirect(kind)
    if not kind_enabled(kind):
        flash(kind_switched_off(current_app.config, kind), "warning")
        return redirect(url_for("web.home"))
    anonymous_ok = current_app.config["PWP__ALLOW_ANONYMOUS"] and kind != "file"
    if not anonymous_ok and not current_user.is_authenticated:
        return _sign_in_redirect(kind)
    return None


@bp.get("/")
def home():
    """Show the creation form (the text tab unless ?tab= says otherwise)."""
    return new()


@bp.get("/p/new")
def new():
    """Show the creation form (?tab=text|files|url|qr)."""
    kind = KIND_OF.get(request.args.get("tab", "text"), "text")
    return _creation_refused(kind) or render_form(kind)


def within_bounds(asked, field: str, bounds: dict, kept=()):
    """asked (a NewPush, an edit's Changes) with the days and views typed (its attributes named
    by field, "expire_after_{}" or "{}_left") within bounds ({"days": (low, high), ...}): a
    number past one (a browser without JavaScript does not stop it, nor does app.js) is taken
    as the nearest bound, not as the API's default (upstream's rule); say_bounded tells the
    sender. None (not sent) and what kept names stay as they are. The new and edit forms' one rule."""
    return dataclasses.replace(asked, **{
        field.format(what): min(max(value, low), high) for what, (low, high) in bounds.items()
        if (value := getattr(asked, field.format(what))) is not None and what not in kept})


def form_bounds(kind: str) -> dict:
    """The days and views a new push of the kind may have, as within_bounds takes them."""
    options = form_options(kind)
    return {what: (options[f"{what}_min"], options[f"{what}_max"]) for what in ("days", "views")}


def say_bounded(asked, got, field: str, whose: str):
    """Say (never silently do) that a number typed was put within its bounds: field names
    the days' and views' attributes of asked and got ("{}_left")."""
    for what in ("days", "views"):
        value, typed = getattr(got, field.format(what)), getattr(asked, field.format(what))
        if value != typed and typed is not None:
            flash(f"{what.capitalize()} set to {value}, the {'most' if value < typed else 'fewest'} {whose} allows.",
                  "warning")


@bp.post("/p")
def create():
    """Create a push from the push[...] form; 302 to its preview, or 422 with the form."""
    fields = params.root(params.body_params(), "push")
    requested = fields.get("kind")
    kind = requested if isinstance(requested, str) and requested in TAB_OF else "text"
    refused = _creation_refused(kind)
    if refused:
        return refused
    now, who = pushes.utcnow(), actor(signed_in_user())
    emptied: dict = {}  # (a number box sent empty, as without JavaScript: said with the form's other errors)
    params.form_numbers(fields, emptied, required=False)
    try:
        typed = params.new_push(fields, kind=kind, form=True)
        new_push = within_bounds(typed, "expire_after_{}", form_bounds(kind))
        asked = notify.check_create(fields, new_push, who.user, now, emptied)
        push = notify.create_push(new_push, asked, who, now)
    except ValidationFailed as exc:
        return render_form(kind, fields, {**exc.errors, **emptied}, 422)
    if asked is not None:
        flash(NOTIFY_QUEUED, "success")
    say_bounded(typed, new_push, "expire_after_{}", "a push")
    if new_push.files and kind != "file":  # (only a file push's form has a file box: not stored)
        flash(FILES_NOT_STORED, "warning")
    response = redirect(url_for("web.preview", url_token=push.url_token))
    if params.cast_bool(fields.get("save_defaults"), False):
        return save_defaults(response, push, kind)
    if params.cast_bool(fields.get("defaults_saved"), False):
        # The form showed the box ticked (settings remembered) and it was unticked: forget them.
        response.delete_cookie(_DEFAULTS_COOKIE.format(TAB_OF[kind]), **cookie_flags())
    return response


# ----------------------------------------------------------------------------- after creation

def validity(push, now) -> str:
    """The link's limits in one sentence, as the share message and the print page say them."""
    return (f"This link is valid for {time_left(push, now)} or {plural(pushes.views_remaining(push), 'view')}, "
            "whichever comes first.")


def share_message(push, url: str, now) -> str:
    """The ready-to-paste message that goes with a secret link."""
    lines = ["A secure link has been shared with you.", "", url, "", "IMPORTANT NOTES:", validity(push, now)]
    if push.has_passphrase:
        lines.append("You need a passphrase to open it; it will reach you separately.")
    if push.deletable_by_viewer:
        lines.append("You can delete it once you have read it.")
    return "\n".join(lines)


def time_left(push, now) -> str:
    """How long the link still works, as the pages say it: whole days (upstream's
    arithmetic) while 23 hours or more are left, else hours and minutes. (The JSON's
    days_remaining says 1 for a push with minutes left, and for one made to last an hour
    by the API's expire_after_duration: a page promising "1 day" would have the sender
    tell the recipient a day.)"""
    if push.expires_at - now >= timedelta(hours=23):
        return plural(pushes.days_remaining(push, now), "day")
    minutes = max(0, math.ceil((push.expires_at - now).total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    parts = [plural(hours, "hour")] if hours else []
    if minutes or not hours:
        parts.append(plural(minutes, "minute"))
    return " ".join(parts)


def switched_off(push):
    """Upstream's answer to every page of a push whose kind is switched off (the start page,
    saying so), else None."""
    message = kind_switched_off(current_app.config, push.kind_name)
    if message:
        return to_start_page(message, 404)
    return None


def to_start_page(message: str, status: int):
    """Upstream's answer that sends to the start page with a warning. A public gateway has
    no start page: there the error page says it, with this status."""
    if current_app.config["PWP_PUBLIC_GATEWAY"]:
        abort(status, description=message)
    flash(message, "warning")
    return redirect(url_for("web.home"))


PUSH_UPDATED = "Push was successfully updated."  # (the edit's flash: the preview then says "updated")
NOTHING_CHANGED = "Nothing was changed: the push is as it was."  # (a Save that changed nothing)
# Files sent for a push of another kind (a form made by hand; upstream stores them and lists none).
FILES_NOT_STORED = "No files were added: only a file push has files."


# What fits above the QR code on one printed page (the form's maxlength says the same).
PRINT_MESSAGE_MAX = 500
# ... and on one sheet with the QR code: lines, counting one of more than PRINT_LINE_WIDTH
# columns as the lines it wraps to (the print style sets the message in a monospace font at
# 13 pt, broken at any character, so a line of capitals takes no more room than one of dots).
PRINT_MESSAGE_LINES, PRINT_LINE_WIDTH = 12, 60


# Characters drawn far wider than two cells (measured in Chromium with Noto fonts at the print
# style's 13 pt): U+FDFD (a whole phrase in one ligature) 12, the other Arabic word ligatures
# up to 4, the two- and three-em dashes up to 5, cuneiform signs up to 8. Counted as one or two,
# a run of them that the rule admitted printed five times its lines, the QR code sheets away.
_WIDE_CHARS = ((0xFDFD, 0xFDFD, 12), (0xFDF0, 0xFDFC, 4), (0x2E3A, 0x2E3B, 5), (0x12000, 0x1254F, 8))


def _columns(char: str) -> int:
    # Two for a character past the alphabetic scripts monospace fonts cover (CJK, emoji, ...:
    # a fallback font draws them about two cells wide), one for the rest (a tab too: tab-size 1).
    code = ord(char)
    for first, last, cells in _WIDE_CHARS:
        if first <= code <= last:
            return cells
    return 2 if char >= "\u0590" else 1


def printed_lines(message: str) -> int:
    """How many lines the message takes on the printed sheet (at most)."""
    return sum(max(1, -(-sum(map(_columns, line)) // PRINT_LINE_WIDTH)) for line in message.split("\n"))
# The print form as the preview offers it (as upstream: both boxes ticked).
PRINT_FORM = {"message": "", "show_expiration": True, "show_id": True}


def _senders_push(url_token: str, now):
    """The push of a sender's page (preview, print): (push, None), or (push, what to answer
    instead: the start page for a switched-off kind, sign-in for a file push, the expired page)."""
    push = pushes.get(url_token, now)
    if off := switched_off(push):
        return push, off
    if push.kind == Kind.file and not current_user.is_authenticated:
        return push, _sign_in_redirect("file")
    if push.expired:
        return push, render_template("web/expired.html")
    return push, None


@bp.get("/p/<token:url_token>/preview")
def preview(url_token):
    """Show the secret link, its QR code and a share message (counts no view)."""
    now = pushes.utcnow()
    push, instead = _senders_push(url_token, now)
    return instead or render_preview(push, now)


def render_preview(push, now, print_form=None, errors=None, status=200, notify_form=None,
                    notify_errors=None):
    """The preview page; with the print form as sent and its errors (a message too long),
    or the notify form as sent and its errors."""
    url = secret_url(push)
    is_owner = pushes.is_owner(push, signed_in_user())
    notify_on = is_owner and notify.available()
    return render_template(
        "web/preview.html", push=push, url=url, qr=qr_data_uri(url),
        message=share_message(push, url, now), left=time_left(push, now),
        views=pushes.views_remaining(push),
        is_owner=is_owner, notify_on=notify_on,
        sendings=notify.of_push(push) if notify_on else [],
        notify_left=notify.recipients_left(push) if notify_on else 0,
        notify_form=notify_form or {"notify_emails_to": ""}, notify_errors=notify_errors or {},
        print_form=print_form or PRINT_FORM, print_errors=errors or {}, print_max=PRINT_MESSAGE_MAX,
        print_lines=PRINT_MESSAGE_LINES, print_width=PRINT_LINE_WIDTH,
        # (The printable page's link says the same locale as this page's: carried along.)
        push_locale=request_locale().removeprefix("?locale=") or None,
        heading=_preview_heading()), status


def _preview_heading() -> str:
    """The preview's heading: what the owner's edit did, if it led here (its flash says)."""
    flashed = [message for _category, message in get_flashed_messages(with_categories=True)]
    return ("Push updated" if PUSH_UPDATED in flashed else "Push unchanged" if NOTHING_CHANGED in flashed
            else "Push created")


def print_choices() -> dict:
    """The print form's choices from the query: the message (line breaks as one LF each, as
    the textarea counted them), and its two checkboxes (absent: unticked)."""
    message = request.args.get("message", "").replace("\r\n", "\n").replace("\r", "\n").strip()
    return {"message": message,
            "show_expiration": params.cast_bool(request.args.get("show_expiration"), False),
            "show_id": params.cast_bool(request.args.get("show_id"), False)}


@bp.get("/p/<token:url_token>/print_preview")
def print_preview(url_token):
    """Show a printable page: the secret link's QR code and the link, with the sender's message,
    the expiry and the push's ID as asked (counts no view); a message too long: 422, the form."""
    now = pushes.utcnow()
    push, instead = _senders_push(url_token, now)
    if instead:
        return instead
    form = print_choices()
    if len(form["message"]) > PRINT_MESSAGE_MAX or printed_lines(form["message"]) > PRINT_MESSAGE_LINES:
        return render_preview(push, now, form, {"message": [
            f"The message is too long: at most {PRINT_MESSAGE_MAX} characters on about {PRINT_MESSAGE_LINES} "
            f"printed lines of {PRINT_LINE_WIDTH} (more would push the QR code onto a second sheet)."]}, 422)
    url = secret_url(push)
    return render_template(
        "web/print_preview.html", push=push, url=url, qr=qr_data_uri(url), form=form,
        validity=validity(push, now) if form["show_expiration"] else None, now=now)


@bp.get("/p/<token:url_token>/r")
def preliminary(url_token):
    """Show the one-click retrieval step; a GET here never counts a view."""
    if request.method == "HEAD":  # a link checker's: not even a failed view of an expired push
        pushes.get(url_token, pushes.utcnow())
        return "", 200
    now = pushes.utcnow()
    push = pushes.get(url_token, now)
    if off := switched_off(push):
        return off
    if not pushes.retrieval_step_live(push, actor(signed_in_user()), now):
        return render_template("web/expired.html")
    return render_template("web/preliminary.html", push=push)


# ----------------------------------------------------------------------------- passphrase

def _unlock_cookie_name(url_token: str) -> str:
    return f"{url_token}-p"


def seal_unlock_key(url_token: str, key: bytes, now) -> str:
    """Encrypt a payload key for the short-lived cookie, bound to its push and time."""
    return pushes.seal_token("unlock", {"t": url_token, "k": key.decode("ascii")}, now)


def open_unlock_key(url_token: str, value: str | None, now) -> bytes | None:
    """Return the payload key from a fresh cookie of this push, else None."""
    data = pushes.open_token("unlock", value, UNLOCK_SECONDS, now)
    if not (data and data.get("t") == url_token and isinstance(data.get("k"), str) and data["k"].isascii()):
        return None
    return data["k"].encode("ascii")


@bp.get("/p/<token:url_token>/passphrase")
def passphrase(url_token):
    """Ask for the passphrase."""
    push = pushes.get(url_token, pushes.utcnow())
    if off := switched_off(push):
        return off
    if push.expired:
        return render_template("web/expired.html")
    if not pushes.needs_passphrase(push):
        # To the retrieval step: a GET of this page never spends a view (as upstream's form).
        return redirect(url_for("web.preliminary", url_token=url_token))
    return render_template("web/passphrase.html", push=push)


@bp.post("/p/<token:url_token>/access")
def access(url_token):
    """Check the passphrase; on success hold the payload key in an encrypted 3-minute cookie."""
    now = pushes.utcnow()
    target = url_for("web.show", url_token=url_token)
    try:
        push = pushes.find(url_token)
    except NotFound:  # as an expired push (below): on to the page that says so, telling neither apart
        return redirect(target)
    if off := switched_off(push):
        return off
    back = redirect(url_for("web.passphrase", url_token=url_token))
    try:
        key = pushes.unlock(url_token, request.form.get("passphrase", ""),
                            actor(signed_in_user()), now)
    except PassphraseIncorrect:
        flash(BAD_PASSPHRASE, "warning")
        return back
    except TooManyAttempts as exc:
        flash(exc.message, "warning")
        return back
    if push.kind == Kind.url and not push.expired:
        # Redirected on, this form's navigation would end on the URL's site, which the CSP's
        # form-action 'self' forbids: browsers stopped there, after the view was counted.
        # This page moves on by itself, a navigation no form made. (An expired one's, as an
        # unknown one's, is the expired page: redirected to it.)
        response = make_response(render_template("web/unlocked.html", target=target))
    else:
        response = redirect(target)
    if key is not None:
        # The cookie holds the derived payload key, encrypted: never the passphrase.
        response.set_cookie(
            _unlock_cookie_name(url_token), seal_unlock_key(url_token, key, now),
            max_age=UNLOCK_SECONDS, path=f"/p/{url_token}", **cookie_flags())
    return response


# ----------------------------------------------------------------------------- payload

@bp.get("/p/<token:url_token>")
def show(url_token):
    """Count one view and show the payload (URL pushes: 303 to the URL)."""
    now = pushes.utcnow()
    push = pushes.get(url_token, now)
    if request.method == "HEAD":  # a link checker's: no body to carry the payload, count nothing
        return "", 200
    if off := switched_off(push):
        return off
    cookie = _unlock_cookie_name(url_token)
    unlock_key = open_unlock_key(url_token, request.cookies.get(cookie), now)
    given = request.args.get("passphrase") or None
    if pushes.needs_passphrase(push) and unlock_key is None and given is None:
        return redirect(url_for("web.passphrase", url_token=url_token))
    try:
        user = signed_in_user()
        result = pushes.retrieve(url_token, actor(user), now, passphrase=given, unlock_key=unlock_key)
    except (PassphraseIncorrect, TooManyAttempts) as exc:
        flash(BAD_PASSPHRASE if isinstance(exc, PassphraseIncorrect) else exc.message, "warning")
        return redirect(url_for("web.passphrase", url_token=url_token))
    if not result.granted:
        return render_template("web/expired.html")
    location = pushes.url_location(result.payload) if push.kind == Kind.url else None
    if location is not None:
        response = redirect(location, 303)
    else:  # (a URL push stored before its URL was checked, that no browser can follow: as text)
        response = make_response(_render_payload(result, now, user))
    response.delete_cookie(cookie, path=f"/p/{url_token}")
    return response


def _render_payload(result, now, user):
    """The payload page; a view its owner's or an administrator's, counted nothing, says whose."""
    push = result.push
    views = 0 if result.last_view else pushes.views_remaining(push)
    files = [{"name": f.filename, "size": f.size, "url": file_link_path(f, result.file_key, now)}
             for f in result.files]
    return render_template(
        "web/show.html", push=push, payload=result.payload, files=files,
        link_minutes=pushes.FILE_LINK_SECONDS // 60,
        qr=qr_image(result.payload) if push.kind == Kind.qr else None,
        left=time_left(push, now), views=views, last_view=result.last_view,
        counted=pushes.views_count(push, user), owner=pushes.is_owner(push, user),
        blur=bool(kind_setting(current_app.config, push.kind_name, "ENABLE_BLUR")),
        deletable=push.deletable_by_viewer is True and views > 0)


@bp.route("/p/<token:url_token>/expire", methods=["POST", "DELETE"])
def expire(url_token):
    """Delete a push's content now (viewer when deletable, or its owner)."""
    if request.method == "POST" and request.form.get("_method", "delete").lower() != "delete":
        abort(405)
    if off := switched_off(pushes.find(url_token)):  # (find: a deletion is no lazy expiry)
        return off
    user = signed_in_user()
    try:
        push, deleted = pushes.expire_now(url_token, actor(user), pushes.utcnow())
    except NotDeletable:
        return to_start_page("That push is not deletable by viewers and does not belong to you.", 403)
    if pushes.is_owner(push, user):
        if deleted:
            flash("The push content has been deleted and the secret URL expired.", "success")
        else:
            flash("That push has already expired.", "warning")
        if request.form.get("back") == "dashboard":
            return redirect(url_for("owner.dashboard"))
        return redirect(url_for("owner.audit", url_token=url_token))
    return render_template("web/expired.html", deleted=deleted)


@bp.get("/p/<token:url_token>/expire")
def expire_page(url_token):
    """The address a viewer's deletion leaves in the tab, opened again (a restored tab, a
    bookmark): the expired page, counting nothing; a live push's retrieval step."""
    push = pushes.get(url_token, pushes.utcnow())
    if push.expired:
        return render_template("web/expired.html", deleted=push.deleted)
    return redirect(url_for("web.preliminary", url_token=url_token))


# ----------------------------------------------------------------------------- legacy paths

@bp.get("/<any(f, r):prefix>/<token:url_token>")
@bp.get("/<any(f, r):prefix>/<token:url_token>/<any(r, passphrase):step>")
def legacy(prefix, url_token, step=None):
    """Redirect upstream's old /f/ and /r/ links to /p/, keeping the query string."""
    target = f"/p/{url_token}" + (f"/{step}" if step else "")
    if request.query_string:
        target += "?" + request.query_string.decode("latin-1")
    return redirect(target, 301)


def _layout_context():
    from . import __version__

    cfg = current_app.config
    light, dark = cfg["PWP__BRAND__LIGHT_LOGO"], cfg["PWP__BRAND__DARK_LOGO"]
    return {"brand": {
        "title": cfg["PWP__BRAND__TITLE"] or "Password Pusher", "tagline": cfg["PWP__BRAND__TAGLINE"],
        "disclaimer": cfg["PWP__BRAND__DISCLAIMER"], "show_footer_menu": cfg["PWP__BRAND__SHOW_FOOTER_MENU"],
        # One logo given serves both modes, as upstream.
        "light_logo": light or dark, "dark_logo": dark or light},
        "version": __version__ if cfg["PWP__SHOW_VERSION"] else None,
        # A public gateway's pages link to none of the pages it lacks (pwp/gateway.py).
        "gateway": cfg["PWP_PUBLIC_GATEWAY"],
        "logins_enabled": not cfg["PWP__DISABLE_LOGINS"],
        "signups_enabled": not (cfg["PWP__DISABLE_SIGNUPS"] or cfg["PWP__DISABLE_LOGINS"]),
        "account_emails": account_mail.enabled()}


def init_app(app):
    """Register the push pages, the account, owner and plain pages, and the template helpers."""
    from . import accounts, owner, pages

    app.register_blueprint(bp)
    accounts.init_app(app)
    owner.init_app(app)
    pages.init_app(app)
    app.jinja_env.filters["plural"] = plural
    app.jinja_env.filters["human_size"] = human_size
    app.context_processor(_layout_context)
