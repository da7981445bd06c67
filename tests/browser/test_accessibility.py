"""axe-core on every page, light and dark: no serious or critical violations."""
import pytest

from smtpsink import SmtpServer

from .liveserver import AXE_JS, LiveServer, sign_up

PUBLIC = ["new_text", "new_url", "new_qr", "preview", "print_form", "print_preview", "print_too_long",
          "retrieval_step", "passphrase", "payload", "payload_qr", "expired", "sign_in", "sign_up", "api_docs",
          "up", "validation", "number_error", "recipient_error", "download_expired", "wrong_passphrase"]
SIGNED_IN = ["new_files", "dashboard", "audit", "edit", "edit_error", "token", "account", "payload_files",
             "admin_users", "admin_delete", "new_signed_in", "new_notify_error", "preview_notify",
             "notify_error", "audit_notify", "two_factor_setup"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The live server with notify by e-mail available (a real SMTP server): its form states too."""
    smtp = SmtpServer()
    smtp.controller.start()
    live = LiveServer(tmp_path_factory.mktemp("live"), **smtp.settings())
    yield live
    live.stop()
    smtp.controller.stop()


@pytest.fixture(scope="module")
def site(server, browser):
    """Create the pushes the pages need; return (paths, a signed-in storage state)."""
    ctx = browser.new_context()
    page = ctx.new_page()
    base = server.url

    def push(tab, payload, passphrase=""):
        page.goto(f"{base}/p/new?tab={tab}")
        if tab == "files":
            page.set_input_files("#push_files", [{"name": "a.txt", "mimeType": "text/plain", "buffer": b"a"}])
        else:
            page.fill("#push_payload", payload)
        page.locator("#push_expire_after_views").fill("100")
        if passphrase:
            page.fill("#push_passphrase", passphrase)
        page.click("main button[type=submit]")
        return page.input_value("#secret_url").removesuffix("/r").removeprefix(base)

    text, qr = push("text", "Kuv3-Ba7_Tozi1"), push("qr", "WIFI:S:home;;")
    guarded = push("text", "x", passphrase="pp")
    sign_up(page, base, "axe@example.com")
    with server.app.app_context():  # (an administrator: the administration pages too)
        from pwp.auth import account, create_user, find_user, set_admin
        set_admin(find_user("axe@example.com"), True)
        other = create_user("other@example.com", password="correct horse battery").id
        set_admin(account(other), True)
    assert page.goto(f"{base}/admin/users/{other}/delete").status == 200  # (the page itself, not a 404)
    files = push("files", "")
    guarded_files = push("files", "", passphrase="pp")
    notified = push("text", "sent by mail")
    page.goto(f"{base}{notified}/preview")
    page.fill("#notify_emails_to", "ann@example.com")
    page.get_by_role("button", name="Send the link").click()
    page.locator(".notify table").wait_for()  # (the answer's page, not the one clicked on)
    state = ctx.storage_state()
    ctx.close()
    paths = {
        "new_text": "/", "new_url": "/p/new?tab=url", "new_qr": "/p/new?tab=qr",
        "preview": text + "/preview", "print_form": text + "/preview",
        "print_preview": text + "/print_preview?message=Hand+over%0D%0Aat+the+desk&show_expiration=true&show_id=true",
        "print_too_long": text + "/print_preview?message=" + "x" * 501, "retrieval_step": text + "/r", "passphrase": guarded + "/passphrase",
        "payload": text, "payload_qr": qr, "expired": "/p/doesnotexist", "sign_in": "/users/sign_in",
        "sign_up": "/users/sign_up", "api_docs": "/help/api", "up": "/up",
        "new_files": "/p/new?tab=files", "dashboard": "/p", "audit": files + "/audit", "edit": files + "/edit",
        "edit_error": guarded_files + "/edit",
        "token": "/users/token", "account": "/users/edit", "payload_files": files,
        "admin_users": "/admin/users", "admin_delete": f"/admin/users/{other}/delete",
        "new_signed_in": "/", "new_notify_error": "/", "preview_notify": notified + "/preview",
        "notify_error": notified + "/preview", "audit_notify": notified + "/audit",
        "two_factor_setup": "/users/two_factor",
        "recipient_error": "/p/no.such", "download_expired": "/pfb/nosuchfilelink/x.txt",
        "wrong_passphrase": guarded + "/passphrase",
    }
    return paths, state


def _serious(page):
    page.wait_for_load_state()  # (the page's scripts run: app.js moves focus, shows and hides)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("names", [PUBLIC, SIGNED_IN], ids=["public", "signed-in"])
def test_no_serious_axe_violations(server, browser, site, names, scheme):
    paths, state = site
    # bypass_csp lets the test inject axe; the pages themselves stay under the strict CSP.
    ctx = browser.new_context(color_scheme=scheme, bypass_csp=True,
                              storage_state=state if names is SIGNED_IN else None)
    ctx.add_init_script(path=AXE_JS)
    page = ctx.new_page()
    found = {}
    try:
        for name in names:
            if name == "validation":
                page.goto(server.url + "/p/new?tab=url")
                page.fill("#push_payload", "ftp://x")
                page.click("main button[type=submit]")
                # The answer's page: under load axe and document.body (null) ran on the new page
                # before it was parsed.
                page.locator(".error-summary").wait_for()
            elif name == "number_error":  # an emptied days box, as a browser without JavaScript sends it
                page.goto(server.url + "/")
                page.fill("#push_payload", "x")
                page.locator("#push_expire_after_days").evaluate("b => { b.removeAttribute('data-expiry'); b.value = ''; }")
                page.click("main button[type=submit]")
                page.locator("#push_expire_after_days-error").wait_for()
            elif name == "edit_error":  # a file push's with a passphrase: files added without it
                page.goto(server.url + paths[name])
                page.set_input_files("#push_files", [{"name": "b.txt", "mimeType": "text/plain", "buffer": b"b"}])
                page.click("main button[type=submit]")
                # Waited for: under load the count ran before the answer's page had loaded.
                page.locator(".error-summary").wait_for()
            elif name == "new_notify_error":
                page.goto(server.url + paths[name])
                page.fill("#push_payload", "x")
                page.fill("#push_notify_emails_to", "ann@example.com,,")
                page.click("main form button.big")
                page.locator(".error-summary").wait_for()
            elif name == "wrong_passphrase":
                page.goto(server.url + paths[name])
                page.fill("#passphrase", "wrong")
                page.click("main button[type=submit]")
                page.locator(".flash-warning").wait_for()
            elif name == "notify_error":
                page.goto(server.url + paths[name])
                page.fill("#notify_emails_to", "not an address")
                page.get_by_role("button", name="Send the link").click()
                page.locator("#notify_emails_to-error").wait_for()
            else:
                page.goto(server.url + paths[name])
            if name == "payload":
                page.get_by_role("button", name="Reveal").click()
            if name == "print_form":
                page.get_by_text("Print & Share").click()
            found[name] = _serious(page)
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == {"light": "rgb(245, 246, 248)", "dark": "rgb(17, 20, 24)"}[scheme]
    finally:
        ctx.close()
    assert {name: v for name, v in found.items() if v} == {}
    assert len(found) == len(names)


def test_axe_check_can_fail(browser):
    ctx = browser.new_context(bypass_csp=True)
    ctx.add_init_script(path=AXE_JS)
    page = ctx.new_page()
    page.set_content('<html><body><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></body></html>')
    assert any(v.startswith("image-alt") for v in _serious(page))
    ctx.close()
