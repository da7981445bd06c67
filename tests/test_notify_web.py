"""Notify by e-mail in the browser UI: the creation form's field and the preview's "Notify by
Email" form (POST /p/TOKEN/notify_emails), against a real SMTP server."""
import html
import re

import pytest
from conftest import sql
from webutil import create, form, sign_in

from pwp import notify

QUEUED = "Recipient(s) are added to the queue to be sent."


def page(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def statuses(app):
    return [r[0] for r in sql(app, "SELECT status FROM notify_by_emails ORDER BY id")]


def test_the_creation_form_offers_it_to_signed_in_senders_only(mail, make_user):
    assert 'name="push[notify_emails_to]"' not in page(mail.get("/p/new"))
    sign_in(mail, make_user)
    text = page(mail.get("/p/new"))
    assert 'name="push[notify_emails_to]"' in text and "Notify by email (optional)" in text


def test_the_creation_form_does_not_offer_it_without_an_smtp_server(client, make_user):
    sign_in(client, make_user)
    assert 'name="push[notify_emails_to]"' not in page(client.get("/p/new"))
    assert "Notify by Email" not in page(client.get(f"/p/{create(client, payload='s')}/preview"))


def test_creating_with_recipients_sends_the_link(mail, smtp, make_user, app):
    sign_in(mail, make_user)
    url_token = create(mail, payload="web secret", notify_emails_to="ann@example.com")
    notify.wait_for_sends()
    (rcpts, message), = smtp.sink.wait_for(1)
    assert rcpts == ["ann@example.com"]
    body = message.get_content()
    assert f"https://pwpush.example.com/p/{url_token}\n" in body.replace("\r", "") and "web secret" not in body
    text = page(mail.get(f"/p/{url_token}/preview"))
    assert QUEUED in text and "ann@example.com" in text and "completed" in text
    assert statuses(app) == ["completed"]


def test_the_forms_mail_links_ignore_the_requests_host(settings, smtp, database_url, request):
    """The creation form and the preview's form behind `Host: evil.example`: the mails link
    to the configured host (PWP__HOST_DOMAIN), not the attacker's."""
    settings.update(smtp.settings(), PWP__HOST_DOMAIN="pwpush.example.com")
    client = request.getfixturevalue("client")
    sign_in(client, request.getfixturevalue("make_user"))
    for cookie in list(client._cookies.values()):  # (the test client keeps them for localhost)
        client.set_cookie(cookie.key, cookie.value, domain="evil.example")
    evil = {"Host": "evil.example"}
    r = client.post("/p", data=form(kind="text", payload="s", notify_emails_to="ann@example.com"), headers=evil)
    assert r.status_code == 302
    url_token = r.headers["Location"].split("/")[2]
    r = client.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "bob@example.com"}, headers=evil)
    assert r.status_code == 302
    notify.wait_for_sends()
    for _rcpts, message in smtp.sink.wait_for(2):
        body = message.get_content()
        assert f"https://pwpush.example.com/p/{url_token}" in body and "evil.example" not in body


@pytest.mark.parametrize("to, message", [
    ("ann@example.com,", "Notify emails to has commas used in the wrong way"),
    ("not an address", "Notify emails to contains invalid email(s)"),
])
def test_the_creation_form_shows_address_errors(mail, make_user, app, to, message):
    sign_in(mail, make_user)
    r = mail.post("/p", data=form(kind="text", payload="s", notify_emails_to=to))
    assert r.status_code == 422
    text = page(r)
    assert message in text and f'value="{to}"' in text and 'aria-invalid="true"' in text
    assert sql(app, "SELECT count(*) FROM pushes")[0][0] == 0


def test_the_creation_form_shows_the_pushs_errors_before_the_addresses(mail, make_user, app):
    """A blank secret and a bad address together: both are said, the secret's first (the
    address's alone hid the secret's until the address was mended)."""
    sign_in(mail, make_user)
    r = mail.post("/p", data=form(kind="text", payload=" ", notify_emails_to="not an address"))
    assert r.status_code == 422
    text = page(r)
    secret, address = text.find("Enter the secret text or password."), text.find("contains invalid email(s)")
    assert -1 < secret < address
    assert sql(app, "SELECT count(*) FROM pushes")[0][0] == 0


def test_the_creation_form_shows_an_emptied_box_with_the_other_errors(mail, make_user, app):
    """An emptied days box (no JavaScript), a blank secret and a bad address: all three said,
    as the page orders them (the box's alone hid the others)."""
    sign_in(mail, make_user)
    r = mail.post("/p", data=form(kind="text", payload=" ", notify_emails_to="not an address", expire_after_days=""))
    assert r.status_code == 422
    text = page(r)
    found = [text.find(s) for s in ("Enter the secret text or password.", "Enter the days as a whole number",
                                    "contains invalid email(s)")]
    assert -1 < found[0] < found[1] < found[2]
    assert sql(app, "SELECT count(*) FROM pushes")[0][0] == 0


def test_an_anonymous_form_with_recipients_is_refused(mail, app):
    r = mail.post("/p", data=form(kind="text", payload="s", notify_emails_to="ann@example.com"))
    assert r.status_code == 422 and "Notify emails to are not allowed for unknown users" in page(r)


def test_the_preview_offers_notify_to_the_owner_only(mail, make_user):
    sign_in(mail, make_user)
    url_token = create(mail, payload="s")
    text = page(mail.get(f"/p/{url_token}/preview"))
    assert "Notify by Email" in text and f'action="/p/{url_token}/notify_emails"' in text
    assert "Up to 5 more" in text
    mail.post("/users/sign_out")
    assert "Notify by Email" not in page(mail.get(f"/p/{url_token}/preview"))


def test_notify_form_sends_and_says_so(mail, smtp, make_user, app):
    sign_in(mail, make_user)
    url_token = create(mail, payload="s")
    r = mail.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "ann@example.com, bob@example.com"})
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{url_token}/preview"
    notify.wait_for_sends()
    assert len(smtp.sink.wait_for(2)) == 2
    text = page(mail.get(f"/p/{url_token}/preview"))
    assert QUEUED in text and "Up to 3 more" in text
    # A phone stacks the "Sent so far" rows, each cell under its data-label: as its header says.
    table = re.search(r'<table class="data.*?</table>', text, re.S).group()
    heads = re.findall(r'<th scope="col">([^<]*)</th>', table)
    labels = re.findall(r'<td data-label="([^"]*)"', re.search(r"<tbody>.*?</tr>", table, re.S).group())
    assert labels == heads


def test_notify_form_errors_are_shown_on_the_preview(mail, make_user):
    sign_in(mail, make_user)
    url_token = create(mail, payload="s", notify_emails_to="a@example.com,b@example.com,c@example.com")
    r = mail.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "x@example.com,,"})
    assert r.status_code == 422
    assert "Has commas used in the wrong way" in page(r) and 'value="x@example.com,,"' in page(r)
    r = mail.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "d@example.com,e@example.com,f@example.com"})
    assert r.status_code == 422
    assert "You can notify up to 5 email(s) and you have already sent emails to 3 recipients" in page(r)
    r = mail.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": ""})
    assert r.status_code == 422 and "Can&#39;t be blank" in r.get_data(as_text=True)
    notify.wait_for_sends()


def test_notify_form_is_throttled(mail, make_user, clock):
    # (clock: the six requests in one fixed minute window, not across a minute's end by chance)
    sign_in(mail, make_user)
    url_token = create(mail, payload="s")
    for _ in range(5):
        assert mail.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": ""}).status_code == 422
    r = mail.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "a@example.com"})
    assert r.status_code == 429
    assert "Too many email notification requests. Please try again in a minute." in page(r)
    assert 'value="a@example.com"' in page(r)  # (the preview with its form as sent, not an error page)


def test_notify_form_is_for_the_owner_of_a_live_push(mail, make_user, app):
    sign_in(mail, make_user)
    url_token = create(mail, payload="s")
    mail.post("/users/sign_out")
    r = mail.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "a@example.com"})
    assert r.status_code == 302 and "/users/sign_in" in r.headers["Location"]
    sign_in(mail, make_user, email="other@example.com")
    r = mail.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "a@example.com"}, follow_redirects=True)
    assert "That push doesn't belong to you." in page(r)
    mail.post("/users/sign_out")
    mail.post("/users/sign_in", data={"email": "owner@example.com", "password": "correct horse"})
    mail.post(f"/p/{url_token}/expire")
    r = mail.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "a@example.com"}, follow_redirects=True)
    assert "That push has expired: its link can no longer be sent." in page(r)
    assert statuses(app) == []


def test_notify_form_needs_its_csrf_token(settings, smtp, database_url, request):
    settings.update(smtp.settings(), WTF_CSRF_ENABLED=True)
    client = request.getfixturevalue("client")
    make_user = request.getfixturevalue("make_user")
    make_user(password="correct horse")
    csrf = _csrf(client, "/users/sign_in")
    client.post("/users/sign_in", data={"email": "owner@example.com", "password": "correct horse",
                                        "csrf_token": csrf})
    csrf = _csrf(client, "/p/new")
    r = client.post("/p", data={**form(kind="text", payload="s"), "csrf_token": csrf})
    url_token = r.headers["Location"].split("/")[2]
    assert client.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "a@example.com"}).status_code == 400
    r = client.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "a@example.com", "csrf_token": csrf})
    assert r.status_code == 302
    notify.wait_for_sends()


def _csrf(client, path):
    return page(client.get(path)).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_notify_form_route_is_absent_when_disabled(settings, smtp, database_url, request):
    settings.update(smtp.settings(), PWP__NOTIFY_BY_EMAIL__ENABLED=False)
    client = request.getfixturevalue("client")
    sign_in(client, request.getfixturevalue("make_user"))
    url_token = create(client, payload="s")
    assert client.post(f"/p/{url_token}/notify_emails", data={"notify_emails_to": "a@example.com"}).status_code == 404
    assert "Notify by Email" not in page(client.get(f"/p/{url_token}/preview"))


def test_the_error_summary_counts_messages_not_fields(mail, make_user):
    # Found by hand: "a@b.com, a@b.com," gave two messages under "1 error prohibited ...".
    sign_in(mail, make_user)
    r = mail.post("/p", data=form(kind="text", payload="s", notify_emails_to="a@b.com, a@b.com,"))
    text = page(r)
    assert r.status_code == 422 and "contains duplicate emails" in text and "commas used in the wrong way" in text
    assert "2 errors prohibited this push from being saved:" in text


def test_the_audit_page_says_to_whom_each_sending_went(mail, smtp, make_user):
    # Found by hand: its row said "creation email send" only, with no recipients nor outcome.
    sign_in(mail, make_user)
    url_token = create(mail, payload="s", notify_emails_to="ann@example.com,bob@example.com")
    notify.wait_for_sends()
    smtp.sink.wait_for(2)
    text = page(mail.get(f"/p/{url_token}/audit"))
    assert "creation email send" in text
    assert "to ann@example.com, bob@example.com: completed" in text


def test_the_dashboard_says_which_links_were_emailed(mail, smtp, make_user, app):
    # Found by hand: nothing on the dashboard told the pushes whose link went by e-mail.
    sign_in(mail, make_user)
    create(mail, payload="s", name="mailed", notify_emails_to="ann@example.com,bob@example.com")
    create(mail, payload="s", name="kept")
    notify.wait_for_sends()
    smtp.sink.wait_for(2)
    sql(app, "UPDATE notify_by_emails SET status = 'partially_failed', successful_sends = 'ann@example.com'")
    text = page(mail.get("/p"))
    assert text.count("Link e-mailed to") == 1
    assert "Link e-mailed to 1 of 2 (1 failed)" in text
    sql(app, "UPDATE notify_by_emails SET status = 'completed', successful_sends = 'ann@example.com,bob@example.com'")
    assert "Link e-mailed to 2 addresses" in page(mail.get("/p"))


def test_the_preview_says_to_reload_while_a_sending_is_under_way(mail, smtp, make_user, app):
    # Found by hand: right after "Send the link" the table often said "processing" and no more.
    sign_in(mail, make_user)
    url_token = create(mail, payload="s", notify_emails_to="ann@example.com")
    notify.wait_for_sends()
    assert "reload this page" not in page(mail.get(f"/p/{url_token}/preview"))
    sql(app, "UPDATE notify_by_emails SET status = 'processing'")
    assert "Being sent: reload this page to see how it ended." in page(mail.get(f"/p/{url_token}/preview"))
