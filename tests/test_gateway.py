"""Public-gateway mode (PWP_PUBLIC_GATEWAY): pushes made on an internal instance are read
through a gateway on the same database, which has the recipient's routes and no other."""
import io
import logging
import re

import pytest
from werkzeug.exceptions import NotFound

from conftest import bearer, make_config, sql
from pwp import config, create_app
from pwp.errors import is_api_path
from pwp.models import db
from webutil import view_count

EXPIRED = "We apologize but this secret link has expired."
# The gateway's whole route table: (path, methods). A route added to the app is absent from
# the gateway (a 404) unless pwp/gateway.py names it; one named there must be named here too.
GATEWAY_ROUTES = {
    ("/p/<token:url_token>/r", "GET HEAD"),
    ("/p/<token:url_token>/passphrase", "GET HEAD"),
    ("/p/<token:url_token>/access", "POST"),
    ("/p/<token:url_token>", "GET HEAD"),
    ("/p/<token:url_token>/expire", "DELETE POST"),
    ("/p/<token:url_token>/expire", "GET HEAD"),
    ("/<any(f, r):prefix>/<token:url_token>", "GET HEAD"),
    ("/<any(f, r):prefix>/<token:url_token>/<any(r, passphrase):step>", "GET HEAD"),
    ("/pfb/<token>/<path:_filename>", "GET HEAD"),
    ("/static/<path:filename>", "GET HEAD OPTIONS"),
    ("/up", "GET HEAD"),
    ("/robots.txt", "GET HEAD"),
    # The token "new" of /p/<token> would show the expired page where /p/new is the form.
    ("/p/new", "DELETE GET HEAD OPTIONS PATCH POST PUT"),
}
RECIPIENT_ENDPOINTS = {"web.preliminary", "web.passphrase", "web.access", "web.show", "web.expire",
                       "web.expire_page", "web.legacy", "download_file", "static", "pages.up",
                       "pages.robots"}


@pytest.fixture
def make_gateway(database_url, tmp_path):
    """Build gateway apps on the internal app's database (same keys), with extra settings."""
    apps = []

    def make(**settings):
        gateway = create_app(make_config(database_url, PWP_PUBLIC_GATEWAY=True, **settings),
                             instance_path=str(tmp_path / f"gateway{len(apps)}"))
        apps.append(gateway)
        return gateway
    yield make
    for gateway in apps:
        with gateway.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def gateway(app, make_gateway):
    """A test client of a public gateway on the internal app's database."""
    return make_gateway().test_client()


def push(client, headers=None, **fields):
    """Create a push on the internal instance through API v2; return its JSON."""
    r = client.post("/api/v2/pushes", json={"push": fields}, headers=headers or {})
    assert r.status_code == 201, r.data
    return r.json


def expired(app, url_token):
    """The push's expired flag, read from the database."""
    return bool(sql(app, "SELECT expired FROM pushes WHERE url_token = :t", t=url_token)[0][0])


def recipient_page(gateway, response):
    """The page's HTML, after checking that each of its links, form actions and sources is a
    route of the gateway (no sign-in, dashboard, new push or API docs there)."""
    html = response.get_data(as_text=True)
    adapter = gateway.application.url_map.bind("localhost")
    for attribute, path in re.findall(r'\b(href|src|action)="([^"#]*)"', html):
        if path.startswith("data:"):
            continue
        assert path.startswith("/") and not path.startswith("//"), path
        try:
            endpoint, _args = adapter.match(path.split("?")[0], method="POST" if attribute == "action" else "GET")
        except NotFound:
            endpoint = None
        assert endpoint in RECIPIENT_ENDPOINTS, f"the gateway's page links to {path}, which it lacks"
    for words in ("Sign in", "Sign up", "Dashboard", "New push", "API"):
        assert f">{words}<" not in html
    return html


# ----------------------------------------------------------------------------- routes

def test_the_gateway_routes_only_what_a_recipient_needs(gateway):
    routes = {(rule.rule, " ".join(sorted(rule.methods))) for rule in gateway.application.url_map.iter_rules()}
    assert routes == GATEWAY_ROUTES


def _sample_path(rule, url_token):
    """A path of this rule, with the route's arguments filled in."""
    values = {"url_token": url_token, "prefix": "f", "step": "r", "token": "abc", "_filename": "a.txt",
              "filename": "app.css", "user_id": 1}
    missing = set(rule.arguments) - set(values)
    assert not missing, f"{rule.rule}: give test_gateway._sample_path a value for {missing}"
    return rule.build({name: values[name] for name in rule.arguments})[1]


def test_every_other_route_of_the_app_is_a_404_on_the_gateway(app, client, gateway):
    """Every route of a normal app, with each of its methods: on the gateway the recipient's
    answer as on the internal instance, every other one a 404 (JSON for the API's paths, the
    error page for others), never a 500."""
    url_token = push(client, payload="inside")["url_token"]
    internal = app.url_map.bind("localhost")
    absent = 0
    for rule in app.url_map.iter_rules():
        path = _sample_path(rule, url_token)
        for method in sorted(rule.methods - {"HEAD"}):
            assert internal.match(path, method=method)[0] == rule.endpoint  # (the sample is that route's)
            r = gateway.open(path, method=method)
            assert r.status_code != 500, (method, path)
            if rule.endpoint in RECIPIENT_ENDPOINTS:
                assert r.status_code != 404 or rule.endpoint == "download_file", (method, path)
                continue
            absent += 1
            assert r.status_code == 404, (method, path, r.status_code)
            if is_api_path(path):
                assert r.json == {"status": 404, "error": "Not Found"}, (method, path)
            else:
                assert "<h1>Not Found</h1>" in recipient_page(gateway, r), (method, path)
    assert absent > 40


def test_the_api_is_absent_from_the_gateway_hot_path_included(app, client, gateway):
    """The API's fast lane (pwp/hotpath.py) answers these before Flask routes them."""
    url_token = push(client, payload="inside")["url_token"]
    for r in (gateway.get(f"/api/v2/pushes/{url_token}"), gateway.get(f"/api/v2/pushes/{url_token}.json"),
              gateway.post("/api/v2/pushes", json={"push": {"payload": "outside"}}),
              gateway.post("/p.json", json={"password": {"payload": "outside"}}),
              gateway.get("/api/v2/pushes/" + "A" * 100), gateway.get(f"/p/{url_token}.json")):
        assert r.status_code == 404 and r.json == {"status": 404, "error": "Not Found"}
    assert view_count(app, url_token) == 0
    assert client.get("/api/v2/pushes/active", headers={}).status_code == 401  # (still there inside)


@pytest.mark.parametrize("path", ["/", "/p/new?tab=files", "/p", "/users/sign_in", "/help/api", "/api",
                                  "/p/abc/preview", "/p/a.b", "/favicon.ico", "/admin"])
def test_absent_pages_are_the_friendly_404_page(gateway, path):
    r = gateway.get(path)
    assert r.status_code == 404 and r.mimetype == "text/html"
    html = recipient_page(gateway, r)
    assert "<h1>Not Found</h1>" in html and "Back to the start page" not in html
    assert "This site opens the secret links people send" in html


@pytest.mark.parametrize("path", ["/p/%00", "/p/" + "x" * 100, "/p/a!b/r", "/f/a!b/passphrase"])
def test_a_token_no_push_could_have_is_the_expired_page_on_the_gateway(gateway, path):
    # As inside, and as upstream's gateway, whose router takes any segment without "." or "/"
    # as a token (was: the gateway's 404, inside the expired page).
    for accept in (None, "application/json"):
        r = gateway.get(path, headers={"Accept": accept} if accept else {})
        assert r.status_code == 200 and EXPIRED in recipient_page(gateway, r), (path, accept)


def test_post_to_the_creation_form_is_a_404_and_creates_nothing(app, gateway):
    r = gateway.post("/p", data={"push[payload]": "outside", "push[kind]": "text"})
    assert r.status_code == 404
    assert sql(app, "SELECT count(*) FROM pushes")[0][0] == 0


# ----------------------------------------------------------------------------- the recipient's pages

def test_a_push_made_inside_is_read_through_the_gateway(settings, database_url, request, make_gateway):
    settings["PWP__OVERRIDE_BASE_URL"] = "https://secrets.example.com"
    app, client = request.getfixturevalue("app"), request.getfixturevalue("client")
    gateway = make_gateway().test_client()
    created = push(client, payload="from inside", retrieval_step=True, expire_after_views=2)
    url_token = created["url_token"]
    # The internal instance hands out links on the gateway's host.
    assert created["html_url"] == f"https://secrets.example.com/p/{url_token}/r"
    html = recipient_page(gateway, gateway.get(f"/p/{url_token}/r"))
    assert f'href="/p/{url_token}"' in html and "from inside" not in html
    assert view_count(app, url_token) == 0
    r = gateway.get(f"/p/{url_token}")
    assert r.status_code == 200 and "from inside" in recipient_page(gateway, r)
    assert view_count(app, url_token) == 1
    # Upstream's old /f/ and /r/ links.
    r = gateway.get(f"/r/{url_token}/r?locale=de")
    assert r.status_code == 301 and r.headers["Location"] == f"/p/{url_token}/r?locale=de"
    gateway.get(f"/p/{url_token}")
    assert EXPIRED in recipient_page(gateway, gateway.get(f"/p/{url_token}"))


def test_passphrase_through_the_gateway(app, client, gateway):
    url_token = push(client, payload="guarded", passphrase="open sesame")["url_token"]
    r = gateway.get(f"/p/{url_token}")
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{url_token}/passphrase"
    html = recipient_page(gateway, gateway.get(f"/p/{url_token}/passphrase"))
    assert f'action="/p/{url_token}/access"' in html
    r = gateway.post(f"/p/{url_token}/access", data={"passphrase": "wrong"})
    assert r.headers["Location"] == f"/p/{url_token}/passphrase"
    assert "That passphrase is incorrect." in recipient_page(gateway, gateway.get(r.headers["Location"]))
    r = gateway.post(f"/p/{url_token}/access", data={"passphrase": "open sesame"})
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{url_token}"
    assert "guarded" in recipient_page(gateway, gateway.get(f"/p/{url_token}"))
    assert view_count(app, url_token) == 1


def test_a_viewer_deletes_through_the_gateway(app, client, gateway):
    url_token = push(client, payload="delete me", deletable_by_viewer=True, expire_after_views=5)["url_token"]
    html = recipient_page(gateway, gateway.get(f"/p/{url_token}"))
    assert f'action="/p/{url_token}/expire"' in html
    r = gateway.post(f"/p/{url_token}/expire", data={"_method": "delete"})
    assert r.status_code == 200 and "Secret deleted" in recipient_page(gateway, r)
    assert expired(app, url_token)
    # The address the deletion leaves in the tab, opened again.
    assert "Secret deleted" in recipient_page(gateway, gateway.get(f"/p/{url_token}/expire"))


def test_a_push_not_deletable_by_viewers_says_so_on_the_gateway(app, client, gateway):
    """Inside, upstream sends the viewer to the start page with a warning; the gateway has none."""
    url_token = push(client, payload="keep me", deletable_by_viewer=False)["url_token"]
    r = gateway.delete(f"/p/{url_token}/expire")
    assert r.status_code == 403
    assert "not deletable by viewers" in recipient_page(gateway, r)
    assert not expired(app, url_token)


def test_a_kind_switched_off_on_the_gateway_says_so(app, client, make_gateway):
    gateway = make_gateway(PWP__ENABLE_URL_PUSHES=False).test_client()
    url_token = push(client, payload="https://example.com/", kind="url")["url_token"]
    for path in (f"/p/{url_token}", f"/p/{url_token}/r", f"/p/{url_token}/passphrase"):
        r = gateway.get(path)
        assert r.status_code == 404 and "URL pushes are disabled." in recipient_page(gateway, r)
    assert view_count(app, url_token) == 0


def test_files_download_through_the_gateway(app, client, gateway, token):
    data = {"push[payload]": "see attached", "push[files][]": [(io.BytesIO(b"file content"), "a b.txt")]}
    r = client.post("/api/v2/pushes", headers=bearer(token), data=data, content_type="multipart/form-data")
    url_token = r.json["url_token"]
    html = recipient_page(gateway, gateway.get(f"/p/{url_token}"))
    (link,) = re.findall(r'href="(/pfb/[^"]+)"', html)
    r = gateway.get(link)
    assert r.status_code == 200 and r.data == b"file content"
    assert "attachment" in r.headers["Content-Disposition"]
    # A link gone stale: the page saying so, without links to absent pages.
    r = gateway.get("/pfb/abc/a.txt", headers={"Accept": "text/html"})
    assert r.status_code == 404 and "/pfb/" not in recipient_page(gateway, r)


def test_the_internal_instances_session_signs_no_one_in_on_the_gateway(app, client, gateway, make_user):
    """Cookies of one host name serve every port: an owner signed in inside who opens the
    link on a gateway at the same name is a recipient there (no owner pages to send to)."""
    make_user(email="owner@example.com", password="correct horse")
    assert client.post("/users/sign_in", data={"email": "owner@example.com",
                                                "password": "correct horse"}).status_code == 302
    url_token = push(client, payload="mine", deletable_by_viewer=True)["url_token"]
    gateway.set_cookie("session", client.get_cookie("session").value)
    html = recipient_page(gateway, gateway.get(f"/p/{url_token}"))
    assert "mine" in html and "Sign out" not in html
    assert view_count(app, url_token) == 1  # (counted: inside, the owner's views are not)
    r = gateway.post(f"/p/{url_token}/expire")
    assert r.status_code == 200 and "Secret deleted" in recipient_page(gateway, r)
    assert gateway.post("/users/sign_out").status_code == 404  # (the session is the inside's)
    assert sql(app, "SELECT count(*) FROM user_sessions")[0][0] == 1
    assert client.get("/p").status_code == 200


# ----------------------------------------------------------------------------- what still applies

def test_csrf_throttling_and_headers_still_apply(app, client, make_gateway):
    gateway = make_gateway(WTF_CSRF_ENABLED=True, PWP__THROTTLING__MINUTE=5).test_client()
    url_token = push(client, payload="guarded", passphrase="pp")["url_token"]
    assert gateway.get("/").status_code == 404
    page = gateway.get(f"/p/{url_token}/passphrase")
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert gateway.post(f"/p/{url_token}/access", data={"passphrase": "pp"}).status_code == 400
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    r = gateway.post(f"/p/{url_token}/access", data={"passphrase": "pp", "csrf_token": csrf})
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{url_token}"
    r = gateway.get(f"/p/{url_token}")  # the fifth request of the minute
    assert r.status_code == 200
    r = gateway.get(f"/p/{url_token}/r")
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert gateway.get("/up").status_code == 200  # (the health check is never counted)


def test_the_setting_reads_as_a_boolean():
    for raw, on in (("true", True), ("1", True), ("yes", True), ("false", False), ("0", False),
                    ("off", False), ("", False)):
        assert config.from_environ({"PWP_PUBLIC_GATEWAY": raw})["PWP_PUBLIC_GATEWAY"] is on, raw
    assert config.from_environ({})["PWP_PUBLIC_GATEWAY"] is False
    with pytest.raises(config.ConfigError, match="PWP_PUBLIC_GATEWAY"):
        config.from_environ({"PWP_PUBLIC_GATEWAY": "gateway"})


def test_start_up_says_it_is_a_public_gateway(app, make_gateway, caplog):
    with caplog.at_level(logging.INFO, logger="pwp"):
        make_gateway()
    # (At warning level: the app's info lines are not shown by default, under gunicorn too.)
    assert any("public gateway" in record.getMessage() and record.levelno >= logging.WARNING
               for record in caplog.records)
    # (It said "Notify by e-mail is off: PWP__MAIL__SMTP_ADDRESS is not set", of a site that
    # creates nothing.)
    assert not [record for record in caplog.records if "Notify by e-mail" in record.getMessage()]
    assert not [m for m in app.url_map.iter_rules() if m.endpoint == "gateway.absent"]

