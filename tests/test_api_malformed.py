"""Malformed input: always a 4xx with a JSON body, never a 5xx."""
import pytest

from conftest import bearer

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


def test_nul_in_name_does_not_break_storage(client):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x\u0000y", "name": "a\u0000b"}})
    assert r.status_code == 201 and r.json["name"] == "ab"
    assert client.get(f"/api/v2/pushes/{r.json['url_token']}").json["payload"] == "x\u0000y"


def test_unknown_routes_and_methods_are_json(client):
    r = client.get("/api/v2/requests")
    assert r.status_code == 404 and r.is_json
    assert client.get("/api/v2/accounts").status_code == 404
    r = client.put("/api/v2/pushes/abc")
    assert r.status_code == 405 and r.is_json
    r = client.patch("/p/abc.json")
    assert r.status_code in (404, 405) and r.is_json


def test_oversized_body_is_413_json(client):
    big = b'{"push": {"payload": "' + b"a" * (27 * 1024 * 1024) + b'"}}'
    r = client.post("/api/v2/pushes", data=big, content_type="application/json")
    assert r.status_code == 413 and r.is_json
