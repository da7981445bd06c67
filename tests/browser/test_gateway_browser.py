"""A push created on an internal server, read in Chromium through a public gateway on the
same database (PWP_PUBLIC_GATEWAY)."""
import re

import pytest
from playwright.sync_api import expect

from .liveserver import LiveServer, create_text


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory):
    """A live public gateway on the internal server's database, with CSRF on."""
    live = LiveServer(tmp_path_factory.mktemp("gateway"), PWP_PUBLIC_GATEWAY=True,
                      DATABASE_URL=server.app.config["DATABASE_URL"])
    yield live
    live.stop()


def test_a_recipient_opens_a_link_through_the_gateway(server, gateway, new_page):
    sender = new_page()
    link = create_text(sender, server.url, payload="through the gateway", passphrase="open sesame",
                       deletable=True)
    # The internal server's link, opened on the gateway's host.
    link = link.replace(server.url, gateway.url)

    recipient = new_page(viewport={"width": 390, "height": 800})
    recipient.goto(link)
    expect(recipient.locator(".site-nav")).to_have_count(0)
    assert recipient.locator("a[href='/'], a[href^='/users'], a[href^='/help']").count() == 0
    recipient.get_by_role("link", name="Click here to proceed").click()
    recipient.get_by_label("Enter the secret passphrase").fill("open sesame")
    recipient.get_by_role("button", name="Go").click()  # (the form's CSRF token on the gateway's host)
    expect(recipient.locator("#payload")).to_have_text("through the gateway")
    recipient.locator("summary", has_text="Delete this secret now").click()
    recipient.locator("form[action$='/expire'] button[type=submit]").click()
    expect(recipient.locator("h1")).to_have_text("Secret deleted")

    recipient.goto(gateway.url + "/")
    expect(recipient.locator("h1")).to_have_text("Not Found")
    assert re.search(r"\b404\b", recipient.title())
