"""The passphrase flow: form, encrypted short-lived cookie, rate limit."""
import re

import pytest
from webutil import audit_kinds, create, view_count

from pwp.models import AuditKind

PASSPHRASE = "open sesame"


def _cookie(client, token):
    return client.get_cookie(f"{token}-p", path=f"/p/{token}")


def test_show_redirects_to_passphrase_form_without_logging(client, app):
    token = create(client, payload="guarded", passphrase=PASSPHRASE)
    r = client.get(f"/p/{token}")
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{token}/passphrase"
    html = client.get(f"/p/{token}/passphrase").get_data(as_text=True)
    assert "Enter the secret passphrase provided with this URL" in html
    assert f'action="/p/{token}/access"' in html
    assert audit_kinds(app, token) == [AuditKind.creation]


def test_wrong_passphrase_redirects_back_with_alert_and_logs(client, app):
    token = create(client, payload="guarded", passphrase=PASSPHRASE)
    r = client.post(f"/p/{token}/access", data={"passphrase": "nope"})
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{token}/passphrase"
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "That passphrase is incorrect." in html
    # The field is marked and described by the message (a screen reader hears it on focus).
    assert 'id="flash-1" role="alert">That passphrase is incorrect.' in html
    assert 'aria-invalid="true" aria-describedby="flash-1"' in html
    assert "aria-invalid" not in client.get(r.headers["Location"]).get_data(as_text=True)  # (once)
    assert audit_kinds(app, token)[-1] == AuditKind.failed_passphrase
    assert _cookie(client, token) is None


def test_right_passphrase_sets_encrypted_httponly_cookie_then_shows_payload(client, app):
    token = create(client, payload="guarded", passphrase=PASSPHRASE)
    r = client.post(f"/p/{token}/access", data={"passphrase": PASSPHRASE})
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{token}"
    header = r.headers["Set-Cookie"]
    assert header.startswith(f"{token}-p=")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Max-Age=180" in header
    assert "Secure" not in header
    value = _cookie(client, token).value
    assert PASSPHRASE not in value and "sesame" not in value
    assert view_count(app, token) == 0
    html = client.get(f"/p/{token}").get_data(as_text=True)
    assert "guarded" in html
    assert view_count(app, token) == 1
    # The cookie is spent with the view.
    assert _cookie(client, token) is None


def test_cookie_is_secure_when_configured(settings, database_url, request):
    settings["PWP__SECURE_COOKIES"] = True
    client = request.getfixturevalue("client")
    token = create(client, payload="guarded", passphrase=PASSPHRASE)
    r = client.post(f"/p/{token}/access", data={"passphrase": PASSPHRASE})
    assert "Secure" in r.headers["Set-Cookie"]


def test_cookie_expires_after_three_minutes(client, clock):
    token = create(client, payload="guarded", passphrase=PASSPHRASE)
    client.post(f"/p/{token}/access", data={"passphrase": PASSPHRASE})
    clock.advance(minutes=3, seconds=1)
    r = client.get(f"/p/{token}")
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{token}/passphrase"


def test_cookie_of_one_push_does_not_open_another(client):
    first = create(client, payload="one", passphrase=PASSPHRASE)
    second = create(client, payload="two", passphrase=PASSPHRASE)
    client.post(f"/p/{first}/access", data={"passphrase": PASSPHRASE})
    value = _cookie(client, first).value
    client.set_cookie(f"{second}-p", value, path=f"/p/{second}")
    assert client.get(f"/p/{second}").status_code == 302


def test_forged_cookie_is_ignored(client):
    token = create(client, payload="guarded", passphrase=PASSPHRASE)
    client.set_cookie(f"{token}-p", "not-a-fernet-token", path=f"/p/{token}")
    assert client.get(f"/p/{token}").status_code == 302


def test_passphrase_query_parameter_also_works(client):
    token = create(client, payload="guarded", passphrase=PASSPHRASE)
    assert "guarded" in client.get(f"/p/{token}?passphrase=open%20sesame").get_data(as_text=True)
    token = create(client, payload="guarded", passphrase=PASSPHRASE)
    r = client.get(f"/p/{token}?passphrase=wrong")
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{token}/passphrase"


def test_sixth_attempt_in_a_minute_is_refused(client, clock):
    token = create(client, payload="guarded", passphrase=PASSPHRASE)
    for _ in range(5):
        client.post(f"/p/{token}/access", data={"passphrase": "nope"})
    r = client.post(f"/p/{token}/access", data={"passphrase": PASSPHRASE}, follow_redirects=True)
    assert "Too many passphrase attempts" in r.get_data(as_text=True)
    clock.advance(minutes=1)
    r = client.post(f"/p/{token}/access", data={"passphrase": PASSPHRASE})
    assert r.headers["Location"] == f"/p/{token}"


def test_push_without_passphrase_skips_the_form(client, app):
    token = create(client, payload="open")
    r = client.get(f"/p/{token}/passphrase")
    # To the retrieval step, not the payload: a GET of this page, like upstream's form,
    # must not spend a view (a link checker follows redirects).
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{token}/r"
    client.get(r.headers["Location"])
    assert view_count(app, token) == 0
    r = client.post(f"/p/{token}/access", data={"passphrase": ""})
    assert r.headers["Location"] == f"/p/{token}"


def test_a_success_flash_does_not_mark_the_passphrase_invalid(client, make_user):
    token = create(client, payload="x", passphrase="pw")
    make_user(email="o@example.com", password="correct horse")
    client.post(f"/users/sign_in?next=/p/{token}/passphrase",
                data={"email": "o@example.com", "password": "correct horse"})
    html = client.get(f"/p/{token}/passphrase").get_data(as_text=True)
    assert "Signed in successfully." in html
    field = re.search(r'<input type="password" id="passphrase"[^>]*>', html).group(0)
    assert "aria-invalid" not in field, field
    wrong = client.post(f"/p/{token}/access", data={"passphrase": "nope"}, follow_redirects=True)
    field = re.search(r'<input type="password" id="passphrase"[^>]*>', wrong.get_data(as_text=True)).group(0)
    assert 'aria-invalid="true" aria-describedby="flash-1"' in field, field


@pytest.mark.parametrize("kind,payload", [("text", "guarded"), ("url", "https://example.com/x")])
def test_the_passphrase_form_sent_for_an_unknown_push_answers_as_for_an_expired_one(client, kind, payload):
    """POST /access answered an unknown token with the expired page at once, an expired push
    with a redirect to it (an expired URL push: the page that moves on to it): a 200 or a 302
    told tokens that never were from spent ones."""
    spent = create(client, kind=kind, payload=payload, passphrase=PASSPHRASE, expire_after_views="1")
    client.get(f"/p/{spent}?passphrase={PASSPHRASE.replace(' ', '+')}")
    answers = [client.post(f"/p/{t}/access", data={"passphrase": "nope"}) for t in (spent, "doesnotexist123")]
    assert [(r.status_code, r.headers.get("Location")) for r in answers] \
        == [(302, f"/p/{spent}"), (302, "/p/doesnotexist123")]
    assert client.get(f"/p/{spent}").get_data() == client.get("/p/doesnotexist123").get_data()
