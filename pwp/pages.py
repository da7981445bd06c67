"""Plain pages: the API documentation (built from the app's own routes), health, robots.txt."""
from flask import Blueprint, Response, current_app, redirect, render_template, url_for
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import ServiceUnavailable

from . import notify, pushes
from .api import base_url
from .config import kind_setting
from .errors import KeysOutOfDate
from .params import PUSH_ATTRIBUTES
from .words import human_size

bp = Blueprint("pages", __name__)

# curl examples per API v2 endpoint; {base} is this instance's URL. A test checks that
# every /api/v2 route has one, so a new endpoint cannot go undocumented.
EXAMPLES = {
    "api.version": "curl {base}/api/v2/version",
    "api.create": ("curl -X POST {base}/api/v2/pushes \\\n  -H \"Authorization: Bearer $PWPUSH_TOKEN\" \\\n"
                   "  -H 'Content-Type: application/json' \\\n"
                   "  -d '{{\"push\": {{\"payload\": \"my secret\", \"expire_after_days\": 2, "
                   "\"expire_after_views\": 3}}}}'"),
    "api.show": "curl {base}/api/v2/pushes/$URL_TOKEN",
    "api.destroy": "curl -X DELETE {base}/api/v2/pushes/$URL_TOKEN -H \"Authorization: Bearer $PWPUSH_TOKEN\"",
    "api.preview": "curl {base}/api/v2/pushes/$URL_TOKEN/preview",
    "api.audit": "curl \"{base}/api/v2/pushes/$URL_TOKEN/audit?page=1\" -H \"Authorization: Bearer $PWPUSH_TOKEN\"",
    "api.active": "curl {base}/api/v2/pushes/active -H \"Authorization: Bearer $PWPUSH_TOKEN\"",
    "api.expired": "curl {base}/api/v2/pushes/expired -H \"Authorization: Bearer $PWPUSH_TOKEN\"",
    "api.notify_emails": ("curl -X POST {base}/api/v2/pushes/$URL_TOKEN/notify_emails \\\n"
                          "  -H \"Authorization: Bearer $PWPUSH_TOKEN\" -H 'Content-Type: application/json' \\\n"
                          "  -d '{{\"notify_emails_to\": \"ann@example.com,bob@example.com\"}}'"),
}
# What each create parameter means (the list of names itself comes from params.PUSH_ATTRIBUTES).
PARAMETER_HELP = {
    "payload": "The secret: text, a URL (kind url) or QR content (kind qr). Required except for files.",
    "kind": "text (default), file, url or qr.",
    "files": ("A file push's files (kind file, with a token), up to {count} files and {size} in all: sent as "
              "multipart/form-data, a push[files][] field each, e.g. curl -X POST {base}/api/v2/pushes "
              "-H \"Authorization: Bearer $PWPUSH_TOKEN\" -F \"push[payload]=see attached\" "
              "-F \"push[files][]=@report.pdf\""),
    "expire_after_days": "Days until the link expires: {days_min} to {days_max}, default {days_default} (a text push; "
                         "other kinds have their own).",
    "expire_after_duration": "What the pwpush CLI sends instead: 0-5 are 5 min .. 12 h, 6-17 are 1 .. 90 days.",
    "expire_after_views": "Views until the link expires: {views_min} to {views_max}, default {views_default} (a text "
                          "push; other kinds have their own).",
    "deletable_by_viewer": "true/false: may the recipient delete the secret at once.",
    "retrieval_step": "true/false: the link opens a 'click to proceed' page first.",
    "passphrase": "A passphrase the recipient must type before seeing the payload.",
    "name": "A name visible only to you (signed-in creators).",
    "note": "A note visible only to you, stored encrypted.",
    "notify_emails_to": ("Up to 5 comma-separated addresses to e-mail the link to (signed-in creators, "
                         "when this instance sends e-mail: see /api/v2/version's email_auto_dispatch)."),
    "notify_emails_to_locale": "The mails' language: en (the only one; the default).",
}
NOTIFY_PARAMETERS = ("notify_emails_to", "notify_emails_to_locale")
NOT_SENT = ("Up to 5 comma-separated addresses to e-mail the link to: not on this instance, which sends "
            "no e-mail (a 422; /api/v2/version's email_auto_dispatch is false).")


def api_routes(app) -> list[dict]:
    """The /api/v2 routes of this app: path, methods and the view's docstring."""
    routes = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v2") or rule.rule.endswith(".json"):
            continue
        # (No docstring under python -OO: the route is listed without its description.)
        doc = (app.view_functions[rule.endpoint].__doc__ or "").strip().splitlines()
        entry = routes.setdefault(rule.endpoint, {
            "endpoint": rule.endpoint, "path": rule.rule.replace("<token:url_token>", ":url_token"),
            "methods": set(), "doc": doc[0] if doc else ""})
        entry["methods"] |= rule.methods - {"HEAD", "OPTIONS"}
    return sorted(routes.values(), key=lambda r: (r["path"], sorted(r["methods"])))


@bp.get("/api")
def api_root():
    """Send /api to the API documentation, as upstream (here the instance's own page)."""
    return redirect(url_for("pages.api_docs"))


@bp.get("/help/api")
def api_docs():
    """Document the JSON API v2 with curl examples for this instance."""
    base = base_url()
    routes = api_routes(current_app)
    for route in routes:
        route["example"] = EXAMPLES.get(route["endpoint"], "").format(base=base)
    cfg = current_app.config
    files = ("files",) if cfg["PWP__ENABLE_FILE_PUSHES"] else ()  # (sent beside the push's attributes)
    names = PUSH_ATTRIBUTES[:2] + files + PUSH_ATTRIBUTES[2:] + NOTIFY_PARAMETERS
    limits = {"base": base, "count": cfg["PWP__FILES__MAX_FILE_UPLOADS"],
              "size": human_size(cfg["PWP__FILES__MAX_TOTAL_BYTES"], limit=True),  # (as the form says it)
              # (the text kind's: the settings make them, each kind its own)
              **{f"{what}_{end}": kind_setting(cfg, "text", f"EXPIRE_AFTER_{what.upper()}_{end.upper()}")
                 for what in ("days", "views") for end in ("min", "max", "default")}}
    parameters = [(p, PARAMETER_HELP.get(p, "").format(**limits)) for p in names]
    if not notify.available():  # (an instance that sends no e-mail says so: its example is a 422)
        parameters = [(p, NOT_SENT if p == "notify_emails_to" else text) for p, text in parameters]
    return render_template("pages/api_docs.html", routes=routes, base=base, parameters=parameters)


@bp.get("/up")
def up():
    """Answer the health check: 503 once rotate-key moved the database's key check to keys this
    instance lacks, or retired the key it encrypts with (read on each call, so every worker
    process of it says so: pushes.keys_left_behind), or while the
    database cannot be used: out of reach, its pool exhausted, its tables gone (said once in
    the log by the heartbeat, not on every poll)."""
    try:
        left_behind = pushes.keys_left_behind()
    except SQLAlchemyError:
        raise ServiceUnavailable() from None
    if left_behind:
        raise KeysOutOfDate()
    return render_template("pages/up.html")


@bp.get("/robots.txt")
def robots():
    """Ask every crawler to stay out."""
    return Response("User-agent: *\nDisallow: /\n", mimetype="text/plain")


def init_app(app):
    """Register the plain pages."""
    app.register_blueprint(bp)
