"""The administration page in Chromium: an administrator makes, revokes and deletes accounts."""
import re

from playwright.sync_api import expect

from .liveserver import sign_in_new_user


def test_administrator_promotes_revokes_and_deletes_an_account(server, new_page):
    page = new_page()
    sign_in_new_user(page, server, "boss@example.com")
    expect(page.locator("nav.site-nav")).not_to_contain_text("Administration")
    with server.app.app_context():
        from pwp.auth import create_user, find_user, issue_token, set_admin
        set_admin(find_user("boss@example.com"), True)
        issue_token(create_user("leaver@example.com"))
    page.goto(server.url + "/p")
    page.get_by_role("link", name="Administration").click()
    expect(page).to_have_title(re.compile(r"^Administration: accounts \| "))
    row = page.locator("tr", has_text="leaver@example.com")
    expect(row).to_contain_text("No (API only)")
    row.get_by_role("button", name="Make administrator").click()
    expect(page.locator(".flash-success")).to_have_text("leaver@example.com is now an administrator.")
    row.get_by_role("button", name="Revoke administrator").click()
    expect(page.locator(".flash-success")).to_have_text("leaver@example.com is no longer an administrator.")
    expect(page.locator("tr", has_text="boss@example.com")).to_contain_text("None (your own account)")
    # The two actions apart (the focus ring of one does not touch the other, a click lands on one).
    make, delete = row.get_by_role("button", name="Make administrator"), row.get_by_role("link", name="Delete leaver@example.com")
    assert delete.bounding_box()["x"] - (make.bounding_box()["x"] + make.bounding_box()["width"]) >= 8
    row.get_by_role("link", name="Delete leaver@example.com").click()
    expect(page.locator("main")).to_contain_text("its pushes (it has none).")
    page.get_by_role("button", name="Delete leaver@example.com").click()
    expect(page.locator(".flash-success")).to_have_text("Deleted leaver@example.com; it had no pushes.")
    expect(page.locator("tbody tr")).to_have_count(1)


def test_a_long_e_mail_address_fits_the_administration_pages_on_a_phone(server, new_page):
    long_email = "firstname.middlename.lastname.accounting@subdomain.example-company.com"
    page = new_page(viewport={"width": 390, "height": 844})
    sign_in_new_user(page, server, "phoneboss@example.com")
    with server.app.app_context():
        from pwp.auth import create_user, find_user, set_admin
        set_admin(find_user("phoneboss@example.com"), True)
        create_user(long_email)
    page.goto(server.url + "/admin/users")
    expect(page.locator("main")).to_contain_text(long_email)
    # (the table's box scrolls sideways: what does not fit is cut off, not only the page widened)
    widths = page.evaluate("[document.documentElement.scrollWidth, document.querySelector('.table-wrap').scrollWidth,"
                           " document.querySelector('.table-wrap').clientWidth]")
    assert widths[0] <= 390 and widths[1] <= widths[2], f"page, table, its box: {widths}"
    page.get_by_role("link", name=f"Delete {long_email}").click()
    expect(page.get_by_role("button", name=f"Delete {long_email}")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the delete page is {width} px wide"
