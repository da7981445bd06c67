"""Public-gateway mode (PWP_PUBLIC_GATEWAY): an instance that serves only what a recipient
needs to open a link, as upstream's.

An admin splits a deployment in two on one database: an internal instance (VPN only)
where people sign in and create pushes, and a public gateway that recipients reach. The
gateway keeps the routes of RECIPIENT_ENDPOINTS and drops every other one from its URL
map, so the creation form, the owner's pages, the accounts and the JSON APIs are not
forbidden there but absent: 404, as any unknown path. A route added later is absent from
the gateway until it is named here.
"""
import logging

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect, Rule

from .config import start_up_notes

log = logging.getLogger("pwp")

# The retrieval step, the passphrase form and its submit, the payload page, the viewer's
# deletion (and the address it leaves in the tab), the file links of a payload page,
# upstream's /f/ and /r/ redirects; static files (the favicon too), the health check,
# robots.txt. Not the push-created preview: upstream's gateway does not route it.
RECIPIENT_ENDPOINTS = frozenset({
    "web.preliminary", "web.passphrase", "web.access", "web.show", "web.expire", "web.expire_page",
    "web.legacy", "download_file", "static", "pages.up", "pages.robots"})


ABSENT = "gateway.absent"
ANY_METHOD = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def absent():
    """Answer 404: a path of the internal instance that a recipient's route would otherwise take."""
    raise NotFound()


def _matches(adapter, path) -> bool:
    """Tell whether some rule of the adapter's map takes this path (any method)."""
    try:
        adapter.match(path, method="GET")
    except NotFound:
        return False
    except (MethodNotAllowed, RequestRedirect):
        return True
    return True


def _copy(rule) -> Rule:
    """The rule, unbound, with Flask's mark of an automatic OPTIONS answer (the static files'):
    without it their view would run for OPTIONS."""
    copy = rule.empty()
    copy.provide_automatic_options = getattr(rule, "provide_automatic_options", False)
    return copy


def enabled(app) -> bool:
    """Tell whether this app runs as a public gateway."""
    return app.config["PWP_PUBLIC_GATEWAY"]


def init_app(app):
    """On a public gateway, drop every route but the recipient's, and say so in the log."""
    if not enabled(app):
        return
    old = app.url_map
    kept = [rule for rule in old.iter_rules() if rule.endpoint in RECIPIENT_ENDPOINTS]
    dropped = [rule for rule in old.iter_rules() if rule.endpoint not in RECIPIENT_ENDPOINTS]
    # A new map from the kept rules (werkzeug's maps cannot remove one), with the old one's settings.
    app.url_map = app.url_map_class(
        [_copy(rule) for rule in kept],
        default_subdomain=old.default_subdomain, strict_slashes=old.strict_slashes,
        merge_slashes=old.merge_slashes, redirect_defaults=old.redirect_defaults,
        converters=old.converters, sort_parameters=old.sort_parameters, sort_key=old.sort_key,
        host_matching=old.host_matching)
    # A dropped path that a kept rule would now take (/p/new as the token "new" of /p/<token>,
    # an expired page) stays taken, by a 404.
    adapter = app.url_map.bind("localhost")
    for path in sorted({rule.rule for rule in dropped if not rule.arguments}):
        if _matches(adapter, path):
            app.url_map.add(Rule(path, endpoint=ABSENT, methods=ANY_METHOD))
    app.view_functions = {endpoint: view for endpoint, view in app.view_functions.items()
                          if endpoint in RECIPIENT_ENDPOINTS}
    app.view_functions[ABSENT] = absent
    # A warning, as the other notices of start-up: the app's info lines are not shown by default.
    if start_up_notes():
        log.warning("Running as a public gateway (PWP_PUBLIC_GATEWAY): only the recipients' pages are "
                    "served; pushes are created on an internal instance on the same database.")
