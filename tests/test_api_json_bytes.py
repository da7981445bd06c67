"""The bytes of JSON answers: compact, as upstream's Rails `render json:` writes them, text
beyond ASCII in UTF-8 (not \\u escapes), and ending with the document (no "\\n" after it,
which Flask's jsonify adds and the pwpush CLI shows inside its error text)."""
import json
import socket

import pytest
from werkzeug.test import EnvironBuilder

from conftest import bearer
from servers import gunicorn, server_env


def compact(body: bytes) -> bytes:
    """The body as upstream writes the same document: compact, UTF-8, nothing after it."""
    return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()


def test_creates_and_views_end_with_the_document(client, token):
    answers = {
        "create (hot path)": client.post("/api/v2/pushes", json={"push": {"payload": "x"}}),
        "create (Flask)": client.post("/api/v2/pushes", json={"push": {"payload": "x"}}, headers=bearer(token)),
        "create (v1)": client.post("/p.json", json={"password": {"payload": "x"}}),
    }
    url_token = answers["create (hot path)"].json["url_token"]
    answers["view (hot path)"] = client.get(f"/api/v2/pushes/{url_token}")
    answers["view (v1)"] = client.get(f"/p/{url_token}.json")
    answers["preview"] = client.get(f"/api/v2/pushes/{url_token}/preview")
    answers["delete"] = client.delete(f"/api/v2/pushes/{url_token}")
    answers["active"] = client.get("/api/v2/pushes/active", headers=bearer(token))
    answers["version"] = client.get("/api/v2/version")
    problems = {label: r.get_data()[-20:] for label, r in answers.items()
                if r.get_data() != compact(r.get_data()) or r.get_data()[-1:] not in (b"}", b"]")}
    assert not problems, problems
    assert answers["create (hot path)"].status_code == 201 and answers["view (hot path)"].status_code == 200


@pytest.mark.parametrize("method, path, body, status, expected", [
    ("GET", "/api/v2/pushes/nosuchtoken", None, 404, b'{"error":"not-found"}'),
    ("GET", "/p/nosuchtoken.json", None, 404, b'{"error":"not-found"}'),
    ("GET", "/api/v2/nowhere", None, 404, b'{"status":404,"error":"Not Found"}'),
    ("POST", "/api/v2/pushes", {"push": {"payload": ""}}, 422, b'{"payload":["Payload is required."]}'),
    ("POST", "/api/v2/pushes", {"push": {"kind": "url", "payload": "ftp://x"}}, 422,
     b'{"payload":["must be a valid HTTP or HTTPS URL."]}'),
    ("POST", "/api/v2/pushes", {"other": 1}, 400,
     b'{"error":"param is missing or the value is empty or invalid: push"}'),
    ("GET", "/api/v2/pushes/active?page=abc", None, 400, b'{"error":"Invalid page parameter"}'),
])
def test_errors_end_with_the_document(client, token, method, path, body, status, expected):
    r = client.open(path, method=method, json=body, headers=bearer(token) if "active" in path else {})
    assert (r.status_code, r.get_data()) == (status, expected)


def test_the_hot_paths_bad_host_answer_ends_with_the_document(app):
    environ = EnvironBuilder(path="/api/v2/pushes/abc").get_environ()
    environ["HTTP_HOST"] = "xn--abc"
    body = b"".join(app(environ, lambda status, headers, exc_info=None: None))
    assert body == b'{"status":400,"error":"Bad Request"}'


def test_the_workers_own_refusals_end_with_the_document(tmp_path):
    """The gunicorn worker's answers to requests it refuses before the app (pwp/worker_errors.py)."""
    with gunicorn(server_env(tmp_path / "instance"), tmp_path / "log") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
            conn.sendall(b"GET /api/v2/pushes/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 ") and body == b'{"status":414,"error":"URI Too Long"}'


def test_jsonify_writes_the_api_answers_bytes(app):
    """A view that answers with jsonify (or returns a dict) writes what the API's own answers do."""
    from flask import jsonify

    with app.test_request_context("/api/v2/version"):
        answer = jsonify({"b": 1, "a": ["é"]})
    assert answer.get_data() == '{"b":1,"a":["é"]}'.encode()
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"


UNICODE = "pässwörd — 密码 🔐 \u200b"


@pytest.mark.parametrize("path", ["/api/v2/pushes/{}", "/p/{}.json"])  # (the hot path, Flask's view)
def test_text_beyond_ascii_is_sent_as_utf8_as_upstream(client, token, path):
    """Rails' JSON writes such text as it is, in UTF-8; json.dumps wrote \\u escapes (the same
    text to a JSON parser, but not upstream's bytes, and up to 3 times longer)."""
    created = client.post("/api/v2/pushes", json={"push": {"payload": UNICODE}})
    assert created.status_code == 201
    shown = client.get(path.format(created.json["url_token"]))
    assert shown.json["payload"] == UNICODE
    assert f'"payload":"{UNICODE}"'.encode() in shown.get_data()
    named = client.post("/api/v2/pushes", json={"push": {"payload": "x", "name": UNICODE, "note": UNICODE}},
                        headers=bearer(token))
    assert named.get_data().endswith(f'"note":"{UNICODE}","name":"{UNICODE}"}}'.encode())


def test_a_lone_surrogate_is_escaped_not_a_500():
    """No UTF-8 holds a lone surrogate (the API refuses them in input): were one in an answer,
    it is written as JSON escapes it, and the answer is sent."""
    from pwp.errors import json_body

    assert json_body({"a": "é\udc80"}) == b'{"a":"\\u00e9\\udc80"}'
    assert json_body({"a": "<\udc80&"}) == b'{"a":"\\u003c\\udc80\\u0026"}'


@pytest.mark.parametrize("path", ["/api/v2/pushes/{}", "/p/{}.json"])  # (the hot path, Flask's view)
def test_html_characters_and_line_separators_are_escaped_as_rails_does(client, path):
    """Rails' JSON (ActiveSupport, escape_html_entities_in_json on by default) writes <, > and &
    as \\u003c, \\u003e, \\u0026, and U+2028 / U+2029 always escaped: upstream's bytes (and no
    markup in an answer a browser might be led to read as a page); the same text to a parser."""
    payload = "https://example.com/?a=1&b=<2>\u2028\u2029"
    created = client.post("/api/v2/pushes", json={"push": {"payload": payload}})
    assert created.status_code == 201
    shown = client.get(path.format(created.json["url_token"]))
    assert shown.json["payload"] == payload
    assert b'"payload":"https://example.com/?a=1\\u0026b=\\u003c2\\u003e\\u2028\\u2029"' in shown.get_data()
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw.encode() not in shown.get_data()
