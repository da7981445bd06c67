"""Plain pages and layout: API docs, health, robots.txt, branding, static assets."""
import re
from html import unescape

import pytest

from conftest import make_config
from webutil import create, sign_in

from pwp import create_app
from pwp.models import db
from pwp.pages import EXAMPLES, api_routes

BRAND = {"PWP__BRAND__TITLE": "Acme Secrets", "PWP__BRAND__TAGLINE": "Share safely",
         "PWP__BRAND__DISCLAIMER": "For Acme staff only."}


def test_api_docs_cover_every_v2_route_with_curl(client, app):
    html = unescape(client.get("/help/api").get_data(as_text=True))
    routes = api_routes(app)
    assert {r["endpoint"] for r in routes} <= set(EXAMPLES), "a v2 route has no curl example"
    for route in routes:
        assert route["path"] in html and route["doc"] in html
    assert "curl http://localhost/api/v2/version" in html
    assert "expire_after_duration" in html
    # A URL with a query is quoted: zsh (macOS's shell) refuses an unquoted ? ("no matches found").
    assert 'curl "http://localhost/api/v2/pushes/$URL_TOKEN/audit?page=1" -H' in html


def test_api_docs_list_a_route_whose_view_has_no_docstring(app, client):
    # Under python -OO (PYTHONOPTIMIZE=2: no docstrings, 4-5 MiB less per worker,
    # bench/RESULTS.md 2026-12-07) no view has one: the page lists the route without its
    # description instead of failing with a 500.
    def undocumented():
        return ""
    app.add_url_rule("/api/v2/undocumented", "api.undocumented", undocumented)
    r = client.get("/help/api")
    # (<wbr>: a path on a phone breaks after a slash)
    assert r.status_code == 200 and "/api/v2/undocumented" in r.get_data(as_text=True).replace("<wbr>", "")


def test_api_docs_say_how_to_send_a_file_push(client):
    # The page listed kind "file" but no parameter for the files themselves, nor the
    # multipart form they are sent in: a reader could not make a file push from it.
    html = unescape(client.get("/help/api").get_data(as_text=True))
    assert "<code>files</code>" in html
    assert '-F "push[files][]=@report.pdf"' in html


def test_api_docs_say_this_instances_days_and_views(settings, database_url, request):
    # The page said "default 7" and "default 5" whatever the settings made them.
    settings.update({"PWP__PW__EXPIRE_AFTER_DAYS_DEFAULT": 3, "PWP__PW__EXPIRE_AFTER_DAYS_MAX": 30,
                     "PWP__PW__EXPIRE_AFTER_VIEWS_DEFAULT": 2})
    html = unescape(request.getfixturevalue("client").get("/help/api").get_data(as_text=True))
    assert "Days until the link expires: 1 to 30, default 3 (a text push; other kinds have their own)." in html
    # (Each kind has its views too: the views' line says whose as the days' does.)
    assert "Views until the link expires: 1 to 100, default 2 (a text push; other kinds have their own)." in html


def test_api_redirects_to_the_api_docs(client):
    r = client.get("/api")
    assert r.status_code == 302 and r.headers["Location"] == "/help/api"


def test_api_docs_use_override_base_url(settings, database_url, request):
    settings["PWP__OVERRIDE_BASE_URL"] = "https://secrets.example.org"
    client = request.getfixturevalue("client")
    assert "curl https://secrets.example.org/api/v2/version" in client.get("/help/api").get_data(as_text=True)


def test_up(client):
    r = client.get("/up")
    assert r.status_code == 200 and "Up" in r.get_data(as_text=True)


def test_robots_txt(client):
    r = client.get("/robots.txt")
    assert r.mimetype == "text/plain" and r.get_data(as_text=True) == "User-agent: *\nDisallow: /\n"


def test_branding_settings(settings, database_url, request):
    settings.update({"PWP__BRAND__TITLE": "Acme Secrets", "PWP__BRAND__TAGLINE": "Share safely",
                     "PWP__BRAND__DISCLAIMER": "For Acme staff only.",
                     "PWP__BRAND__LIGHT_LOGO": "/static/favicon.svg"})
    client = request.getfixturevalue("client")
    html = client.get("/").get_data(as_text=True)
    assert "<title>New push | Acme Secrets</title>" in html
    assert "Share safely" in html and "For Acme staff only." in html
    assert html.count('src="/static/favicon.svg"') == 2  # one logo serves both modes


def test_a_logo_on_another_site_is_allowed_by_the_csp(settings, database_url, request):
    # The CSP's img-src allowed only this site and data: URLs: a logo URL elsewhere (as
    # upstream's settings take) was a broken image on every page.
    settings.update({"PWP__BRAND__LIGHT_LOGO": "https://cdn.example.com:8443/brand/light.png",
                     "PWP__BRAND__DARK_LOGO": "https://cdn.example.com:8443;script-src *"})  # (no site: refused; start-up refuses it too)
    client = request.getfixturevalue("client")
    for path in ("/", "/no/such/page"):
        csp = client.get(path).headers["Content-Security-Policy"]
        assert "; img-src 'self' data: https://cdn.example.com:8443; " in csp
        assert csp.count("script-src") == 1


def test_a_data_logo_is_shown_under_the_csps_data_images(settings, database_url, request):
    logo = "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' width='9'/>"
    settings.update({"PWP__BRAND__LIGHT_LOGO": logo})
    r = request.getfixturevalue("client").get("/")
    assert r.get_data(as_text=True).count('src="data:image/svg+xml,&lt;svg xmlns=&#39;http://www.w3.org/2000/svg&#39; '
                                          'width=&#39;9&#39;/&gt;"') == 2
    assert "; img-src 'self' data:; " in r.headers["Content-Security-Policy"]


def test_force_ssl_sends_hsts(settings, database_url, request):
    # Upstream's FORCE_SSL (Rails' force_ssl) also tells browsers to use https from then on:
    # without it, a later visit typed as http://... went out in clear before any proxy's redirect.
    settings["FORCE_SSL"] = True
    client = request.getfixturevalue("client")
    for path in ("/", "/api/v2/version", "/static/app.css"):
        with client.get(path, base_url="https://localhost") as r:
            assert r.headers["Strict-Transport-Security"] == "max-age=63072000"


def test_no_hsts_without_force_ssl(client):
    assert "Strict-Transport-Security" not in client.get("/", base_url="https://localhost").headers


def test_static_assets_are_cacheable(client):
    with client.get("/static/app.css") as r:
        assert r.status_code == 200 and r.headers.get("Cache-Control") != "no-store"


def test_unknown_page_is_a_friendly_404(client):
    r = client.get("/no/such/page")
    assert r.status_code == 404 and "Not Found" in r.get_data(as_text=True)
    assert "<title>Not Found (404) | pwpush</title>" in r.get_data(as_text=True)  # (was "404 | pwpush")


def test_wide_examples_can_be_scrolled_from_the_keyboard(client, make_user):
    """A <pre> wider than a phone scrolls sideways: it takes focus (axe scrollable-region-focusable)."""
    html = client.get("/help/api").get_data(as_text=True)
    assert html.count('<pre class="code" tabindex="0" role="region" aria-label="Example: ') >= 7
    assert 'aria-label="Example: POST /api/v2/pushes"' in html


def test_a_secret_page_is_titled_by_what_it_holds(client):
    """Not the retrieval step's "A secret has been shared with you" (never the secret itself)."""
    for kind, payload, title in (("text", "s3cret-title", "Your secret"), ("qr", "WIFI:S:x;;", "A QR code for you")):
        made = client.post("/api/v2/pushes", json={"push": {"payload": payload, "kind": kind,
                                                            "retrieval_step": True}}).json
        step = client.get(f"/p/{made['url_token']}/r").get_data(as_text=True)
        shown = client.get(f"/p/{made['url_token']}").get_data(as_text=True)
        assert f"<title>{title}</title>" in shown and title not in step, kind
        assert payload not in shown.split("</title>")[0]


@pytest.mark.parametrize("total, said", [(50_000, "48.8 KiB"), (1_150_000, "1.0 MiB"), (25 * 2**20, "25.0 MiB")])
def test_api_docs_say_the_files_limit_as_the_form_does(app, client, total, said):
    # The page rounded the limit to a tenth of a MiB: 50 000 bytes read "0 MiB", and
    # 1 150 000 bytes "1.1 MiB", ~3 KB more than a push may hold (the form rounds down).
    app.config["PWP__FILES__MAX_TOTAL_BYTES"] = total
    html = unescape(client.get("/help/api").get_data(as_text=True))
    assert f"up to 10 files and {said} in all" in html


def recipient_pages(client):
    """{name: response} of every page a link's recipient sees (the sender's client may be signed in)."""
    text = create(client, payload="s3cret", deletable_by_viewer=True, expire_after_views="5")
    qr = create(client, kind="qr", payload="WIFI:S:x;;")
    guarded = create(client, payload="x", passphrase="pp")
    url = create(client, kind="url", payload="https://example.com/", passphrase="pp")
    deleted = create(client, payload="y", deletable_by_viewer=True)
    return {"retrieval step": client.get(f"/p/{text}/r"),
            "passphrase": client.get(f"/p/{guarded}/passphrase"),
            "wrong passphrase": client.post(f"/p/{guarded}/access", data={"passphrase": "no"}, follow_redirects=True),
            "opening the link": client.post(f"/p/{url}/access", data={"passphrase": "pp"}),
            "text": client.get(f"/p/{text}"), "qr": client.get(f"/p/{qr}"),
            "deleted": client.post(f"/p/{deleted}/expire"), "expired": client.get("/p/nosuchtoken1"),
            "download link expired": client.get("/pfb/abc/x.txt", headers={"Accept": "text/html"})}


def assert_recipient_layout(name, response):
    """Only the page itself: no site header, navigation or footer, a plain title, still the
    site's style, script, theme, landmark and heading."""
    html = response.get_data(as_text=True)
    assert response.status_code in (200, 404), name
    for chrome in ("<header", "<nav", "<footer", 'href="/"', "Acme Secrets", "Share safely",
                   "For Acme staff only.", "pwpush 1.", "Sign in", "Sign out", "Dashboard", "skip-link",
                   "data-theme-toggle"):
        assert chrome not in html, (name, chrome)
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert title and " | " not in title, (name, title)
    assert html.startswith('<!doctype html>\n<html lang="en" data-theme="auto">'), name
    assert '<main id="main" tabindex="-1">' in html and html.count("<h1>") == 1, name
    for asset in ("app.css", "theme.js", "app.js"):
        assert f'src="/static/{asset}"' in html or f'href="/static/{asset}"' in html, (name, asset)
    assert response.headers["Cache-Control"] == "no-store", name


def test_a_recipients_pages_have_no_site_header_navigation_or_footer(settings, database_url, request):
    # As upstream's bare and naked layouts: a recipient sees the secret, not a site to sign up
    # to or wander off into (the brand linked to the start page, the footer's menu).
    settings.update(BRAND)
    client = request.getfixturevalue("client")
    for name, response in recipient_pages(client).items():
        assert_recipient_layout(name, response)
    assert "That passphrase is incorrect." in recipient_pages(client)["wrong passphrase"].get_data(as_text=True)


def test_an_owners_view_of_a_payload_page_is_the_recipients_page(settings, database_url, request, make_user):
    # Upstream renders the payload page in its bare layout for everyone: the owner's menu is on
    # the preview, the dashboard and the audit page.
    settings.update(BRAND)
    client = request.getfixturevalue("client")
    sign_in(client, make_user)
    for name, response in recipient_pages(client).items():
        if name != "deleted":  # (the owner's deletion goes back to their audit page)
            assert_recipient_layout(name, response)
    token = create(client, payload="mine")
    html = client.get(f"/p/{token}").get_data(as_text=True)
    assert "Your own views of this push are logged, not counted." in html


def assert_recipient_error(name, response, status, words):
    """A recipient's error page: bare as the recipient's pages, saying what happened, with no
    way into the sender's service (the start page, the sign-in)."""
    assert response.status_code == status, (name, response.status_code)
    html = unescape(response.get_data(as_text=True))
    for chrome in ("<header", "<nav", "<footer", 'href="/"', "Acme Secrets", "For Acme staff only.", "Sign in",
                   "data-theme-toggle", "Back to the start page"):
        assert chrome not in html, (name, chrome)
    assert words in html, (name, html)
    assert html.count("<h1>") == 1 and " | " not in re.search(r"<title>(.*?)</title>", html, re.S).group(1), name


def test_the_print_page_is_bare(settings, database_url, request):
    # As the sheet it prints: no site header or footer on screen either (was: the full layout).
    settings.update(BRAND)
    client = request.getfixturevalue("client")
    token = create(client, payload="x")
    page = client.get(f"/p/{token}/print_preview?message=Hi")
    assert_recipient_layout("print", page)
    assert f'href="/p/{token}/preview"' in page.get_data(as_text=True)  # (its way back to the push)


def test_a_recipients_error_pages_are_bare_and_lead_nowhere(settings, database_url, request, tmp_path):
    # Was: the error pages of the recipient's routes had the full layout, the brand linked to
    # the start page, "Back to the start page", and a 413 told of files and secrets to send.
    settings.update(BRAND)
    client = request.getfixturevalue("client")
    token = create(client, payload="x", passphrase="pp")
    assert_recipient_error("method", client.put(f"/p/{token}"), 405, "Method Not Allowed")
    huge = "p" * (client.application.config["MAX_CONTENT_LENGTH"] + 1)
    too_large = client.post(f"/p/{token}/access", data={"passphrase": huge})
    assert_recipient_error("too large", too_large, 413, "more than this page takes")
    assert "characters" not in too_large.get_data(as_text=True)
    assert f'href="/p/{token}/passphrase"' in too_large.get_data(as_text=True)
    # Another instance's push, under a key this one lacks (a rotation's step skipped): 503.
    from conftest import TEST_MASTER_KEY
    from cryptography.fernet import Fernet
    ahead = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{Fernet.generate_key().decode()},{TEST_MASTER_KEY}",
                                   **BRAND), instance_path=str(tmp_path / "ahead"))
    try:
        theirs = create(ahead.test_client(), payload="y")
    finally:
        with ahead.app_context():
            db.engine.dispose()
    assert_recipient_error("keys", client.get(f"/p/{theirs}"), 503, "encryption keys are out of date")


def test_a_recipients_form_sent_without_its_session_is_a_bare_400(settings, database_url, request):
    settings.update(BRAND, WTF_CSRF_ENABLED=True)
    client = request.getfixturevalue("client")
    token = client.post("/api/v2/pushes", json={"push": {"payload": "x", "passphrase": "pp"}}).get_json()["url_token"]
    assert_recipient_error("csrf", client.post(f"/p/{token}/access", data={"passphrase": "pp"}), 400,
                           "This form could not be sent")


def test_a_throttled_recipient_gets_a_bare_429(settings, database_url, request):
    settings.update(BRAND, PWP__THROTTLING__MINUTE=1)
    client = request.getfixturevalue("client")
    client.get("/p/abcdefghijk/r")
    throttled = client.get("/p/abcdefghijk/r")
    assert_recipient_error("throttled", throttled, 429, "Try again in")
    assert throttled.headers["Retry-After"]
    # The sender's pages keep the site's layout for theirs.
    assert '<header class="site-header">' in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("path", ["/p/no.such", "/p/" + "x" * 100, "/p/a!b/r", "/p/a!b/passphrase", "/r/a!b"])
def test_a_token_no_push_could_have_is_the_expired_page(settings, client, path):
    # As upstream, whose router takes any segment without "." or "/" as a token: the expired
    # page, as for any token without a push (was: a 404 page with the site's layout).
    if "." in path:  # (upstream's router reads ".such" as a format: no route)
        assert_recipient_error(path, client.get(path), 404, "Not Found")
        return
    r = client.get(path)
    assert r.status_code == 200 and "We apologize but this secret link has expired." in r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store"
    # Whatever the Accept header, as a token our converter takes (was: a JSON 404 for these only).
    for accept in ("application/json", "application/json, text/html"):
        assert client.get(path, headers={"Accept": accept}).get_data() == r.get_data(), accept
        assert client.get("/p/nosuchpush", headers={"Accept": accept}).get_data() == r.get_data(), accept


def test_the_senders_pages_keep_the_site_layout(settings, database_url, request):
    settings.update(BRAND)
    client = request.getfixturevalue("client")
    token = create(client, payload="x")
    for path in ("/", f"/p/{token}/preview", "/no/such/page"):
        html = client.get(path).get_data(as_text=True)
        assert '<header class="site-header">' in html and "Acme Secrets" in html, path
        assert '<footer class="site-footer">' in html and "For Acme staff only." in html, path
