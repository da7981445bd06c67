"""API v2 and v1: creating pushes."""
import io

import pytest

from conftest import bearer, sql, wait_for_a_lock_waiter

CREATE_KEYS = {"created_at", "days_remaining", "deletable_by_viewer", "deleted", "expire_after_days",
               "expire_after_views", "expired", "expired_on", "html_url", "json_url", "name", "note",
               "passphrase", "retrieval_step", "updated_at", "url_token", "views_remaining"}


def test_v1_create_with_only_payload_has_upstream_defaults(client):
    r = client.post("/p.json", json={"password": {"payload": "x"}})
    assert r.status_code == 201
    body = r.json
    assert set(body) == CREATE_KEYS
    assert body["expire_after_days"] == 7 and body["days_remaining"] == 7
    assert body["expire_after_views"] == 5 and body["views_remaining"] == 5
    assert body["retrieval_step"] is True and body["deletable_by_viewer"] is True
    assert body["name"] == "" and body["note"] == ""
    assert body["expired"] is False and body["deleted"] is False and body["expired_on"] is None
    # Deviation 1: the passphrase is never returned.
    assert body["passphrase"] is None
    assert "payload" not in body


def test_v2_create_returns_201_with_create_keys(client):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "my-secret", "expire_after_days": 1,
                                                      "expire_after_views": 5}})
    assert r.status_code == 201
    assert set(r.json) == CREATE_KEYS
    assert r.json["expire_after_days"] == 1
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"  # as upstream


def test_every_json_answer_is_labelled_utf8(client):
    """Upstream labels every JSON answer `application/json; charset=utf-8`: the fast path's,
    Flask's views', and the error handlers'."""
    token = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).json["url_token"]
    answers = [client.get(f"/api/v2/pushes/{token}"),  # the fast path
               client.get(f"/api/v2/pushes/{token}?x=1"),  # Flask's view
               client.get("/p/nosuchtoken.json"),  # a push error
               client.get("/api/v2/nowhere"),  # Flask's 404
               client.get("/api/v2/version")]
    assert [r.headers["Content-Type"] for r in answers] == ["application/json; charset=utf-8"] * 5


def test_timestamps_are_iso_utc_with_milliseconds(client):
    body = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).json
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 24
    assert body["created_at"][19] == "."


def test_html_url_has_retrieval_step_suffix_and_json_url_works(client):
    body = client.post("/api/v2/pushes", json={"push": {"payload": "abc", "retrieval_step": True}}).json
    token = body["url_token"]
    assert body["html_url"] == f"http://localhost/p/{token}/r"
    # Deviation 2: json_url is a working URL.
    r = client.get(body["json_url"].replace("http://localhost", ""))
    assert r.status_code == 200 and r.json["payload"] == "abc"
    body = client.post("/api/v2/pushes", json={"push": {"payload": "abc", "retrieval_step": False}}).json
    assert body["html_url"].endswith(f"/p/{body['url_token']}")


def test_v1_json_url_is_the_v1_show_route(client):
    body = client.post("/p.json", json={"password": {"payload": "abc"}}).json
    assert body["json_url"].endswith(f"/p/{body['url_token']}.json")
    assert client.get(body["json_url"].replace("http://localhost", "")).json["payload"] == "abc"


@pytest.mark.parametrize("settings", [{"PWP__OVERRIDE_BASE_URL": "https://pwpush.example.com"}])
def test_override_base_url_is_used_for_links(client, settings):
    body = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).json
    assert body["html_url"].startswith("https://pwpush.example.com/p/")
    r = client.get(f"/api/v2/pushes/{body['url_token']}/preview")
    assert r.json["url"].startswith("https://pwpush.example.com/p/")


@pytest.mark.parametrize("settings", [{"FORCE_SSL": True}])
def test_force_ssl_makes_links_https_and_cookies_secure(client, settings):
    """Upstream's FORCE_SSL: a request that reached the app over http gets https links."""
    body = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).json  # (hot path)
    assert body["html_url"].startswith("https://localhost/p/") and body["json_url"].startswith("https://")
    body = client.post("/p.json", data={"password[payload]": "x"}).json
    assert body["html_url"].startswith("https://localhost/p/")
    assert "; Secure" in client.get("/").headers["Set-Cookie"]


@pytest.mark.parametrize("path,key", [("/p.json", "password"), ("/api/v2/pushes", "push")])
@pytest.mark.parametrize("body", [{}, {"other": 1}, {"KEY": {}}, {"KEY": "text"}, {"KEY": []}])
def test_create_without_root_key_is_400(client, token, path, key, body):
    body = {k.replace("KEY", key): v for k, v in body.items()}
    r = client.post(path, json=body, headers=bearer(token))
    assert r.status_code == 400
    assert r.json == {"error": f"param is missing or the value is empty or invalid: {key}"}


@pytest.mark.parametrize("path,key", [("/f.json", "file_push"), ("/r.json", "url")])
def test_v1_file_and_url_create_without_root_key_is_400(client, token, path, key):
    r = client.post(path, json={}, headers=bearer(token))
    assert r.status_code == 400
    assert r.json == {"error": f"param is missing or the value is empty or invalid: {key}"}


@pytest.mark.parametrize("path,key", [("/p.json", "password"), ("/api/v2/pushes", "push"),
                                      ("/f.json", "file_push"), ("/r.json", "url")])
@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"3", b"null", b"true"])
def test_a_json_body_that_is_no_object_lacks_the_root_key(client, token, path, key, body):
    """Rails keeps a JSON body that is no object under `_json`: the root key is missing."""
    r = client.post(path, data=body, headers={**bearer(token), "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json == {"error": f"param is missing or the value is empty or invalid: {key}"}


@pytest.mark.parametrize("content_type", ["text/x-json", "application/jsonrequest", "Text/X-JSON; charset=utf-8"])
@pytest.mark.parametrize("path,key", [("/api/v2/pushes", "push"), ("/p.json", "password")])
def test_json_sent_under_the_other_names_rails_gives_it_is_read(client, content_type, path, key):
    """Rails reads a body as JSON under its JSON type's other names too (Mime::JSON's synonyms
    text/x-json and application/jsonrequest); werkzeug only under application/json and
    application/*+json, so such a create lacked its root key: a 400."""
    r = client.post(path, data=f'{{"{key}": {{"payload": "x ✓", "expire_after_views": 2}}}}'.encode(),
                    content_type=content_type)
    assert r.status_code == 201 and r.json["expire_after_views"] == 2
    assert client.get(f"/api/v2/pushes/{r.json['url_token']}").json["payload"] == "x ✓"
    if key == "push":  # (and the passphrase of a retrieval, in its body)
        t = client.post(path, data=b'{"push": {"payload": "y", "passphrase": "pw"}}', content_type=content_type).json
        r = client.get(f"/api/v2/pushes/{t['url_token']}", data=b'{"passphrase": "pw"}', content_type=content_type)
        assert r.status_code == 200 and r.json["payload"] == "y"


def test_v2_top_level_attributes_are_wrapped_into_push(client):
    r = client.post("/api/v2/pushes", json={"payload": "wrapped", "expire_after_views": 2})
    assert r.status_code == 201 and r.json["expire_after_views"] == 2


@pytest.mark.parametrize("field,value,expected", [
    ("expire_after_days", 100, 7), ("expire_after_days", 0, 7), ("expire_after_days", "3", 3),
    ("expire_after_days", "2.9", 2), ("expire_after_days", 2.9, 2), ("expire_after_days", "abc", 7),
    ("expire_after_days", "", 7), ("expire_after_days", 10 ** 30, 7), ("expire_after_days", -5, 7),
    ("expire_after_days", "99999999999999999999999", 7), ("expire_after_days", 1e300, 7),
    ("expire_after_views", 0, 5), ("expire_after_views", 101, 5), ("expire_after_views", "100", 100),
    ("expire_after_views", None, 5), ("expire_after_views", [], 5), ("expire_after_views", {}, 5),
    # Ruby's to_i skips single underscores between digits, and stops at a second or a last.
    ("expire_after_views", "1_0", 10), ("expire_after_views", "4__0", 4), ("expire_after_days", "6_", 6),
])
def test_out_of_range_or_odd_numbers_fall_back_to_the_default(client, field, value, expected):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", field: value}})
    assert r.status_code == 201
    assert r.json[field] == expected


@pytest.mark.parametrize("value,expected", [
    (True, True), (False, False), ("true", True), ("True", True), ("false", False), ("on", True),
    ("yes", True), ("checked", True), ("1", True), (1, True), ("0", False), ("", False), ("nope", False),
    # Upstream stringifies and lower-cases, nothing more: surrounding blanks make no true word.
    (" true", False), ("true ", False), ("on\n", False), (" 1", False),
])
def test_booleans_are_parsed_like_upstream(client, value, expected):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "deletable_by_viewer": value,
                                                      "retrieval_step": value}})
    assert r.json["deletable_by_viewer"] is expected
    assert r.json["retrieval_step"] is expected


def test_the_wrapper_key_present_even_null_turns_wrapping_off(client):
    """Rails wraps top-level attributes only when the body has no `push` key at all."""
    r = client.post("/api/v2/pushes", json={"push": None, "payload": "wrapped"})
    assert r.status_code == 400
    assert r.json == {"error": "param is missing or the value is empty or invalid: push"}


def test_absent_booleans_take_the_kind_defaults(client):
    body = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).json
    assert body["deletable_by_viewer"] is True and body["retrieval_step"] is True


@pytest.mark.parametrize("settings", [{"PWP__PW__RETRIEVAL_STEP_DEFAULT": False,
                                       "PWP__PW__ENABLE_DELETABLE_PUSHES": False}])
def test_settings_change_defaults_and_disable_options(client, settings):
    body = client.post("/api/v2/pushes", json={"push": {"payload": "x", "deletable_by_viewer": True}}).json
    assert body["retrieval_step"] is False
    assert body["deletable_by_viewer"] is False


def test_url_pushes_are_never_viewer_deletable(client):
    body = client.post("/api/v2/pushes", json={"push": {"payload": "https://example.com",
                                                        "kind": "url", "deletable_by_viewer": True}}).json
    assert body["deletable_by_viewer"] is None


@pytest.mark.parametrize("duration,days,hours", [
    (6, 1, None), (12, 7, None), (13, 14, None), (17, 90, None), (0, 1, 5 / 60), (3, 1, 1), (5, 1, 12),
])
def test_expire_after_duration_maps_like_the_cli(app, client, duration, days, hours):
    body = client.post("/api/v2/pushes", json={"push": {"payload": "x", "expire_after_duration": duration}}).json
    assert body["expire_after_days"] == days
    (created, expires), = sql(app, "SELECT created_at, expires_at FROM pushes")
    if isinstance(created, str):
        from datetime import datetime
        created, expires = datetime.fromisoformat(created), datetime.fromisoformat(expires)
    span = (expires - created).total_seconds() / 3600
    assert span == pytest.approx(hours if hours is not None else days * 24)


@pytest.mark.parametrize("value", [18, -1, "abc", 2.5, [1], "1000000"])
def test_bad_expire_after_duration_is_422(client, value):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "expire_after_duration": value}})
    assert r.status_code == 422
    assert "expire_after_duration" in r.json


@pytest.mark.parametrize("blank", ["", "  ", "\t"])
def test_a_blank_expire_after_duration_is_not_given(client, blank):
    """Upstream reads it only when `.present?`, which a string of spaces is not: its default
    days then, as for "" (a blank expire_after_days too), not a 422."""
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "expire_after_duration": blank}})
    assert r.status_code == 201, r.json
    assert r.json["expire_after_days"] == 7


def test_duration_given_as_string_works(client):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "expire_after_duration": "8"}})
    assert r.status_code == 201 and r.json["expire_after_days"] == 3


@pytest.mark.parametrize("payload", ["", "   ", None])
def test_blank_text_payload_is_422(client, payload):
    r = client.post("/api/v2/pushes", json={"push": {"payload": payload, "name": "n"}})
    assert r.status_code == 422
    assert r.json == {"payload": ["Payload is required."]}


def test_text_payload_size_limit(client):
    ok = client.post("/api/v2/pushes", json={"push": {"payload": "a" * 1_048_576}})
    assert ok.status_code == 201
    r = client.post("/api/v2/pushes", json={"push": {"payload": "a" * 1_048_577}})
    assert r.status_code == 422
    assert r.json["payload"] == ["The payload is too large.  You can only push up to 1048576 bytes."]


@pytest.mark.parametrize("path,field", [("/p.json", "password[payload]"), ("/api/v2/pushes", "push[payload]")])
def test_the_longest_payload_fits_a_multipart_form(client, path, field):
    """`curl -F` sends a multipart form: its field holds the longest payload, in characters of
    up to four UTF-8 bytes (Flask's default cap, 500 000 bytes, refused it with a 413)."""
    longest = "\N{GRINNING FACE}" * 1_048_576  # 4 MiB
    r = client.post(path, data={field: longest}, content_type="multipart/form-data")
    assert r.status_code == 201
    url = "/p/{}.json" if path == "/p.json" else "/api/v2/pushes/{}"
    assert client.get(url.format(r.json["url_token"])).json["payload"] == longest
    over = client.post(path, data={field: longest + "a"}, content_type="multipart/form-data")
    assert over.status_code == 422
    assert over.json["payload"] == ["The payload is too large.  You can only push up to 1048576 bytes."]


def test_qr_payload_size_limit(client):
    assert client.post("/api/v2/pushes", json={"push": {"payload": "q" * 1024, "kind": "qr"}}).status_code == 201
    r = client.post("/api/v2/pushes", json={"push": {"payload": "q" * 1025, "kind": "qr"}})
    assert r.status_code == 422
    assert r.json["payload"] == ["The QR code payload is too large.  You can only push up to 1024 bytes."]


@pytest.mark.parametrize("url", ["the0x00.dev", "ftp://example.com", "javascript:alert(1)",
                                 "data:text/html,hi", "  "])
def test_url_push_needs_http_or_https(client, url):
    r = client.post("/api/v2/pushes", json={"push": {"payload": url, "kind": "url"}})
    assert r.status_code == 422
    assert "payload" in r.json


@pytest.mark.parametrize("url", ["http://exa mple.com/", "https://a\u3000b.example/", "https://a<b.example/",
                                 'https://a"b.example/', "https://a{b}.example/", "https://a|b.example/",
                                 "https://a^b.example/", "https://intranet\\b.example/"])
def test_url_push_host_with_a_character_no_host_has_is_422(client, url):
    # Upstream's URI parser (Addressable) refuses whitespace, <>{}\" in a host; a browser
    # cannot follow | or ^, and reads \ as the path's start (https://intranet/b.example/).
    r = client.post("/api/v2/pushes", json={"push": {"payload": url, "kind": "url"}})
    assert r.status_code == 422 and r.json == {"payload": ["must be a valid HTTP or HTTPS URL."]}


@pytest.mark.parametrize("url", ["http://example.com", "HTTPS://example.com/a?b=c", "http://intranet_01:8080/",
                                 "https://xn--bcher-kva.example/a b"])
def test_url_push_accepts_http_and_https(client, url):
    assert client.post("/api/v2/pushes", json={"push": {"payload": url, "kind": "url"}}).status_code == 201


def test_unknown_kind_is_422_not_500(client):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "kind": "foo"}})
    assert r.status_code == 422
    assert r.json == {"kind": ["is not included in the list"]}


@pytest.mark.parametrize("kind", ["TEXT", "Url", " qr", "text ", "file\n"])
@pytest.mark.parametrize("path,key", [("/api/v2/pushes", "push"), ("/p.json", "password")])
def test_kind_is_one_of_the_four_names_exactly(client, token, kind, path, key):
    """Upstream's kind is an enum of four lower-case names: any other spelling is no kind
    (upstream's 500, here the 422 of deviation 3), never quietly read as one of them."""
    r = client.post(path, json={key: {"payload": "https://example.com", "kind": kind}}, headers=bearer(token))
    assert r.status_code == 422, r.json
    assert r.json == {"kind": ["is not included in the list"]}


@pytest.mark.parametrize("kind", [" ", ""])
def test_a_blank_kind_is_no_kind(client, kind):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "kind": kind}})
    assert r.status_code == 201


@pytest.mark.parametrize("settings,kind,message", [
    ({"PWP__ENABLE_URL_PUSHES": False}, "url", "URL pushes are disabled."),
    ({"PWP__ENABLE_QR_PUSHES": False}, "qr", "QR code pushes are disabled."),
])
def test_disabled_kind_is_422(client, settings, kind, message):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "https://a.b", "kind": kind}})
    assert r.status_code == 422 and r.json == {"kind": [message]}


def test_unicode_payload_round_trips(client):
    payload = "£¬ æ ¼ ö ç ý — 密码 🔐 \n\t\"'`$HOME;|&"
    token = client.post("/api/v2/pushes", json={"push": {"payload": payload}}).json["url_token"]
    assert client.get(f"/api/v2/pushes/{token}").json["payload"] == payload


def test_name_and_note_are_returned_to_the_creator_and_lists(client, token):
    body = client.post("/api/v2/pushes", json={"push": {"payload": "x", "name": "db", "note": "for ops"}},
                       headers=bearer(token)).json
    assert body["name"] == "db" and body["note"] == "for ops"
    shown = client.get(f"/api/v2/pushes/{body['url_token']}").json
    assert "name" not in shown and "note" not in shown


def test_note_and_payload_are_encrypted_at_rest(app, client):
    client.post("/api/v2/pushes", json={"push": {"payload": "PLAINPAYLOAD", "note": "PLAINNOTE"}})
    (payload, note), = sql(app, "SELECT payload_ciphertext, note_ciphertext FROM pushes")
    assert b"PLAINPAYLOAD" not in bytes(payload) and b"PLAINNOTE" not in bytes(note)


def test_creation_is_audited_with_the_creator(app, client, token):
    body = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}, headers=bearer(token)).json
    logs = client.get(f"/api/v2/pushes/{body['url_token']}/audit", headers=bearer(token)).json["logs"]
    assert [e["kind"] for e in logs] == ["creation"]


def test_multipart_form_with_bracketed_fields_and_python_booleans(client, token):
    r = client.post("/api/v2/pushes", headers=bearer(token), content_type="multipart/form-data", data={
        "push[payload]": "form secret", "push[kind]": "text", "push[expire_after_views]": "3",
        "push[expire_after_duration]": "7", "push[deletable_by_viewer]": "False",
        "push[retrieval_step]": "True", "account_id": "42"})
    assert r.status_code == 201
    assert r.json["expire_after_views"] == 3 and r.json["expire_after_days"] == 2
    assert r.json["deletable_by_viewer"] is False and r.json["retrieval_step"] is True


def test_urlencoded_form_create_on_v1(client):
    r = client.post("/p.json", data={"password[payload]": "urlenc", "password[expire_after_views]": "2"})
    assert r.status_code == 201 and r.json["expire_after_views"] == 2


def test_notify_emails_are_not_available(client, token):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "notify_emails_to": "a@b.c"}},
                    headers=bearer(token))
    assert r.status_code == 422 and "notify_emails_to" in r.json
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "notify_emails_to": "a@b.c",
                                                      "notify_emails_to_locale": "fr"}}, headers=bearer(token))
    assert r.status_code == 422 and r.json == {
        "notify_emails_to": ["are not available"], "notify_emails_to_locale": ["is not available"],
        "base": ["Notify by email feature is not enabled"]}


def test_v1_drops_notify_emails_like_any_unknown_key(client, token):
    r = client.post("/p.json", data={"password[payload]": "x", "password[notify_emails_to]": "a@b.c"},
                    headers=bearer(token))
    assert r.status_code == 201 and "notify_emails_to" not in r.json


def test_account_id_at_top_level_is_ignored(client):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x"}, "account_id": 7})
    assert r.status_code == 201


def test_file_upload_limits_are_validated(client, token):
    files = [(io.BytesIO(b"x"), f"f{i}.txt") for i in range(11)]
    r = client.post("/api/v2/pushes", headers=bearer(token), content_type="multipart/form-data",
                    data={"push[kind]": "file", "push[files][]": files})
    assert r.status_code == 422
    assert r.json == {"files": ["You can only attach up to 10 files per push."]}


def test_v1_create_answers_the_cors_preflight_with_any_origin_and_the_asked_headers(client):
    # A browser on another origin asks first; without these headers it never sends the POST.
    r = client.options("/p.json", headers={
        "Origin": "https://intranet.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-user-email, x-user-token"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Allow-Headers"] == "content-type, x-user-email, x-user-token"
    r = client.post("/p.json", json={"password": {"payload": "x"}}, headers={"Origin": "https://intranet.example"})
    assert r.status_code == 201 and r.headers["Access-Control-Allow-Origin"] == "*"
    # Only that route is cross-origin; other routes have no OPTIONS (upstream: 404).
    r = client.options("/api/v2/pushes", headers={"Origin": "https://intranet.example",
                                                  "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert r.status_code == 404 and r.json == {"status": 404, "error": "Not Found"}
    t = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).json["url_token"]
    for path in (f"/api/v2/pushes/{t}", f"/p/{t}.json", "/api/v2/version"):
        r = client.open(path, method="OPTIONS")
        assert r.status_code == 404 and "Allow" not in r.headers, path
    r = client.open(f"/p/{t}", method="OPTIONS")  # a page lists its methods (tests/test_options_method.py)
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize(("body", "headers", "status"), [
    ({"password": {"payload": ""}}, {}, 422),
    ({}, {}, 400),
    ({"password": {"payload": "x"}}, {"Authorization": "Bearer wrong"}, 401),
])
def test_v1_create_errors_carry_cors_headers_so_a_browser_can_read_them(client, body, headers, status):
    # rack-cors adds its headers to whatever the route answers.
    r = client.post("/p.json", json=body, headers={"Origin": "https://intranet.example", **headers})
    assert r.status_code == status
    assert r.headers["Access-Control-Allow-Origin"] == "*"


URL_TOO_LONG = {"payload": ["is too long (maximum is 2048 characters, each one outside ASCII "
                             "counted as its percent-encoding)"]}


@pytest.mark.parametrize(("push", "errors"), [
    ({"kind": "url", "payload": "https://example.com/" + "a" * 2029}, URL_TOO_LONG),
    # 359 characters, sent as 2054 in the Location header ("\u00e9" is "%C3%A9"): a
    # proxy must pass that header (the view would fail after counting).
    ({"kind": "url", "payload": "https://example.com/" + "\u00e9" * 339}, URL_TOO_LONG),
    ({"payload": "x", "note": "n" * 10_001}, {"note": ["is too long (maximum is 10000 characters)"]}),
])
def test_url_and_note_lengths_are_bounded(client, push, errors):
    r = client.post("/api/v2/pushes", json={"push": push})
    assert r.status_code == 422 and r.json == errors
    shorter = {**push, **{key: value[:-1] for key, value in push.items() if key in errors}}
    assert client.post("/api/v2/pushes", json={"push": shorter}).status_code == 201


PASSPHRASE_TOO_LONG = {"passphrase": ["is too long (maximum is 1024 characters)"]}


@pytest.mark.parametrize(("path", "root"), [("/api/v2/pushes", "push"), ("/api/v2/pushes?x=1", "push"),
                                            ("/p.json", "password")])  # hot path, Flask, v1
def test_a_passphrase_is_at_most_1024_characters(client, path, root):
    """Upstream has no cap: a passphrase no one types (its scrypt input unbounded, and past
    ~20 KB the web form's body a 413) is a clear 422; 1024 characters, emoji too, are taken."""
    r = client.post(path, json={root: {"payload": "x", "passphrase": "p" * 1025}})
    assert r.status_code == 422 and r.json == PASSPHRASE_TOO_LONG
    longest = "\U0001f600" * 1024
    r = client.post(path, json={root: {"payload": "x", "passphrase": longest}})
    assert r.status_code == 201
    got = client.get(f"/api/v2/pushes/{r.json['url_token']}", json={"passphrase": longest})
    assert got.status_code == 200 and got.json["payload"] == "x"


def test_a_push_made_with_a_longer_passphrase_before_the_cap_still_opens(client, monkeypatch):
    from pwp import pushes
    monkeypatch.setattr(pushes, "PASSPHRASE_MAX", 4096)  # (as an older version stored it)
    longer = "p" * 2000
    url_token = client.post("/api/v2/pushes", json={"push": {"payload": "x", "passphrase": longer}}).json["url_token"]
    monkeypatch.undo()
    assert client.post("/api/v2/pushes", json={"push": {"payload": "x", "passphrase": longer}}).status_code == 422
    got = client.get(f"/api/v2/pushes/{url_token}", json={"passphrase": longer})
    assert got.status_code == 200 and got.json["payload"] == "x"


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/api/v2/pushes?x=1"])  # hot path, Flask
def test_push_locale_adds_the_locale_to_the_secret_links(client, path):
    """As upstream: push_locale naming an enabled language code gives ?locale=<code>."""
    r = client.post(path, json={"push": {"payload": "x"}, "push_locale": "fr"})
    assert r.status_code == 201 and r.json["html_url"].endswith(f"/p/{r.json['url_token']}/r?locale=fr")
    t = r.json["url_token"]
    assert client.get(f"/api/v2/pushes/{t}/preview?push_locale=pt-BR").json["url"].endswith("/r?locale=pt-BR")
    assert client.get(f"/p/{t}/preview.json?push_locale=pt-BR").json["url"].endswith("/r?locale=pt-BR")
    assert client.get(f"/api/v2/pushes/{t}?push_locale=de").json["html_url"].endswith("/r?locale=de")
    # Not an enabled code (or not a string): no suffix.
    for locale in ("xx", "fr&x=1", ["fr"]):
        r = client.post(path, json={"push": {"payload": "x"}, "push_locale": locale})
        assert r.json["html_url"].endswith("/r"), locale
    form = client.post("/p.json?push_locale=ja", data={"password[payload]": "x"})
    assert form.json["html_url"].endswith("/r?locale=ja")


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/api/v2/pushes?via=flask"])
def test_json_null_booleans_are_false_not_the_default(client, path):
    """Upstream (set_push_attributes.rb): a key *present* in a JSON create, even as null, is
    cast with `to_s.downcase` ("" -> false); only an absent key takes the kind's default.
    pwpush-behaviour.md §1.5: "Key **absent** in a JSON/API request -> the kind's default";
    anything but on/yes/checked/true/1 "(including ... empty) -> false"."""
    r = client.post(path, json={"push": {"payload": "x", "deletable_by_viewer": None,
                                         "retrieval_step": None}})
    assert r.status_code == 201
    assert r.json["deletable_by_viewer"] is False
    assert r.json["retrieval_step"] is False
    assert r.json["html_url"].endswith(r.json["url_token"])  # no /r: no retrieval step


def test_v1_json_null_booleans_are_false(client):
    r = client.post("/p.json", json={"password": {"payload": "x", "deletable_by_viewer": None,
                                                  "retrieval_step": None}})
    assert r.status_code == 201
    assert (r.json["deletable_by_viewer"], r.json["retrieval_step"]) == (False, False)


@pytest.mark.parametrize(("path", "root"), [("/api/v2/pushes", "push"), ("/api/v2/pushes?via=flask", "push"),
                                            ("/p.json", "password")])
@pytest.mark.parametrize("value", [[], {}, ["true"], {"a": "false"}, [None]])
def test_an_array_or_object_boolean_is_absent_as_upstream(client, path, root, value):
    """Upstream's push_params permit deletable_by_viewer and retrieval_step as scalars: Rails
    drops an array or object there, so the key is absent and takes the kind's default (true
    by default); it was read as false ("[]" is no true word)."""
    r = client.post(path, json={root: {"payload": "x", "deletable_by_viewer": value, "retrieval_step": value}})
    assert r.status_code == 201
    assert (r.json["deletable_by_viewer"], r.json["retrieval_step"]) == (True, True)


def test_an_array_checkbox_in_the_form_is_unchecked(client, app):
    """The web form (absent means unticked): push[retrieval_step][]=on is absent, as upstream."""
    r = client.post("/p", data={"push[kind]": "text", "push[payload]": "x", "push[retrieval_step][]": "on",
                                "push[deletable_by_viewer][a]": "on"})
    assert r.status_code == 302
    assert sql(app, "SELECT retrieval_step, deletable_by_viewer FROM pushes") == [(False, False)]


def test_absent_booleans_still_take_the_default(client):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x"}})
    assert (r.json["deletable_by_viewer"], r.json["retrieval_step"]) == (True, True)


@pytest.mark.parametrize("path,root", [("/api/v2/pushes", "push"), ("/p.json", "password")])
def test_null_files_is_no_files_key(client, path, root):
    """Rails' permit(files: []) drops a null `files` (hash_filter: `next unless value`), so
    upstream sees no files key: an anonymous text push, 201. Only a present array (even
    empty) demands a sign-in (§2: "the `files` key is present in the push params")."""
    r = client.post(path, json={root: {"payload": "x", "files": None}})
    assert r.status_code == 201, r.json
    # an empty array still asks for a sign-in, as upstream
    assert client.post(path, json={root: {"payload": "x", "files": []}}).status_code == 401


def test_a_create_while_its_account_is_deleted_is_401_not_500(app, client, make_user, database_url):
    """An account deletion holds the account's row; a push its token creates meanwhile waits,
    then finds the account gone (the foreign key): the caller is no one now, a 401, not a 500.
    Found racing creates and an account deletion on gunicorn with PostgreSQL."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's BEGIN IMMEDIATE runs a request's whole transaction alone")
    import threading

    import psycopg
    user_id, token = make_user(email="leaving@example.com")
    answer = []
    with psycopg.connect(database_url) as deletion:
        deletion.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", (user_id,))
        creator = threading.Thread(target=lambda: answer.append(client.post(
            "/api/v2/pushes", json={"push": {"payload": "orphan"}}, headers=bearer(token))))
        creator.start()
        wait_for_a_lock_waiter(database_url, "the create", thread=creator)
        deletion.execute("DELETE FROM users WHERE id = %s", (user_id,))
        deletion.commit()
        creator.join(timeout=60)
    assert answer[0].status_code == 401, answer[0].status_code
    assert answer[0].json == {"error": "You need to sign in or sign up before continuing."}
    assert sql(app, "SELECT count(*) FROM pushes") == [(0,)]
