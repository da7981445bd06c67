"""Preview, retrieval step, payload page, expired page, legacy redirects, headers."""
import io
import re

import pytest

from webutil import audit_kinds, create, form, sign_in, sql, view_count

import pwp.pushes
from pwp.models import AuditKind

EXPIRED = "We apologize but this secret link has expired."


def test_preview_shows_link_qr_and_share_message(client, app):
    token = create(client, payload="s3cret", expire_after_days="3", expire_after_views="2",
                   retrieval_step=True, deletable_by_viewer=True)
    r = client.get(f"/p/{token}/preview")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert f'value="http://localhost/p/{token}/r" readonly' in html
    assert 'src="data:image/svg+xml;base64,' in html
    assert "This link is valid for 3 days or 2 views, whichever comes first." in html
    # The share message's lines, as upstream's: its notes under their heading.
    message = re.search(r'<textarea id="share_message"[^>]*>\n(.*?)</textarea>', html, re.S).group(1)
    assert message.split("\n") == ["A secure link has been shared with you.", "", f"http://localhost/p/{token}/r", "",
                                    "IMPORTANT NOTES:", "This link is valid for 3 days or 2 views, whichever comes first.",
                                    "You can delete it once you have read it."]
    assert "Push another" in html
    assert "s3cret" not in html
    assert view_count(app, token) == 0


def test_preview_links_owner_to_audit_and_dashboard(client, make_user):
    sign_in(client, make_user)
    token = create(client, payload="x")
    html = client.get(f"/p/{token}/preview").get_data(as_text=True)
    assert f"/p/{token}/audit" in html and 'href="/p"' in html


def test_preview_of_anonymous_push_has_no_owner_links(client):
    token = create(client, payload="x")
    assert "/audit" not in client.get(f"/p/{token}/preview").get_data(as_text=True)


def test_preview_offers_the_print_and_share_form(client):
    token = create(client, payload="s3cret")
    html = client.get(f"/p/{token}/preview?push_locale=fr").get_data(as_text=True)
    form = re.search(r'<form method="get" action="([^"]+)">(.*?)</form>', html, re.S)
    assert form and form.group(1) == f"/p/{token}/print_preview"
    fields = form.group(2)
    assert re.search(r'<textarea id="print_message" name="message" rows="3" maxlength="500"', fields)
    assert 'name="show_expiration" value="true" checked' in fields and 'name="show_id" value="true" checked' in fields
    assert '<input type="hidden" name="push_locale" value="fr">' in fields  # (the link as this page shows it)
    assert "csrf_token" not in fields and "s3cret" not in fields


def test_print_preview_shows_the_links_qr_code_message_expiry_and_id(client, app, clock):
    from pwp.web import qr_data_uri

    token = create(client, payload="s3cret", expire_after_days="3", expire_after_views="2",
                   retrieval_step=True)
    r = client.get(f"/p/{token}/print_preview?message=For+%3Cb%3EAnn%3C%2Fb%3E%0D%0Aat+the+desk"
                   "&show_expiration=true&show_id=true")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    url = f"http://localhost/p/{token}/r"  # (the preview's link: with the retrieval step)
    assert f'src="{qr_data_uri(url)}"' in html
    assert f'<p class="print-url mono">{url}</p>' in html
    assert '<p class="print-message">For &lt;b&gt;Ann&lt;/b&gt;\nat the desk</p>' in html  # escaped, one line break
    assert "This link is valid for 3 days or 2 views, whichever comes first." in html
    assert "(As of 2026-01-01 12:00 UTC.)" in html
    assert f'<p class="print-id mono">ID: {token}</p>' in html
    assert "<title>Printable secret link</title>" in html and 'name="robots" content="noindex' in html
    assert "data-print" in html and "s3cret" not in html
    assert view_count(app, token) == 0 and audit_kinds(app, token) == [AuditKind.creation]


@pytest.mark.parametrize(("value", "shown"), [("true", True), ("on", True), ("YES", True), ("checked", True),
                                              ("1", True), ("false", False), ("0", False), ("", False),
                                              ("no", False), ("%00", False), (None, False)])
def test_print_preview_reads_its_checkboxes_as_the_forms_do(client, value, shown):
    token = create(client, payload="x", expire_after_days="2", expire_after_views="4")
    query = "" if value is None else f"?show_expiration={value}&show_id={value}"
    r = client.get(f"/p/{token}/print_preview{query}")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert ("This link is valid for 2 days or 4 views" in html) is shown
    assert (f"ID: {token}" in html) is shown
    assert 'class="print-message"' not in html


def test_print_preview_of_a_message_too_long_is_422_with_the_form_and_the_message(client, app):
    token = create(client, payload="x")
    # A line break is sent as CR LF but counted as one character, as the textarea's maxlength counts it.
    fits = ("a" * 99 + "\r\n") * 5
    r = client.get(f"/p/{token}/print_preview", query_string={"message": fits.strip()})
    assert r.status_code == 200 and ("a" * 99 + "\n") * 4 + "a" * 99 in r.get_data(as_text=True)
    r = client.get(f"/p/{token}/print_preview", query_string={"message": "b" * 501, "show_id": "true"})
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    assert "The message is too long: at most 500 characters on about 12 printed lines of 60" in html
    assert '<details class="print-share" open>' in html and 'aria-invalid="true"' in html
    assert "b" * 501 + "</textarea>" in html  # (kept, to shorten)
    assert 'name="show_expiration" value="true">' in html and 'name="show_id" value="true" checked' in html
    assert view_count(app, token) == 0 and audit_kinds(app, token) == [AuditKind.creation]
    # Lines too, a long one counted as the lines it wraps to: twenty put the QR code on a second sheet.
    for message, status in (("a\n" * 11 + "a", 200), ("a\r\n" * 12 + "a", 422), ("a\n" * 9 + "b" * 180, 200),
                            ("a\n" * 9 + "b" * 181, 422), ("b" * 500, 200), ("b\n" * 4 + "c" * 492, 422),
                            # Wide characters take two columns (a fallback font draws them so).
                            ("\u6f22" * 360, 200), ("\u6f22" * 361, 422),
                            ("a\n" * 11 + "\U0001f511" * 30, 200), ("a\n" * 11 + "\U0001f511" * 31, 422),
                            # U+FDFD (a word ligature) draws twelve cells wide: 360 printed 60 lines.
                            ("\ufdfd" * 60, 200), ("\ufdfd" * 61, 422), ("\u2e3b" * 145, 422)):
        assert client.get(f"/p/{token}/print_preview", query_string={"message": message}).status_code == status


def test_print_preview_of_odd_input_is_never_an_error(client):
    token = create(client, payload="x")
    for query in ("message=%FF%FE%00&show_id=%FF", "message=a&message=b", "message=%ED%A0%80",
                  "show_expiration[]=1", "message=" + "%0D" * 600):
        r = client.get(f"/p/{token}/print_preview?{query}")
        assert r.status_code == 200, query


def test_print_preview_is_as_guarded_as_the_preview(app, client, make_user, clock):
    spent = create(client, payload="x", expire_after_days="1")
    clock.advance(days=1, seconds=1)
    events = audit_kinds(app, spent)
    pages = {client.get(f"/p/{spent}{suffix}").get_data() for suffix in ("/preview", "/print_preview")}
    assert len(pages) == 1 and EXPIRED in pages.pop().decode()
    assert audit_kinds(app, spent) == events  # (no failed view: the preview logs none either)
    sign_in(client, make_user)
    data = form(kind="file")
    data["push[files][]"] = [(io.BytesIO(b"contents"), "a.txt")]
    file_push = re.search(r"/p/(\w+)/preview", client.post("/p", data=data).headers["Location"]).group(1)
    assert client.get(f"/p/{file_push}/print_preview").status_code == 200
    client.post("/users/sign_out")
    for suffix in ("/preview", "/print_preview"):  # file pushes: only for a signed-in user (as upstream)
        r = client.get(f"/p/{file_push}{suffix}")
        assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in"), suffix


def test_retrieval_step_get_never_counts_a_view(client, app):
    token = create(client, payload="s3cret", expire_after_views="1", retrieval_step=True)
    for _ in range(3):
        r = client.get(f"/p/{token}/r")
        assert r.status_code == 200
        assert f'href="/p/{token}"' in r.get_data(as_text=True)
        assert "s3cret" not in r.get_data(as_text=True)
    assert view_count(app, token) == 0
    assert audit_kinds(app, token) == [AuditKind.creation]


def test_retrieval_step_of_an_expired_push_is_a_failed_view(client, app):
    token = create(client, payload="s3cret", expire_after_views="1", retrieval_step=True)
    assert "s3cret" in client.get(f"/p/{token}").get_data(as_text=True)
    r = client.get(f"/p/{token}/r")
    assert r.status_code == 200 and EXPIRED in r.get_data(as_text=True)
    # As every read of an expired push (upstream's preliminary page logs it too).
    assert audit_kinds(app, token) == [AuditKind.creation, AuditKind.view, AuditKind.failed_view]
    assert view_count(app, token) == 2


def test_payload_page_counts_a_view_and_shows_remaining(client, app):
    token = create(client, payload="pa$$ <word>", expire_after_days="2", expire_after_views="3")
    r = client.get(f"/p/{token}")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "pa$$ &lt;word&gt;" in html
    assert "deleted in 2 days or 2 more views" in html
    assert "reloading this page or opening the link again counts as another view" in html
    assert view_count(app, token) == 1
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert "pa$$" not in title


def test_last_view_then_expired(client, app):
    token = create(client, payload="once", expire_after_views="1")
    html = client.get(f"/p/{token}").get_data(as_text=True)
    assert "once" in html and "This was the last view" in html and "reloading" not in html
    assert EXPIRED in client.get(f"/p/{token}").get_data(as_text=True)
    assert sql(app, "SELECT payload_ciphertext IS NULL FROM pushes")[0][0]


def test_expired_by_time(client, clock):
    token = create(client, payload="soon", expire_after_days="1")
    clock.advance(days=1, seconds=1)
    assert EXPIRED in client.get(f"/p/{token}").get_data(as_text=True)


def test_expired_page_is_identical_for_unknown_expired_and_deleted(client):
    expired = create(client, payload="a", expire_after_views="1")
    client.get(f"/p/{expired}")
    deleted = create(client, payload="b", deletable_by_viewer=True)
    client.post(f"/p/{deleted}/expire")
    pages = {client.get(f"/p/{t}").get_data() for t in (expired, deleted, "doesnotexist123")}
    assert len(pages) == 1
    page = pages.pop().decode()
    assert EXPIRED in page and "<title>Your Secret Link Has Expired</title>" in page
    for t in (expired, deleted, "doesnotexist123"):
        for suffix in ("/r", "/passphrase", "/preview", "/print_preview?show_id=1"):
            r = client.get(f"/p/{t}{suffix}")
            assert r.status_code == 200 and EXPIRED in r.get_data(as_text=True)


@pytest.mark.parametrize("accept", ["application/json", "application/json, text/html;q=0.5"])
def test_expired_page_is_identical_for_unknown_and_expired_whatever_the_accept_header(client, accept):
    """A page route answers with pages (upstream's HTML routes whatever the Accept header):
    a client asking for JSON cannot tell an unknown token from an expired one (a JSON 404)."""
    expired = create(client, payload="a", expire_after_views="1")
    client.get(f"/p/{expired}")
    for suffix in ("", "/r", "/passphrase", "/preview", "/print_preview"):
        answers = [client.get(f"/p/{t}{suffix}", headers={"Accept": accept})
                   for t in (expired, "doesnotexist123")]
        assert [(r.status_code, r.mimetype) for r in answers] == [(200, "text/html")] * 2, suffix
        assert answers[0].get_data() == answers[1].get_data() and EXPIRED in answers[1].get_data(as_text=True)


def test_url_push_redirects_303(client, app):
    token = create(client, kind="url", payload="https://example.com/x?y=1")
    r = client.get(f"/p/{token}")
    assert r.status_code == 303 and r.headers["Location"] == "https://example.com/x?y=1"
    assert view_count(app, token) == 1


@pytest.mark.parametrize("url", ["https://example.com:99999/", "https://intranet.example:Secret/",
                                 "https://" + "a" * 64 + ".com/", "https://[::1/", "https://a..b/",
                                 "https://\u00ad.com/", "https://ex\x00ample.com/", "https://example.com/\u2028x",
                                 "http://example.com/a\nb", "https:///no-host", "ftp://example.com/",
                                 "https://\u2488.com/", "https://a\ufe52\ufe52b/"])  # (IDNA maps these to dots: 1..com)
def test_a_url_no_browser_can_be_sent_to_is_refused_when_pushed(client, url):
    # Each of these once made a push whose every view failed (500) after being counted.
    r = client.post("/api/v2/pushes", json={"push": {"kind": "url", "payload": url}})
    assert r.status_code == 422 and r.json == {"payload": ["must be a valid HTTP or HTTPS URL."]}
    r = client.post("/p", data=form(kind="url", payload=url))
    assert r.status_code == 422 and "Enter a whole address, starting with https://" in r.get_data(as_text=True)


@pytest.mark.parametrize("url,location", [
    ("https://user:pw@example.com:8443/a b?q=\u00e9#f", "https://user:pw@example.com:8443/a%20b?q=%C3%A9#f"),
    ("http://b\u00fccher.example/", "http://xn--bcher-kva.example/"),
    (" https://[::1]:8080/x ", "https://[::1]:8080/x")])
def test_url_push_location_is_encoded_for_the_header(client, url, location):
    token = create(client, kind="url", payload=url)
    r = client.get(f"/p/{token}")
    assert r.status_code == 303 and r.headers["Location"] == location


@pytest.mark.parametrize("host", ["fa\u00df.de", "FA\u1e9e.de", "\u03c3\u03bf\u03c6\u03bf\u03c2.gr", "a\u200db.example",
                                  "a\u200cb.example"])
def test_a_url_whose_host_browsers_and_python_spell_differently_is_refused(client, app, host):
    """Python's IDNA 2003 makes fa\u00df.de fass.de, another domain than browsers' (IDNA 2008)
    xn--fa-hia.de: the recipient would be sent to a site the sender never named."""
    r = client.post("/api/v2/pushes", json={"push": {"kind": "url", "payload": f"https://{host}/x"}})
    assert r.status_code == 422 and r.json == {"payload": [pwp.pushes.URL_HOST_AMBIGUOUS]}
    r = client.post("/p", data=form(kind="url", payload=f"https://{host}/x"))
    assert r.status_code == 422 and "The address&#39;s host has \u00df, \u1e9e, \u03c2, a zero-width joiner or" in r.get_data(as_text=True)
    token = create(client, kind="url", payload="https://xn--fa-hia.de/x")
    assert client.get(f"/p/{token}").headers["Location"] == "https://xn--fa-hia.de/x"


@pytest.mark.parametrize("host", ["\U0001f130cme.example", "\u13a0.example", "a\u3164b.example", "a\u1806b.example",
                                  "\U0002f868.example", "a\u17b4b.example"])
def test_a_host_python_maps_otherwise_than_browsers_is_refused(client, host):
    """Python's IDNA is Unicode 3.2's: a character it did not know it keeps (\U0001f130, squared
    A, browsers read as a: acme.example; Cherokee), a few it maps otherwise (U+1806 dropped,
    fillers kept, five CJK ideographs): the recipient would be sent to another host than
    the one browsers read (each pair seen in Chromium)."""
    r = client.post("/api/v2/pushes", json={"push": {"kind": "url", "payload": f"https://{host}/x"}})
    assert r.status_code == 422 and r.json == {"payload": [pwp.pushes.URL_HOST_AMBIGUOUS]}


@pytest.mark.parametrize("url", ["https://evil.example\uff3c.bank.example/", "https://evil.example\ufe68.bank.example/",
                                 "https://google\u2488com/", "https://a\u2024b.example/", "https://a\ufe52b.example/",
                                 "https://a\u33c2.example/", "https://a\uff05b.example/", "https://a\uff5cb.example/"])
def test_a_host_mapped_to_other_punctuation_is_refused(client, url):
    """Python's IDNA maps \uff3c (a full-width backslash) to \\, which browsers read as the
    path's start (the 303 sent the recipient to evil.example), \u2488 to "1." (google1.com,
    a host browsers refuse to read into the one typed), \uff05 to % (no browser follows it)."""
    r = client.post("/api/v2/pushes", json={"push": {"kind": "url", "payload": url}})
    assert r.status_code == 422 and r.json == {"payload": ["must be a valid HTTP or HTTPS URL."]}


@pytest.mark.parametrize("url", ["https://example.com:\u00df/", "https://\u00df:pw@exa mple.com/", "ftp://fa\u00df.de/"])
def test_a_bad_url_with_an_ambiguous_character_outside_its_host_is_just_invalid(client, url):
    """Only a host's \u00df is the ambiguous-host error: in a port, the userinfo or another
    scheme's URL the URL is no http(s) URL a browser can follow, as said."""
    r = client.post("/api/v2/pushes", json={"push": {"kind": "url", "payload": url}})
    assert r.status_code == 422 and r.json == {"payload": ["must be a valid HTTP or HTTPS URL."]}


def test_a_stored_url_push_no_browser_can_follow_is_shown_as_text(client, app, monkeypatch):
    import pwp.pushes
    monkeypatch.setattr(pwp.pushes, "_url_errors", lambda value: {})  # as before URLs were checked
    token = create(client, kind="url", payload="https://example.com:99999/")
    monkeypatch.undo()
    r = client.get(f"/p/{token}")
    assert r.status_code == 200 and "https://example.com:99999/" in r.get_data(as_text=True)
    assert view_count(app, token) == 1


def test_qr_payload_limit_counts_bytes(client):
    r = client.post("/p", data=form(kind="qr", payload="\u6f22" * 342))  # 1026 bytes in UTF-8
    assert r.status_code == 422 and "You can only push up to 1024 bytes" in r.get_data(as_text=True)
    token = create(client, kind="qr", payload="\u6f22" * 341)
    html = client.get(f"/p/{token}").get_data(as_text=True)
    assert 'src="data:image/svg+xml;base64,' in html


def test_a_stored_qr_push_too_large_for_a_code_is_shown_as_text(client, monkeypatch):
    import pwp.pushes
    monkeypatch.setattr(pwp.pushes, "QR_MAX", 10_000)  # as before the limit counted bytes
    token = create(client, kind="qr", payload="\u6f22" * 1000)
    monkeypatch.undo()
    r = client.get(f"/p/{token}")
    assert r.status_code == 200 and "\u6f22" * 1000 in r.get_data(as_text=True)


def test_qr_push_shows_qr_image_not_text(client):
    token = create(client, kind="qr", payload="WIFI:S:home;P:hunter22;;")
    html = client.get(f"/p/{token}").get_data(as_text=True)
    assert 'src="data:image/svg+xml;base64,' in html
    assert "hunter22" not in html


def test_a_dense_qr_code_is_drawn_large_enough_to_scan(client):
    # Was: 300 px whatever its modules: a 1 KiB payload's 125 (border included) got 2.3 px
    # each, too fine for a phone's camera reading a screen. Now 4 px each at least (a narrow
    # screen still scales it down to fit); a small code keeps its 300 px.
    import base64
    for payload, least in (("\u6f22" * 341, 4 * 125), ("WIFI:S:home;P:hunter22;;", 300)):
        html = client.get(f"/p/{create(client, kind='qr', payload=payload)}").get_data(as_text=True)
        src, width, height = re.search(r'<img src="data:image/svg\+xml;base64,([^"]+)" alt="QR code shared with you" '
                                       r'width="(\d+)" height="(\d+)"', html).groups()
        modules = int(re.search(rb'viewBox="0 0 (\d+) ', base64.b64decode(src)).group(1))
        assert width == height and int(width) >= max(least, 4 * modules), (modules, width)
        assert int(width) <= max(300, 4 * modules + 40)  # (no larger than that)


@pytest.mark.parametrize("payload", [
    "0" * 1024, "PIN " + "0" * 200,  # numeric mode: "000" is ten zero bits
    "a" * 1024, "\x01" * 1024, "".join(map(chr, range(32))) * 32, "\U0001F600" * 256, "a\r\n" * 341])
def test_an_awkward_qr_payload_is_drawn_as_a_code(client, caplog, payload):
    # Was: the text for the zeros (qrcode 8.2 fails with "glog(0)" on a block of data
    # codewords all zero, as a run of zeros makes in its numeric mode): byte mode draws them.
    html = client.get(f"/p/{create(client, kind='qr', payload=payload)}").get_data(as_text=True)
    assert 'src="data:image/svg+xml;base64,' in html
    assert "Traceback" not in caplog.text


def test_a_qr_payload_of_nuls_is_shown_as_text_and_logs_nothing(client, caplog):
    # qrcode 8.2 cannot draw a run of NULs in any mode (glog(0), lincolnloop/python-qrcode#330):
    # the text instead, neither a traceback nor the payload logged.
    payload = "\0" * 1000 + "tail-secret"
    r = client.get(f"/p/{create(client, kind='qr', payload=payload)}")
    assert r.status_code == 200 and "tail-secret" in r.get_data(as_text=True)
    assert "glog" not in caplog.text and "Traceback" not in caplog.text and "tail-secret" not in caplog.text


@pytest.mark.parametrize("name", ["..", ".", "x/../../y", "a b%2F.txt", "/", "//", "./"])
def test_file_links_on_the_page_survive_odd_names(client, make_user, name):
    sign_in(client, make_user)
    data = form(kind="file")
    data["push[files][]"] = [(io.BytesIO(b"contents"), name)]
    token = re.search(r"/p/(\w+)/preview", client.post(
        "/p", data=data, content_type="multipart/form-data").headers["Location"]).group(1)
    link = re.search(r'href="(/pfb/[^"]+)"', client.get(f"/p/{token}").get_data(as_text=True)).group(1)
    segments = link.split("/")
    assert len(segments) == 4 and segments[3].strip(".") != ""  # "/pfb/<token>/<one segment>"
    assert client.get(link).data == b"contents"


CHROMIUM = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
            "application/signed-exchange;v=b3;q=0.7")


@pytest.mark.parametrize("accept, page", [
    (CHROMIUM, True), ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # (Firefox)
    ("TEXT/HTML", True), ("text/*", True),
    # Not a browser's navigation: a client that asks for JSON first, refuses HTML, or takes anything.
    ("application/json, text/html", False), ("text/html;q=0", False), ("text/html;q=0.5, application/json", False),
    ("*/*", False), (None, False)])
def test_an_expired_file_link_is_the_page_only_for_who_prefers_html(client, accept, page):
    # Was: any Accept naming text/html with JSON liked no better got the page: an API client's
    # "application/json, text/html" (JSON before 21c8f47), even "text/html;q=0" (HTML refused).
    r = client.get("/pfb/abc/x.txt", headers={"Accept": accept} if accept else {})
    assert r.status_code == 404
    if page:
        assert r.mimetype == "text/html" and "This download link has expired" in r.get_data(as_text=True)
    else:
        assert r.json == {"error": "not-found"}


def test_file_push_download_list_and_download(client, make_user, app):
    sign_in(client, make_user)
    data = form(kind="file", payload="the message")
    data["push[files][]"] = [(io.BytesIO(b"x" * 2048), "report.pdf")]
    token = re.search(r"/p/(\w+)/preview", client.post(
        "/p", data=data, content_type="multipart/form-data").headers["Location"]).group(1)
    client.post("/users/sign_out")
    html = client.get(f"/p/{token}").get_data(as_text=True)
    assert "report.pdf" in html and "2.0 KiB" in html
    assert 'class="payload mono blurred" id="payload"' in html  # the message, as upstream: PWP__FILES__ENABLE_BLUR
    assert "these links work for 5 minutes" in html  # (and then say so: test_download_links_go_stale)
    link = re.search(r'href="(/pfb/[^"]+)"', html).group(1)
    r = client.get(link.replace("&amp;", "&"))
    assert r.status_code == 200 and r.data == b"x" * 2048


def test_viewer_delete_button_only_when_deletable_and_views_remain(client):
    deletable = create(client, payload="x", deletable_by_viewer=True, expire_after_views="2")
    assert "Delete this secret now" in client.get(f"/p/{deletable}").get_data(as_text=True)
    # The last view offers no deletion: the secret is gone anyway.
    assert "Delete this secret now" not in client.get(f"/p/{deletable}").get_data(as_text=True)
    fixed = create(client, payload="x", deletable_by_viewer=False)
    assert "Delete this secret now" not in client.get(f"/p/{fixed}").get_data(as_text=True)


@pytest.mark.parametrize("how", ["post", "override", "delete"])
def test_viewer_deletes_a_deletable_push(client, app, how):
    token = create(client, payload="x", deletable_by_viewer=True)
    if how == "delete":
        r = client.delete(f"/p/{token}/expire")
    else:
        r = client.post(f"/p/{token}/expire", data={"_method": "delete"} if how == "override" else {})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    # The viewer chose this: no apology, no "contact the sender".
    assert "<h1>Secret deleted</h1>" in html and "The push content has been deleted" in html
    assert "We apologize" not in html and "contact the person" not in html
    assert audit_kinds(app, token)[-1] == AuditKind.expire
    assert sql(app, "SELECT expired, deleted FROM pushes")[0] == (True, True)


def test_viewer_cannot_delete_a_non_deletable_push(client, app):
    token = create(client, payload="x", deletable_by_viewer=False)
    r = client.post(f"/p/{token}/expire")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert not sql(app, "SELECT expired FROM pushes")[0][0]


def test_owner_sees_payload_without_counting(client, make_user, app):
    sign_in(client, make_user)
    token = create(client, payload="mine", expire_after_views="1")
    for _ in range(2):
        assert "mine" in client.get(f"/p/{token}").get_data(as_text=True)
    assert view_count(app, token) == 0


@pytest.mark.parametrize("prefix", ["f", "r"])
@pytest.mark.parametrize("suffix", ["", "/r", "/passphrase"])
def test_legacy_paths_redirect_301_keeping_query(client, prefix, suffix):
    r = client.get(f"/{prefix}/abc123{suffix}?locale=fr&x=1")
    assert r.status_code == 301
    assert r.headers["Location"] == f"/p/abc123{suffix}?locale=fr&x=1"


def test_legacy_json_routes_still_reach_the_api(client):
    token = create(client, payload="json")
    assert client.get(f"/f/{token}.json").json["payload"] == "json"


def test_secret_pages_are_not_cached_and_send_no_referrer(client):
    token = create(client, payload="x", passphrase="pp")
    for path in ("/", f"/p/{token}/preview", f"/p/{token}/print_preview", f"/p/{token}/r", f"/p/{token}/passphrase",
                 f"/p/{token}", "/p/unknown1"):
        r = client.get(path)
        assert r.headers["Cache-Control"] == "no-store", path
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]


def test_pages_have_no_inline_script_or_style(client):
    token = create(client, payload="x")
    for path in ("/", f"/p/{token}/preview", f"/p/{token}/print_preview?message=x&show_id=1", f"/p/{token}"):
        html = client.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert " style=" not in html and "<style" not in html, path


def test_expire_with_another_method_override_is_405(client, app):
    token = create(client, payload="x", deletable_by_viewer=True)
    assert client.post(f"/p/{token}/expire", data={"_method": "put"}).status_code == 405
    assert not sql(app, "SELECT expired FROM pushes")[0][0]


def test_an_owners_payload_page_does_not_say_a_reload_counts(client, make_user, app):
    """Owners' views are logged, not counted."""
    sign_in(client, make_user)
    token = create(client, payload="mine", expire_after_views="2")
    html = client.get(f"/p/{token}").get_data(as_text=True)
    assert "mine" in html and "counts as another view" not in html and view_count(app, token) == 0
    # Found walking the pages: "2 more views" after a view, unexplained; the page says why.
    assert "Your own views of this push are logged, not counted." in html


def test_a_payload_page_asks_to_copy_only_what_can_be_copied(client, make_user):
    """A QR code (and a file push without a message) has nothing to copy: the page said
    "Copy what you need now" under it."""
    reload = "reloading this page or opening the link again counts as another view."
    qr = client.get(f"/p/{create(client, kind='qr', payload='otpauth://x')}").get_data(as_text=True)
    assert 'alt="QR code shared with you"' in qr
    assert "Copy what you need now" not in qr and reload.capitalize() in qr
    text = client.get(f"/p/{create(client, payload='copy me')}").get_data(as_text=True)
    assert "Copy what you need now: " + reload in text
    sign_in(client, make_user, email="sender@example.com")
    data = form(kind="file")
    data["push[files][]"] = [(io.BytesIO(b"data"), "a.txt")]
    files = re.search(r"/p/(\w+)/preview", client.post(
        "/p", data=data, content_type="multipart/form-data").headers["Location"]).group(1)
    client.post("/users/sign_out")  # (the owner's view is not counted: said otherwise)
    html = client.get(f"/p/{files}").get_data(as_text=True)
    assert "a.txt" in html and "Copy what you need now" not in html and reload.capitalize() in html


def test_an_administrators_payload_page_says_the_view_is_not_counted(client, make_user, app):
    token = create(client, payload="anyone's", expire_after_views="2")  # (anonymous)
    make_user(email="boss@example.com", admin=True, password="correct horse")
    assert client.post("/users/sign_in", data={"email": "boss@example.com", "password": "correct horse"}).status_code == 302
    html = client.get(f"/p/{token}").get_data(as_text=True)
    assert "As an administrator, your views of this push are logged, not counted." in html
    assert "Your own views" not in html and view_count(app, token) == 0


def test_the_deletion_address_opened_again_says_so_and_counts_nothing(client, app):
    token = create(client, payload="x", deletable_by_viewer=True, expire_after_views="2")
    page = client.post(f"/p/{token}/expire", data={"_method": "delete"}).get_data(as_text=True)
    assert "Secret deleted" in page
    events = audit_kinds(app, token)
    r = client.get(f"/p/{token}/expire")  # (a restored tab: it was a bare 405)
    assert r.status_code == 200 and "Secret deleted" in r.get_data(as_text=True)
    assert audit_kinds(app, token) == events and view_count(app, token) == 0
    live = create(client, payload="x", deletable_by_viewer=True)  # (a typed address: still live)
    r = client.get(f"/p/{live}/expire")
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{live}/r"
    assert not sql(app, "SELECT expired FROM pushes WHERE url_token = :t", t=live)[0][0]


def test_a_deletion_from_the_page_of_a_push_past_its_time_is_a_deletion(client, app, clock):
    token = create(client, payload="x", deletable_by_viewer=True, expire_after_duration="0")  # (5 minutes)
    clock.advance(seconds=360)
    r = client.post(f"/p/{token}/expire", data={"_method": "delete"})
    assert "Secret deleted" in r.get_data(as_text=True)
    assert sql(app, "SELECT expired, deleted FROM pushes")[0] == (True, True)
    assert audit_kinds(app, token)[-1] == AuditKind.expire


def test_every_page_of_a_push_whose_kind_is_switched_off_says_so_first(app, client, make_user):
    # Upstream's check_allowed: the start page and "URL pushes are disabled.", for every
    # action (the retrieval step offered "Click here" to a redirect home).
    plain = create(client, kind="url", payload="https://example.com", deletable_by_viewer=True)
    guarded = create(client, kind="url", payload="https://example.com", passphrase="pp")
    sign_in(client, make_user)
    owned = create(client, kind="url", payload="https://example.com")
    app.config["PWP__ENABLE_URL_PUSHES"] = False
    events = audit_kinds(app, plain) + audit_kinds(app, guarded)
    for method, path in (("GET", f"/p/{plain}/preview"), ("GET", f"/p/{plain}/print_preview"),
                         ("GET", f"/p/{plain}/r"), ("GET", f"/p/{plain}"),
                         ("GET", f"/p/{guarded}/passphrase"), ("POST", f"/p/{guarded}/access"),
                         ("POST", f"/p/{plain}/expire"), ("GET", f"/p/{owned}/audit")):
        r = client.open(path, method=method, data={"passphrase": "pp"} if method == "POST" else None)
        assert r.status_code == 302 and r.headers["Location"] == "/", path
    assert "URL pushes are disabled." in client.get("/").get_data(as_text=True)
    assert audit_kinds(app, plain) + audit_kinds(app, guarded) == events  # nothing counted or done
    assert view_count(app, plain) == 0
