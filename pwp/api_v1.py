"""Legacy API v1 JSON routes (/p.json, /f.json, /r.json, /p/<token>.json, ...).

Thin wrappers over the same handlers as API v2; only the root keys, the audit
key ("views") and the per-prefix authentication rules differ.
"""
from flask import Blueprint, abort, current_app, request

from .api import (audit_page, create_push, destroy_push, list_pushes, preview_push, show_push,
                  version_json)
from .auth import api_auth
from .errors import api_error, json_response

bp = Blueprint("api_v1", __name__)
PREFIX = "<any(p, f, r):prefix>"


# Upstream registers the /f and /r routes only while their kind is on: off, each is a 404,
# before authentication.
_KIND_OF_PREFIX = {"f": "PWP__ENABLE_FILE_PUSHES", "r": "PWP__ENABLE_URL_PUSHES"}
_CREATE_PREFIX = {"api_v1.create_file_push": "f", "api_v1.create_url_push": "r"}


@bp.url_value_preprocessor
def _kind_routes(endpoint, values):
    setting = _KIND_OF_PREFIX.get((values or {}).get("prefix") or _CREATE_PREFIX.get(endpoint))
    if setting and not current_app.config[setting]:
        abort(api_error(404, {"status": 404, "error": "Not Found"}))  # (no route: not a push's 404)


@bp.get("/api/v1/version")
@bp.get("/api/v1/version.json")
def version():
    """Report versions (public)."""
    return json_response(version_json("1.5"))


@bp.post("/p.json")
@api_auth()
def create_password():
    """Create a push from password[...] (any kind; files make it a file push)."""
    return create_push("password", "v1")


@bp.route("/p.json", methods=["OPTIONS"])
def create_password_preflight():
    """Answer the CORS preflight for POST /p.json (the one cross-origin route, as upstream)."""
    return current_app.response_class(status=204)


@bp.after_request
def _cors(response):
    """CORS headers on whatever /p.json answers, errors included (as rack-cors adds them)."""
    if request.endpoint in ("api_v1.create_password", "api_v1.create_password_preflight"):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        # Any request headers (rack-cors' "headers: :any" echoes what the preflight asks for).
        response.headers["Access-Control-Allow-Headers"] = \
            request.headers.get("Access-Control-Request-Headers") or "Content-Type, Authorization"
    return response


@bp.post("/f.json")
@api_auth(required=True)
def create_file_push():
    """Create a file push from file_push[...] (token required)."""
    return create_push("file_push", "v1", kind="file")


@bp.post("/r.json")
@api_auth(required=True)
def create_url_push():
    """Create a URL push from url[...] (token required)."""
    return create_push("url", "v1", kind="url")


@bp.get(f"/{PREFIX}/active.json")
@api_auth(required=True)
def active(prefix):
    """List the caller's active pushes (all kinds, whatever the prefix)."""
    return list_pushes(False, "v1")


@bp.get(f"/{PREFIX}/expired.json")
@api_auth(required=True)
def expired(prefix):
    """List the caller's expired pushes."""
    return list_pushes(True, "v1")


@bp.get(f"/{PREFIX}/<token:url_token>.json")
@api_auth()
def show(prefix, url_token):
    """Retrieve a push (any kind through any prefix); counts a view."""
    return show_push(url_token, "v1")


@bp.delete(f"/{PREFIX}/<token:url_token>.json")
@api_auth()
def destroy(prefix, url_token):
    """Expire a push now."""
    return destroy_push(url_token, "v1")


@bp.get(f"/{PREFIX}/<token:url_token>/preview.json")
@api_auth()
def preview(prefix, url_token):
    """Return the secret URL."""
    return preview_push(url_token)


@bp.get(f"/{PREFIX}/<token:url_token>/audit.json")
@api_auth(required=True)
def audit(prefix, url_token):
    """Return the audit log (owner only) under the key "views"."""
    return audit_page(url_token, "views")
