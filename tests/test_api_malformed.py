"""Malformed input: always a 4xx with a JSON body, never a 5xx."""
import io
import json
import socket

import pytest

from conftest import bearer, sql
from servers import gunicorn, server_env

BODIES = [
    ("application/json", b"{not json"),
    ("application/json", b"[1, 2, 3]"),
    ("application/json", b'"just a string"'),
    ("application/json", b"null"),
    ("application/json", b"\xff\xfe\x00garbage"),
    ("application/json", b'{"push": {"payload": "\\ud800"}}'),
    ("application/json", b'{"push": {"payload": {"nested": 1}}}'),
    ("application/json", b'{"push": {"payload": ["a"]}}'),
    ("application/json", b'{"push": {"payload": true}}'),
    ("application/json", b'{"push": {"payload": "x", "kind": 5}}'),
    ("application/json", b'{"push": {"payload": "x", "passphrase": {"a": 1}}}'),
    ("application/json", b'{"push": {"payload": "x", "name": ["n"]}}'),
    ("application/json", b'{"push": {"payload": "x", "expire_after_views": ' + b"9" * 5000 + b"}}"),
    ("application/json", b'{"push": {"payload": "x", "files": "notafile"}}'),
    ("application/json", b'{"push": {"payload": "x", "files": [1, 2]}}'),
    ("application/json", b"[" * 100_000),  # deeper than Python's parser recurses
    ("application/json", b'{"push": {"payload": "x", "name": ' + b"[" * 5000 + b"]" * 5000 + b"}}"),
    ("application/json", '{"push": {"payload": "x", "expire_after_duration": "\u00b2"}}'.encode()),
    ("application/x-www-form-urlencoded", "password[payload]=x&password[expire_after_duration]=\u2460".encode()),
    ("application/json", b'{"push": {"payload": "x", "name": "' + b"n" * 256 + b'"}}'),
    # Python's parser takes these; JSON has no such values
    ("application/json", b'{"push": {"payload": "x", "expire_after_days": NaN}}'),
    ("application/json", b'{"push": {"payload": "x", "expire_after_views": Infinity}}'),
    ("application/json", b'{"push": {"payload": "x", "expire_after_views": -Infinity}}'),
    ("application/json", b'{"push": {"payload": "x", "expire_after_days": 1e400}}'),
    ("application/json", b'{"push": {"payload": "x", "note": ' + b"[{}," * 100_000 + b"{}]}}"),
    ("text/plain", b'{"push": {"payload": "x"}}'),
    ("application/xml", b"<push><payload>x</payload></push>"),
    ("application/x-www-form-urlencoded", b"push=flat"),
    ("multipart/form-data; boundary=zzz", b"--zzz\r\nbroken"),
    ("multipart/form-data", b"no boundary at all"),
    ("", b""),
]


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/p.json"])
@pytest.mark.parametrize("content_type,body", BODIES)
def test_malformed_create_is_4xx_json(client, token, path, content_type, body):
    headers = bearer(token)
    if content_type:
        headers["Content-Type"] = content_type
    r = client.post(path, data=body, headers=headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.data[:200])
    assert r.is_json


@pytest.mark.parametrize("query", ["passphrase=%ff", "passphrase=" + "a" * 10000, "passphrase[]=x",
                                   "passphrase=%00"])
def test_odd_passphrase_queries_are_handled(client, query):
    t = client.post("/api/v2/pushes", json={"push": {"payload": "x", "passphrase": "p"}}).json["url_token"]
    r = client.get(f"/api/v2/pushes/{t}?{query}")
    assert r.status_code == 401 and r.is_json


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/api/v2/pushes?x=1", "/p.json"])  # hot path, Flask
def test_json_nested_too_deeply_is_400_on_create_and_read(client, path):
    r = client.post(path, data=b"[" * 100_000, content_type="application/json")
    assert r.status_code == 400 and r.json == {"error": "The request body is not valid JSON."}
    t = client.post("/api/v2/pushes", json={"push": {"payload": "x", "passphrase": "p"}}).json["url_token"]
    r = client.get(f"/api/v2/pushes/{t}", data=b"[" * 100_000, content_type="application/json")
    assert r.status_code == 401 and r.is_json  # no passphrase could be read from it


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/api/v2/pushes?x=1", "/p.json"])  # hot path, Flask
def test_json_bodies_over_12_mib_are_413_unread(client, path):
    body = b'{"push": {"payload": "' + b"x" * (12 * 1024 * 1024 + 3 * 64 * 1024) + b'"}}'
    r = client.post(path, data=body, content_type="application/json")
    assert r.status_code == 413 and r.is_json


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/p.json"])
def test_chunked_json_bodies_over_12_mib_are_413_as_declared_ones(client, path):
    """A chunked body (no Content-Length; gunicorn says where it ends: wsgi.input_terminated)
    was read up to the JSON limit, cut there silently, and answered as a 400 "not valid JSON";
    one declared as long is a 413, unread. Now a 413 too, past the limit's bytes unread."""
    body = b'{"push": {"payload": "' + b"x" * (12 * 1024 * 1024 + 3 * 64 * 1024) + b'"}}'
    r = client.post(path, input_stream=io.BytesIO(body), content_type="application/json",
                    headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 413 and r.json == {"status": 413, "error": "Request Entity Too Large"}  # (was: 400)
    fits = json.dumps({"password" if path == "/p.json" else "push": {"payload": "x" * 1000}}).encode()
    r = client.post(path, input_stream=io.BytesIO(fits), content_type="application/json",
                    headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 201


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/api/v2/pushes?x=1", "/p.json"])  # hot path, Flask
def test_a_json_body_holds_the_longest_payload_note_and_name_escaped(client, path):
    """As the pwpush CLI (json.dumps) sends them, an emoji as "\\ud83d\\ude00": the body held
    the longest payload and 64 KiB, so a 10 000-emoji note (120 000 bytes escaped) with it
    was a 413, where a multipart form with the same fields was stored."""
    grin = "\N{GRINNING FACE}"
    root = "password" if path == "/p.json" else "push"
    body = json.dumps({root: {"payload": grin * 1_048_576, "note": grin * 10_000, "name": grin * 255,
                              "passphrase": grin * 64}})
    r = client.post(path, data=body, content_type="application/json")
    assert r.status_code == 201, r.data[:200]


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/api/v2/pushes?x=1", "/p.json"])  # hot path, Flask
def test_json_bodies_over_1_mib_with_more_than_1000_values_are_413(client, path):
    body = b'{"push": {"payload": "x", "note": [' + b"1," * 1000 + b'1]}, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    r = client.post(path, data=body, content_type="application/json")
    assert r.status_code == 413
    assert r.json == {"error": "A request body over 1 MiB holds a long payload and at most 1000 other JSON values."}
    many_strings = b'{"push": {"payload": "x"}, "pad": [' + b'"ab",' * 220_000 + b'""]}'  # 1.05 MiB
    r = client.post(path, data=many_strings, content_type="application/json")
    assert r.status_code == 413
    few = b'{"push": {"payload": "x", "note": [' + b"1," * 990 + b'1]}, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert client.post(path, data=few, content_type="application/json").status_code != 413


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/api/v2/pushes?x=1"])  # hot path, Flask
def test_brackets_inside_strings_are_text_not_json_values(client, path):
    payload = "{[" * 60_000  # a secret may hold any text: 120 000 brackets, no JSON values
    r = client.post(path, json={"push": {"payload": payload}})
    assert r.status_code == 201
    assert client.get(f"/api/v2/pushes/{r.json['url_token']}").json["payload"] == payload


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/api/v2/pushes?x=1", "/p.json"])  # hot path, Flask
def test_more_than_100_000_json_values_is_413(client, path):
    body = b'{"push": {"payload": "x", "note": [' + b"{}," * 100_000 + b'{}]}}'
    r = client.post(path, data=body, content_type="application/json")
    assert r.status_code == 413
    assert r.json == {"error": "The request body holds more than 100000 JSON objects and arrays."}


def test_a_one_mib_payload_escaped_as_the_cli_sends_it_fits(client):
    payload = "\u00e9\u4e2d" * (1_048_576 // 2)  # json.dumps escapes each as \uXXXX: 6 MiB of JSON
    body = json.dumps({"push": {"payload": payload}}).encode()
    assert 6 * 1024 * 1024 < len(body) < 8 * 1024 * 1024
    r = client.post("/api/v2/pushes", data=body, content_type="application/json")
    assert r.status_code == 201
    assert client.get(f"/api/v2/pushes/{r.json['url_token']}").json["payload"] == payload


@pytest.mark.parametrize("path, root", [("/api/v2/pushes", "push"), ("/p.json", "password")])
def test_a_one_mib_payload_of_emoji_escaped_as_the_cli_sends_it_fits(client, path, root):
    payload = "\U0001F600" * 1_048_576  # json.dumps sends each as "\ud83d\ude00": 12 MiB of JSON
    body = json.dumps({root: {"payload": payload, "note": "n" * 1000, "passphrase": "p"}}).encode()
    assert len(body) > 12 * 1024 * 1024
    r = client.post(path, data=body, content_type="application/json")
    assert r.status_code == 201
    token = r.json["url_token"]
    assert client.get(f"/api/v2/pushes/{token}?passphrase=p").json["payload"] == payload


def test_a_json_body_is_held_to_the_json_limit_not_the_upload_limit(settings, database_url, request):
    # An admin's small PWP__FILES__MAX_TOTAL_BYTES (here 1 MiB) cut signed-in JSON pushes
    # (the general path) short of the 1 048 576 characters the anonymous hot path took.
    settings["PWP__FILES__MAX_TOTAL_BYTES"] = 1024 * 1024
    client, token = request.getfixturevalue("client"), request.getfixturevalue("token")
    body = json.dumps({"push": {"payload": "\u4e2d" * 1_048_576}}).encode()  # 6 MiB escaped
    for headers in ({}, bearer(token)):
        r = client.post("/api/v2/pushes", data=body, content_type="application/json", headers=headers)
        assert r.status_code == 201, headers


def test_passphrase_with_a_lone_surrogate_is_a_wrong_passphrase(client):
    t = client.post("/api/v2/pushes", json={"push": {"payload": "x", "passphrase": "p"}}).json["url_token"]
    r = client.get(f"/api/v2/pushes/{t}", data=b'{"passphrase": "\\ud800"}', content_type="application/json")
    assert r.status_code == 401 and r.json["error"] == "That passphrase is incorrect."
    assert client.get(f"/api/v2/pushes/{t}?passphrase=p").json["payload"] == "x"


def test_unicode_digits_are_not_numbers(client):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "expire_after_duration": "\u00b2"}})
    assert r.status_code == 422 and r.json == {"expire_after_duration": ["is not included in the list"]}
    # Ruby's to_i reads no Arabic-Indic digit: the default, as for any junk.
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "expire_after_views": "\u0663"}})
    assert r.status_code == 201 and r.json["expire_after_views"] == 5


def test_name_longer_than_its_column_is_422(client):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "name": "n" * 256}})
    assert r.status_code == 422 and r.json == {"name": ["is too long (maximum is 255 characters)"]}
    r = client.post("/p.json", data={"password[payload]": "x", "password[name]": "\u00e9" * 255})
    assert r.status_code == 201 and r.json["name"] == "\u00e9" * 255


def test_nul_in_name_does_not_break_storage(client):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x\u0000y", "name": "a\u0000b"}})
    assert r.status_code == 201 and r.json["name"] == "ab"
    assert client.get(f"/api/v2/pushes/{r.json['url_token']}").json["payload"] == "x\u0000y"


def test_unknown_routes_and_methods_are_json(client):
    r = client.get("/api/v2/requests")
    assert r.status_code == 404 and r.is_json
    assert client.get("/api/v2/accounts").status_code == 404
    # No update route, no index (as upstream: "PUT/PATCH -> 404").
    for method, path in (("PUT", "/api/v2/pushes/abc"), ("PATCH", "/p/abc.json"), ("GET", "/api/v2/pushes")):
        r = client.open(path, method=method)
        assert r.status_code == 404 and r.json == {"status": 404, "error": "Not Found"}, (method, path)


def test_trailing_and_doubled_slashes_route_as_upstreams_router_does(client, token):
    """Rails routes `/api/v2/pushes/` and `/api/v2//pushes` as `/api/v2/pushes`."""
    r = client.post("/api/v2/pushes/", json={"push": {"payload": "s"}})
    assert r.status_code == 201
    t = r.json["url_token"]
    assert client.get("/api/v2//version/").json["api_version"]
    assert client.get(f"/api/v2/pushes/{t}/").json["payload"] == "s"
    assert client.get(f"/p//{t}.json", headers=bearer(token)).json["payload"] == "s"
    assert client.get("/api/v2/pushes/active/", headers=bearer(token)).status_code == 200
    assert client.post("/p.json/", json={"password": {"payload": "v1"}}).status_code == 201
    assert client.get("/", follow_redirects=False).status_code == 200
    assert client.get("/api/v2/nothing/").status_code == 404


@pytest.mark.parametrize("path,field", [("/p.json", "password[payload]"), ("/api/v2/pushes", "push[payload]")])
def test_url_encoded_forms_have_limits_too(client, path, field):
    """werkzeug caps multipart fields and parts only: 25 MiB of empty URL-encoded fields
    took 1 GiB to parse. Past the longest payload percent-encoded, or 1000 fields, a 413."""
    from urllib.parse import quote

    many = b"&".join(b"a%d=" % i for i in range(1000)) + b"&" + field.encode() + b"=x"
    r = client.post(path, data=many, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 413 and r.is_json
    fewer = b"&".join(b"a%d=" % i for i in range(999)) + b"&" + field.encode() + b"=x"  # 1000 fields
    assert client.post(path, data=fewer, content_type="application/x-www-form-urlencoded").status_code == 201
    longest = "\N{GRINNING FACE}" * 1_048_576  # 12 MiB percent-encoded
    r = client.post(path, data=f"{field}={quote(longest)}", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 201
    url = "/p/{}.json" if path == "/p.json" else "/api/v2/pushes/{}"
    assert client.get(url.format(r.json["url_token"])).json["payload"] == longest
    over = f"{field}=x&note={'n' * (3 * (4 * 1_048_576 + 1024 + 64 * 1024))}"
    r = client.post(path, data=over, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 413 and r.is_json


@pytest.mark.parametrize("path,root", [("/p.json", "password"), ("/api/v2/pushes", "push")])
def test_a_url_encoded_form_holds_the_longest_payload_note_and_name(client, path, root):
    """The URL-encoded limit is the multipart one percent-encoded (three bytes a byte): it was
    the longest payload's and 64 KiB, and a 10 000-emoji note (120 000 bytes encoded) with it
    was a 413 where the same fields as multipart were stored."""
    from urllib.parse import urlencode

    grin = "\N{GRINNING FACE}"
    fields = {f"{root}[payload]": grin * 1_048_576, f"{root}[note]": grin * 10_000,
              f"{root}[name]": grin * 255, f"{root}[passphrase]": grin * 64}
    r = client.post(path, data=urlencode(fields), content_type="application/x-www-form-urlencoded")
    assert r.status_code == 201, r.data[:200]


@pytest.mark.parametrize("path,root", [("/p.json", "password"), ("/api/v2/pushes", "push")])
def test_multipart_text_fields_together_hold_at_most_the_longest_payload_and_a_note(client, path, root):
    """Each text field may hold 4 MiB (the longest payload), but together past it and 64 KiB
    a 413: six 4 MiB notes (24 MiB) were held whole before the 422 (32 MiB in the worker)."""
    grin = "\N{GRINNING FACE}"
    r = client.post(path, content_type="multipart/form-data",
                    data={f"{root}[payload]": grin * 1_048_576, f"{root}[note]": grin * 10_000})
    assert r.status_code == 201
    r = client.post(path, content_type="multipart/form-data",
                    data={f"{root}[payload]": "x", f"{root}[note]": "n" * 3 * 2**20, "other": "o" * 2 * 2**20})
    assert r.status_code == 413 and r.is_json


def _multipart_field(name: bytes, value: bytes, content_type: bytes = b"") -> bytes:
    type_line = b"Content-Type: " + content_type + b"\r\n" if content_type else b""
    return (b'--XX\r\nContent-Disposition: form-data; name="' + name + b'"\r\n' + type_line
            + b"\r\n" + value + b"\r\n--XX--\r\n")


@pytest.mark.parametrize("content_type,body", [
    ("application/x-www-form-urlencoded", b"password[payload]=caf%E9"),  # Latin-1, percent-encoded
    ("application/x-www-form-urlencoded", b"password[payload]=caf\xe9"),
    ("multipart/form-data; boundary=XX", _multipart_field(b"password[payload]", b"caf\xe9")),
    # ASCII declared (werkzeug decodes it with errors="replace" too)
    ("multipart/form-data; boundary=XX",
     _multipart_field(b"password[payload]", b"caf\xe9", b"text/plain; charset=us-ascii")),
])
def test_a_form_that_is_not_utf8_is_a_400_not_a_changed_secret(app, client, content_type, body):
    """werkzeug kept "%E9" as three characters and replaced a multipart field's bytes with
    U+FFFD: the secret stored was not the one sent. Upstream answers 400 too."""
    r = client.post("/p.json", data=body, content_type=content_type)
    assert r.status_code == 400 and r.json == {"error": "The form is not valid UTF-8."}
    assert sql(app, "SELECT count(*) FROM pushes") == [(0,)]


@pytest.mark.parametrize("content_type,body", [
    ("application/x-www-form-urlencoded", b"password[payload]=caf%C3%A9"),
    ("multipart/form-data; boundary=XX", _multipart_field(b"password[payload]", "café".encode())),
    ("multipart/form-data; boundary=XX",  # a charset the client declares
     _multipart_field(b"password[payload]", b"caf\xe9", b"text/plain; charset=iso-8859-1")),
])
def test_utf8_and_declared_charsets_still_read(client, content_type, body):
    r = client.post("/p.json", data=body, content_type=content_type)
    assert r.status_code == 201
    assert client.get(f"/p/{r.json['url_token']}.json").json["payload"] == "café"


def test_url_encoded_forms_are_read_as_parse_qsl_reads_them():
    """params.form_items percent-decodes a value 64 KiB at a time (urllib's unquote splits a
    value at every "%": a 12 MB field took 1-2 GiB); what it reads must not change, across
    those 64 KiB boundaries too."""
    import random
    from urllib.parse import parse_qsl

    from pwp.params import form_items

    cases = [b"a=b&c=%zz%4&d=%41%2b+x%41&e&=f&%E2%82%AC=%c3%a9;g", b"a=%", b"x=%%41", b"&&a=1&&", b"=",
             b"a=b=c", "k=\u00e9&\u00fc=%C3%BC".encode(), b"p=" + b"%" * 70_000,
             b"v=" + b"%41" * 30_000 + b"%" + b"%4" + b"%41%e2%82%ac" * 20_000,
             b"b=\\x41%5Cn\\%41\\\\%zz\\"]  # backslashes: a decoder built on escapes must keep them
    rnd = random.Random(4)
    for size in [70_000, 140_000] + [300] * 200:
        cases.append(bytes(rnd.choice(b"%%%aAfF09+=&;\xc3\xa9xyz\\") for _ in range(rnd.randint(0, size))))
    for body in cases:
        try:
            expected = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            with pytest.raises(UnicodeDecodeError):
                form_items(body)
        else:
            assert form_items(body) == expected, body[:60]


def test_a_replacement_character_sent_as_utf8_is_kept(client):
    body = _multipart_field(b"password[payload]", "a\ufffdb".encode())
    r = client.post("/p.json", data=body, content_type="multipart/form-data; boundary=XX")
    assert client.get(f"/p/{r.json['url_token']}.json").json["payload"] == "a\ufffdb"


def test_oversized_body_is_413_json(client):
    big = b'{"push": {"payload": "' + b"a" * (27 * 1024 * 1024) + b'"}}'
    r = client.post("/api/v2/pushes", data=big, content_type="application/json")
    assert r.status_code == 413 and r.is_json


def _call(app, path, method="GET", host="localhost", **kwargs):
    """Call the WSGI app with any Host header (the test client cannot build some of them)."""
    from werkzeug.test import EnvironBuilder
    environ = EnvironBuilder(path=path, method=method, **kwargs).get_environ()
    environ["HTTP_HOST"] = host
    answer = {}
    body = b"".join(app(environ, lambda status, headers, exc_info=None: answer.update(status=status)))
    return int(answer["status"].split()[0]), body


@pytest.mark.parametrize("host", ["xn--abc", "XN--ABC:80", "a" * 64 + ".example", "a..b", "b.xn--",
                                  "x:abc", "x:99999", "a b", "x/y", "[::1", ""])  # (werkzeug's host: "")
def test_a_host_that_cannot_be_linked_to_is_400_before_anything_is_written(app, client, host):
    # Links are built from the Host header after the write: a host that could not be
    # decoded once cost a 1-view push its only view (and left a create unanswered).
    t = client.post("/api/v2/pushes", json={"push": {"payload": "once", "expire_after_views": 1}}).json["url_token"]
    for path in (f"/api/v2/pushes/{t}", f"/p/{t}.json", f"/api/v2/pushes/{t}/preview"):
        status, body = _call(app, path, host=host)
        assert status == 400 and json.loads(body) == {"status": 400, "error": "Bad Request"}
    status, body = _call(app, "/api/v2/pushes", "POST", host=host, json={"push": {"payload": "x"}})
    assert status == 400
    status, body = _call(app, "/", host=host)  # a page: no template can be routed either
    assert status == 400 and b"Host" in body
    assert sql(app, "SELECT count(*) FROM pushes")[0][0] == 1
    assert client.get(f"/api/v2/pushes/{t}").json["payload"] == "once"


def test_a_proxys_upstream_name_serves_when_links_name_another_host(settings, database_url, request):
    # nginx's proxy_pass http://pwpush_web:8000 sends that Host: werkzeug reads "_" as no
    # host. With PWP__OVERRIDE_BASE_URL no link is made from it, so it serves.
    settings["PWP__OVERRIDE_BASE_URL"] = "https://pwpush.example.com"
    app = request.getfixturevalue("app")
    status, body = _call(app, "/api/v2/pushes", "POST", host="pwpush_web:8000", json={"push": {"payload": "x"}})
    assert status == 201 and json.loads(body)["html_url"].startswith("https://pwpush.example.com/p/")
    assert _call(app, "/up", host="pwpush_web:8000")[0] == 200
    assert _call(app, "/api/v2/pushes", "POST", host="xn--abc", json={"push": {"payload": "x"}})[0] == 400


def test_ordinary_hosts_are_served(app):
    for host, link in (("localhost:8000", "localhost:8000"), ("[::1]:8000", "[::1]:8000"),
                       ("127.0.0.1", "127.0.0.1"),
                       ("xn--bcher-kva.example", "b\u00fccher.example")):  # links as werkzeug spells them
        status, body = _call(app, "/api/v2/pushes", "POST", host=host, json={"push": {"payload": "x"}})
        assert status == 201 and json.loads(body)["html_url"].startswith(f"http://{link}/p/"), host


@pytest.mark.parametrize("path", ["/api/v2/pushes", "/api/v2/pushes?x=1", "/p.json"])  # hot path, Flask
def test_unclosed_json_strings_cost_linear_time(client, path):
    # Each quote of a body of unclosed strings was matched to the body's end: one anonymous
    # 400 KB body held a worker for minutes (gunicorn killed it after 30 s). Here ~10 s each
    # before the fix; now milliseconds.
    for body in ('"' + '\\"[' * 100_001 + " " * 100_000,  # over 100 000 brackets: looked at closely
                 '"' + '\\",' * 400_000):  # over 1 MiB: its values counted
        r = client.post(path, data=body.encode(), content_type="application/json")
        assert r.status_code in (400, 413) and r.is_json


def test_bracketed_field_names_are_read_as_rack_reads_them_in_linear_time(client):
    import random
    import re

    from pwp.params import _subkeys
    old = re.compile(r"\[([^\]]*)\]")  # what was used: quadratic on "[" without "]"
    rnd = random.Random(7)
    for _ in range(3000):
        key = "".join(rnd.choice("ab[]") for _ in range(rnd.randint(0, 12)))
        head = key.split("[", 1)[0]
        assert _subkeys(key, len(head)) == old.findall(key[len(head):]), key
    body = b"push[payload]=x&a" + b"[" * 200_000 + b"=1"  # ~30 s of a worker before
    r = client.post("/api/v2/pushes", data=body, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 201


def test_deeply_nested_parameter_names_are_refused_cheaply(client):
    """Anonymous: one URL-encoded field named a[x][x]... (4 million levels, 12.5 MB) took a
    gunicorn worker from 125 MB to 921 MB and 6.7 s of CPU. Rack refuses names nested past
    32 levels with a 400 (ParamsTooDeepError); so must we, before building the tree."""
    body = b"a" + b"[x]" * 300_000 + b"=1&push[payload]=x"
    r = client.post("/api/v2/pushes", data=body, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400 and r.json == {"error": "A parameter name is nested more than 32 levels deep."}
    # Multipart too (the names are the parts' Content-Disposition names).
    r = client.post("/api/v2/pushes", data={"push[payload]": "x", "a" + "[x]" * 40: "1"},
                    content_type="multipart/form-data")
    assert r.status_code == 400
    # Rails' usual depths still work.
    ok = client.post("/api/v2/pushes", data={"push[payload]": "x", "a" + "[x]" * 31: "1"})
    assert ok.status_code == 201


def test_multipart_part_headers_are_bounded(client, token):
    """Anonymous: 998 parts with 9 KB Content-Disposition headers (9 MB) took a worker
    2.5-3.6 s of CPU in werkzeug's parse_options_header; a part's headers past 8 KiB are a 413."""
    import io
    boundary = "bnd"
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="a{i}{"x" * 9000}"\r\n\r\nx\r\n'.encode()
                    for i in range(200)) + f"--{boundary}--\r\n".encode()
    r = client.post("/api/v2/pushes", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert r.status_code == 413 and r.is_json
    # An upload with a long UTF-8 name still goes through.
    r = client.post("/api/v2/pushes", headers=bearer(token), content_type="multipart/form-data",
                    data={"push[kind]": "file", "push[files][]": (io.BytesIO(b"data"), "\u00e9" * 250 + ".txt")})
    assert r.status_code == 201, r.data


# Chunked bodies gunicorn's reader refuses: a size that is no hex number, a chunk without its
# CRLF, a control character in a chunk extension, a trailer field it forbids.
BAD_CHUNKS = [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"2;\x01\r\n{}\r\n0\r\n\r\n",
              b"2\r\n{}\r\n0\r\nTrailer: x\r\n\r\n"]


@pytest.mark.slow
def test_a_chunked_body_gunicorn_cannot_read_is_a_400(tmp_path):
    """gunicorn parses a chunked body (Transfer-Encoding: chunked) as the app reads it, and
    raises what it refuses there: those were 500s, with a traceback in the log. Now a 400,
    JSON for the API, the error page for a form; a well-formed one with an extension and a
    trailer is read."""
    def send(port, path, content_type, chunks):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(f"POST {path} HTTP/1.1\r\nHost: h\r\nContent-Type: {content_type}\r\n"
                         "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode() + chunks)
            answer = b""
            while data := conn.recv(65536):
                answer += data
        return answer
    with gunicorn(server_env(tmp_path / "instance"), tmp_path / "log") as server:
        for chunks in BAD_CHUNKS:
            for path, content_type in [("/api/v2/pushes", "application/json"), ("/p.json", "application/json"),
                                       ("/api/v2/pushes", "multipart/form-data; boundary=zz"),
                                       ("/p", "application/x-www-form-urlencoded"),
                                       ("/users/sign_in", "application/x-www-form-urlencoded")]:
                answer = send(server.port, path, content_type, chunks)
                assert answer.startswith(b"HTTP/1.1 400 "), (path, chunks, answer[:300])
                assert (b'"error":"Bad Request"' in answer) == path.startswith(("/api", "/p.json"))
        body = json.dumps({"push": {"payload": "chunked"}}).encode()
        answer = send(server.port, "/api/v2/pushes", "application/json",
                      b"%x;ext=1\r\n%s\r\n0\r\nX-Checksum: 1\r\n\r\n" % (len(body), body))
        assert answer.startswith(b"HTTP/1.1 201 ")
        assert "Traceback" not in server.logs()
