"""Accounts: sign up, sign in (throttled), sign out, API token page."""
import io
import re

import pytest
from conftest import bearer
from sqlalchemy import event
from webutil import sign_in, sql

from pwp import accounts, pushes
from pwp.models import db


def test_sign_up_creates_account_and_signs_in(client, app):
    r = client.post("/users/sign_up", data={"email": "New@Example.com", "password": "long enough",
                                            "password_confirmation": "long enough"})
    assert r.status_code == 302
    assert sql(app, "SELECT email FROM users")[0][0] == "new@example.com"
    assert "Sign out" in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("email,password,confirmation,message", [
    ("a@example.com", "short", "short", "Use at least 8 characters."),
    ("a@example.com", "long enough", "different", "The two passwords do not match."),
    ("not-an-address", "long enough", "long enough", "That e-mail address is not valid."),
    ("@", "long enough", "long enough", "That e-mail address is not valid."),
    ("a@", "long enough", "long enough", "That e-mail address is not valid."),
    ("@example.com", "long enough", "long enough", "That e-mail address is not valid."),
    ("a@b@example.com", "long enough", "long enough", "That e-mail address is not valid."),
    ("a\x00@example.com", "long enough", "long enough", "That e-mail address is not valid."),
    ("a@exam\x01ple.com", "long enough", "long enough", "That e-mail address is not valid."),
    ("a" * 250 + "@b.com", "long enough", "long enough", "That e-mail address is not valid."),
    # Found walking the page: an empty box was called "not valid".
    ("", "long enough", "long enough", "Enter your e-mail address."),
    ("  ", "long enough", "long enough", "Enter your e-mail address."),
])
def test_sign_up_errors_rerender_422(client, email, password, confirmation, message):
    r = client.post("/users/sign_up", data={"email": email, "password": password,
                                            "password_confirmation": confirmation})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert message in html and f'value="{email}"' in html


def test_a_short_password_the_confirmation_does_not_match_is_told_both(client):
    r = client.post("/users/sign_up", data={"email": "a@example.com", "password": "short",
                                            "password_confirmation": "shirt"})
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    assert "Use at least 8 characters." in html and "The two passwords do not match." in html


def test_sign_up_says_every_problem_at_once(client, app):
    r = client.post("/users/sign_up", data={"email": "bad", "password": "short",
                                            "password_confirmation": "short"})
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    assert "Use at least 8 characters." in html and "That e-mail address is not valid." in html
    assert sql(app, "SELECT count(*) FROM users")[0][0] == 0


@pytest.mark.parametrize("email", ["x<victim@example.com>", "victim@example.com>", "Victim <victim@example.com>",
                                   "a,victim@example.com", "victim@example.com;a@b.org", "(x)victim@example.com",
                                   '"x"@example.com', "a:victim@example.com", "a@[127.0.0.1]", "a\\b@example.com"])
def test_sign_up_refuses_an_address_a_mail_header_reads_as_another(client, app, email):
    # Characters with a meaning in mail headers: 'x<victim@example.com>' was stored as an
    # account of its own, and its mails went to victim@example.com (past the per-address cap).
    r = client.post("/users/sign_up", data={"email": email, "password": "long enough",
                                            "password_confirmation": "long enough"})
    assert r.status_code == 422 and "That e-mail address is not valid." in r.get_data(as_text=True)
    assert sql(app, "SELECT count(*) FROM users")[0][0] == 0


@pytest.mark.parametrize("email", ["a\u200b@example.com", "admin@exam\u00adple.com",
                                   "\u202emoc.elpmaxe@nimda", "a@example.com\ufeff",
                                   # invisible too, though not format characters (Unicode's
                                   # default-ignorable ones): a variation selector, the combining
                                   # grapheme joiner, a Hangul filler, a Mongolian selector
                                   "a\ufe0f@example.com", "a\u034f@example.com", "a@\u3164example.com",
                                   "a@example.com\u180b", "a\U000e0100@example.com"])
def test_sign_up_refuses_an_address_that_looks_like_another(client, make_user, app, email):
    # Invisible and direction characters: an account the administration page showed as
    # a@example.com (a zero-width space, a soft hyphen), or as admin@example.com (U+202E).
    make_user(email="a@example.com")
    r = client.post("/users/sign_up", data={"email": email, "password": "long enough",
                                            "password_confirmation": "long enough"})
    assert r.status_code == 422 and "That e-mail address is not valid." in r.get_data(as_text=True)
    assert sql(app, "SELECT count(*) FROM users")[0][0] == 1


def test_users_create_cli_refuses_an_invalid_email(app):
    result = app.test_cli_runner().invoke(args=["users", "create", "@"])
    assert result.exit_code != 0 and "That e-mail address is not valid." in result.output
    assert sql(app, "SELECT count(*) FROM users")[0][0] == 0


def test_sign_up_with_taken_email_is_422(client, make_user):
    make_user(email="taken@example.com")
    r = client.post("/users/sign_up", data={"email": "taken@example.com", "password": "long enough",
                                            "password_confirmation": "long enough"})
    assert r.status_code == 422 and "already registered" in r.get_data(as_text=True)


def test_sign_up_and_sign_in_put_the_focus_on_the_email_field(client):
    for path in ("/users/sign_up", "/users/sign_in"):
        html = client.get(path).get_data(as_text=True)
        (email,) = re.findall(r'<input type="email" id="email"[^>]*>', html)
        assert "autofocus" in email, path
        assert html.count("autofocus") == 1, path


def test_sign_up_disabled(settings, database_url, request):
    settings["PWP__DISABLE_SIGNUPS"] = True
    client = request.getfixturevalue("client")
    assert client.get("/users/sign_up").status_code == 404
    assert "Sign up" not in client.get("/").get_data(as_text=True)


def test_logins_disabled(settings, database_url, request):
    settings["PWP__DISABLE_LOGINS"] = True
    client = request.getfixturevalue("client")
    assert client.get("/users/sign_in").status_code == 404
    assert client.post("/users/sign_in", data={"email": "a@b.c", "password": "x"}).status_code == 404
    html = client.get("/").get_data(as_text=True)
    assert "Sign in" not in html and "tab=files" not in html
    r = client.get("/p")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    # No page sends anyone to the sign-in page that does not exist.
    assert client.get("/users/token").status_code == 404
    assert client.post("/users/token").status_code == 404
    assert client.get("/api_tokens").status_code == 404
    r = client.get("/p/new?tab=files")
    assert r.status_code == 302 and r.headers["Location"] == "/p/new?tab=text"


def test_logins_disabled_file_push_pages_send_to_the_text_form(settings, database_url, request):
    """A file push made through the API (tokens still work) is previewed on the web."""
    settings["PWP__DISABLE_LOGINS"] = True
    client = request.getfixturevalue("client")
    _uid, token = request.getfixturevalue("make_user")()
    r = client.post("/api/v2/pushes", headers=bearer(token), data={"push[files][]": [(io.BytesIO(b"x"), "a.txt")]},
                    content_type="multipart/form-data")
    assert r.status_code == 201
    preview = client.get(f"/p/{r.json['url_token']}/preview", follow_redirects=True)
    assert preview.request.path == "/p/new" and preview.request.args["tab"] == "text"
    assert "File pushes are unavailable while logins are disabled." in preview.get_data(as_text=True)
    # The recipient's link still works (upstream redirects it too: it could never be received).
    shown = client.get(f"/p/{r.json['url_token']}")
    assert shown.status_code == 200 and "a.txt" in shown.get_data(as_text=True)


def test_logins_and_anonymous_disabled_refuse_the_form_with_a_page(settings, database_url, request):
    settings.update({"PWP__DISABLE_LOGINS": True, "PWP__ALLOW_ANONYMOUS": False})
    client = request.getfixturevalue("client")
    r = client.get("/")
    assert r.status_code == 403 and "sign-in is disabled here" in r.get_data(as_text=True)


def test_sign_in_wrong_password_is_401(client, make_user):
    make_user(email="u@example.com", password="correct horse")
    r = client.post("/users/sign_in", data={"email": "u@example.com", "password": "wrong"})
    assert r.status_code == 401
    assert "Invalid e-mail address or password." in r.get_data(as_text=True)
    assert r.get_data(as_text=True).count('aria-invalid="true" aria-describedby="sign_in_error"') == 2
    assert "Forgot your password? This site resets no password by e-mail: ask its administrator" in r.get_data(as_text=True)


def test_sign_in_follows_local_next_only(client, make_user):
    make_user(email="u@example.com", password="correct horse")
    data = {"email": "u@example.com", "password": "correct horse"}
    r = client.post("/users/sign_in?next=//evil.example/x", data=data)
    assert r.headers["Location"] == "/"
    r = client.post("/users/sign_in", data=dict(data, next="/p?filter=expired"))
    assert r.headers["Location"] == "/p?filter=expired"


def test_a_wrong_password_keeps_where_sign_in_goes_next(client, make_user):
    # The form's hidden next= came from the query only: a wrong password's page (a POST,
    # next in its form) dropped it, and the right one then led to the start page.
    make_user(email="u@example.com", password="correct horse")
    r = client.post("/users/sign_in", data={"email": "u@example.com", "password": "wrong",
                                            "next": "/p/new?tab=files"})
    assert r.status_code == 401
    assert '<input type="hidden" name="next" value="/p/new?tab=files">' in r.get_data(as_text=True)


@pytest.mark.parametrize("email", ["u@example.com\x00", "\x00", "u@exam\x00ple.com", "u@example.com\x01"])
def test_sign_in_with_an_invalid_email_is_wrong_credentials_without_a_query(
        client, app, make_user, clock, email):
    make_user(email="u@example.com", password="correct horse")
    with app.app_context():
        engine = db.engine
    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(repr(parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(5):
            r = client.post("/users/sign_in", data={"email": email, "password": "correct horse"})
            assert r.status_code == 401
            assert "Invalid e-mail address or password." in r.get_data(as_text=True)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not any(repr(email)[1:-1] in parameters for parameters in sent)
    # The attempts still count towards the sign-in throttle.
    r = client.post("/users/sign_in", data={"email": "u@example.com", "password": "correct horse"})
    assert r.status_code == 429


@pytest.mark.parametrize("target", [
    "//evil.example/x", "/\\evil.example", "/\\/evil.example", "https://evil.example/",
    "/\t/evil.example", "/\n/x", "/\r/x", "/\r\nSet-Cookie: x=y", "/ /evil.example",
    "/\x00/x", "/\x0b/evil.example", "/\x7f/x", "/\x85/x", "evil.example",
])
def test_sign_in_refuses_a_next_that_leaves_the_site(client, make_user, target):
    make_user(email="u@example.com", password="correct horse")
    r = client.post("/users/sign_in", data={"email": "u@example.com", "password": "correct horse",
                                            "next": target})
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_sign_in_is_throttled_per_ip(client, make_user, clock):
    make_user(email="u@example.com", password="correct horse")
    for _ in range(5):
        client.post("/users/sign_in", data={"email": "u@example.com", "password": "wrong"})
    r = client.post("/users/sign_in", data={"email": "u@example.com", "password": "correct horse"})
    assert r.status_code == 429
    wait = 20 - pushes.unix_seconds(clock.now) % 20  # the rest of the 20 s window
    assert f"Too many sign-in attempts. Please wait {wait} second" in r.get_data(as_text=True)
    clock.advance(seconds=20)
    r = client.post("/users/sign_in", data={"email": "u@example.com", "password": "correct horse"})
    assert r.status_code == 302


def test_wrong_passwords_from_many_addresses_keep_out_only_browsers_new_to_the_account(client, make_user, clock,
                                                                                      app):
    # The account's 10 sign-in attempts in 5 minutes, spent by anyone who knows the address,
    # kept its owner out too.
    make_user(email="u@example.com", password="correct horse")
    form = {"email": "u@example.com", "password": "correct horse"}
    assert client.post("/users/sign_in", data=form).status_code == 302  # (this browser is known from now)
    client.post("/users/sign_out")
    clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)
    stranger = app.test_client()
    for attempt in range(10):
        stranger.environ_base["REMOTE_ADDR"] = f"192.0.2.{attempt}"
        assert stranger.post("/users/sign_in", data={**form, "password": "wrong"}).status_code == 401
    assert app.test_client().post("/users/sign_in", data=form).status_code == 429
    assert client.post("/users/sign_in", data=form).status_code == 302
    client.post("/users/sign_out")
    # A new password: a browser known before is new again.
    with app.app_context():
        from pwp import auth
        auth.set_password(auth.find_user("u@example.com"), "another horse")
    assert client.post("/users/sign_in", data={**form, "password": "another horse"}).status_code == 429


def test_a_browser_stays_known_to_each_of_the_last_five_accounts_it_signed_in_to(client, make_user, clock, app):
    """A shared browser: its pwp_device cookie named one account, the last signed in to, so
    the other owner's sign-ins were held by their account's counts as a stranger's were."""
    emails = [f"u{i}@example.com" for i in range(accounts.DEVICE_ACCOUNTS + 1)]
    for email in emails:
        make_user(email=email, password="correct horse")
        clock.advance(seconds=20)  # (the per-IP 5 in 20 s)
        assert client.post("/users/sign_in", data={"email": email, "password": "correct horse"}).status_code == 302
        client.post("/users/sign_out")
    clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)
    stranger = app.test_client()
    for i, email in enumerate(emails):
        for attempt in range(10):
            stranger.environ_base["REMOTE_ADDR"] = f"192.0.{i}.{attempt}"
            assert stranger.post("/users/sign_in", data={"email": email, "password": "wrong"}).status_code == 401
    for email in emails[1:]:  # (the last five: the first is forgotten)
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{len(email)}{email[1]}"
        assert client.post("/users/sign_in", data={"email": email, "password": "correct horse"}).status_code == 302
        client.post("/users/sign_out")
    assert client.post("/users/sign_in", data={"email": emails[0], "password": "correct horse"}).status_code == 429


def test_only_a_wrong_password_marks_the_sign_in_fields_wrong(client, make_user, clock):
    """Rate-limited, the right address and password were both marked wrong (aria-invalid):
    the page says to wait, not that anything typed is wrong."""
    make_user(email="u@example.com", password="correct horse")
    for _ in range(5):
        wrong = client.post("/users/sign_in", data={"email": "u@example.com", "password": "wrong"})
        assert wrong.status_code == 401
        assert wrong.get_data(as_text=True).count('aria-invalid="true"') == 2
    r = client.post("/users/sign_in", data={"email": "u@example.com", "password": "correct horse"})
    html = r.get_data(as_text=True)
    assert r.status_code == 429 and "Too many sign-in attempts" in html
    assert 'aria-invalid' not in html and html.count('aria-describedby="sign_in_error"') == 2


def test_an_account_locked_by_sign_ins_says_for_how_many_minutes(client, make_user, clock):
    make_user(email="u@example.com", password="correct horse")
    clock.advance(seconds=300 - pushes.unix_seconds(clock.now) % 300)  # a 5-minute window starts
    for _ in range(2):
        for _ in range(5):  # (the IP's limit: 5 per 20 s)
            client.post("/users/sign_in", data={"email": "u@example.com", "password": "wrong"})
        clock.advance(seconds=20)
    r = client.post("/users/sign_in", data={"email": "u@example.com", "password": "correct horse"})
    assert r.status_code == 429  # the account's limit: 10 per 5 minutes, 260 s of it left
    assert "Too many sign-in attempts. Please wait 5 minutes and try again." in r.get_data(as_text=True)


def test_head_requests_do_not_sign_up_or_sign_in(settings, database_url, request):
    # CSRF on, as in production: it checks POSTs only, so a HEAD must not act like one.
    settings["WTF_CSRF_ENABLED"] = True
    client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
    request.getfixturevalue("make_user")(email="u@example.com", password="correct horse")
    data = {"email": "new@example.com", "password": "long enough",
            "password_confirmation": "long enough"}
    assert client.post("/users/sign_up", data=data).status_code == 400  # no CSRF token
    assert client.head("/users/sign_up", data=data).status_code == 200
    assert sql(app, "SELECT email FROM users") == [("u@example.com",)]
    r = client.head("/users/sign_in", data={"email": "u@example.com", "password": "correct horse"})
    assert r.status_code == 200
    assert "Sign out" not in client.get("/").get_data(as_text=True)


def test_sign_out_is_a_post(client, make_user):
    sign_in(client, make_user)
    assert client.get("/users/sign_out").status_code == 405
    assert client.post("/users/sign_out").status_code == 302
    assert "Sign in" in client.get("/").get_data(as_text=True)


def test_token_page_requires_sign_in(client):
    r = client.get("/users/token")
    assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in")


def test_token_page_shows_a_new_token_once_and_it_works(client, make_user):
    old_token = sign_in(client, make_user)[1]
    html = client.get("/users/token").get_data(as_text=True)
    assert "cannot be shown again" in html and "Authorization: Bearer" in html
    assert "curl -X POST http://localhost/api/v2/pushes" in html
    html = client.post("/users/token").get_data(as_text=True)
    new_token = html.split('id="api_token" value="', 1)[1].split('"', 1)[0]
    assert len(new_token) >= 24
    assert new_token not in client.get("/users/token").get_data(as_text=True)
    client.post("/users/sign_out")
    assert client.get("/api/v2/pushes/active", headers=bearer(new_token)).status_code == 200
    assert client.get("/api/v2/pushes/active", headers=bearer(old_token)).status_code == 401


def test_delete_regenerates_the_token_as_upstream_and_needs_csrf(settings, database_url, request):
    settings["WTF_CSRF_ENABLED"] = True
    client = request.getfixturevalue("client")
    old_token = request.getfixturevalue("make_user")(email="u@example.com", password="correct horse")[1]
    page = client.get("/users/sign_in").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert client.post("/users/sign_in", data={"email": "u@example.com", "password": "correct horse",
                                               "csrf_token": csrf}).status_code == 302
    page = client.get("/users/token").get_data(as_text=True)  # the signed-in session's token
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    api = client.application.test_client()  # no session cookie: the token alone
    assert client.delete("/users/token").status_code == 400  # no CSRF token
    assert api.get("/api/v2/pushes/active", headers=bearer(old_token)).status_code == 200
    r = client.delete("/users/token", headers={"X-CSRFToken": csrf})
    assert r.status_code == 200 and 'id="api_token" value="' in r.get_data(as_text=True)
    assert api.get("/api/v2/pushes/active", headers=bearer(old_token)).status_code == 401


def test_api_tokens_path_redirects(client):
    r = client.get("/api_tokens")
    assert r.status_code == 301 and r.headers["Location"] == "/users/token"


def test_changing_the_password_signs_out_every_other_session(app, client, make_user):
    sign_in(client, make_user, email="me@example.com", password="correct horse")
    other = app.test_client()  # another browser, signed in before the change
    assert other.post("/users/sign_in", data={"email": "me@example.com",
                                              "password": "correct horse"}).status_code == 302
    copied = client.get_cookie("session").value  # a copy of this session's cookie
    assert other.get("/p").status_code == 200
    r = client.post("/users/edit", data={"current_password": "correct horse", "password": "battery staple",
                                         "password_confirmation": "battery staple"})
    assert r.status_code == 302 and r.headers["Location"] == "/users/edit"
    assert client.get("/p").status_code == 200  # this session goes on
    assert other.get("/p").status_code == 302  # the other one is signed out
    replay = app.test_client()
    replay.set_cookie("session", copied)
    assert replay.get("/p").status_code == 302  # so is a copy of the old cookie
    client.post("/users/sign_out")
    assert client.post("/users/sign_in", data={"email": "me@example.com",
                                               "password": "correct horse"}).status_code == 401
    assert client.post("/users/sign_in", data={"email": "me@example.com",
                                               "password": "battery staple"}).status_code == 302


def test_an_account_without_a_password_has_no_web_session_even_with_the_secret_key(app, client, make_user):
    # `users create` without --password makes an API-only account: its session mark was a
    # digest of "" under SECRET_KEY alone, so a leaked key opened its dashboard and token page.
    # A session now needs its row, which a sign-in makes; one of a password-less account (had
    # one been made) is refused, where the same row of an account with a password signs in.
    from flask.sessions import SecureCookieSessionInterface
    from pwp.crypto import digest_token
    from pwp.models import UserSession
    api_only, _ = make_user(email="api@example.com", admin=True)
    with_password, _ = make_user(email="web@example.com", password="correct horse")
    for user_id, status in ((api_only, 302), (with_password, 200)):
        session_id = f"forged-with-the-secret-key-{user_id}"
        forged = SecureCookieSessionInterface().get_signing_serializer(app).dumps(
            {"_user_id": session_id, "_fresh": True})
        browser = app.test_client()
        browser.set_cookie("session", forged)
        assert browser.get("/p").status_code == 302  # no row: no one
        with app.app_context():
            db.session.add(UserSession(digest=digest_token(session_id), user_id=user_id,
                                       created_at=pushes.utcnow()))
            db.session.commit()
        assert browser.get("/p").status_code == status
        assert browser.get("/users/token").status_code == status


def test_the_password_change_form_names_its_account_before_its_passwords(client, make_user):
    # Was: the hidden username between the current password and the new ones. Chromium then
    # took the form for two (a sign-in and a sign-up; "[DOM] Password forms should have
    # (optionally hidden) username fields", "Multiple forms should be contained in their own
    # form elements"); with the username first, one change-password form for that account.
    sign_in(client, make_user, email="me@example.com")
    form = re.search(r'<form method="post" action="/users/edit".*?</form>', client.get("/users/edit").get_data(as_text=True),
                     re.S).group()
    assert re.findall(r'autocomplete="([^"]+)"', form) == ["username", "current-password", "new-password", "new-password"]
    assert re.search(r'<input type="email" name="username" autocomplete="username" value="me@example.com"', form)


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"current_password": "wrong", "password": "battery staple", "password_confirmation": "battery staple"},
     "current_password", "That is not your current password."),
    ({"current_password": "correct horse", "password": "short", "password_confirmation": "short"},
     "password", "Use at least 8 characters."),
    ({"current_password": "correct horse", "password": "battery staple", "password_confirmation": "other one"},
     "password_confirmation", "The two passwords do not match."),
])
def test_password_change_refusals(client, make_user, form, field, message):
    sign_in(client, make_user)
    r = client.post("/users/edit", data=form)
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and message in html and f'id="{field}-error"' in html
    assert client.post("/users/sign_out").status_code == 302
    assert client.post("/users/sign_in", data={"email": "owner@example.com",
                                               "password": "correct horse"}).status_code == 302


def test_a_wrong_current_password_is_told_with_the_new_ones_problems(client, make_user):
    sign_in(client, make_user)
    r = client.post("/users/edit", data={"current_password": "guess", "password": "short",
                                         "password_confirmation": "other"})
    page = r.get_data(as_text=True)
    assert r.status_code == 422
    assert "That is not your current password." in page and "Use at least 8 characters." in page


def test_password_change_needs_a_session_and_guesses_are_throttled(client, make_user, clock):
    assert client.get("/users/edit").headers["Location"].startswith("/users/sign_in")
    sign_in(client, make_user)
    assert client.get("/users/edit").status_code == 200
    wrong = {"current_password": "guess", "password": "battery staple", "password_confirmation": "battery staple"}
    answers = [client.post("/users/edit", data=wrong) for _ in range(6)]
    assert [r.status_code for r in answers] == [422] * 5 + [429]
    assert "Too many attempts" in answers[-1].get_data(as_text=True)
    # Once throttled even the right password waits: a stolen session cannot keep guessing.
    right = {**wrong, "current_password": "correct horse"}
    assert client.post("/users/edit", data=right).status_code == 429


def test_failed_sign_ins_by_others_do_not_keep_the_owner_from_changing_the_password(app, client, make_user):
    sign_in(client, make_user, email="me@example.com")
    attacker = app.test_client()
    for _ in range(11):
        attacker.post("/users/sign_in", data={"email": "me@example.com", "password": "guess"})
    form = {"current_password": "correct horse", "password": "battery staple",
            "password_confirmation": "battery staple"}
    assert client.post("/users/edit", data=form).status_code == 302


def test_sign_ups_are_throttled_per_ip(app, clock):
    # (A client each: a signed-in one is sent on before the throttle counts it.)
    answers = [app.test_client().post("/users/sign_up", data={"email": f"u{i}@example.com", "password": "correct horse",
                                                   "password_confirmation": "correct horse"})
               for i in range(6)]
    assert [r.status_code for r in answers] == [302] * 5 + [429]
    assert "Too many attempts" in answers[-1].get_data(as_text=True)


def test_signing_in_starts_a_new_session(settings, database_url, request):
    """A CSRF token from before sign-in (planted, or read off the sign-in page) is no good after."""
    settings["WTF_CSRF_ENABLED"] = True
    client = request.getfixturevalue("client")
    request.getfixturevalue("make_user")(email="u@example.com", password="correct horse")
    page = client.get("/users/sign_in").get_data(as_text=True)
    before = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert client.post("/users/sign_in", data={"email": "u@example.com", "password": "correct horse",
                                               "csrf_token": before}).status_code == 302
    assert client.post("/users/token", data={"csrf_token": before}).status_code == 400
    page = client.get("/users/token").get_data(as_text=True)
    after = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert client.post("/users/token", data={"csrf_token": after}).status_code == 200


@pytest.mark.parametrize("action", ["password", "token"])
def test_an_account_deleted_during_its_own_change_is_signed_out_not_a_500(app, client, make_user,
                                                                          monkeypatch, action):
    """An administrator deleting the account between the page loading it and the write (the
    write finds no row): the page says the account is gone and signs the session out."""
    from pwp import auth
    user_id = sign_in(client, make_user, email="gone@example.com", password="correct horse")[0]
    # (Not digest_token for the token: the session's own lookup digests its id.)
    step = "check_password" if action == "password" else "_write_account"
    real = getattr(auth, step)

    def delete_the_account_first(*args, **kwargs):
        db.session.execute(db.text("DELETE FROM users WHERE id = :id"), {"id": user_id})
        db.session.commit()  # (as another request's deletion: done before this one writes)
        return real(*args, **kwargs)
    monkeypatch.setattr(auth, step, delete_the_account_first)
    if action == "password":
        r = client.post("/users/edit", data={"current_password": "correct horse", "password": "battery staple",
                                             "password_confirmation": "battery staple"})
    else:
        r = client.post("/users/token")
    assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in")
    assert "That account no longer exists." in client.get(r.headers["Location"]).get_data(as_text=True)
    assert client.get("/users/edit").status_code == 302  # signed out
    assert sql(app, "SELECT id FROM users WHERE id = :id", id=user_id) == []


def test_sign_in_page_does_not_say_the_site_sends_no_email_where_it_notifies_by_email(mail):
    # Found walking the sign-in page of a site with an SMTP server: "This site sends no e-mail".
    text = mail.get("/users/sign_in").get_data(as_text=True)
    assert "sends no e-mail" not in text
    assert "Forgot your password? This site resets no password by e-mail: ask its administrator" in text


def test_a_signed_in_user_is_sent_on_from_sign_in_and_sign_up_as_devise_does(app, client, make_user):
    # The forms were shown again: a sign-in there switched accounts, a sign-up made a second
    # one, and the page offered "No account yet?" to someone signed in. Devise's
    # require_no_authentication answers "You are already signed in." and goes on.
    sign_in(client, make_user)
    make_user(email="other@example.com", password="correct horse")
    for path in ("/users/sign_in", "/users/sign_up", "/users/sign_in?next=/p"):
        r = client.get(path)
        assert r.status_code == 302
        assert r.headers["Location"] == ("/p" if "next" in path else "/")
    assert "You are already signed in." in client.get("/").get_data(as_text=True)
    client.post("/users/sign_in", data={"email": "other@example.com", "password": "correct horse"})
    client.post("/users/sign_up", data={"email": "third@example.com", "password": "long enough",
                                        "password_confirmation": "long enough"})
    assert sql(app, "SELECT count(*) FROM users")[0][0] == 2
    assert "owner@example.com" in client.get("/users/edit").get_data(as_text=True)


@pytest.mark.parametrize("target", ["/users/sign_in", "/users/sign_up", "/users/sign_in?next=/p",
                                    "/users/sign_up%3Fnext%3D/users/sign_in", "/users/sign%5Fin", "/users//sign_in"])
def test_a_signed_in_user_is_not_sent_back_to_sign_in_or_sign_up_by_next(client, make_user, target):
    # Found by hand: /users/sign_in?next=/users/sign_in sent a signed-in browser to itself,
    # a "Too many redirects" error and a "You are already signed in." flash per hop.
    sign_in(client, make_user)
    for page in ("/users/sign_in", "/users/sign_up"):
        r = client.get(f"{page}?next={target}")
        assert r.status_code == 302 and r.headers["Location"] == "/"
    # (A page that is not these one is still gone to, on a POST too: a GET's page.)
    assert client.post("/users/sign_in?next=/p").headers["Location"] == "/p"


def test_a_head_request_of_sign_in_leaves_no_flash_for_a_later_page(client, make_user):
    # A HEAD (a link checker, a prefetch) gets the redirect, but its "You are already
    # signed in." showed on the next page the person opened.
    sign_in(client, make_user)
    r = client.head("/users/sign_in")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert "You are already signed in." not in client.get("/").get_data(as_text=True)
