"""The security headers on every kind of answer a real server sends (gunicorn pwpush:app with
gunicorn.conf.py, as the Procfile runs it): pages, both APIs (the hot path's answers too),
redirects, errors the app answers, HEAD, static files with their 304 and ranges, and file
downloads whole, in part and past their end. Secrets and tokens must never sit in a cache
(Cache-Control: no-store on all but static assets), nor a page be framed, sniffed, or leak
its address in a Referer header.
"""
import json
import socket
import ssl
import struct
from urllib.parse import urlsplit

import pytest
from gunicorn.http.message import PP_V2_SIGNATURE

from servers import bearer, create_user, gunicorn, server_env

SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}
CSP_PARTS = ("script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'")


def _raw(port, data: bytes, context=None) -> tuple[int, dict, bytes]:
    """Send bytes as they are (a request http.client would not write; over TLS with an ssl
    context); the status, headers (names in lower case) and body of the answer, read until
    the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn, \
            (conn if context is None else context.wrap_socket(conn, server_hostname="127.0.0.1")) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def _request(port, method, path, headers=None, body=b""):
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        head.append(f"Content-Length: {len(body)}")
    return _raw(port, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def _multipart(fields: dict, files: list) -> tuple[str, bytes]:
    boundary = "pwpushboundary0123456789"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts += [(f'--{boundary}\r\nContent-Disposition: form-data; name="push[files][]"; filename="{name}"\r\n'
               f"Content-Type: {kind}\r\n\r\n").encode() + data + b"\r\n" for name, kind, data in files]
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


def _missing(headers: dict, cache: str = "no-store") -> list:
    """What the answer lacks of the security headers."""
    missing = [f"{name}: {value}" for name, value in SECURITY.items() if headers.get(name) != value]
    missing += [f"CSP {part}" for part in CSP_PARTS if part not in headers.get("content-security-policy", "")]
    if headers.get("cache-control") != cache:
        missing.append(f"Cache-Control: {cache} (got {headers.get('cache-control')!r})")
    return missing


def test_every_kind_of_answer_carries_the_security_headers(tmp_path):
    env = server_env(tmp_path / "instance")
    token = create_user(env, "owner@example.com")
    auth = {"Authorization": bearer(token)["Authorization"]}
    as_json = {"Content-Type": "application/json"}
    with gunicorn(env, tmp_path / "log") as server:
        port = server.port

        def call(method, path, headers=None, body=b""):
            return _request(port, method, path, headers, body)

        def create(fields, headers=None):
            status, _headers, body = call("POST", "/api/v2/pushes", {**as_json, **(headers or {})},
                                          json.dumps({"push": fields}).encode())
            assert status == 201, body
            return json.loads(body)["url_token"]

        text = create({"payload": "secret text"})  # (the hot path's create)
        url = create({"payload": "https://example.com/away", "kind": "url"}, auth)
        content_type, body = _multipart({"push[payload]": "files"},
                                        [("page.html", "text/html", b"<script>alert(1)</script>")])
        status, _headers, answer = call("POST", "/api/v2/pushes", {**auth, "Content-Type": content_type}, body)
        assert status == 201, answer
        files = json.loads(answer)["url_token"]
        status, _headers, answer = call("GET", f"/api/v2/pushes/{files}", auth)
        download = urlsplit(json.loads(answer)["files"][0]["url"]).path
        _status, static, _body = call("GET", "/static/app.css")

        answers = {
            "page": (call("GET", "/"), 200),
            "API retrieve (hot path)": (call("GET", f"/api/v2/pushes/{text}"), 200),
            "API retrieve, passphrase asked (Flask)": (call("GET", f"/api/v2/pushes/{text}?passphrase=x"), 200),
            "API preview": (call("GET", f"/api/v2/pushes/{url}/preview", auth), 200),
            "API active": (call("GET", "/api/v2/pushes/active", auth), 200),
            "v1 create": (call("POST", "/p.json", as_json, b'{"password": {"payload": "v1"}}'), 201),
            "v1 preflight": (call("OPTIONS", "/p.json"), 204),
            "API 401": (call("GET", "/api/v2/pushes/active", {"Authorization": "Bearer nope"}), 401),
            "API 404": (call("GET", "/api/v2/pushes/abcdefghijklmnopqrstuvwx"), 404),
            "API 400 (bad JSON)": (call("POST", "/api/v2/pushes", as_json, b"{bad"), 400),
            "API 413": (_raw(port, b"POST /api/v2/pushes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                   b"application/json\r\nContent-Length: 999999999\r\n\r\n"), 413),
            "bad Host 400": (_raw(port, b"GET / HTTP/1.1\r\nHost: a.example/x\r\nConnection: close\r\n\r\n"), 400),
            "retrieval step": (call("GET", f"/p/{text}/r"), 200),
            "HEAD of a push": (call("HEAD", f"/p/{text}"), 200),
            "expired page (unknown push)": (call("GET", "/p/abcdefghijklmnopqrstuvwx"), 200),
            "legacy 301": (call("GET", f"/f/{text}"), 301),
            "sign-in first 302": (call("GET", f"/p/{text}/audit"), 302),
            "URL push 303": (call("GET", f"/p/{url}"), 303),
            "404 page": (call("GET", "/nothing-here"), 404),
            "405 page": (call("BREW", "/"), 405),
            "form without CSRF token 400": (call("POST", "/p", {"Content-Type": "application/x-www-form-urlencoded"},
                                                 b"push%5Bpayload%5D=x"), 400),
            "static 404": (call("GET", "/static/nothing.js"), 404),
            "download": (call("GET", download), 200),
            "download range": (call("GET", download, {"Range": "bytes=2-5"}), 206),
            "download past its end": (call("GET", download, {"Range": "bytes=9999-"}), 416),
            "download HEAD": (call("HEAD", download), 200),
            "expired download link": (call("GET", "/pfb/abc/x.txt", {"Accept": "text/html"}), 404),
        }
        static_answers = {
            "static": ((200, static, b""), 200),
            "static 304": (call("GET", "/static/app.css", {"If-None-Match": static["etag"]}), 304),
            "static range": (call("GET", "/static/app.css", {"Range": "bytes=0-9"}), 206),
        }
        problems = {}
        for label, ((status, headers, _body), expected) in answers.items():
            problems[label] = ([f"status {status}"] if status != expected else []) + _missing(headers)
        for label, ((status, headers, _body), expected) in static_answers.items():
            problems[label] = ([f"status {status}"] if status != expected else []) + _missing(headers, "no-cache")
        assert {label: p for label, p in problems.items() if p} == {}

        # An uploaded page is a download, never a page of this site (nor sniffed into one).
        _status, headers, _body = answers["download"][0]
        assert headers["content-type"] == "application/octet-stream"
        assert headers["content-disposition"] == 'attachment; filename="page.html"; filename*=UTF-8\'\'page.html'
        # Cookies: script-proof and not sent by other sites' forms.
        assert all(flag in answers["page"][0][1]["set-cookie"] for flag in ("HttpOnly", "SameSite=Lax"))
        assert "strict-transport-security" not in answers["page"][0][1]  # (only with FORCE_SSL)


# gunicorn's reasons (util.write_error's), as its status lines say them.
REASONS = {400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large"}


# Requests gunicorn refuses before the app sees them, each sent whole: label: (the request
# line's method and target, the rest of the head and body, the status).
_MANY_FIELDS = b"".join(b"X-%d: a\r\n" % i for i in range(120))
_BAD_CHUNK = b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
REFUSED = {
    "bad header name": (b"GET /", b"Bad Name: <b>Authorization Bearer tok123</b>\r\n\r\n", 400),
    "bad header name, API": (b"GET /api/v2/pushes/abc", b"Authorization Bearer tok123: x\r\n\r\n", 400),
    "long URI": (b"GET /<b>tok123" + b"a" * 5000, b"\r\n", 414),
    "long URI, API": (b"GET /api/v2/pushes/<b>tok123" + b"a" * 5000, b"\r\n", 414),
    "many fields": (b"GET /?<b>tok123", _MANY_FIELDS + b"\r\n", 431),
    "many fields, v1 API": (b"GET /p/tok123.json", _MANY_FIELDS + b"\r\n", 431),
    "long field": (b"GET /", b"Cookie: " + b"c" * 9000 + b"\r\n\r\n", 431),
    "head past all limits, API": (b"GET /api/v2/pushes/tok123",
                                  b"".join(b"X-%d: %s\r\n" % (i, b"h" * 8000) for i in range(110)) + b"\r\n", 431),
    "bad chunk size": (b"POST /p", _BAD_CHUNK, 400),
    "bad chunk size, API": (b"POST /api/v2/pushes", _BAD_CHUNK, 400),
}


def _refused_problems(answers: dict, json_on_api=True) -> dict:
    """What each answer to a REFUSED request (label: (status, headers, body)) does wrong
    (json_on_api: the API's answers are JSON, else plain text as the others)."""
    problems = {}
    for label, (status, headers, body) in answers.items():
        expected = REFUSED[label][2]
        problem = ([f"status {status}"] if status != expected else []) + _missing(headers)
        if headers.get("connection") != "close":
            problem.append(f"Connection: {headers.get('connection')!r}")
        if b"tok123" in body or b"<b>" in body or b"Bearer" in body:
            problem.append(f"echoes its input: {body[:200]!r}")
        if "API" in label and json_on_api:
            if headers.get("content-type") != "application/json; charset=utf-8":
                problem.append(f"Content-Type {headers.get('content-type')!r}")
            elif json.loads(body) != {"status": expected, "error": REASONS[expected]}:
                problem.append(f"body {body!r}")
        elif not label.startswith("bad chunk size") and (headers.get("content-type") != "text/plain; charset=utf-8"
                                            or body != REASONS[expected].encode() + b"\n"):
            problem.append(f"{headers.get('content-type')!r}: {body[:200]!r}")
        if problem:
            problems[label] = problem
    return problems


@pytest.mark.parametrize("worker", ["ThreadWorker", "sync"])
def test_gunicorns_own_error_answers_carry_the_security_headers(tmp_path, worker):
    """Requests gunicorn refuses before the app sees them (pwp.workers.ThreadWorker.handle_error):
    a header name it does not take, a request line past its limit (a browser sends one for a
    long link: the 414), a head of more fields than it takes (a cookie bomb from a sibling
    subdomain: the 431), a field past its size, a head past all its limits, a chunked body it
    cannot parse (the app reads it, and answers: its page, or on the API its JSON). Each keeps
    gunicorn's status, carries the app's security headers and no-store, says only the status's
    reason (never the client's input, a credential maybe), in plain text, or on the API's
    paths in the app's JSON, and closes the connection. So with `-k sync` (gunicorn's own
    worker class, gunicorn.conf.py's post_worker_init: pwp.worker_errors.answer_as_ours)."""
    sync = worker == "sync"
    env = server_env(tmp_path / "instance", **({"GUNICORN_THREADS": 1} if sync else {}))
    with gunicorn(env, tmp_path / "log", args=("-k", "sync") if sync else ()) as server:
        answers = {label: _raw(server.port, start + b" HTTP/1.1\r\nHost: x\r\n" + rest)
                   for label, (start, rest, _status) in REFUSED.items()}
    problems = _refused_problems(answers, json_on_api=not sync)  # (sync: the head is gone)
    assert not problems, "\n".join(f"{label}: {p}" for label, p in problems.items())
    # gunicorn's own line for each stays in the error log, its client's input redacted.
    logs = server.logs()
    assert logs.count("Invalid request from ip=127.0.0.1") >= 6, logs
    assert "tok123" not in logs and "Bearer" not in logs, logs


def _self_signed(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by its own key, and the key: their files' paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return str(folder / "cert.pem"), str(folder / "key.pem")


def _proxy_v2(tlvs=b"", command=0x21, family=0x11) -> bytes:
    """A PROXY protocol v2 header (its binary block): TCP over IPv4 from 203.0.113.7:40000 to
    127.0.0.1:443, then `tlvs`."""
    block = bytes([203, 0, 113, 7, 127, 0, 0, 1]) + struct.pack(">HH", 40000, 443) + tlvs
    return PP_V2_SIGNATURE + bytes([command, family]) + struct.pack(">H", len(block)) + block


@pytest.mark.parametrize("served", ["TLS", "PROXY protocol", "PROXY protocol v2, long TLVs"])
def test_gunicorns_own_error_answers_over_tls_or_the_proxy_protocol_are_as_on_plain_connections(tmp_path, served):
    """Connections gunicorn reads itself (TLS, the PROXY protocol: not the worker's main loop)
    got the same security headers, but on the API's paths plain text, not the app's JSON:
    the worker knew a request's path only from the head its main loop read. (A v2 header's
    TLVs past 1 KiB, as a proxy may send its TLS details in, still left the request line
    out of the request's start the worker kept: text again.)"""
    env = server_env(tmp_path / "instance")
    context = prefix = None
    if served == "TLS":
        certfile, keyfile = _self_signed(tmp_path)
        args = ("--certfile", certfile, "--keyfile", keyfile)
        context = ssl.create_default_context(cafile=certfile)
    elif served == "PROXY protocol":
        args = ("--proxy-protocol", "v1")
        prefix = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n"
    else:
        args = ("--proxy-protocol", "v2")
        prefix = _proxy_v2(b"\x04" + struct.pack(">H", 6000) + b"n" * 6000)  # (PP2_TYPE_NOOP's)
    # (Not a chunked body gunicorn cannot parse on a page: the app does not read it, and answers
    # keep-alive; gunicorn reads it after the answer, and closes. The main loop reads it first.)
    refused = {label: request for label, request in REFUSED.items() if label != "bad chunk size"}
    with gunicorn(env, tmp_path / "log", args=args, context=context) as server:
        answers = {label: _raw(server.port, (prefix or b"") + start + b" HTTP/1.1\r\nHost: x\r\n" + rest,
                               context)
                   for label, (start, rest, _status) in refused.items()}
    problems = _refused_problems(answers)
    assert not problems, "\n".join(f"{label}: {p}" for label, p in problems.items())  # (was: the API's, text)
    assert "Traceback" not in server.logs()


def test_a_malformed_proxy_protocol_v2_header_is_a_400_not_a_500(tmp_path):
    """A PROXY protocol v2 header gunicorn's parser refuses (an unknown version, a block too
    short for its addresses, a protocol other than TCP) raised an error gunicorn 27.0.1 does not
    count among the client's (InvalidProxyHeader, v1's InvalidProxyLine is): a 500, its
    traceback logged. Now a 400 as a bad v1 line's, JSON on the API, its warning line logged."""
    env = server_env(tmp_path / "instance")
    bad = {  # label: the header
        "version 3": _proxy_v2(command=0x31),
        "block too short": PP_V2_SIGNATURE + b"\x21\x11\x00\x02\x00\x00",
        "UDP": _proxy_v2(family=0x12),
    }
    with gunicorn(env, tmp_path / "log", args=("--proxy-protocol", "v2")) as server:
        answers = {label: _raw(server.port, header + b"GET /api/v2/version HTTP/1.1\r\nHost: x\r\n\r\n")
                   for label, header in bad.items()}
        page = _raw(server.port, bad["UDP"] + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    problems = {label: (status, headers.get("content-type"), body) for label, (status, headers, body) in answers.items()
                if (status, body) != (400, b'{"status":400,"error":"Bad Request"}')}  # (was: 500)
    assert not problems, problems
    assert page[0] == 400 and page[2] == b"Bad Request\n", page
    logs = server.logs()
    assert "Traceback" not in logs and logs.count("Invalid request from ip=127.0.0.1") == 4, logs


def test_a_kept_alive_proxy_protocol_connection_keeps_none_of_its_last_request():
    """The reader of a connection gunicorn reads itself (TLS, the PROXY protocol) keeps each
    request's start, for the JSON or text of an error gunicorn answers: it kept it, the head
    and the body's start (a payload, a token), after the request was done, for as long as the
    connection stayed open, idle (here in a worker run in this process, its socket real)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from gunicorn.workers.gthread import TConn

    from pwp.workers import ThreadWorker

    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    cfg = Config()
    cfg.set("proxy_protocol", "v1")
    worker = ThreadWorker(0, os.getppid(), [], app, 30, cfg, Logger(cfg))
    worker.wsgi, worker.alive, worker.tpool = app, True, ThreadPoolExecutor(1)
    worker.method_queue.init()
    ours, theirs = socket.socketpair()
    theirs.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\nPOST /api/v2/pushes HTTP/1.1\r\nHost: x\r\n"
                   b"Authorization: Bearer tok123\r\nContent-Length: 6\r\n\r\nsecret")
    conn = TConn(cfg, ours, ("127.0.0.1", 1), ("127.0.0.1", 2))
    conn.data_ready = True  # (its bytes came: what the worker's poller waits for, without a thread)
    worker.enqueue_req(conn)
    worker.tpool.shutdown(wait=True)  # (the request served, the connection kept alive)
    theirs.settimeout(20)  # (a failure guard only)
    assert theirs.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    assert conn.parser.unreader.seen == b""  # (was: the request, "tok123" and "secret" in it)
    for sock in (ours, theirs):
        sock.close()
    worker.method_queue.close()
    worker.tmp.close()
