"""JSON API v2 (/api/v2), and the handlers API v1 shares with it.

Each handler parses input, calls one lifecycle function and builds JSON from an
explicit allow-list of fields.
"""
from functools import lru_cache
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, request
from werkzeug.routing import BaseConverter
from werkzeug.sansio.utils import get_current_url
from werkzeug.wsgi import get_host

from . import UPSTREAM_VERSION, downloads, notify, params, pushes
from .auth import actor, api_auth
from .errors import JSON_TYPE, SignInRequired, json_response
from .models import AuditKind, Kind

bp = Blueprint("api", __name__, url_prefix="/api/v2")


class TokenConverter(BaseConverter):
    """A url_token: letters, digits, '-' and '_' (so '.json' is never part of it)."""

    regex = r"[A-Za-z0-9_\-]{1,64}"


# ----------------------------------------------------------------------------- serialisers

def iso(moment):
    """Format a naive UTC datetime as ISO-8601 with milliseconds and Z."""
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds") + "Z"


def base_url() -> str:
    """Scheme and host for generated links: PWP__OVERRIDE_BASE_URL or this request's."""
    return base_url_for(request.environ)  # as ProxyFix left it, when proxies are trusted


def base_url_for(environ) -> str:
    """base_url() from a WSGI environ."""
    config = pushes.the_app().config
    url = config["PWP__OVERRIDE_BASE_URL"] or _host_url(*_host_key(environ))
    if config["FORCE_SSL"] and url.startswith("http://"):  # (upstream's variable)
        url = "https://" + url[len("http://"):]
    return url


def _host_key(environ) -> tuple:
    """What a request's host depends on (after the trusted proxies' headers): a cache key."""
    return (environ["wsgi.url_scheme"], environ.get("HTTP_HOST"), environ.get("SERVER_NAME"),
            environ.get("SERVER_PORT"))


def _host(scheme: str, host_header, server_name, server_port) -> str:
    environ = {"wsgi.url_scheme": scheme, "SERVER_NAME": server_name, "SERVER_PORT": server_port}
    if host_header is not None:
        environ["HTTP_HOST"] = host_header
    return get_host(environ)


@lru_cache(maxsize=64)
def _host_url(*key) -> str:
    # request.host_url, remembered: its host parsing and IRI decoding cost more than a
    # whole SQL statement, and a server sees few distinct Host headers.
    return get_current_url(key[0], _host(*key)).rstrip("/")


def host_is_valid(environ, linked: bool = True) -> bool:
    """Tell whether the request's host can be bound and linked to: a host that cannot be
    must be refused before anything is written, or a create or a counted view would fail
    after its commit, for want of a link. linked=False (PWP__OVERRIDE_BASE_URL names the
    links' host): only bound, so a proxy's upstream name such as "pwpush_web:8000" serves."""
    return _host_ok(linked, *_host_key(environ))


@lru_cache(maxsize=64)
def _host_ok(linked: bool, *key) -> bool:
    host = _host(*key)
    if not host:  # werkzeug's answer for a host of invalid characters (an "_", a bad port):
        return not linked  # Flask routes it, but no link can name it
    try:
        host.lower().encode("idna")  # as Flask's URL map binds to it
        _host_url(*key)  # as links decode it
    except (UnicodeError, ValueError):
        return False
    return True


# Upstream's enabled_language_codes: a request's push_locale naming one of them adds
# ?locale=<it> to the secret links it gets (the recipient's pages are in English here).
LOCALES = frozenset("ca cs cy da de en en-GB es eu fi fr ga hi hu id is it ja ko lv nl no pl "
                    "pt-BR pt-PT ro ru sr sk sv th uk ur zh-CN".split())


def link_locale(value) -> str:
    """'?locale=<value>' for a push_locale upstream enables, else ''."""
    return f"?locale={value}" if isinstance(value, str) and value in LOCALES else ""


def request_locale() -> str:
    """link_locale of this request's push_locale."""
    return link_locale(params.sent_value("push_locale"))


def secret_url(push, base=None, locale=None) -> str:
    """The link a sender shares: /p/<token>/r with the retrieval step, else /p/<token>; with
    the request's push_locale unless a locale suffix is given."""
    if locale is None:
        locale = request_locale()
    return f"{base or base_url()}/p/{push.url_token}" + ("/r" if push.retrieval_step else "") + locale


def push_json(push, now, *, version="v2", owner_fields=False, retrieval=None, base=None,
              locale=None) -> dict:
    """The push object, as upstream's jbuilder view, with the deviations in DESIGN.md."""
    shown_live = retrieval is not None and retrieval.last_view and push.kind != Kind.file
    json_path = f"/api/v2/pushes/{push.url_token}" if version == "v2" else f"/p/{push.url_token}.json"
    base = base or base_url()
    created = iso(push.created_at)
    data = {
        "expire_after_views": push.expire_after_views,
        "expired": False if shown_live else push.expired,
        "url_token": push.url_token,
        "deletable_by_viewer": push.deletable_by_viewer,
        "retrieval_step": push.retrieval_step,
        "expired_on": None if shown_live else iso(push.expired_on),
        # Deviation 1: the passphrase is never returned.
        "passphrase": None,
        "created_at": created,
        # (a new push's are one time: formatted once, ~10 k instructions, 1 % of a create)
        "updated_at": created if push.updated_at == push.created_at else iso(push.updated_at),
        "expire_after_days": push.expire_after_days,
        "days_remaining": pushes.days_remaining(push, now),
        "views_remaining": pushes.views_remaining(push),
        "deleted": push.deleted,
        # Deviation 2: json_url is a URL that works.
        "json_url": base + json_path,
        "html_url": secret_url(push, base, locale),
    }
    if owner_fields:
        data["note"] = pushes.note_of(push)
        data["name"] = push.name
    if retrieval is not None:
        data["payload"] = retrieval.payload
        data["files"] = [file_json(f, retrieval.file_key, now) for f in retrieval.files]
    return data


def file_json(push_file, key, now) -> dict:
    """One attached file: name, type and a short-lived download link."""
    return {"filename": push_file.filename, "content_type": push_file.content_type,
            "url": base_url() + file_link_path(push_file, key, now)}


def file_link_path(push_file, key, now) -> str:
    """The path of a file's short-lived download link. The name at its end is for the
    browser's "save as" only: one path segment, never a dot segment (".." would be
    resolved away by the browser, and the link with it; nor slashes alone, which routing
    drops)."""
    name = quote(push_file.filename, safe="")
    if not push_file.filename.strip("./"):
        name = "file"
    return f"/pfb/{pushes.file_link_token(push_file, key, now)}/{name}"


def audit_json(entry, version="v2", sending=None) -> dict:
    """One audit event with upstream's keys: v2's builder names them in its order (a
    creation_email_send event with its sending); v1 renders the row itself (less id, push_id
    and user_id), in its columns' order, kind first."""
    kind = AuditKind(entry.kind).name
    data = {"kind": kind} if version == "v1" else {}
    data.update(ip=entry.ip, user_agent=entry.user_agent, referrer=entry.referrer)
    if version != "v1":
        data["kind"] = kind
    data.update(created_at=iso(entry.created_at), updated_at=iso(entry.created_at))
    if sending is not None:
        data["notify_by_email"] = notify_json(sending)
    return data


def notify_json(sending) -> dict:
    """A sending as upstream's audit log nests it (error_message only when there is one)."""
    data = {"recipients": sending.recipients, "locale": sending.locale, "status": sending.status}
    if sending.error_message:
        data["error_message"] = sending.error_message
    data["successful_sends"] = sending.successful_sends
    data["proceed_at"] = iso(sending.proceed_at)
    return data


# ----------------------------------------------------------------------------- handlers (v1 + v2)

def version_json(api_version) -> dict:
    """The version document; v2 adds the features hash from the settings."""
    data = {"application_version": UPSTREAM_VERSION, "api_version": api_version, "edition": "oss"}
    if api_version.startswith("2"):
        cfg = current_app.config
        data["features"] = {
            "anonymous_access": cfg["PWP__ALLOW_ANONYMOUS"],
            "api_token_authentication": True,
            "accounts": {"enabled": False},
            "pushes": {
                "enabled": True,
                "email_auto_dispatch": notify.available(cfg),
                "file_attachments": {"enabled": cfg["PWP__ENABLE_FILE_PUSHES"],
                                     "requires_authentication": True},
                "url_pushes": {"enabled": cfg["PWP__ENABLE_URL_PUSHES"]},
                "qr_code_pushes": {"enabled": cfg["PWP__ENABLE_QR_PUSHES"]},
            },
            "requests": {"enabled": False},
        }
    return data


def create_push(root_key, version, kind=None, wrap=False):
    """Create a push from the body's root parameter; 201 with the push."""
    fields = params.root(params.body_params(), root_key, wrap=wrap and request.is_json)
    if version == "v1":  # v1 never takes notify_emails_*: dropped like any unknown key
        fields.pop("notify_emails_to", None)
        fields.pop("notify_emails_to_locale", None)
    push, now, asked = store_push(fields, g.caller, actor(g.caller), kind)
    data = push_json(push, now, version=version, owner_fields=True)
    if asked is not None:  # (upstream echoes them)
        data["notify_emails_to"], data["notify_emails_to_locale"] = asked.sent_to, asked.locale
    return json_response(data, 201)


def store_push(fields: dict, caller, who, kind=None):
    """Validate and store a push from its parameters, and queue its notification e-mails if
    asked; return it, the time of creation and the notify request (or None).

    PushError (nothing written) for input the API refuses."""
    new = params.new_push(fields, kind=kind)
    if (new.files_given or new.kind == "file") and caller is None:
        raise SignInRequired()
    now = pushes.utcnow()
    asked = notify.check_create(fields, new, caller, now)
    return notify.create_push(new, asked, who, now), now, asked


# Set by the hot path when its retrieve_open found nothing: Flask's view skips it.
OPEN_TRIED = "pwp.open_tried"


def show_push(url_token, version):
    """Retrieve: count one view and return the payload."""
    now = pushes.utcnow()
    if request.method == "HEAD":  # no body to carry the payload: count nothing
        pushes.get(url_token, now)  # (404 for an unknown push)
        return Response(status=200, content_type=JSON_TYPE)
    result = pushes.retrieve(url_token, actor(g.caller), now, passphrase=params.passphrase_param(),
                             open_tried=OPEN_TRIED in request.environ)
    return json_response(push_json(result.push, now, version=version, retrieval=result))


def destroy_push(url_token, version):
    """Expire a push now (owner, or anyone when deletable by viewers)."""
    now = pushes.utcnow()
    push, _deleted = pushes.expire_now(url_token, actor(g.caller), now)
    return json_response(push_json(push, now, version=version))


def preview_push(url_token):
    """Return the secret URL without counting a view."""
    return json_response({"url": secret_url(pushes.get(url_token, pushes.utcnow()))})


def audit_page(url_token, root_key):
    """Return one page of the owner's audit log (v2's with the e-mail sendings in it)."""
    page = params.page_param()
    push = pushes.owned(url_token, g.caller)
    version = "v1" if root_key == "views" else "v2"
    entries = pushes.audit_log(push, page)
    sendings = notify.of_events([e.id for e in entries if e.kind == AuditKind.creation_email_send]) \
        if version == "v2" else {}
    return json_response({root_key: [audit_json(e, version, sendings.get(e.id)) for e in entries]})


def list_pushes(expired, version):
    """Return one page of the caller's active or expired pushes."""
    page = params.page_param()
    now, base, locale = pushes.utcnow(), base_url(), request_locale()  # (once for the page)
    return json_response([push_json(p, now, version=version, owner_fields=True, base=base, locale=locale)
                          for p in pushes.list_for(g.caller, expired, page)])


# ----------------------------------------------------------------------------- v2 routes

@bp.get("/version")
@bp.get("/version.json")
def version():
    """Report versions and enabled features (public, even with a bad token)."""
    return json_response(version_json("2.1"))


@bp.post("/pushes")
@bp.post("/pushes.json")
@api_auth()
def create():
    """Create a push."""
    return create_push("push", "v2", wrap=True)


@bp.get("/pushes/active")
@bp.get("/pushes/active.json")
@api_auth(required=True)
def active():
    """List the caller's active pushes."""
    return list_pushes(False, "v2")


@bp.get("/pushes/expired")
@bp.get("/pushes/expired.json")
@api_auth(required=True)
def expired():
    """List the caller's expired pushes."""
    return list_pushes(True, "v2")


@bp.get("/pushes/<token:url_token>")
@bp.get("/pushes/<token:url_token>.json")
@api_auth()
def show(url_token):
    """Retrieve a push's payload (counts a view)."""
    return show_push(url_token, "v2")


@bp.delete("/pushes/<token:url_token>")
@bp.delete("/pushes/<token:url_token>.json")
@api_auth()
def destroy(url_token):
    """Expire a push now."""
    return destroy_push(url_token, "v2")


@bp.get("/pushes/<token:url_token>/preview")
@bp.get("/pushes/<token:url_token>/preview.json")
@api_auth()
def preview(url_token):
    """Return the secret URL."""
    return preview_push(url_token)


@bp.get("/pushes/<token:url_token>/audit")
@bp.get("/pushes/<token:url_token>/audit.json")
@api_auth(required=True)
def audit(url_token):
    """Return the audit log (owner only)."""
    return audit_page(url_token, "logs")


@api_auth(required=True)
def notify_emails(url_token):
    """Send the push's link to up to 5 addresses (owner only; top-level parameters)."""
    body = params.body_params()
    notify.notify(url_token, body.get("notify_emails_to"), body.get("notify_emails_to_locale"),
                  actor(g.caller), pushes.utcnow())
    return json_response({"message": NOTIFY_QUEUED}, 201)


NOTIFY_QUEUED = "Recipient(s) are added to the queue to be sent."


def init_app(app):
    """Register the url_token converter, the v2 routes (notify_emails only when
    PWP__NOTIFY_BY_EMAIL__ENABLED, as upstream) and the file download route."""
    app.url_map.converters["token"] = TokenConverter
    app.register_blueprint(bp)
    if app.config["PWP__NOTIFY_BY_EMAIL__ENABLED"]:
        for path in ("/notify_emails", "/notify_emails.json"):
            app.add_url_rule(bp.url_prefix + "/pushes/<token:url_token>" + path, "api.notify_emails",
                             notify_emails, methods=["POST"])
    app.add_url_rule("/pfb/<token>/<path:_filename>", "download_file", downloads.download_file)
