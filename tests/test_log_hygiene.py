"""No payload, passphrase, url_token or API token ever appears in a server's logs.

A real gunicorn (debug log level, access log on, the project's gunicorn.conf.py),
on SQLite and on PostgreSQL, goes through a realistic session with distinctive
markers; then its captured stdout and stderr are searched for every secret it
handled, and for its keys.
"""
import io
import json
import logging
import secrets
import socket
import uuid
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import quote, urlsplit

import pytest
from cryptography.fernet import Fernet
from gunicorn.config import Config
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from pwp.logfilter import GunicornLogger, RedactFilter, redact
from pwp.models import db
from servers import bearer, create_user, gunicorn, server_env


def marker(kind):
    """A distinctive value that cannot occur in a log by chance."""
    return f"{kind}-{secrets.token_hex(8)}"


def multipart(fields, files):
    """Encode fields {name: str} and files [(name, filename, bytes)] as multipart/form-data."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, filename, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\n\r\n'.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def raw_request(port, data: bytes) -> bytes:
    """Send raw bytes (a malformed request) and return whatever comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def session(server, api_token, email):
    """Use the server as clients do; return every secret it saw."""
    seen = {"api_token": api_token}
    payload, passphrase, note = marker("PAYLOAD"), marker("PASSPHRASE"), marker("NOTE")
    seen.update(payload=payload, passphrase=passphrase, note=note)

    # Create with a passphrase (Bearer), then retrieve: no, wrong and right passphrases.
    status, push = server.json("POST", "/api/v2/pushes", headers=bearer(api_token), body={
        "push": {"payload": payload, "passphrase": passphrase, "note": note, "expire_after_views": 10}})
    assert status == 201
    t = seen["url_token"] = push["url_token"]
    wrong = seen["wrong_passphrase"] = marker("WRONGPASS")
    assert server.json("GET", f"/api/v2/pushes/{t}")[0] == 401
    assert server.json("GET", f"/api/v2/pushes/{t}?passphrase={wrong}")[0] == 401
    status, body = server.json("GET", f"/api/v2/pushes/{t}?passphrase={passphrase}")
    assert (status, body["payload"]) == (200, payload)
    status, body = server.json("GET", f"/api/v2/pushes/{t}", body={"passphrase": passphrase})
    assert (status, body["payload"]) == (200, payload)
    # A browser following the secret link sends it as the Referer.
    server.request("GET", f"/p/{t}", headers={"Referer": f"{server.url}/p/{t}/r"})
    assert server.json("GET", f"/api/v2/pushes/{t}/preview")[0] == 200
    assert server.json("GET", f"/api/v2/pushes/{t}/audit", headers=bearer(api_token))[0] == 200

    # Other spellings of the secret URL that gunicorn decodes and Werkzeug routes (or redirects).
    odd_payload = seen["odd_payload"] = marker("ODDPAYLOAD")
    status, odd = server.json("POST", "/api/v2/pushes", headers=bearer(api_token), body={
        "push": {"payload": odd_payload, "expire_after_views": 10}})
    assert status == 201
    o = seen["odd_url_token"] = odd["url_token"]
    encoded = "".join(f"%{ord(c):02X}" for c in o)
    for path, expected_status in [(f"/%70/{o}/r", 200), (f"/p//{o}", 200), (f"/p%2F{o}", 200),
                                  (f"/api/v2/%70ushes/{encoded}", 200), (f"/p/{o}%2Ejson", 200)]:
        assert server.request("GET", path)[0] == expected_status, path
    # The token upper-cased or capitalized (a keyboard's doing) under a path no route takes: a
    # 404, and it is the token but for its case.
    seen.update(upper_url_token=o.upper(), capitalized_url_token=o.capitalize())
    for path in (f"/X/{o.upper()}", f"/x/{o.capitalize()}.json"):
        assert server.request("GET", path)[0] == 404, path
    # The token after a quote, as a query item's name, in a fragment: gunicorn takes them (404s).
    for path in (f"/x/'{o}", f'/x/"{o}', f"/x?{o}=1", f"/x#{o}"):
        assert server.request("GET", path)[0] == 404, path
    # The printable page: the sender's message rides in its query string.
    printed = seen["print_message"] = marker("PRINTMESSAGE")
    status, _h, page = server.request("GET", f"/p/{o}/print_preview?message={printed}%0D%0Aline+2&show_id=on")
    assert status == 200 and printed.encode() in page

    # Legacy headers, the bare token, and a bad token.
    legacy = {"X-User-Email": email, "X-User-Token": api_token}
    assert server.json("GET", "/api/v2/pushes/active", headers=legacy)[0] == 200
    assert server.json("GET", "/api/v2/pushes/expired", headers={"Authorization": api_token})[0] == 200
    bad = seen["bad_token"] = marker("BADTOKEN")
    assert server.json("GET", "/api/v2/pushes/active", headers=bearer(bad))[0] == 401

    # A file push, its retrieval and the download of the file.
    file_body, file_name = marker("FILEBODY").encode(), marker("FILENAME") + ".txt"
    seen.update(file_body=file_body.decode(), file_name=file_name)
    body, headers = multipart({"push[kind]": "file", "push[passphrase]": passphrase},
                              [("push[files][]", file_name, file_body)])
    status, _h, raw = server.request("POST", "/api/v2/pushes", body=body,
                                     headers={**headers, **bearer(api_token)})
    assert status == 201
    f = seen["file_url_token"] = json.loads(raw)["url_token"]
    status, retrieved = server.json("GET", f"/api/v2/pushes/{f}?passphrase={passphrase}")
    assert status == 200
    link = urlsplit(retrieved["files"][0]["url"]).path
    seen["file_link"] = link.split("/")[2]
    status, _h, downloaded = server.request("GET", link)
    assert (status, downloaded) == (200, file_body)

    # Legacy v1: create, retrieve, preview, delete.
    v1_payload = seen["v1_payload"] = marker("V1PAYLOAD")
    status, v1 = server.json("POST", "/p.json", headers=bearer(api_token),
                             body={"password": {"payload": v1_payload}})
    assert status == 201
    v = seen["v1_url_token"] = v1["url_token"]
    assert server.json("GET", f"/p/{v}.json")[1]["payload"] == v1_payload
    assert server.json("GET", f"/p/{v}/preview.json")[0] == 200
    assert server.json("DELETE", f"/p/{v}.json", headers=bearer(api_token))[0] == 200

    # Malformed requests: invalid JSON, and a broken request line that gunicorn itself logs.
    status, _h, _b = server.request("POST", "/api/v2/pushes", body=b"{" + payload.encode(),
                                    headers={"Content-Type": "application/json", **bearer(api_token)})
    assert status == 400
    raw_request(server.port, f"GET /api/v2/pushes/{t} HTTP/1.1\r\n"
                             f"Host: x\r\nAuthorization Bearer {api_token}\r\n\r\n".encode())
    raw_request(server.port, f"GET /api/v2/pushes/{t}?passphrase=x {passphrase} HTTP/1.1\r\n\r\n".encode())
    # (A quote in the value: gunicorn's line quotes it in double quotes.)
    raw_request(server.port, f"GET /x HTTP/1.1\r\nHost: x\r\nAuthorization Bearer it's {api_token}\r\n\r\n".encode())

    # Delete, then read the expired push.
    assert server.json("DELETE", f"/api/v2/pushes/{t}", headers=bearer(api_token))[0] == 200
    status, body = server.json("GET", f"/api/v2/pushes/{t}")
    assert (status, body["payload"]) == (200, None)
    return seen


@pytest.mark.slow
def test_server_logs_contain_no_secrets(database_url, tmp_path):
    keys = {"master_key": Fernet.generate_key().decode(), "secret_key": marker("SECRETKEY"),
            "raw_env": marker("RAWENV")}
    env = server_env(tmp_path / "instance", database_url, PWPUSH_MASTER_KEY=keys["master_key"],
                     SECRET_KEY=keys["secret_key"])
    log_path = tmp_path / "server.log"
    email = "logs@example.com"
    api_token = create_user(env, email, log_path=log_path)
    with gunicorn(env, log_path, workers=2, args=(
            "--log-level", "debug", "--access-logfile", "-", "--error-logfile", "-",
            "--capture-output", "-e", f"PWPUSH_TEST_RAW_ENV={keys['raw_env']}")) as server:
        seen = session(server, api_token, email) | keys
    logs = log_path.read_text(encoding="utf-8", errors="replace")

    # The check is not vacuous: debug logging and the access log were on and saw the session.
    # (Counted, not `in logs`: a failing assertion must not print the log.)
    expected = ["[DEBUG]", "  raw_env: [FILTERED]", '"GET /api/v2/pushes/active HTTP/1.1" 200', '"GET /pfb/[FILTERED] HTTP/1.1" 200',
                '"GET /p/[FILTERED].json HTTP/1.1" 200', "Invalid request from ip=127.0.0.1",
                '"GET /p/[FILTERED]/print_preview?message=[FILTERED]&show_id=[FILTERED] HTTP/1.1" 200']
    assert [needle for needle in expected if needle not in logs] == []
    assert logs.count('"GET /api/v2/pushes/[FILTERED]?passphrase=[FILTERED] HTTP/1.1" 200') >= 2
    odd_spellings = ['"GET /%70/[FILTERED]/r HTTP/1.1" 200', '"GET /p//[FILTERED] HTTP/1.1" 200',
                     '"GET /p/[FILTERED] HTTP/1.1" 200', '"GET /api/v2/%70ushes/[FILTERED] HTTP/1.1" 200']
    assert [needle for needle in odd_spellings if needle not in logs] == []

    leaked = [name for name, value in seen.items()
              if value in logs or quote(value, safe="") in logs]
    assert leaked == []


@pytest.mark.parametrize(("line", "expected"), [
    ("GET /api/v2/pushes/abc123?passphrase=s3cret&page=2 HTTP/1.1",
     "GET /api/v2/pushes/[FILTERED]?passphrase=[FILTERED]&page=2 HTTP/1.1"),
    ("GET /api/v2/pushes/abc123.json HTTP/1.1", "GET /api/v2/pushes/[FILTERED].json HTTP/1.1"),
    ("DELETE /api/v2/pushes/abc123", "DELETE /api/v2/pushes/[FILTERED]"),
    ("GET /api/v2/pushes/abc123/audit?page=3", "GET /api/v2/pushes/[FILTERED]/audit?page=3"),
    ("GET /api/v2/pushes/active HTTP/1.1", "GET /api/v2/pushes/active HTTP/1.1"),
    ("GET /p/expired.json", "GET /p/expired.json"),
    ("GET /p/new?tab=text", "GET /p/new?tab=text"),
    ("GET /p/abc123/r", "GET /p/[FILTERED]/r"),
    ("GET /p/abc123/print_preview?message=Desk+7%0D%0Apin+4411&show_expiration=true HTTP/1.1",
     "GET /p/[FILTERED]/print_preview?message=[FILTERED]&show_expiration=[FILTERED] HTTP/1.1"),
    ("GET /f/abc123/preview.json", "GET /f/[FILTERED]/preview.json"),
    ("GET /en/r/abc123.json", "GET /en/r/[FILTERED].json"),
    ('"http://host/p/abc123/r"', '"http://host/p/[FILTERED]/r"'),
    ("GET /pfb/gAAAAB-x_y=/report.pdf HTTP/1.1", "GET /pfb/[FILTERED] HTTP/1.1"),
    ("POST /p/abc123/passphrase", "POST /p/[FILTERED]/passphrase"),
    ("Invalid request from ip=127.0.0.1: Invalid HTTP Header: 'Authorization Bearer abc'",
     "Invalid request from ip=127.0.0.1: Invalid HTTP Header: '[FILTERED]'"),
    # (An IPv6 client's; a value with a quote, which repr() puts in double quotes; the debug line
    # of a head cut short, `-k sync`: gunicorn quotes what came of it.)
    ("Invalid request from ip=::1: Invalid HTTP Header: 'Authorization Bearer abc'",
     "Invalid request from ip=::1: Invalid HTTP Header: '[FILTERED]'"),
    ("Invalid request from ip=127.0.0.1: Invalid HTTP Header: \"Authorization Bearer it's-abc\"",
     "Invalid request from ip=127.0.0.1: Invalid HTTP Header: \"[FILTERED]\""),
    ("Invalid request from ip=: Invalid HTTP header name: b'X\\'s: abc'",
     "Invalid request from ip=: Invalid HTTP header name: b'[FILTERED]'"),
    ("Ignored premature client disconnection. No more data after: b'Host: x\\r\\nAuthorization: Bearer abc\\r\\n'",
     "Ignored premature client disconnection. No more data after: b'[FILTERED]'"),
    ("Booting worker with pid: 123", "Booting worker with pid: 123"),
])
def test_redact_hides_url_tokens_file_links_and_query_values(line, expected):
    assert redact(line) == expected


@pytest.mark.parametrize(("line", "expected"), [
    # Percent-encoded route names and tokens (gunicorn decodes PATH_INFO before routing).
    ("GET /%70/abc123/r HTTP/1.1", "GET /%70/[FILTERED]/r HTTP/1.1"),
    ("GET /%66/abc123 HTTP/1.1", "GET /%66/[FILTERED] HTTP/1.1"),
    ("GET /%72/abc123.json HTTP/1.1", "GET /%72/[FILTERED].json HTTP/1.1"),
    ("GET /p/%61%62%63123 HTTP/1.1", "GET /p/[FILTERED] HTTP/1.1"),
    ("GET /p/abc123%2Ejson HTTP/1.1", "GET /p/[FILTERED].json HTTP/1.1"),
    ("GET /api/v2/%70ushes/abc123?passphrase=s3cret HTTP/1.1",
     "GET /api/v2/%70ushes/[FILTERED]?passphrase=[FILTERED] HTTP/1.1"),
    ("GET /api/v2/pushes/%2561bc123 HTTP/1.1", "GET /api/v2/pushes/[FILTERED] HTTP/1.1"),
    # An encoded slash is a slash to the router.
    ("GET /p%2Fabc123 HTTP/1.1", "GET /p/[FILTERED] HTTP/1.1"),
    ("GET /api/v2/pushes%2fabc123/audit HTTP/1.1", "GET /api/v2/pushes/[FILTERED]/audit HTTP/1.1"),
    # Doubled slashes (routed as single ones), dot segments, other cases.
    ("GET /p//abc123 HTTP/1.1", "GET /p//[FILTERED] HTTP/1.1"),
    ("GET //p/abc123 HTTP/1.1", "GET //p/[FILTERED] HTTP/1.1"),
    ("GET /api//v2/pushes//abc123.json HTTP/1.1", "GET /api//v2/pushes//[FILTERED].json HTTP/1.1"),
    ("GET /p/./abc123 HTTP/1.1", "GET /p/./[FILTERED] HTTP/1.1"),
    # A dot-segment: what follows ".." may be a token whose parent was taken back.
    ("GET /p/x/../abc123/preview HTTP/1.1", "GET /p/[FILTERED]/../[FILTERED]/preview HTTP/1.1"),
    ("GET /p/x/%2E%2E/abc123 HTTP/1.1", "GET /p/[FILTERED]/%2E%2E/[FILTERED] HTTP/1.1"),
    ("GET /P/abc123 HTTP/1.1", "GET /P/[FILTERED] HTTP/1.1"),
    ("GET /p;/abc123 HTTP/1.1", "GET /p;/[FILTERED] HTTP/1.1"),
    ("GET /pfb;x/gAAAAB-x/a.pdf HTTP/1.1", "GET /pfb;x/[FILTERED] HTTP/1.1"),
    ("GET /API/V2/PUSHES/abc123 HTTP/1.1", "GET /API/V2/PUSHES/[FILTERED] HTTP/1.1"),
    # File links however spelled, the decoded path (%(U)s) and URLs (a Referer).
    ("GET /%70fb/gAAAAB-x/report.pdf HTTP/1.1", "GET /%70fb/[FILTERED] HTTP/1.1"),
    ("GET /pfb//gAAAAB-x/report.pdf HTTP/1.1", "GET /pfb/[FILTERED] HTTP/1.1"),
    ("/p/abc123/r", "/p/[FILTERED]/r"),
    ('"http://host//%70//abc123/r"', '"http://host//%70//[FILTERED]/r"'),
    ("GET http://host/api/v2/pushes/abc123 HTTP/1.1", "GET http://host/api/v2/pushes/[FILTERED] HTTP/1.1"),
    # A url_token (24 of [a-z0-9], pushes.new_url_token) under a path no route takes (a typo).
    ("GET /x/n97u52io3bx6am0xg9d81tzm.json HTTP/1.1", "GET /x/[FILTERED].json HTTP/1.1"),
    ("GET /pushes2/n97u52io3bx6am0xg9d81tzm/audit HTTP/1.1", "GET /pushes2/[FILTERED]/audit HTTP/1.1"),
    ("GET /x/n97u52io3bx6am0xg9d81tzm.json% HTTP/1.1", "GET /x/[FILTERED] HTTP/1.1"),
    # ... however it is cased (lookups are case-sensitive, but lower-casing it gives the token).
    ("GET /X/N97U52IO3BX6AM0XG9D81TZM HTTP/1.1", "GET /X/[FILTERED] HTTP/1.1"),
    ("GET /x/N97u52io3bx6am0xg9d81tzm.json HTTP/1.1", "GET /x/[FILTERED].json HTTP/1.1"),
    # ... after a quote (gunicorn takes one in a path: the log's quotes end at a space), in a
    # query item's name, or in a fragment (gunicorn takes one too).
    ("GET /x/'n97u52io3bx6am0xg9d81tzm HTTP/1.1", "GET /x/[FILTERED] HTTP/1.1"),
    ('"GET /x/"n97u52io3bx6am0xg9d81tzm HTTP/1.1" 404', '"GET /x/[FILTERED] HTTP/1.1" 404'),
    ("GET /x?n97u52io3bx6am0xg9d81tzm=1&page=2 HTTP/1.1", "GET /x?[FILTERED]&page=2 HTTP/1.1"),
    ("GET /x?%6E97u52io3bx6am0xg9d81tzm=1 HTTP/1.1", "GET /x?[FILTERED] HTTP/1.1"),
    ("GET /x#n97u52io3bx6am0xg9d81tzm HTTP/1.1", "GET /x#[FILTERED] HTTP/1.1"),
    ("GET /x#N97U52IO3BX6AM0XG9D81TZM", "GET /x#[FILTERED]"),
    # Quotes around a path (a repr, JSON) and comments (a traceback's source line) stay.
    ("KeyError: ('/x/n97u52io3bx6am0xg9d81tzm', 1)", "KeyError: ('/x/[FILTERED]', 1)"),
    ('{"path": "/x/n97u52io3bx6am0xg9d81tzm"}', '{"path": "/x/[FILTERED]"}'),
    ("    run(sock)  # (its head, then #its body)", "    run(sock)  # (its head, then #its body)"),
    # Ordinary words, and names shorter than a token, stay readable.
    ("GET /x/Internationalization/users HTTP/1.1", "GET /x/Internationalization/users HTTP/1.1"),
    ("GET /X/ABCDEFGHIJKLMNOPQRSTUVW HTTP/1.1", "GET /X/ABCDEFGHIJKLMNOPQRSTUVW HTTP/1.1"),
    ("GET /users/password/edit HTTP/1.1", "GET /users/password/edit HTTP/1.1"),
    # Collection routes stay readable, however spelled.
    ("GET /api/v2/pushes//active HTTP/1.1", "GET /api/v2/pushes//active HTTP/1.1"),
    ("GET /%70/new HTTP/1.1", "GET /%70/new HTTP/1.1"),
    # Query values up to the next item, a fragment included; bare items; spare paging values.
    ("GET /p/abc123?passphrase=s3#cret HTTP/1.1", "GET /p/[FILTERED]?passphrase=[FILTERED] HTTP/1.1"),
    ("GET /api/v2/pushes?abc123 HTTP/1.1", "GET /api/v2/pushes?[FILTERED] HTTP/1.1"),
    ("GET /api/v2/pushes?passphrase%3Ds3cret HTTP/1.1", "GET /api/v2/pushes?[FILTERED] HTTP/1.1"),
    ("GET /p/active?page=2;passphrase=s3cret HTTP/1.1", "GET /p/active?page=[FILTERED] HTTP/1.1"),
    ("GET /api/v2/pushes/active?page=2&tab=text HTTP/1.1", "GET /api/v2/pushes/active?page=2&tab=text HTTP/1.1"),
])
def test_redact_hides_url_tokens_however_the_path_is_spelled(line, expected):
    assert redact(line) == expected


def test_a_quote_in_a_query_value_hides_none_of_it():
    # curl sends a passphrase's quote raw: the value stopped there and the rest was logged.
    assert redact('GET /api/v2/pushes/abc123?passphrase=hunter"TOPSECRET\'PART HTTP/1.1') == \
        "GET /api/v2/pushes/[FILTERED]?passphrase=[FILTERED] HTTP/1.1"
    # In an access-log line a quote before a space closes a field, and stays.
    line = '127.0.0.1 "GET /p/abc123?passphrase=hunter"TOP HTTP/1.1" 200 "http://h/p?page=2" "curl/8"'
    assert redact(line) == '127.0.0.1 "GET /p/[FILTERED]?passphrase=[FILTERED] HTTP/1.1" 200 "http://h/p?page=2" "curl/8"'
    # One atom has no quotes around it: a quote ending the value is the value's too.
    assert redact('GET /p/abc123?passphrase=TOP" HTTP/1.1', atom=True) == \
        "GET /p/[FILTERED]?passphrase=[FILTERED] HTTP/1.1"
    logger = GunicornLogger(Config())
    environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "RAW_URI": '/p/tok123?passphrase=TOP"',
               "PATH_INFO": "/p/tok123", "QUERY_STRING": 'passphrase=TOP"', "HTTP_REFERER": '/p?passphrase=a"b'}
    atoms = logger.atoms(SimpleNamespace(status="200 OK", headers=[], sent=10), SimpleNamespace(headers=[]),
                         environ, timedelta(seconds=1))
    assert [key for key, value in atoms.items() if "TOP" in str(value) or '"' in str(value)] == []


@pytest.mark.parametrize("line", [
    "GET /p/abc123%zz%/%%%2 HTTP/1.1",  # invalid escapes
    "GET /p/abc123%FF%C3%28 HTTP/1.1",  # bytes that are not UTF-8
    "GET /p/abc123\udcff HTTP/1.1",  # a lone surrogate (surrogateescape)
    "GET /p%2Fabc123%2F\udcff%0A HTTP/1.1",  # ... in a segment that is written back decoded
    "GET /p/%E2%80%AEabc123 HTTP/1.1",
    "GET /p/abc123%0A%22injected%22 HTTP/1.1",
    "GET /pfb/\x00abc123 HTTP/1.1",
])
def test_redact_never_raises_and_never_passes_odd_spellings_through(line):
    cleaned = redact(line)
    assert "abc123" not in cleaned
    assert "\n" not in cleaned and '"' not in cleaned


def test_gunicorn_access_log_atoms_hold_no_secrets_of_encoded_paths():
    logger = GunicornLogger(Config())
    environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "RAW_URI": "/%70/%74ok123/r",
               "PATH_INFO": "/p/tok123/r", "QUERY_STRING": "", "HTTP_REFERER": "http://h/p//tok123"}
    resp = SimpleNamespace(status="200 OK", headers=[], sent=10)
    atoms = logger.atoms(resp, SimpleNamespace(headers=[]), environ, timedelta(seconds=1))
    assert [key for key, value in atoms.items() if "tok123" in str(value)] == []
    assert (atoms["r"], atoms["U"], atoms["f"]) == (
        "GET /%70/[FILTERED]/r HTTP/1.1", "/p/[FILTERED]/r", "http://h/p//[FILTERED]")


def test_gunicorn_access_log_atoms_hold_no_secrets():
    logger = GunicornLogger(Config())
    environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1",
               "RAW_URI": "/api/v2/pushes/tok123?passphrase=pp456",
               "PATH_INFO": "/api/v2/pushes/tok123", "QUERY_STRING": "passphrase=pp456",
               "HTTP_REFERER": "http://h/p/tok123/r", "HTTP_AUTHORIZATION": "Bearer api789",
               "HTTP_X_USER_TOKEN": "api789", "HTTP_COOKIE": "session=cookie000"}
    req = SimpleNamespace(headers=[("AUTHORIZATION", "Bearer api789"), ("X-USER-TOKEN", "api789"),
                                   ("COOKIE", "session=cookie000"), ("REFERER", "http://h/p/tok123/r")])
    resp = SimpleNamespace(status="200 OK", headers=[("Set-Cookie", "session=cookie000")], sent=10)
    atoms = logger.atoms(resp, req, environ, timedelta(seconds=1))
    rendered = " ".join(str(v) for v in atoms.values())
    assert [s for s in ("tok123", "pp456", "api789", "cookie000") if s in rendered] == []
    assert atoms["r"] == "GET /api/v2/pushes/[FILTERED]?passphrase=[FILTERED] HTTP/1.1"
    assert (atoms["q"], atoms["{authorization}i"]) == ("passphrase=[FILTERED]", "[FILTERED]")


def test_gunicorn_access_log_atoms_hold_no_payloads_of_answers():
    """An access-log format may name answers' headers (%({location}o)s, to see where redirects
    went): a URL push's 303 names its URL, the push's secret, and a download's
    Content-Disposition its file's name. The app's own redirects keep their (redacted) path."""
    logger = GunicornLogger(Config())
    environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "RAW_URI": "/p/tok123",
               "PATH_INFO": "/p/tok123", "QUERY_STRING": ""}
    for location in ("https://example.com/secret456?k=v", "//example.com/secret456", "HTTPS://example.com/secret456",
                     "/\\example.com/secret456"):  # (browsers read a backslash as "/")
        resp = SimpleNamespace(status="303 SEE OTHER", headers=[("Location", location)], sent=0)
        atoms = logger.atoms(resp, SimpleNamespace(headers=[]), environ, timedelta(seconds=1))
        assert atoms["{location}o"] == "[FILTERED]", location
    resp = SimpleNamespace(status="200 OK", sent=3, headers=[
        ("Content-Disposition", "attachment; filename*=UTF-8''payroll-secret456.xlsx")])
    atoms = logger.atoms(resp, SimpleNamespace(headers=[]), environ, timedelta(seconds=1))
    assert [key for key, value in atoms.items() if "secret456" in str(value)] == []
    resp = SimpleNamespace(status="302 FOUND", headers=[("Location", "/p/tok123/passphrase?passphrase=pp456")], sent=0)
    atoms = logger.atoms(resp, SimpleNamespace(headers=[]), environ, timedelta(seconds=1))
    assert atoms["{location}o"] == "/p/[FILTERED]/passphrase?passphrase=[FILTERED]"


def test_redact_filter_rewrites_messages_and_tracebacks():
    stream = io.StringIO()
    log = logging.getLogger("test_log_hygiene.redact")
    handler = logging.StreamHandler(stream)
    log.addHandler(handler)
    log.addFilter(RedactFilter())
    try:
        try:
            raise ValueError("failed on /api/v2/pushes/tok123?passphrase=pp456")
        except ValueError:
            log.exception("Error handling request %s", "/p/tok123/r?passphrase=pp456")
    finally:
        log.removeHandler(handler)
    output = stream.getvalue()
    assert "Error handling request /p/[FILTERED]/r?passphrase=[FILTERED]" in output
    assert "ValueError: failed on /api/v2/pushes/[FILTERED]?passphrase=[FILTERED]" in output
    assert "tok123" not in output and "pp456" not in output


def test_unexpected_errors_are_logged_without_url_tokens(app, caplog):
    @app.get("/api/v2/pushes/<url_token>/explode")
    def explode(url_token):
        raise RuntimeError(f"broken on /p/{url_token}")

    with caplog.at_level(logging.ERROR, logger=app.logger.name):
        response = app.test_client().get("/api/v2/pushes/tok123/explode?passphrase=pp456")
    assert response.status_code == 500
    assert "Exception on /api/v2/pushes/[FILTERED]/explode [GET]" in caplog.text
    assert "RuntimeError: broken on /p/[FILTERED]" in caplog.text
    assert "tok123" not in caplog.text and "pp456" not in caplog.text


def test_every_module_of_the_app_logs_through_the_redacting_logger(app, caplog):
    """A record is filtered only by the logger it is made on (one propagated from a child,
    `pwp.crypto`, skips `pwp`'s filters): every module logs on `pwp` itself."""
    from pwp import crypto, notify, throttling
    with caplog.at_level(logging.WARNING, logger=app.logger.name):
        for module in (crypto, notify, throttling):
            module.log.warning("storage said /p/tok123abc/r?passphrase=pp456")
    assert caplog.text.count("/p/[FILTERED]/r?passphrase=[FILTERED]") == 3
    assert "tok123abc" not in caplog.text and "pp456" not in caplog.text


def test_database_errors_do_not_echo_bound_values(app):
    with app.app_context(), pytest.raises(DBAPIError) as failure:
        db.session.execute(text("SELECT url_token FROM no_such_table WHERE url_token = :t"),
                           {"t": "tok123secret"})
    assert "no_such_table" in str(failure.value)
    assert "tok123secret" not in str(failure.value)


def test_the_development_servers_request_lines_are_redacted(app, caplog):
    """`flask run` logs request lines through the "werkzeug" logger: no url_tokens there."""
    caplog.set_level(logging.INFO, logger="werkzeug")
    logging.getLogger("werkzeug").info('%s - - [%s] "%s" %s -', "127.0.0.1", "now",
                                       "GET /api/v2/pushes/abc123def HTTP/1.1", "200")
    assert caplog.messages == ['127.0.0.1 - - [now] "GET /api/v2/pushes/[FILTERED] HTTP/1.1" 200 -']
