"""End-to-end flows in real headless Chromium against a live server."""
import json
import re
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect

from .liveserver import create_text, sign_in_new_user, sign_up

EXPIRED = "We apologize but this secret link has expired."


def test_generated_password_copy_link_retrieve_once(server, new_page):
    sender = new_page(permissions=["clipboard-read", "clipboard-write"])
    sender.goto(server.url + "/")
    sender.click("[data-generate]")
    password = sender.input_value("#push_payload")
    assert re.fullmatch(r"([-_=]?[A-Z][a-z]{0,2}\d){3}", password), password
    sender.locator("#push_expire_after_views").fill("1")
    expect(sender.locator("#expiry_words")).to_contain_text("7 days or 1 view, whichever")
    sender.click("main button[type=submit]")
    link = sender.input_value("#secret_url")
    assert link.startswith(server.url + "/p/") and link.endswith("/r")
    sender.wait_for_load_state()  # (app.js, deferred, wires the button, then shows it)
    sender.get_by_role("button", name="Copy link").click()
    expect(sender.locator("[data-copy-target=secret_url]")).to_have_text("Copied!")
    assert sender.evaluate("navigator.clipboard.readText()") == link
    expect(sender.locator("#share_message")).to_have_value(re.compile("valid for 7 days or 1 view"))

    recipient = new_page()
    recipient.goto(link)
    recipient.get_by_role("link", name="Click here to proceed").click()
    payload = recipient.locator("#payload")
    expect(payload).to_have_text(password)
    expect(payload).to_have_class(re.compile("blurred"))
    recipient.wait_for_load_state()
    recipient.get_by_role("button", name="Reveal").click()
    expect(payload).not_to_have_class(re.compile("blurred"))
    assert password not in recipient.title()
    recipient.reload()
    expect(recipient.locator("main")).to_contain_text(EXPIRED)


def test_generator_settings_are_honoured(server, new_page):
    page = new_page()
    page.goto(server.url + "/")
    page.click("text=Generator settings")
    page.fill("#gen_syllables", "5")
    page.locator("#gen_syllables").dispatch_event("change")
    page.locator("#gen_numbers").set_checked(False)
    page.locator("#gen_separators").set_checked(False)
    page.click("[data-generate]")
    assert re.fullmatch(r"([A-Z][a-z]{0,2}){5}", page.input_value("#push_payload"))


def test_passphrase_flow(server, new_page):
    link = create_text(new_page(), server.url, payload="behind a door", passphrase="friend")
    page = new_page()
    page.goto(link)
    page.get_by_role("link", name="Click here to proceed").click()
    expect(page.locator("h1")).to_have_text("Passphrase required")
    page.wait_for_load_state()  # (app.js wires "Show passphrase")
    page.fill("#passphrase", "enemy")
    page.get_by_role("button", name="Show passphrase").click()  # (hidden without JavaScript)
    expect(page.locator("#passphrase")).to_have_attribute("type", "text")
    page.get_by_role("button", name="Hide passphrase").click()
    expect(page.locator("#passphrase")).to_have_attribute("type", "password")
    page.get_by_role("button", name="Go").click()
    expect(page.locator("[role=alert]")).to_contain_text("That passphrase is incorrect.")
    page.fill("#passphrase", "friend")
    page.get_by_role("button", name="Go").click()
    expect(page.locator("#payload")).to_have_text("behind a door")


def test_a_url_push_with_a_passphrase_opens_its_url(server, new_page):
    # The passphrase form's answer once redirected on to the URL: a form's navigation to another
    # site, which the CSP's form-action 'self' blocked after the view was counted (the page
    # stayed as it was, the one view spent).
    target = server.url.replace("127.0.0.1", "localhost") + "/up"  # (another origin)
    body = json.dumps({"push": {"kind": "url", "payload": target, "passphrase": "friend",
                                "expire_after_views": 1}}).encode()
    request = urllib.request.Request(server.url + "/api/v2/pushes", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        token = json.load(response)["url_token"]
    page = new_page()
    page.goto(f"{server.url}/p/{token}")
    page.fill("#passphrase", "friend")
    page.get_by_role("button", name="Go").click()
    page.wait_for_url(target)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_recipient_sees_only_the_page_and_still_reveals_copies_and_deletes(server, new_page, scheme):
    # As upstream's bare layout: no site header, menu or footer to wander off into, on a phone.
    link = create_text(new_page(), server.url, payload="only this", deletable=True, views=3)
    page = new_page(viewport={"width": 390, "height": 800}, color_scheme=scheme,
                    permissions=["clipboard-read", "clipboard-write"])

    def only_the_page(title):
        for chrome in (".site-header", ".site-footer", "nav", ".skip-link", "[data-theme-toggle]"):
            expect(page.locator(chrome)).to_have_count(0)
        expect(page).to_have_title(title)
        expect(page.get_by_role("main").get_by_role("heading", level=1)).to_have_text(title)
        # The site's style and theme still apply (a dark scheme: a dark page).
        light = page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(245, 246, 248)"
        assert light == (scheme == "light")

    page.goto(link)
    only_the_page("A secret has been shared with you")
    page.get_by_role("link", name="Click here to proceed").click()
    only_the_page("Your secret")
    page.wait_for_load_state()  # (app.js wires Reveal and Copy)
    page.get_by_role("button", name="Reveal").click()
    expect(page.locator("#payload")).to_have_css("filter", "none")
    page.get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == "only this"
    page.click("text=Delete this secret now")
    page.get_by_role("button", name="Yes, delete it now").click()
    only_the_page("Secret deleted")
    page.goto(link)
    only_the_page("Your Secret Link Has Expired")


def test_viewer_deletes_the_secret(server, new_page):
    link = create_text(new_page(), server.url, payload="delete me", deletable=True)
    page = new_page()
    page.goto(link.removesuffix("/r"))
    expect(page.locator("#payload")).to_have_text("delete me")
    page.click("text=Delete this secret now")
    page.get_by_role("button", name="Yes, delete it now").click()
    expect(page.locator("main")).to_contain_text("The push content has been deleted")
    page.goto(link)
    expect(page.locator("main")).to_contain_text(EXPIRED)


def test_validation_error_keeps_input(server, new_page):
    page = new_page()
    page.goto(server.url + "/p/new?tab=url")
    page.fill("#push_payload", "ftp://files.example.com")
    page.fill("#push_passphrase", "kept")
    page.click("main button[type=submit]")
    expect(page.locator(".error-summary")).to_contain_text("Enter a whole address, starting with https://")
    expect(page.locator(".error-summary")).to_be_focused()
    expect(page.locator("#push_payload")).to_have_value("ftp://files.example.com")
    expect(page.locator("#push_passphrase")).to_have_value("kept")


def test_owner_expire_asks_first(server, new_page):
    page = new_page()
    sign_up(page, server.url, "careful@example.com")
    create_text(page, server.url, payload="keep me")
    page.goto(server.url + "/p")
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()
    page.once("dialog", lambda dialog: answer(dialog, False))
    page.get_by_role("button", name="Expire now").click()
    expect(page.locator("table.data tbody tr")).to_have_count(1)  # still there, still live
    assert questions and "cannot be undone" in questions[0]
    page.once("dialog", lambda dialog: answer(dialog, True))
    page.get_by_role("button", name="Expire now").click()
    expect(page.locator("[role=status], .flash").first).to_contain_text("has been deleted")
    assert len(questions) == 2


def test_without_javascript_owner_actions_ask_with_a_box_to_tick(server, new_page):
    """JavaScript's confirm() cannot ask: "Expire now" and "Make a new token" then need a
    ticked box (the browser refuses to send the form without it)."""
    page = new_page(java_script_enabled=False)
    sign_up(page, server.url, "noscript-owner@example.com")
    create_text(page, server.url, payload="keep me too")
    page.goto(server.url + "/p")
    page.get_by_role("button", name="Expire now").click()
    expect(page.locator("table.data tbody tr")).to_contain_text("7 days / 5 views")  # not sent
    expect(page.locator("table.data tbody tr")).not_to_contain_text("Expired")
    page.get_by_label("Sure").check()
    page.get_by_role("button", name="Expire now").click()
    expect(page.locator("[role=status], .flash").first).to_contain_text("has been deleted")
    page.goto(server.url + "/users/token")
    page.get_by_role("button", name="Make a token").click()  # no token yet: nothing to lose
    token = page.locator("#api_token").input_value()
    page.get_by_role("button", name="Make a new token").click()
    expect(page.locator("#api_token")).to_have_value(token)  # not sent
    page.get_by_label("Yes, the old token may stop working").check()
    page.get_by_role("button", name="Make a new token").click()
    expect(page.locator("#api_token")).not_to_have_value(token)
    with_js = new_page()  # the question, not the box, where JavaScript runs
    sign_up(with_js, server.url, "script-owner@example.com")
    with_js.goto(server.url + "/users/token")
    with_js.get_by_role("button", name="Make a token").click()
    expect(with_js.locator(".confirm-box")).to_have_count(0)


def test_number_boxes_and_sliders_move_together(server, new_page):
    """A phone's 90-step slider has a few pixels a step: the number box carries the value."""
    page = new_page(viewport={"width": 390, "height": 844})
    page.goto(server.url + "/")
    days, days_slider = page.get_by_label("Days (1 to 90)"), page.locator("[data-range-for=push_expire_after_days]")
    days.fill("14")
    expect(days_slider).to_have_value("14")
    expect(page.locator("#expiry_words")).to_contain_text("14 days or 5 views")
    views = page.get_by_label("Views (1 to 100)")
    views.fill("1000")
    views.blur()
    expect(page.locator("#expiry_words")).to_contain_text("14 days or 100 views")  # the bound, not the API's default
    expect(views).to_have_value("1000")  # (sent as typed: the server says it took the bound)
    views.fill("1e1")
    expect(page.locator("#expiry_words")).to_contain_text("14 days or 10 views")
    page.locator("[data-range-for=push_expire_after_views]").fill("3")  # the slider moves the box
    expect(views).to_have_value("3")
    page.fill("#push_payload", "fourteen days")
    days.fill("500")
    days.press("Enter")  # sent as typed; taken as the bound the slider shows, and said
    expect(page.locator("#share_message")).to_have_value(re.compile("valid for 90 days or 3 views"))
    expect(page.locator(".flashes")).to_contain_text("Days set to 90, the most a push allows.")


@pytest.mark.parametrize("typed,words", [("1e1", "10 views"), ("2.9", "3 views"), ("", "7 views")])
def test_the_push_made_has_the_views_the_words_said(server, new_page, typed, words):
    """Sent as typed (so that the server says which bound it took), "1e1" (the words: 10
    views) made 1 view, and an emptied box (the words: the last number) the default, 5."""
    page = new_page()
    page.goto(server.url + "/")
    page.fill("#push_payload", "as said")
    views = page.get_by_label("Views (1 to 100)")
    views.fill("7")
    views.fill(typed)
    expect(page.locator("#expiry_words")).to_contain_text(words)
    page.click("main button[type=submit]")
    expect(page.locator("#share_message")).to_have_value(re.compile(f"or {words},"))


def test_without_javascript_an_emptied_number_box_is_said(server, new_page):
    """A browser without JavaScript sends an emptied box as nothing: the push got the
    default, silently. The form comes back, the box marked and said, what was typed kept."""
    page = new_page(java_script_enabled=False)
    page.goto(server.url + "/")
    page.fill("#push_payload", "typed once")
    days = page.get_by_label("Days (1 to 90)")
    days.fill("")
    page.click("main button[type=submit]")
    expect(page.locator(".error-summary")).to_contain_text("Enter the days as a whole number (the box was sent empty")
    expect(days).to_have_attribute("aria-invalid", "true")
    expect(days).to_have_accessible_description(re.compile("^Enter the days as a whole number"))
    expect(page.locator("#push_payload")).to_have_value("typed once")
    days.fill("2")
    page.click("main button[type=submit]")
    expect(page.locator("#share_message")).to_have_value(re.compile("valid for 2 days or 5 views"))


def test_without_javascript_every_form_works_and_no_dead_control_shows(server, new_page):
    sender = new_page(java_script_enabled=False)
    sender.goto(server.url + "/")
    for dead in ("[data-generate]", "[data-copy-target]", "[data-theme-toggle]", "[data-range-for]", "#expiry_words"):
        expect(sender.locator(dead).first).to_be_hidden()
    sender.fill("#push_payload", "no script")
    sender.get_by_label("Days (1 to 90)").fill("3")
    sender.get_by_label("Views (1 to 100)").fill("2")
    sender.click("main button[type=submit]")
    expect(sender.locator("#share_message")).to_have_value(re.compile("valid for 3 days or 2 views"))
    link = sender.input_value("#secret_url")
    recipient = new_page(java_script_enabled=False)
    recipient.goto(link)
    recipient.get_by_role("link", name="Click here to proceed").click()
    payload = recipient.locator("#payload")
    expect(payload).to_have_text("no script")
    # Blurred, nothing could reveal it: a counted view with an unreadable secret.
    assert payload.evaluate("e => getComputedStyle(e).filter") == "none"
    expect(recipient.get_by_role("button", name="Reveal")).to_be_hidden()


def test_qr_counter_counts_bytes(server, new_page):
    page = new_page()
    page.goto(server.url + "/p/new?tab=qr")
    page.fill("#push_payload", "caf\u00e9\nx")
    expect(page.locator("#push_payload_count")).to_contain_text("8 / 1024 bytes")  # (CR LF as sent)


def test_url_push_redirects(server, new_page):
    sender = new_page()
    sender.goto(server.url + "/p/new?tab=url")
    sender.fill("#push_payload", server.url + "/up")
    sender.click("main button[type=submit]")
    link = sender.input_value("#secret_url")
    page = new_page()
    page.goto(link)
    page.get_by_role("link", name="Click here to proceed").click()
    page.wait_for_url(server.url + "/up")
    expect(page.locator("h1")).to_have_text("Up")


def test_file_upload_and_download(server, new_page):
    sender = new_page()
    sign_up(sender, server.url, "files@example.com")
    sender.goto(server.url + "/p/new?tab=files")
    sender.set_input_files("#push_files", [
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"top secret notes\n"}])
    sender.fill("#push_payload", "the notes")
    sender.click("main button[type=submit]")
    link = sender.input_value("#secret_url")
    page = new_page(accept_downloads=True)
    page.goto(link)
    page.get_by_role("link", name="Click here to proceed").click()
    expect(page.locator(".files")).to_contain_text("notes.txt")
    expect(page.locator(".files")).to_contain_text("17 bytes")
    with page.expect_download() as info:
        page.click("a[download]")
    download = info.value
    assert download.suggested_filename == "notes.txt"
    with open(download.path(), "rb") as fh:
        assert fh.read() == b"top secret notes\n"


def test_an_expired_download_link_opened_in_the_browser_is_the_page_that_says_so(server, new_page):
    # Chromium's Accept lists text/html among others, "application/signed-exchange" last and
    # "best" for werkzeug: the recipient who opened a stale file link got {"error":"not-found"}.
    page = new_page()
    response = page.goto(server.url + "/pfb/nosuchfilelink/notes.txt")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("This download link has expired")


@pytest.mark.parametrize("width, drawn", [(320, None), (390, None), (1280, 4 * 125 + 18)])
def test_a_dense_qr_code_fits_a_phone_and_is_drawn_large_on_a_wide_screen(server, new_page, width, drawn):
    # Its img is 4 px a module wide (1 KiB: 125 modules and the frame, 518 px): a narrow
    # screen scales it down, square, inside the page (no sideways scroll).
    body = json.dumps({"push": {"payload": "\u6f22" * 341, "kind": "qr", "retrieval_step": False}}).encode()
    request = urllib.request.Request(server.url + "/api/v2/pushes", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        token = json.load(response)["url_token"]
    page = new_page(viewport={"width": width, "height": 844})
    page.goto(server.url + f"/p/{token}")
    box = page.locator("figure.qr img").bounding_box()
    assert box["width"] == box["height"] and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if drawn:
        assert box["width"] == drawn, box


def test_sign_up_token_api_dashboard_audit(server, new_page):
    page = new_page()
    sign_up(page, server.url, "api@example.com")
    page.click("text=API token")
    page.click("main button[type=submit]")
    token = page.input_value("#api_token")
    expect(page.locator("#curl_example")).to_contain_text(f"Authorization: Bearer {token}")
    body = json.dumps({"push": {"payload": "from the API", "name": "via curl"}}).encode()
    request = urllib.request.Request(
        server.url + "/api/v2/pushes", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        created = json.load(response)
    assert response.status == 201
    with urllib.request.urlopen(server.url + f"/api/v2/pushes/{created['url_token']}") as response:
        assert json.load(response)["payload"] == "from the API"
    page.click("text=Dashboard")
    row = page.locator("tr", has_text="via curl")
    expect(row).to_contain_text("4 views")
    row.locator("text=Audit").click()
    events = page.locator("table.data tbody tr")
    expect(events).to_have_count(2)
    expect(events.nth(0)).to_contain_text("creation")
    expect(events.nth(1)).to_contain_text("view")
    expect(events.nth(1)).to_contain_text("127.0.0.1")


def test_theme_toggle_and_keyboard(server, new_page):
    page = new_page(color_scheme="light")
    page.goto(server.url + "/help/api")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator("main a").first).to_be_focused()
    toggle = page.locator("[data-theme-toggle]")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    toggle.click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.locator("[data-theme-toggle]")).to_have_attribute("aria-pressed", "true")


def test_back_after_a_view_never_shows_the_secret_from_the_back_forward_cache(server, browser):
    """Chromium keeps even no-store pages in its back/forward cache (Playwright turns it off:
    this browser has it on, as people's): Back after the last view showed the deleted secret
    beside "This was the last view", and with the delete form it counted another view."""
    from .liveserver import CHROMIUM, CHROMIUM_ARGS
    chromium = browser.browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                           ignore_default_args=["--disable-back-forward-cache"])
    try:
        sender = chromium.new_page()
        for deletable, passphrase in ((False, None), (True, None), (False, "pw")):
            link = create_text(sender, server.url, payload=f"bf-cached-{deletable}", views=1, deletable=deletable,
                               passphrase=passphrase)
            recipient = chromium.new_page()
            recipient.goto(link.removesuffix("/r"))
            if passphrase:
                recipient.fill("#passphrase", passphrase)
                recipient.keyboard.press("Enter")
            expect(recipient.locator("#payload")).to_have_text(f"bf-cached-{deletable}")
            recipient.evaluate("window.stayedInMemory = true")
            recipient.goto(server.url + "/up")
            recipient.go_back(wait_until="commit")  # (a page from the cache fires no load event)
            expect(recipient.locator("main")).not_to_contain_text(f"bf-cached-{deletable}")
            assert f"bf-cached-{deletable}" not in recipient.content()
            if recipient.evaluate("window.stayedInMemory === true"):  # restored from the cache
                expect(recipient.locator("main")).to_contain_text("no longer shown")
            else:  # fetched again: the push is gone
                expect(recipient.locator("main")).to_contain_text(EXPIRED)
            recipient.close()
    finally:
        chromium.close()


def test_long_unbroken_names_notes_and_file_names_fit_a_phone(server, new_page):
    long_name = "prod_db_password_for_customer_portal_eu_west_1_primary_cluster"
    long_note = "https://wiki.example.com/" + "runbooks/" * 8 + "database-rotation-procedure"
    long_file = "quarterly_financial_report_for_the_board_of_directors_final_v3.pdf"
    page = new_page(viewport={"width": 390, "height": 844})
    sign_in_new_user(page, server, "phone@example.com")
    page.goto(server.url + "/p/new?tab=files")
    page.set_input_files("#push_files", [{"name": long_file, "mimeType": "application/pdf", "buffer": b"%PDF"}])
    page.fill("#push_name", long_name)
    page.fill("#push_note", long_note)
    page.click("main button[type=submit]")
    link = page.input_value("#secret_url")
    token = link.split("/p/", 1)[1].split("/", 1)[0]

    def fits(where):
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{where}: the page is {width} px wide"

    fits("preview")
    page.goto(server.url + "/p")
    fits("dashboard")
    expect(page.locator("main")).to_contain_text(long_name)
    page.goto(server.url + f"/p/{token}/audit")
    fits("audit")
    page.goto(server.url + f"/p/{token}/edit")
    expect(page.locator(".files")).to_contain_text(long_file)
    fits("edit")
    viewer = new_page(viewport={"width": 390, "height": 844})
    viewer.goto(link.removesuffix("/r"))
    expect(viewer.locator(".files")).to_contain_text(long_file)
    width = viewer.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the recipient's page is {width} px wide"


def test_copy_pressed_twice_comes_back_to_its_label(server, new_page):
    """The label was read at each press: a second press within 1.5 s kept "Copied!" for good."""
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    page.clock.install()
    create_text(page, server.url, payload="twice")
    button = page.locator("[data-copy-target=secret_url]")
    button.click()
    button.click()
    expect(button).to_have_text("Copied!")
    page.clock.run_for(2000)
    expect(button).to_have_text("Copy link")


def test_account_form_errors_put_focus_on_the_first_invalid_field(server, new_page):
    """A screen reader hears the field, "invalid" and its message (focus stayed on the page)."""
    page = new_page()
    sign_in_new_user(page, server, "focus@example.com")
    page.goto(server.url + "/users/edit")
    page.fill("#current_password", "not it at all")
    page.fill("#password", "another long one")
    page.fill("#password_confirmation", "another long one")
    page.click("main button[type=submit]")
    expect(page.locator("#current_password")).to_be_focused()
    assert page.get_attribute("#current_password", "aria-invalid") == "true"


def test_edit_form_of_a_push_made_for_an_hour_never_says_one_day(server, new_page):
    """The days box shows 1 for a push with an hour left; left as it is, the push keeps its
    hour: the words (which JavaScript rewrites as the boxes change) say so."""
    page = new_page()
    token = sign_in_new_user(page, server, "hour@example.com")
    body = json.dumps({"push": {"payload": "an hour", "expire_after_duration": 3}}).encode()
    request = urllib.request.Request(
        server.url + "/api/v2/pushes", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        url_token = json.load(response)["url_token"]
    page.goto(server.url + f"/p/{url_token}/edit")
    words, days = page.locator("#expiry_words"), page.locator("#push_expire_after_days")
    expect(days).to_have_value("1")
    expect(words).to_contain_text(re.compile(r"works for (59 minutes|1 hour) or 5 views"))
    days.fill("2")
    expect(words).to_contain_text("2 days or 5 views")
    days.fill("1")
    expect(words).not_to_contain_text("1 day")


def test_print_and_share_by_keyboard_then_print_only_the_sheet(server, new_page):
    page = new_page()
    link = create_text(page, server.url, payload="Kuv3-Ba7_Tozi1", views=3)
    qr = page.locator("figure.qr img").get_attribute("src")
    page.add_init_script("window.print = function () { window.printed = true; };")
    page.get_by_text("Print & Share").focus()
    page.keyboard.press("Enter")  # (the <details> opens)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "print_message"
    page.keyboard.type("Line one\nLine two")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # unticks "Show expiration"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    # The new page's load event: app.js (deferred) wires the Print button, then shows it.
    page.wait_for_url("**/print_preview?**")
    expect(page.locator("h1")).to_have_text("Printable secret link")
    assert "/print_preview?" in page.url and "Kuv3-Ba7_Tozi1" not in page.content()
    assert page.locator(".print-message").inner_text() == "Line one\nLine two"
    assert page.locator(".print-qr").get_attribute("src") == qr  # the same link's code
    expect(page.locator(".print-url")).to_have_text(link)
    expect(page.locator(".print-id")).to_have_text("ID: " + link.split("/")[4])
    expect(page.locator(".print-expiry")).to_have_count(0)
    page.get_by_role("button", name="Print").click()
    assert page.evaluate("window.printed") is True

    page.emulate_media(media="print", color_scheme="dark")
    for chrome in (".site-header", ".site-footer", "h1", "[data-print]", "text=Back to the push"):
        expect(page.locator(chrome)).to_be_hidden()
    assert page.evaluate("[getComputedStyle(document.body).backgroundColor, "
                         "getComputedStyle(document.querySelector('.print-url')).color]") == \
        ["rgb(255, 255, 255)", "rgb(0, 0, 0)"]
    width = page.locator(".print-qr").bounding_box()["width"]
    assert 320 < width < 360, width  # (9 cm)
    expect(page.locator(".print-qr")).to_be_visible()


def test_owner_adds_a_file_to_a_push_with_a_passphrase_without_javascript(server, new_page):
    """The edit form takes files (multipart, no script needed) and, for a push with a
    passphrase, that passphrase: a wrong one is an error (which takes focus where scripts
    run), nothing added."""
    sender = new_page(java_script_enabled=False)
    sign_in_new_user(sender, server, "add-files@example.com")
    scripted = new_page()
    scripted.goto(server.url + "/users/sign_in")
    scripted.fill("#email", "add-files@example.com")
    scripted.fill("#password", "correct horse battery")
    scripted.click("main button[type=submit]")
    expect(scripted.locator("nav.site-nav")).to_contain_text("Sign out")  # (before its next goto)
    sender.goto(server.url + "/p/new?tab=files")
    sender.set_input_files("#push_files", [{"name": "one.txt", "mimeType": "text/plain", "buffer": b"one\n"}])
    sender.fill("#push_passphrase", "correct staple")
    sender.click("main button[type=submit]")
    link = sender.input_value("#secret_url")
    sender.get_by_role("link", name="Edit").click()
    added = bytes(range(256)) * 4100 + b"\xff"  # just over a MiB: two parts
    chosen = [{"name": "two.bin", "mimeType": "application/octet-stream", "buffer": added}]
    sender.get_by_label("Files to add (optional)").set_input_files(chosen)
    sender.get_by_label("This push's passphrase (only to add files)").fill("wrong staple")
    sender.get_by_role("button", name="Save changes").click()
    expect(sender.locator(".error-summary")).to_contain_text("That is not this push's passphrase")
    expect(sender.locator("#push_passphrase")).to_have_attribute("aria-invalid", "true")
    expect(sender.locator(".files")).not_to_contain_text("two.bin")
    scripted.goto(sender.url)
    scripted.get_by_label("Files to add (optional)").set_input_files(chosen)
    scripted.get_by_role("button", name="Save changes").click()
    expect(scripted.locator(".error-summary")).to_contain_text("Enter this push's passphrase to add files")
    expect(scripted.locator(".error-summary")).to_be_focused()
    sender.get_by_label("Files to add (optional)").set_input_files(chosen)
    sender.get_by_label("This push's passphrase (only to add files)").fill("correct staple")
    sender.get_by_role("button", name="Save changes").click()
    expect(sender.locator("h1")).to_have_text("Push updated")
    expect(sender.locator("main")).to_contain_text("Added 1 file: the push now has 2 files.")

    page = new_page(accept_downloads=True)
    page.goto(link)
    page.get_by_role("link", name="Click here to proceed").click()
    page.fill("#passphrase", "correct staple")
    page.keyboard.press("Enter")
    expect(page.locator(".files")).to_contain_text("two.bin")
    with page.expect_download() as info:
        page.get_by_role("link", name="two.bin").click()
    with open(info.value.path(), "rb") as fh:
        assert fh.read() == added


# Messages the print form's rule admits (500 characters, 12 lines counted at 60 columns) at
# their widest: capitals, wide (CJK) characters, tabs.
ADMITTED_PRINT_MESSAGES = {
    "12 lines of 38 capitals": "\n".join(["W" * 38] * 12),
    "8 lines of 60 capitals": "\n".join(["W" * 60] * 8 + ["WWWWWWWWWWWW"]),
    "6 lines of 80 capitals": "\n".join(["W" * 80] * 6),
    "10 lines of 45 capitals and spaces": "\n".join([("WWWW " * 9).strip()] * 10),
    "12 lines of 30 wide characters": "\n".join(["\u6f22" * 30] * 12),
    "12 lines of 38 tabs and capitals": "\n".join(["\tW" * 19] * 12),
}


@pytest.mark.parametrize("message", ADMITTED_PRINT_MESSAGES.values(), ids=ADMITTED_PRINT_MESSAGES.keys())
@pytest.mark.parametrize("sheet", ["A4", "Letter"])
def test_every_admitted_print_message_fits_one_sheet(server, new_page, message, sheet):
    """The print rule admits 12 lines of 60 characters; 10 lines of "W" took two sheets (14 pt
    capitals wrapped): Chromium's PDF of the printable page is one page, with every option."""
    page = new_page()
    link = create_text(page, server.url, payload="one sheet")
    query = urllib.parse.urlencode({"message": message, "show_expiration": "true", "show_id": "true"})
    page = new_page()  # (a fresh page: the PDF's /Count is its pages)
    assert page.goto(f"{server.url}/p/{link.split('/')[4]}/print_preview?{query}").status == 200
    pdf = page.pdf(format=sheet)
    assert [int(n) for n in re.findall(rb"/Count (\d+)", pdf)] == [1]
    assert page.locator(".print-message").text_content() == message.strip()  # (as print_choices strips it)


def test_a_name_of_255_letters_in_one_word_fits_the_dashboard_on_a_desktop(server, new_page):
    # Found walking the dashboard at 1280 px: such a name made the page 3 250 px wide (the
    # table cut off in its box, and its hidden link labels still widening the page).
    page = new_page(viewport={"width": 1280, "height": 800})
    sign_in_new_user(page, server, "widename@example.com")
    page.goto(server.url + "/p/new")
    page.fill("#push_payload", "secret")
    page.fill("#push_name", "n" * 255)
    page.click("main button[type=submit]")
    # (The push made: a goto at once could cancel the form's navigation, its POST unanswered.)
    expect(page.locator("h1")).to_have_text("Push created")
    page.goto(server.url + "/p")
    expect(page.locator("main")).to_contain_text("n" * 255)
    widths = page.evaluate("[document.documentElement.scrollWidth, document.querySelector('.table-wrap').scrollWidth,"
                           " document.querySelector('.table-wrap').clientWidth]")
    assert widths[0] <= 1280 and widths[1] <= widths[2], f"page, table, its box: {widths}"
    expect(page.get_by_role("link", name="Audit of " + "n" * 255)).to_be_in_viewport()


def test_a_payload_and_a_note_that_start_with_a_new_line_keep_it(server, new_page):
    """HTML drops a newline right after <pre> and <textarea>: a payload starting with one was
    shown and copied without it, and the edit form saved a note without its first newline."""
    payload, note = "\n\n  indented\nlast\n", "\nafter a blank line"
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    token = sign_in_new_user(page, server, "newlines@example.com")
    request = urllib.request.Request(
        server.url + "/api/v2/pushes", method="POST",
        data=json.dumps({"push": {"payload": payload, "note": note}}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as response:
        url_token = json.load(response)["url_token"]
    page.goto(f"{server.url}/p/{url_token}/edit")
    assert page.input_value("#push_note") == note
    recipient = new_page(permissions=["clipboard-read", "clipboard-write"])
    recipient.goto(f"{server.url}/p/{url_token}")
    assert recipient.locator("#payload").text_content() == payload
    recipient.wait_for_load_state()
    recipient.get_by_role("button", name="Copy").click()
    expect(recipient.get_by_role("button", name="Copied!")).to_be_visible()
    assert recipient.evaluate("navigator.clipboard.readText()") == payload


def test_javascript_controls_show_only_once_app_js_wired_them(server, new_page):
    """theme.js showed them before the first paint, app.js (deferred) wired them later: on a
    slow page a first click did nothing."""
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    held = []
    page.route(re.compile(r"/app\.js(\?|$)"), lambda route: held.append(route))  # (app.js held back: a slow page)
    with page.expect_request(re.compile(r"/app\.js(\?|$)")):
        page.goto(server.url + "/", wait_until="commit")
    controls = ("[data-generate]", "[data-copy-target]", "[data-theme-toggle]", "[data-range-for]")
    page.locator("[data-range-for]").first.wait_for(state="attached")
    for control in controls:
        expect(page.locator(control).first).to_be_hidden()
    assert len(held) == 1
    held[0].continue_()
    for control in controls:
        expect(page.locator(control).first).to_be_visible()
    page.click("[data-generate]")
    password = page.input_value("#push_payload")
    assert password
    page.locator("[data-copy-target=push_payload]").click()
    expect(page.locator("[data-copy-target=push_payload]")).to_have_text("Copied!")
    assert page.evaluate("navigator.clipboard.readText()") == password


def _open_secret(page, link):
    page.goto(link)
    page.get_by_role("link", name="Click here to proceed").click()
    return page.locator("#payload")


def _readable(payload):
    """Not blurred, and selectable (the blur also turns selection off); the blur fades out in
    .15 s (a transition), so this waits for it, with the page's default deadline."""
    payload.page.wait_for_function(
        "e => { const s = getComputedStyle(e); return s.filter === 'none' && s.userSelect !== 'none'; }",
        arg=payload.element_handle())


@pytest.mark.parametrize("failure", ["aborted", "script error"])
def test_a_payload_is_never_left_blurred_when_app_js_cannot_lift_the_blur(server, new_page, failure):
    """theme.js blurred it before the first paint; app.js, which shows the Reveal button, never
    ran (blocked, not loaded, or it failed in an old browser): the view was counted and the
    secret could not be read."""
    link = create_text(new_page(), server.url, payload="app.js is gone")
    recipient = new_page()
    if failure == "aborted":
        recipient.route(re.compile(r"/app\.js(\?|$)"), lambda route: route.abort())
    else:
        recipient.route(re.compile(r"/app\.js(\?|$)"), lambda route: route.fulfill(
            content_type="text/javascript", body="(function () { throw new Error('old browser'); })();"))
    payload = _open_secret(recipient, link)
    expect(payload).to_have_text("app.js is gone")
    recipient.wait_for_load_state()
    expect(recipient.get_by_role("button", name="Reveal")).to_be_hidden()
    _readable(payload)


def test_a_payload_is_readable_without_javascript_and_blurred_until_reveal_with_it(server, new_page):
    link = create_text(new_page(), server.url, payload="two readers", views=2)
    payload = _open_secret(new_page(java_script_enabled=False), link)
    expect(payload).to_have_text("two readers")
    _readable(payload)
    recipient = new_page()
    payload = _open_secret(recipient, link)
    recipient.wait_for_load_state()
    assert payload.evaluate("e => getComputedStyle(e).filter").startswith("blur(")
    hint = recipient.locator("#blur_hint")
    expect(hint).to_contain_text("Use “Reveal” to see it")
    recipient.get_by_role("button", name="Reveal").click()
    _readable(payload)
    # Revealed, the hint said it was blurred still (walking the page at 390 px).
    expect(hint).to_have_text("It blurs again after 20 seconds, or at once with “Hide”.")
    recipient.get_by_role("button", name="Hide").click()
    expect(hint).to_contain_text("Use “Reveal” to see it")


def _api(server, token, method, path, body=None):
    request = urllib.request.Request(
        server.url + path, data=body and json.dumps(body).encode(), method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def test_an_edit_save_keeps_a_name_and_note_it_did_not_touch_as_the_api_set_them(server, new_page):
    """The name's <input> drops line breaks and the note's <textarea> sends each as CR LF: a
    save that changed the views only rewrote both, and logged the edit of a name nobody edited."""
    page = new_page()
    token = sign_in_new_user(page, server, "lines@example.com")
    name, note = "first line\nsecond line", "a note\nwith\rbreaks\r\n"
    url_token = _api(server, token, "POST", "/api/v2/pushes",
                     {"push": {"payload": "lines", "name": name, "note": note}})["url_token"]
    page.goto(server.url + f"/p/{url_token}/edit")
    expect(page.locator("#push_name")).to_have_value(name)  # (a box that shows its line breaks)
    page.locator("#push_expire_after_views").fill("3")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("[role=status], .flash").first).to_contain_text("updated")
    active = [p for p in _api(server, token, "GET", "/api/v2/pushes/active") if p["url_token"] == url_token]
    assert (active[0]["name"], active[0]["note"], active[0]["expire_after_views"]) == (name, note, 3)
    page.goto(server.url + f"/p/{url_token}/edit")
    page.fill("#push_name", "first linesecond line")  # its line breaks removed on purpose
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("[role=status], .flash").first).to_contain_text("updated")
    active = [p for p in _api(server, token, "GET", "/api/v2/pushes/active") if p["url_token"] == url_token]
    assert (active[0]["name"], active[0]["note"]) == ("first linesecond line", note)
    page.goto(server.url + f"/p/{url_token}/edit")
    page.fill("#push_name", "renamed")  # a name typed is the name
    page.get_by_role("button", name="Save changes").click()
    active = [p for p in _api(server, token, "GET", "/api/v2/pushes/active") if p["url_token"] == url_token]
    assert (active[0]["name"], active[0]["note"]) == ("renamed", note)


def test_the_dashboards_actions_fit_a_phone_without_javascript(server, new_page):
    """Found walking the dashboard at 390 px without JavaScript: the "Sure" box beside
    "Expire now" made the actions one line too long to wrap (the cell keeps its line), so
    the button was cut off at the card's edge, reachable only by scrolling the table."""
    page = new_page(viewport={"width": 390, "height": 844}, java_script_enabled=False)
    sign_in_new_user(page, server, "phone-actions@example.com")
    page.goto(server.url + "/p/new")
    page.fill("#push_payload", "secret")
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Push created")
    page.goto(server.url + "/p")
    widths = page.evaluate("[document.querySelector('.table-wrap').scrollWidth, document.querySelector('.table-wrap').clientWidth]")
    assert widths[0] <= widths[1], f"table, its box: {widths}"
    expire = page.get_by_role("button", name="Expire now")
    expect(expire).to_be_in_viewport(ratio=1)
    expect(page.get_by_label("Sure")).to_be_in_viewport(ratio=1)


def test_a_payload_stays_blurred_while_app_js_is_slow_to_load(server, new_page):
    """theme.js lifts the blur at DOMContentLoaded when app.js never wired the page: a deferred
    app.js still loading holds DOMContentLoaded back, so the page, parsed and painted, shows
    the secret blurred until app.js wires its Reveal button."""
    link = create_text(new_page(), server.url, payload="slow app.js")
    recipient = new_page()
    recipient.goto(link)
    held = []
    recipient.route(re.compile(r"/app\.js(\?|$)"), lambda route: held.append(route))
    with recipient.expect_request(re.compile(r"/app\.js(\?|$)")):
        recipient.get_by_role("link", name="Click here to proceed").click(no_wait_after=True)
    payload = recipient.locator("#payload")
    recipient.wait_for_function("document.readyState === 'interactive' && !!document.getElementById('live-region')")
    assert len(held) == 1 and recipient.evaluate("document.documentElement.className").split() == ["js"]
    assert payload.evaluate("e => getComputedStyle(e).filter").startswith("blur(")
    held[0].continue_()
    recipient.wait_for_load_state()
    assert payload.evaluate("e => getComputedStyle(e).filter").startswith("blur(")
    recipient.get_by_role("button", name="Reveal").click()
    _readable(payload)


def test_a_payload_wraps_at_words_and_breaks_only_a_token_too_long_for_its_line(server, new_page):
    """The payload box broke every line at its last column (word-break: break-all), cutting
    ordinary words in two; a token longer than a line must still break, inside the box."""
    words = "correct horse battery staple " * 6
    token = "Zq7" * 50  # (150 letters without a break opportunity: wider than a phone)
    link = create_text(new_page(), server.url, payload=words + "\n" + token)
    page = new_page(viewport={"width": 390, "height": 844})
    page.goto(link.removesuffix("/r"))
    expect(page.locator("#payload")).to_contain_text("staple")
    lines = page.evaluate("""() => {
        const box = document.getElementById('payload'), text = box.firstChild, s = text.data;
        const range = (start, end) => { const r = document.createRange(); r.setStart(text, start); r.setEnd(text, end); return r; };
        const split = [];  // words drawn on more than one line
        for (const m of s.matchAll(/[a-z]+/g))
          if (range(m.index, m.index + m[0].length).getClientRects().length !== 1) split.push(m[0]);
        const t = s.indexOf('Zq7'), rects = [...range(t, s.length).getClientRects()];
        const inner = box.getBoundingClientRect().right - parseFloat(getComputedStyle(box).paddingRight);
        const lineTops = new Set([...range(0, t - 1).getClientRects()].map(r => Math.round(r.top)));
        return {split, tokenLines: rects.length, tokenRight: Math.max(...rects.map(r => r.right)),
                inner, wordLines: lineTops.size, pageWidth: document.documentElement.scrollWidth};
    }""")
    assert lines["split"] == [], f"words cut in two at a line's end: {lines}"
    assert lines["wordLines"] > 1, lines  # (the words do wrap: the check above means something)
    assert lines["tokenLines"] > 1 and lines["tokenRight"] <= lines["inner"] + 0.5, lines
    assert lines["pageWidth"] <= 390, lines


@pytest.mark.parametrize("javascript", [True, False])
def test_a_number_past_its_bound_is_said_the_same_with_or_without_javascript(server, new_page, javascript):
    """With JavaScript, 0 views on the edit page (1000 on the new form) was put within its
    bounds in the box as it was sent, so the server never said so; without it the server did."""
    page = new_page(java_script_enabled=javascript)
    sign_in_new_user(page, server, f"bounds-{javascript}@example.com")
    page.goto(server.url + "/")
    page.fill("#push_payload", "bounded")
    page.locator("#push_expire_after_views").fill("1000")
    page.locator("#push_expire_after_days").fill("0")
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Push created")
    flashes = page.locator(".flashes")
    expect(flashes).to_contain_text("Views set to 100, the most a push allows.")
    expect(flashes).to_contain_text("Days set to 1, the fewest a push allows.")
    page.get_by_role("link", name="Edit").first.click()
    page.locator("#push_expire_after_views").fill("0")
    page.get_by_role("button", name="Save changes").click()
    expect(flashes).to_contain_text("Views set to 1, the fewest this push allows.")
    expect(page.locator("main")).to_contain_text("1 view")


_LINE_OF = """([selector, first, second]) => {
    // The top of the line each of two texts within an element starts on.
    const element = document.querySelector(selector);
    const top = (wanted) => {
        const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const at = node.data.indexOf(wanted);
            if (at < 0) continue;
            const range = document.createRange(); range.setStart(node, at); range.setEnd(node, at + wanted.length);
            return range.getClientRects()[0].top;
        }
        return null;
    };
    return [top(first), top(second)];
}"""


def test_a_name_and_note_with_line_breaks_show_them_wherever_the_owner_reads_them(server, new_page):
    """The API takes names and notes with line breaks; the edit page's box shows them, but the
    dashboard (and the audit and edit pages' headings, the audit page's note) ran the lines
    together as one, with a space, on a desktop's width where both fit on one line."""
    page = new_page()
    token = sign_in_new_user(page, server, "breaks@example.com")
    url_token = _api(server, token, "POST", "/api/v2/pushes",
                     {"push": {"payload": "x", "name": "first line\nsecond line",
                               "note": "note one\r\nnote two"}})["url_token"]
    places = [("/p", "td.name", "first line", "second line"),
              ("/p", "td[data-label=Note]", "note one", "note two"),
              (f"/p/{url_token}/audit", "h1", "first line", "second line"),
              (f"/p/{url_token}/audit", ".card p", "note one", "note two"),
              (f"/p/{url_token}/edit", "h1", "first line", "second line")]
    for path, selector, first, second in places:
        page.goto(server.url + path)
        tops = page.evaluate(_LINE_OF, [selector, first, second])
        assert None not in tops and tops[1] > tops[0], f"{path} {selector}: {tops}"


def test_a_date_in_a_table_is_never_broken_across_lines_on_a_desktop(server, new_page):
    """Walking the dashboard at 1280 px: its Created column broke "2026-12-07 04:05" after
    a hyphen ("2026-12-" above "07 04:05"), the Actions column kept on one line taking the room."""
    page = new_page()
    token = sign_in_new_user(page, server, "dates@example.com")
    url_token = _api(server, token, "POST", "/api/v2/pushes",
                     {"push": {"payload": "x", "name": "dated", "note": "a note of forty characters, or near it"}})["url_token"]
    for path in ("/p", f"/p/{url_token}/audit"):
        page.goto(server.url + path)
        lines = page.evaluate("[...document.querySelectorAll('table time')].map(t => [t.textContent, t.getClientRects().length])")
        assert lines and all(count == 1 for _text, count in lines), f"{path}: {lines}"


def test_the_api_pages_paths_break_after_a_slash_on_a_phone(server, new_page):
    """Walking /help/api at 390 px: a path longer than the line broke anywhere
    (word-break: break-all: "/api/v2/pushes/:url_token/noti" above "fy_emails")."""
    page = new_page(viewport={"width": 390, "height": 844})
    page.goto(server.url + "/help/api")
    split = page.evaluate("""() => {
        const split = [];
        for (const code of document.querySelectorAll('.endpoint h3 code')) {
            const text = code.textContent;
            const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode())
                for (const m of node.data.matchAll(/[^\\/]+/g)) {
                    const r = document.createRange(); r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
                    if (r.getClientRects().length > 1) split.push(text + ': ' + m[0]);
                }
        }
        return split;
    }""")
    assert split == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


@pytest.mark.parametrize("javascript", [True, False])
def test_a_wrong_password_puts_focus_on_the_password_the_address_kept(server, new_page, javascript):
    """Walking the sign-in page: after a wrong password the focus went back to the e-mail
    address (kept, right), so typing the password again meant a Tab or a click first."""
    from pwp.auth import create_user
    from pwp.models import Throttle, db
    with server.app.app_context():
        create_user(f"typo-{javascript}@example.com", password="correct horse battery")
        # (the module's sign-ins share 127.0.0.1's limit of 5 in 20 s: a fresh count for these two)
        db.session.query(Throttle).filter(Throttle.key.like("login:ip:%")).delete(synchronize_session=False)
        db.session.commit()
    page = new_page(java_script_enabled=javascript)
    page.goto(server.url + "/users/sign_in")
    page.fill("#email", f"typo-{javascript}@example.com")
    page.fill("#password", "correct horse batery")
    page.click("main button[type=submit]")
    expect(page.locator("#sign_in_error")).to_have_text("Invalid e-mail address or password.")
    expect(page.locator("#email")).to_have_value(f"typo-{javascript}@example.com")
    expect(page.locator("#password")).to_be_focused()
    page.keyboard.type("correct horse battery")
    page.keyboard.press("Enter")
    expect(page.locator("nav.site-nav")).to_contain_text("Sign out")


def test_the_dashboard_fits_a_desktop_without_javascript(server, new_page):
    """Its dates kept on one line, the actions (with their "Sure" boxes) on one line too ran
    past the table's box at 1280 px: "Expire now" cut off."""
    page = new_page(java_script_enabled=False)
    token = sign_in_new_user(page, server, "wide@example.com")
    _api(server, token, "POST", "/api/v2/pushes",
         {"push": {"payload": "x", "name": "db password\nfor the EU cluster", "note": "rotate monthly\nask Kim first"}})
    page.goto(server.url + "/p")
    widths = page.evaluate("[document.querySelector('.table-wrap').scrollWidth, document.querySelector('.table-wrap').clientWidth]")
    assert widths[0] <= widths[1], f"the table, its box: {widths}"


def test_the_dashboard_on_a_phone_shows_no_empty_note_line(server, new_page):
    """Walking the dashboard at 390 px: each push without a note had a "Note:" line, empty."""
    page = new_page(viewport={"width": 390, "height": 844})
    token = sign_in_new_user(page, server, "no-note@example.com")
    for push in ({"payload": "x", "name": "without"}, {"payload": "x", "name": "with", "note": "a note"}):
        _api(server, token, "POST", "/api/v2/pushes", {"push": push})
    page.goto(server.url + "/p")
    shown = page.evaluate("[...document.querySelectorAll('td[data-label=Note]')]"
                          ".map(td => [td.textContent.trim(), td.getClientRects().length > 0])")
    assert sorted(shown) == [["", False], ["a note", True]]
