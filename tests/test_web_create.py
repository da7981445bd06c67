"""Creation forms: tabs, settings defaults, access rules, validation re-render, CSRF."""
import io

import pytest
from webutil import create, form, sign_in, sql

from pwp.models import Kind


def test_home_shows_text_form_with_setting_defaults(client):
    r = client.get("/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'name="push[kind]" value="text"' in html
    assert 'id="push_expire_after_days"' in html and 'value="7"' in html
    assert "7 days" in html and "5 views" in html and "whichever comes first" in html
    assert 'id="push_retrieval_step" name="push[retrieval_step]" value="on" checked' in html
    assert "data-generate" in html
    # Anonymous visitors get no name/note fields.
    assert "push[name]" not in html


def test_settings_change_form_defaults_and_generator(settings, database_url, request):
    settings.update({"PWP__PW__EXPIRE_AFTER_DAYS_DEFAULT": 3, "PWP__PW__RETRIEVAL_STEP_DEFAULT": False,
                     "PWP__GEN__SYLLABLES_COUNT": 5})
    client = request.getfixturevalue("client")
    html = client.get("/p/new?tab=text").get_data(as_text=True)
    assert "3 days" in html
    assert 'name="push[retrieval_step]" value="on" aria' in html  # present, not checked
    assert "&#34;syllables_count&#34;: 5" in html


@pytest.mark.parametrize("tab,kind", [("url", "url"), ("qr", "qr"), ("nonsense", "text")])
def test_new_tabs(client, tab, kind):
    html = client.get(f"/p/new?tab={tab}").get_data(as_text=True)
    assert f'name="push[kind]" value="{kind}"' in html


def test_disabled_kinds_are_hidden_and_refused(settings, database_url, request):
    settings.update({"PWP__ENABLE_URL_PUSHES": False, "PWP__ENABLE_QR_PUSHES": False})
    client = request.getfixturevalue("client")
    html = client.get("/").get_data(as_text=True)
    assert "tab=url" not in html and "tab=qr" not in html
    r = client.get("/p/new?tab=url")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    r = client.post("/p", data=form(kind="url", payload="https://example.com"))
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert sql(client.application, "SELECT count(*) FROM pushes")[0][0] == 0


def test_files_tab_requires_sign_in(client, make_user):
    r = client.get("/p/new?tab=files")
    assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in")
    r = client.post("/p", data=form(kind="file"))
    assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in")
    sign_in(client, make_user)
    html = client.get("/p/new?tab=files").get_data(as_text=True)
    assert 'type="file"' in html and 'enctype="multipart/form-data"' in html
    assert "push[name]" in html and "push[note]" in html


def test_anonymous_disabled_requires_sign_in_to_create(settings, database_url, request):
    settings["PWP__ALLOW_ANONYMOUS"] = False
    client, make_user = request.getfixturevalue("client"), request.getfixturevalue("make_user")
    for path in ("/", "/p/new?tab=url"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in")
    r = client.post("/p", data=form(kind="text", payload="x"))
    assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in")
    sign_in(client, make_user)
    assert client.get("/").status_code == 200
    create(client, payload="x")


def test_create_redirects_to_preview_and_stores_choices(client, app):
    token = create(client, payload="s3cret", expire_after_days="2", expire_after_views="3",
                   retrieval_step=False, deletable_by_viewer=True)
    row = sql(app, "SELECT expire_after_days, expire_after_views, retrieval_step, deletable_by_viewer "
                   "FROM pushes WHERE url_token = :t", t=token)[0]
    assert tuple(row) == (2, 3, False, True)


def test_absent_checkboxes_mean_false(client, app):
    token = create(client, payload="s3cret")
    row = sql(app, "SELECT retrieval_step, deletable_by_viewer FROM pushes WHERE url_token = :t", t=token)[0]
    assert tuple(row) == (False, False)


def test_missing_push_params_is_400(client):
    assert client.post("/p", data={}).status_code == 400


@pytest.mark.parametrize("kind,payload,message", [
    ("text", "   ", "Enter the secret text or password."),
    ("url", "", "Enter the URL to share."),
    ("url", "ftp://example.com", "Enter a whole address, starting with https:// or http://."),
    ("qr", "\n", "Enter the content of the QR code."),
    ("qr", "q" * 1025, "The QR code payload is too large."),
])
def test_validation_rerenders_422_with_messages_and_values(client, kind, payload, message):
    r = client.post("/p", data=form(kind=kind, payload=payload, expire_after_days="4",
                                    passphrase="pass phrase", deletable_by_viewer=True))
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert "1 error prohibited this push from being saved:" in html
    assert message in html
    assert '<li><a href="#push_payload">' in html  # the summary's item leads to its field
    assert 'aria-invalid="true" aria-describedby="push_payload-error"' in html
    assert 'id="push_payload-error"' in html
    assert 'value="pass phrase"' in html and "4 days" in html
    if kind != "url":
        assert 'name="push[deletable_by_viewer]" value="on" checked' in html


def test_file_push_upload(client, make_user, app):
    sign_in(client, make_user)
    data = form(kind="file", payload="see attached", name="Quarterly", note="for Bob")
    data["push[files][]"] = [(io.BytesIO(b"alpha"), "a.txt"), (io.BytesIO(b"beta!"), "b.txt")]
    r = client.post("/p", data=data, content_type="multipart/form-data")
    assert r.status_code == 302
    assert sql(app, "SELECT count(*) FROM push_files")[0][0] == 2
    assert sql(app, "SELECT name FROM pushes")[0][0] == "Quarterly"


def test_file_push_without_files_is_422(client, make_user):
    sign_in(client, make_user)
    r = client.post("/p", data=form(kind="file", payload="no files"))
    assert r.status_code == 422
    assert "At least one file is required" in r.get_data(as_text=True)


def test_form_post_without_csrf_token_is_refused(settings, database_url, request):
    settings["WTF_CSRF_ENABLED"] = True
    client = request.getfixturevalue("client")
    app = client.application
    r = client.post("/p", data=form(kind="text", payload="x"))
    assert r.status_code == 400
    page = r.get_data(as_text=True)  # said in words a person can act on, not "CSRF"
    assert "This form could not be sent" in page and "reload the page and send it again" in page
    assert sql(app, "SELECT count(*) FROM pushes")[0][0] == 0
    # The JSON API stays exempt: it authenticates with tokens, not cookies.
    assert client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).status_code == 201
    assert client.post("/p.json", json={"password": {"payload": "x"}}).status_code == 201
    # Reads never need a token.
    assert client.get("/").status_code == 200


def test_form_post_with_csrf_token_is_accepted(settings, database_url, request):
    settings["WTF_CSRF_ENABLED"] = True
    client = request.getfixturevalue("client")
    html = client.get("/").get_data(as_text=True)
    csrf = html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    data = form(kind="text", payload="x")
    data["csrf_token"] = csrf
    assert client.post("/p", data=data).status_code == 302


def test_a_form_token_lasts_as_long_as_its_session(settings, database_url, request, monkeypatch):
    # (Flask-WTF's default was an hour: a recipient who waited longer for a passphrase sent
    # separately, or a sender who left the form open, got a 400 and lost what they typed.)
    import time
    settings["WTF_CSRF_ENABLED"] = True
    client = request.getfixturevalue("client")
    html = client.get("/").get_data(as_text=True)
    data = {**form(kind="text", payload="x"),
            "csrf_token": html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]}
    later = time.time() + 3 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    assert client.post("/p", data=data).status_code == 302


def test_forms_work_over_https_behind_a_proxy(settings, database_url, request):
    """Behind a TLS proxy (PWP__TRUSTED_PROXIES, X-Forwarded-Proto: https) browsers send no
    Referer (the pages ask for none); a form post with its token works, one naming another
    site's origin does not."""
    settings.update({"WTF_CSRF_ENABLED": True, "PWP__TRUSTED_PROXIES": 1})
    client = request.getfixturevalue("client")
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    page = client.get("/", headers=https)
    html = page.get_data(as_text=True)
    # Over HTTPS the session cookie is Secure, PWP__SECURE_COOKIES or not.
    assert "; Secure" in page.headers["Set-Cookie"]
    assert "; Secure" not in client.application.test_client().get("/").headers["Set-Cookie"]
    data = {**form(kind="text", payload="x"),
            "csrf_token": html.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]}
    assert client.post("/p", data=data, headers=https).status_code == 302
    assert client.post("/p", data=data, headers={**https, "Origin": "null"}).status_code == 302
    assert client.post("/p", data=data, headers={**https, "Origin": "https://localhost"}).status_code == 302
    refused = client.post("/p", data=data, headers={**https, "Origin": "https://evil.example"})
    assert refused.status_code == 400 and "another site" in refused.get_data(as_text=True)
    assert client.post("/p", data=data, headers={**https, "Origin": "http://localhost"}).status_code == 400
    # Sec-Fetch-Site, when the browser sends it, decides: "Origin: null" is also what a
    # sandboxed frame or another site's no-referrer page sends.
    for site in ("cross-site", "same-site"):
        refused = client.post("/p", data=data, headers={**https, "Origin": "null", "Sec-Fetch-Site": site})
        assert refused.status_code == 400 and "another site" in refused.get_data(as_text=True)
    same = {**https, "Origin": "null", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/p", data=data, headers=same).status_code == 302


@pytest.mark.parametrize("data", [
    {"push[kind][x]": "1", "push[payload]": "x"},
    {"push[payload][x]": "1"},
    {"push[expire_after_days]": "99999999999999999999999", "push[payload]": "x"},
    {"push[payload]": "x", "push[files]": "not a file", "push[kind]": "text"},
])
def test_malformed_form_input_never_500s(client, data):
    assert client.post("/p", data=data).status_code in (302, 400, 422)


def test_the_files_tab_states_the_size_limit_and_messages_use_it(client, make_user, app):
    sign_in(client, make_user)
    assert "Files (up to 10, 25.0 MiB in all)" in client.get("/p/new?tab=files").get_data(as_text=True)
    app.config["PWP__FILES__MAX_TOTAL_BYTES"] = 3 * 1024 * 1024
    data = form(kind="file", payload="big")
    data["push[files][]"] = [(io.BytesIO(b"x" * (3 * 1024 * 1024 + 1)), "big.bin")]
    r = client.post("/p", data=data, content_type="multipart/form-data")
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "You can only push up to 3.0 MiB in total." in html
    assert "3.0 MiB in all" in html


def test_the_qr_counter_counts_bytes_as_the_limit_does(client):
    """1024 is a limit in UTF-8 bytes: a counter of characters said 600 'é' fit."""
    r = client.post("/p", data=form(kind="qr", payload="\u00e9" * 600))
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "You can only push up to 1024 bytes." in html
    assert "<span data-count-value>1200</span> / 1024 bytes" in html
    assert 'data-count="push_payload_count" data-count-bytes' in html


def test_a_typed_number_past_the_forms_bounds_is_the_bound(client, app):
    """The number boxes work without JavaScript, which does not stop 500: the form takes the
    nearest bound (the API keeps upstream's rule: the default)."""
    client.post("/p", data=form(kind="text", payload="x", expire_after_days="500", expire_after_views="-3"))
    assert sql(app, "SELECT expire_after_days, expire_after_views FROM pushes") == [(90, 1)]


@pytest.mark.parametrize("typed,stored,said", [
    # A number box takes what a browser calls a number ("1e1", "2.9"), which app.js's words
    # read as 10 and 3 (rounded): the server read "1e1" as 1 and "2.9" as 2, silently.
    ("1e1", 10, None), ("2.9", 3, None), ("2.5", 3, None), ("1.5e1", 15, None),
    # Past the bound however it is written, the bound, said (a number of 20 digits was the
    # API's default, silently; 1e30 was 1).
    ("1e30", 100, "Views set to 100, the most a push allows."),
    ("1e999", 100, "Views set to 100, the most a push allows."),
    ("99999999999999999999", 100, "Views set to 100, the most a push allows."),
    ("-1e30", 1, "Views set to 1, the fewest a push allows."),
])
def test_a_number_box_is_read_as_the_browser_and_its_words_read_it(client, app, typed, stored, said):
    r = client.post("/p", data=form(kind="text", payload="x", expire_after_views=typed))
    assert r.status_code == 302
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert sql(app, "SELECT expire_after_views FROM pushes") == [(stored,)]
    assert (said in html) if said else ("set to" not in html)


@pytest.mark.parametrize("what,blank", [("days", ""), ("views", " ")])
def test_an_emptied_number_box_is_said_not_taken_as_the_default(client, app, what, blank):
    """Without JavaScript an emptied days or views box is sent as nothing: the push got the
    kind's default, silently. As the edit page: 422, the form again with the box marked and
    refilled as the form showed it (the remembered settings here), what was typed kept in a
    page no cache keeps."""
    create(client, payload="x", expire_after_days="3", expire_after_views="9", save_defaults=True)
    typed = {"expire_after_days": "4", "expire_after_views": "6", f"expire_after_{what}": blank}
    r = client.post("/p", data=form(kind="text", payload="s3cret", passphrase="pp", **typed))
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and r.headers["Cache-Control"] == "no-store"
    assert sql(app, "SELECT count(*) FROM pushes") == [(1,)]
    assert f"Enter the {what} as a whole number (the box was sent empty" in html and f'href="#push_expire_after_{what}"' in html
    assert (f'id="push_expire_after_{what}" name="push[expire_after_{what}]" data-expiry="{what}"\n'
            f'                 min="1" max="{90 if what == "days" else 100}" value="{3 if what == "days" else 9}" '
            f'required aria-invalid="true" aria-describedby="push_expire_after_{what}-error"') in html
    assert f'<ul class="field-errors" id="push_expire_after_{what}-error">' in html
    other = "views" if what == "days" else "days"
    assert f'value="{6 if other == "views" else 4}" required>' in html  # the other box as typed, unmarked
    assert ">\ns3cret</textarea>" in html and 'value="pp"' in html
    # A script's form without the box (as the API): the kind's default, as before.
    assert client.post("/p", data=form(kind="url", payload="https://example.com/")).status_code == 302


@pytest.mark.parametrize("kind,payload,said", [
    ("text", " ", "Enter the secret text or password."),
    ("url", "example.com", "Enter a whole address, starting with https:// or http://."),
])
def test_an_emptied_number_box_hides_no_other_error(client, app, kind, payload, said):
    """An emptied box (no JavaScript) and a blank secret or a bad URL together: both are said,
    the secret's first, as the page orders them (the box's alone hid the secret's until the
    box was mended: two rounds for one form)."""
    r = client.post("/p", data=form(kind=kind, payload=payload, expire_after_days="", expire_after_views="3"))
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and sql(app, "SELECT count(*) FROM pushes") == [(0,)]
    secret, box = html.find(said), html.find("Enter the days as a whole number (the box was sent empty")
    assert -1 < secret < box and "2 errors prohibited" in html
    assert 'aria-describedby="push_expire_after_days-error"' in html and 'value="3" required>' in html
    # Nor is the box hidden by an error of the form's types (a name too long: a hand-made form).
    html = client.post("/p", data=form(kind=kind, payload=payload, name="n" * 256, expire_after_days="")).get_data(
        as_text=True)
    assert "Name is too long" in html and "Enter the days as a whole number" in html


def test_a_file_form_sent_back_says_to_choose_the_files_again(client, make_user):
    """A browser cannot refill a file box: the form with an error said nothing of the files
    chosen, now gone (the edit page says it)."""
    sign_in(client, make_user)
    data = form(kind="file", payload="see attached", expire_after_days="")
    data["push[files][]"] = [(io.BytesIO(b"report"), "report.pdf")]
    r = client.post("/p", data=data, content_type="multipart/form-data")
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "Files chosen before this message are not kept: choose them again." in html
    assert 'aria-describedby="push_files_hint"' in html
    assert "choose them again" not in client.get("/p/new?tab=files").get_data(as_text=True)
    none = client.post("/p", data=form(kind="file", payload="no files"), content_type="multipart/form-data")
    assert 'aria-describedby="push_files_hint push_files-error" aria-invalid="true"' in none.get_data(as_text=True)


def test_a_form_sent_back_shows_its_numbers_as_the_browser_read_them(client):
    """A form with an error shows the days and views as they will be read ('1e1' is 10), not
    as the API's to_i read them (1: the words and the box then said 1 view)."""
    html = client.post("/p", data=form(kind="text", payload="", expire_after_views="1e1")).get_data(as_text=True)
    assert 'value="10" required>' in html and "10 views" in html


def test_the_api_reads_numbers_as_upstream_not_as_a_number_box(client, app):
    """(Rails' to_i: "1e1" is 1, "2.9" is 2; only the web forms read numbers as a browser.)"""
    for views in ("1e1", "2.9"):
        assert client.post("/api/v2/pushes", json={"push": {"payload": "x", "expire_after_views": views}}).status_code == 201
    assert sql(app, "SELECT expire_after_views FROM pushes ORDER BY id") == [(1,), (2,)]


@pytest.mark.parametrize("kind,payload,message", [
    ("url", "https://example.com/" + "a" * 2048, "The URL is too long: at most 2048 characters"),
    ("text", "x" * 1_048_577, "The secret is too long: at most 1048576 characters."),
])
def test_length_messages_name_the_field_too(client, kind, payload, message):
    r = client.post("/p", data=form(kind=kind, payload=payload))
    assert r.status_code == 422 and message in r.get_data(as_text=True)


def test_a_passphrase_too_long_is_named_in_the_form_not_a_413(client, make_user, app):
    """With the longest payload, note and name, in four-byte characters: a passphrase over
    the cap is said in the form (it was a 413 past ~20 KB); one at the cap is taken."""
    sign_in(client, make_user)
    emoji = "\U0001f600"
    data = form(kind="text", payload=emoji * 1_048_576, note=emoji * 10_000, name=emoji * 255,
                passphrase=emoji * 1025)
    r = client.post("/p", data=data, content_type="multipart/form-data")
    assert r.status_code == 422
    assert "Passphrase is too long (maximum is 1024 characters)" in r.get_data(as_text=True)
    assert sql(app, "SELECT count(*) FROM pushes") == [(0,)]
    r = client.post("/p", data={**data, "push[passphrase]": emoji * 1024}, content_type="multipart/form-data")
    assert r.status_code == 302 and sql(app, "SELECT count(*) FROM pushes") == [(1,)]


def test_a_file_pushs_message_too_long_is_named_in_the_form(client, make_user):
    sign_in(client, make_user)
    data = form(kind="file", payload="m" * 1_048_577)
    data["push[files][]"] = [(io.BytesIO(b"x"), "a.bin")]
    r = client.post("/p", data=data, content_type="multipart/form-data")
    assert r.status_code == 422
    assert "The message is too long: at most 1048576 characters." in r.get_data(as_text=True)


def test_a_form_that_is_not_utf8_gets_a_page_that_says_so(app, client):
    r = client.post("/p", data=b"push[kind]=text&push[payload]=caf%E9", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400 and "The form is not valid UTF-8." in r.get_data(as_text=True)
    assert sql(app, "SELECT count(*) FROM pushes") == [(0,)]


def test_a_size_limit_is_rounded_down_where_it_is_stated(client, make_user, app):
    """1 150 000 bytes is 1.097 MiB: "1.1 MiB" would promise what the check then refuses."""
    sign_in(client, make_user)
    app.config["PWP__FILES__MAX_TOTAL_BYTES"] = 1_150_000
    assert "Files (up to 10, 1.0 MiB in all)" in client.get("/p/new?tab=files").get_data(as_text=True)
    data = form(kind="file", payload="big")
    data["push[files][]"] = [(io.BytesIO(b"x" * 1_150_001), "big.bin")]
    html = client.post("/p", data=data, content_type="multipart/form-data").get_data(as_text=True)
    assert "You can only push up to 1.0 MiB in total." in html


def test_a_body_over_the_upload_limit_is_a_page_that_says_the_limits(client, make_user):
    sign_in(client, make_user)
    data = form(kind="file")
    data["push[files][]"] = [(io.BytesIO(b"x" * (27 * 1024 * 1024)), "huge.bin")]
    r = client.post("/p", data=data, content_type="multipart/form-data")
    assert r.status_code == 413 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert "Too large to send" in page and "Go back" in page
    assert "up to 25.0 MiB in total, and a secret up to 1 048 576 characters." in page


def test_text_fields_are_bounded_together_to_what_a_push_holds(client, make_user):
    """werkzeug caps each text field (4 MiB here), not all of them: a 24 MiB form of six
    3 MiB notes was held whole (32 MiB in the worker) before its 422. The longest payload
    with the longest note and name still fits; text past them is the page that says the limits."""
    sign_in(client, make_user)
    grin = "\N{GRINNING FACE}"
    longest = form(kind="text", payload=grin * 1_048_576, note=grin * 10_000, name=grin * 255)
    r = client.post("/p", data=longest, content_type="multipart/form-data")
    assert r.status_code == 302
    over = form(kind="text", payload="x", note="n" * 3 * 1024 * 1024, name="m" * 2 * 1024 * 1024)
    r = client.post("/p", data=over, content_type="multipart/form-data")
    assert r.status_code == 413 and "Too large to send" in r.get_data(as_text=True)


def test_remembered_settings_start_the_kinds_form_in_this_browser(client, settings, app):
    """"Remember these days, views and options" (upstream's "Save the above settings as the
    page default"): a cookie per tab, read within the form's bounds now; never the secret."""
    html = client.get("/").get_data(as_text=True)
    assert 'id="push_save_defaults" name="push[save_defaults]" value="on" aria' in html  # not checked
    create(client, payload="s3cret", passphrase="pp", expire_after_days="3", expire_after_views="9",
           retrieval_step=False, deletable_by_viewer=True, save_defaults=True)
    cookie = client.get_cookie("pwp_defaults_text")
    assert cookie.value == "3.9.0.1" and cookie.http_only and cookie.same_site == "Lax"
    html = client.get("/").get_data(as_text=True)
    assert 'name="push[expire_after_days]" data-expiry="days"\n                 min="1" max="90" value="3"' in html
    assert 'value="9" required' in html and "3 days" in html and "9 views" in html
    assert 'id="push_retrieval_step" name="push[retrieval_step]" value="on" aria' in html  # unchecked
    assert 'id="push_deletable_by_viewer" name="push[deletable_by_viewer]" value="on" checked' in html
    assert 'id="push_save_defaults" name="push[save_defaults]" value="on" checked' in html
    assert "s3cret" not in html and 'value="pp"' not in html
    # Other tabs keep the settings' defaults; a push made without the box leaves the cookie.
    assert "7 days" in client.get("/p/new?tab=url").get_data(as_text=True)
    create(client, payload="x", expire_after_days="5")
    assert client.get_cookie("pwp_defaults_text").value == "3.9.0.1"
    # A forged or stale cookie: out-of-bounds numbers are the bounds, nonsense is ignored.
    client.set_cookie("pwp_defaults_text", "500.0.1.0")
    html = client.get("/").get_data(as_text=True)
    assert "90 days" in html and "1 view," not in html and "1 view</strong>" in html
    client.set_cookie("pwp_defaults_text", "<script>")
    assert "7 days" in client.get("/").get_data(as_text=True)
    # A form sent back with errors keeps the box as it was sent, and saves nothing.
    r = client.post("/p", data=form(kind="text", payload="", expire_after_days="4", save_defaults=True))
    assert r.status_code == 422 and 'name="push[save_defaults]" value="on" checked' in r.get_data(as_text=True)
    assert client.get_cookie("pwp_defaults_text").value == "<script>"


def test_unticking_remembered_settings_forgets_them(client):
    """The form shows the box ticked while settings are remembered; unticking it and pushing
    forgets them (the box said so), so the form opens with the site's defaults again."""
    create(client, payload="x", expire_after_days="3", expire_after_views="9", save_defaults=True)
    html = client.get("/").get_data(as_text=True)
    assert "untick this to forget them" in html and 'name="push[defaults_saved]" value="on"' in html
    create(client, payload="y", expire_after_days="3", expire_after_views="9", defaults_saved="on")  # box unticked
    assert client.get_cookie("pwp_defaults_text") is None
    html = client.get("/").get_data(as_text=True)
    assert "7 days" in html and 'id="push_save_defaults" name="push[save_defaults]" value="on" aria' in html
    assert "push[defaults_saved]" not in html


@pytest.mark.parametrize("kind, payload", [("text", "secret"), ("url", "https://example.com/x"), ("qr", "qr text")])
def test_files_sent_with_a_push_of_another_kind_are_not_stored_and_a_warning_says_so(client, make_user, app, kind,
                                                                                     payload):
    """Only a file push has files (upstream stores them for any kind and lists none): they
    were dropped without a word; now the preview says so, as the edit page does."""
    sign_in(client, make_user)
    data = form(kind=kind, payload=payload)
    data["push[files][]"] = [(io.BytesIO(b"alpha"), "a.txt")]
    r = client.post("/p", data=data, content_type="multipart/form-data")
    assert r.status_code == 302
    assert "No files were added: only a file push has files." in client.get(r.headers["Location"]).get_data(
        as_text=True)
    assert sql(app, "SELECT count(*) FROM push_files") == [(0,)]
    assert sql(app, "SELECT kind FROM pushes") == [(Kind[kind],)]
    r = client.post("/p", data=form(kind=kind, payload=payload))  # (none sent: nothing said)
    assert "No files were added" not in client.get(r.headers["Location"]).get_data(as_text=True)
