"""Account e-mails in Chromium: a forgotten password reset through the mailed link, and the
new pages free of serious axe violations."""
import re

import pytest
from playwright.sync_api import expect

from smtpsink import SmtpServer

from .liveserver import AXE_JS, LiveServer
from .test_accessibility import _serious


@pytest.fixture(scope="module")
def mailing(tmp_path_factory):
    """A live server with account e-mails on, sending to a real SMTP server; (server, smtp)."""
    smtp = SmtpServer()
    smtp.controller.start()
    live = LiveServer(tmp_path_factory.mktemp("live"), **smtp.settings(), PWP__ENABLE_USER_ACCOUNT_EMAILS=True)
    yield live, smtp
    live.stop()
    smtp.controller.stop()


def test_a_forgotten_password_is_reset_through_the_mailed_link(mailing, new_page):
    server, smtp = mailing
    with server.app.app_context():
        from pwp.auth import create_user
        create_user("forgetful@example.com", password="correct horse battery")
    page = new_page()
    page.goto(server.url + "/users/sign_in")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page).to_have_title(re.compile(r"^Forgot your password\? \| "))
    page.get_by_label("E-mail address").fill("forgetful@example.com")
    page.get_by_role("button", name="Send me a reset link").click()
    expect(page.locator(".flash-success")).to_contain_text("password recovery link")
    ((_rcpts, message),) = smtp.sink.wait_for(1)
    link = re.search(r"https://\S+", message.get_content()).group()
    # The link's host is the configured one (the mails' PWP__HOST_DOMAIN): open its path here.
    page.goto(server.url + "/" + link.split("/", 3)[3])
    expect(page.locator("h1")).to_have_text("Choose a new password")
    page.get_by_label("New password (at least 8 characters)").fill("a brand new password")
    page.get_by_label("New password again").fill("a brand new passw0rd")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password_confirmation-error")).to_have_text("The two passwords do not match.")
    page.get_by_label("New password (at least 8 characters)").fill("a brand new password")
    page.get_by_label("New password again").fill("a brand new password")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("nav.site-nav")).to_contain_text("Sign out")
    # Signed in now: the link sends this browser on (Devise's require_no_authentication).
    page.goto(server.url + "/" + link.split("/", 3)[3])
    expect(page.locator("[role=alert]")).to_contain_text("You are already signed in.")
    # Once only.
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("nav.site-nav")).to_contain_text("Sign in")  # (signed out before the goto)
    page.goto(server.url + "/" + link.split("/", 3)[3])
    expect(page.locator("[role=alert]")).to_contain_text("That link is not valid")


@pytest.mark.parametrize("path", ["/users/sign_in", "/users/password/new", "/users/confirmation/new",
                                  "/users/unlock/new", "/users/password/edit?reset_password_token=bad"])
def test_the_account_email_pages_have_no_serious_axe_violations(mailing, browser, path):
    server, _smtp = mailing
    ctx = browser.new_context(bypass_csp=True)
    ctx.add_init_script(path=AXE_JS)
    try:
        page = ctx.new_page()
        page.goto(server.url + path)
        assert _serious(page) == []
    finally:
        ctx.close()
