"""Two-factor authentication in Chromium: set up from the account page with the secret the
page shows, then a sign-in that asks for the code (computed with pyotp, as an app would)."""
import re
import time

import pyotp
from playwright.sync_api import expect

from .liveserver import sign_in_new_user


def test_set_up_then_sign_in_with_a_code(server, new_page):
    page = new_page()
    sign_in_new_user(page, server, "twofactor@example.com")
    page.goto(server.url + "/users/edit")
    page.get_by_role("link", name="Set up two-factor authentication").click()
    expect(page.locator("h1")).to_have_text("Two-factor authentication")
    expect(page.get_by_role("img", name="QR code of the secret for your authenticator app")).to_be_visible()
    secret = page.locator("#otp_secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    page.fill("#current_password", "correct horse battery")
    page.fill("#code", totp.now())
    page.get_by_role("button", name="Turn two-factor authentication on").click()
    expect(page.locator("h1")).to_have_text("Two-factor authentication is on")
    codes = re.findall(r"[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}", page.locator("#backup_codes").inner_text())
    assert len(set(codes)) == 10
    page.get_by_role("button", name="Sign out").click()
    page.goto(server.url + "/users/sign_in")
    page.fill("#email", "twofactor@example.com")
    page.fill("#password", "correct horse battery")
    page.click("main button[type=submit]")
    expect(page).to_have_url(server.url + "/users/two_factor/sign_in")
    expect(page.locator("nav.site-nav")).not_to_contain_text("Sign out")
    page.fill("#code", "not a code")
    page.click("main button[type=submit]")
    expect(page.locator("#code_error")).to_have_text("That code is not valid, or has been used already.")
    # The next step's code: the set-up used this step's (each is good once), and the next
    # one is inside the window whichever of the two steps it is now.
    page.fill("#code", totp.at(time.time() + 30))
    page.click("main button[type=submit]")
    expect(page.locator("nav.site-nav")).to_contain_text("Sign out")
    page.goto(server.url + "/users/edit")
    expect(page.get_by_role("link", name="Manage two-factor authentication")).to_be_visible()
