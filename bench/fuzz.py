"""A seeded HTTP fuzzer for a running pwpush: odd but plausible requests to every route.

    python bench/fuzz.py --url http://127.0.0.1:8000 --seed 1 --requests 3000 \
        [--email E --token T [--password P]] [--log SERVER_LOG] [--proxy-protocol v1|v2] \
        [--create-url INTERNAL_URL] [--chunked SHARE] [--creates SHARE] [--pipelined SHARE]
        [--framing SHARE] [--every-route] [--dump DIR]
    python bench/fuzz.py --seed 1 --parity 5000     # no server: ChunkedEnd against gunicorn's parser

(--url https://...: over TLS, any certificate taken; --proxy-protocol: each connection starts
with that PROXY header, as gunicorn --proxy-protocol wants; --create-url: the pushes it aims at
are made there, a public gateway's internal instance, when --url is the gateway.)

Reports, one JSON line each: an answer with status >= 500; an answer (but static files')
without the security headers README promises; a payload it pushed in an answer that must not
carry it (an error, another push's page), a passphrase or the API token in any answer; with
--log, "Traceback" or any secret it sent (payload, passphrase, url_token, API token) in the
server's log; and a push of 1-3 views whose payload 8 threads retrieving it at once got more
(or fewer) times than its views. With --framing (a share of the requests: 0.1; 0 sends the
sequence of a seed from before it), a connection's bytes framed oddly (a body declared, chunked
with odd size lines, extensions, chunks' CRLFs and trailers, odd transfer codings, both or
neither; Expect: 100-continue; a request hidden in the body; cut, or reset; sent in pieces, each CRLF
cut in two) then robots.txt's GET: answers for other requests than gunicorn's own parser reads
from the same bytes, or in another order (a request smuggled past a proxy that frames as
gunicorn does), a 2xx where it refuses a head, answers missing but after one that said
Connection: close, a connection kept after a body it refuses, a second 100 Continue (gunicorn's 501 for a transfer coding it does not know
is expected). With --every-route, first HEAD and OPTIONS on every route, robots.txt's GET after
each on its connection: a body after a HEAD's head, another answer next. --parity N needs no
server: N seeded chunked bodies, the worker's ChunkedEnd against gunicorn's own parser
(chunked_parity: the same end, or bad where gunicorn refuses). Exit status 1 if anything was found. The same seed sends the
same requests (the tokens the server hands out differ). The server should run with throttling
off (PWP__THROTTLING__MINUTE=0 PWP__THROTTLING__SECOND=0); the API token and password, of an
account made with `flask --app pwpush users create E --password P`.
"""
import argparse
import json
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

SECURITY_HEADERS = {"cache-control": "no-store", "content-security-policy": "",
                    "referrer-policy": "no-referrer", "x-frame-options": "DENY",
                    "x-robots-tag": "noindex"}
# The paths whose 200 may carry a push's payload ({} its url_token): retrievals, the owner's edit page.
RETRIEVALS = r"(/api/v2/pushes|/[pfr])/{0}(\.json)?|/p/{0}/(access|edit)"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "FOO"]
# {T}: a push's url_token (real or odd), {U}: a user id, {P}: v1's p/f/r, {F}: a file name.
ROUTES = [
    "/", "/p/new", "/p", "/p.json", "/f.json", "/r.json", "/up", "/robots.txt", "/api", "/help/api",
    "/api_tokens", "/api/v1/version", "/api/v1/version.json", "/api/v2/version", "/api/v2/version.json",
    "/api/v2/pushes", "/api/v2/pushes.json", "/api/v2/pushes/active", "/api/v2/pushes/active.json",
    "/api/v2/pushes/expired", "/api/v2/pushes/expired.json", "/api/v2/pushes/{T}",
    "/api/v2/pushes/{T}.json", "/api/v2/pushes/{T}/preview", "/api/v2/pushes/{T}/preview.json",
    "/api/v2/pushes/{T}/audit", "/api/v2/pushes/{T}/audit.json", "/api/v2/pushes/{T}/notify_emails",
    "/api/v2/pushes/{T}/notify_emails.json", "/{P}/active.json", "/{P}/expired.json", "/{P}/{T}.json",
    "/{P}/{T}/preview.json", "/{P}/{T}/audit.json", "/p/{T}", "/p/{T}/r", "/p/{T}/preview",
    "/p/{T}/print_preview", "/p/{T}/passphrase", "/p/{T}/access", "/p/{T}/expire", "/p/{T}/audit",
    "/p/{T}/edit", "/p/{T}/notify_emails", "/p/{T}/delete_file", "/f/{T}", "/r/{T}", "/f/{T}/r",
    "/r/{T}/passphrase", "/pfb/{T}/{F}", "/static/{F}", "/admin", "/admin/users",
    "/admin/users/{U}/delete", "/admin/users/{U}/admin", "/admin/users/{U}/revoke_admin",
    "/users/sign_in", "/users/sign_up", "/users/sign_out", "/users/token", "/users/edit",
    "/users/password", "/users/password/new", "/users/password/edit", "/users/confirmation",
    "/users/confirmation/new", "/users/unlock", "/users/unlock/new", "/users/two_factor",
    "/users/two_factor/sign_in", "/users/two_factor/disable", "/users/two_factor/backup_codes",
]
FIELDS = ["payload", "kind", "expire_after_days", "expire_after_views", "expire_after_duration",
          "deletable_by_viewer", "retrieval_step", "passphrase", "name", "note", "files",
          "notify_emails_to", "notify_emails_locale", "email", "password", "page", "next"]
ROOTS = ["push", "password", "url", "file_push", "user", ""]
ODD = ["", "0", "-1", "1", "2", "5", "90", "True", "on", " true", "null", "[]", "{}", "text", "url",
       "qr", "file", "TEXT", "99999999999999999999999999", "1e309", "-0", "NaN", "Infinity",
       "0x10", "1.5", "\x00", "a\x00b", "\r\n", "\x1b[31m", "\t", "é", "日本語", "💥", "\u202e",
       "\ufeff", "%", "%zz", "%00", "%2e%2e/", "../../etc/passwd", "<script>x</script>",
       "' OR 1=1 --", "${jndi:ldap://x}", "https://example.com/a?b=c", "javascript:alert(1)",
       "a@b.c", "x" * 300, "y" * 70000]
ODD_TOKENS = ["", "a", "0", "-", "..", "%2e%2e", "%00", "a%00b", "%zz", "%", "é", "%C3%A9",
              "%FF%FE", "💥", "x" * 5000, "A" * 22, "a.json", "a/b", "%2F", "\u202e", "active",
              "expired", "new", "null", "1e309", "99999999999999999999"]
ACCEPTS = [None, "*/*", "text/html", "application/json", "text/html;q=0.1, application/json",
           "image/png", "", "text/*", "application/*;q=0", ";;;", "é/é", "x" * 3000]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "application/json; charset=utf-16",
                 "application/json; charset=bogus", "text/x-json", "application/jsonrequest",
                 "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=latin-1",
                 "multipart/form-data", "multipart/form-data; boundary=", "text/plain", "application/xml",
                 "", "é", "application/json;;;", None]


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes


@dataclass
class State:
    """What the fuzzer pushed and must not see leak."""
    pushes: list = field(default_factory=list)      # (url_token, payload, passphrase or None)
    secrets: set = field(default_factory=set)       # strings never to appear in the log
    findings: list = field(default_factory=list)
    cookie: str = ""
    csrf: str = ""


# A TLS client that takes any certificate (a test server's own), and PROXY protocol headers
# (v1's line, v2's binary form) of a client at 203.0.113.7:40000 seen by 127.0.0.1:443.
TLS = ssl._create_unverified_context()
PROXY = {None: b"", "v1": b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n",
         "v2": b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + socket.inet_aton("203.0.113.7")
         + socket.inet_aton("127.0.0.1") + struct.pack(">HH", 40000, 443)}


def http(host, port, raw: bytes, timeout=30.0, tls=False, proxy=None) -> bytes:
    """Send raw requests (the last with Connection: close) and read all that comes back (over
    TLS, after a PROXY header)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    data = b""
    try:
        sock.sendall(PROXY[proxy])
        if tls:
            sock = TLS.wrap_socket(sock, server_hostname=host)
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # (the server may answer and close before taking a whole body; over TLS: SSLEOFError)
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, ssl.SSLEOFError):
            pass  # (ssl: a server that closes without TLS's close_notify)
    finally:
        sock.close()
    return data


def parse(data: bytes, head_only=False) -> tuple[Answer, bytes]:
    """The first answer in data (head_only: a HEAD's, no body), and the bytes after it."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not match:
        return Answer(0, {}, data), b""
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    status = int(match.group(1))
    if head_only or status in (204, 304) or status < 200:  # (a 100 Continue's: then the answer)
        body = b""
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body, rest = dechunk(rest)
    elif "content-length" in headers and headers["content-length"].isdigit():
        body, rest = rest[:int(headers["content-length"])], rest[int(headers["content-length"]):]
    else:
        body, rest = rest, b""
    return Answer(status, headers, body), rest


def dechunk(body: bytes) -> tuple[bytes, bytes]:
    """A chunked body's data, and the bytes after it."""
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            return out, body.partition(b"\r\n")[2]  # (no trailers sent)
        out, body = out + body[:size], body[size + 2:]
    return out, b""


def build(method, path, headers, body=b"", close=True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"] + (["Connection: close"] if close else [])
    lines += [f"{k}: {v}" for k, v in headers]
    if (body or method in ("POST", "PUT", "PATCH")) and ("Transfer-Encoding", "chunked") not in headers:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


# Framing cases (--framing): a request A (a method and path the app answers, never robots.txt
# or the version), its body's framing odd; a request the body may carry inside it (C, what a
# smuggler would hide: the version); then B (robots.txt) with Connection: close.
FRAMED = [("POST", "/api/v2/pushes"), ("POST", "/p.json"), ("POST", "/up"), ("PUT", "/api/v2/pushes/x"),
          ("POST", "/users/sign_in"), ("GET", "/p/new"), ("OPTIONS", "/api/v2/pushes"), ("DELETE", "/p/x")]
HIDDEN = b"GET /api/v2/version.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
LAST = b"GET /robots.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
SIZE_LINES = ["{:x}", "{:X}", "000{:x}", "{:x};a", "{:x};a=b", '{:x};a="q;\\"r"', "{:x} ;a", "{:x}\t;a=b;c",
              "{:x} ", "{:x};", "{:x};;", "{:x};a=", "+{:x}", "0x{:x}", "{:x}\n", " {:x}", "{:x};a\rb",
              "{:x};" + "e" * 9000, "{:x}" + "\x00", "-{:x}"]
SIZE_LINES_UNDER_LIMIT = [form for form in SIZE_LINES if len(form) < 8190]
TRAILERS = ["", "X-T: 1\r\n", "X-T: 1\r\nY: 2\r\n", "Content-Length: 5\r\n", "bad trailer\r\n",
            "X-T: 1\n", "X-T:\r\n", " folded\r\n", "X-T: " + "t" * 9000 + "\r\n"]
CODINGS = ["chunked", "Chunked", "chunked ", "gzip, chunked", "chunked, chunked", "identity, chunked",
           "chunked, identity", "chunked,", "xchunked", "chunked;q=1", ""]


def gunicorn_reads(stream: bytes) -> tuple[list, str, bool]:
    """What gunicorn's own parser (a default Config, as the worker's thread) makes of a
    connection's bytes: the paths of the requests whose heads it reads, why it stopped (""
    at a request's end, "more" where it wanted bytes after the stream's end, else its error's
    name: one it met on bytes it had), and whether that was in the last one's body (which the
    app may answer unread: gunicorn meets the error after the answer, then closes)."""
    from gunicorn.config import Config
    from gunicorn.http.errors import NoMoreData
    from gunicorn.http.parser import RequestParser

    wanted = []

    def source():
        yield stream
        wanted.append(True)

    paths, in_body = [], False
    try:
        for request in RequestParser(Config(), source(), ("127.0.0.1", 1)):
            paths.append(request.path)
            in_body, declared, read = True, getattr(request.body.reader, "length", 0), 0
            while data := request.body.read(65536):
                read += len(data)
            if read < declared:  # (a declared body the stream ends in: its reader says no more)
                return paths, "more", True
            in_body = False
    except NoMoreData:
        return paths, "more", in_body
    except Exception as error:
        return paths, "more" if wanted else type(error).__name__, in_body
    return paths, "more" if wanted else "", False


def chunked_parity(seed: int, count: int) -> int:
    """(--parity N, no server.) The main loop's ChunkedEnd against gunicorn's own parser on N
    seeded chunked bodies (odd size lines, extensions, trailers; bytes inserted, dropped or
    changed), a request after each: where gunicorn refuses a body, ChunkedEnd must say bad (the
    answer then closes the connection); where it reads one, ChunkedEnd must end at the same
    byte (gunicorn then reads the same next request) whether fed whole or a byte at a time.
    Prints each disagreement (one per kind) and returns how many bodies disagreed."""
    sys.path.insert(0, __file__.rsplit("/", 2)[0])
    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser

    from pwp.worker_bodies import ChunkedEnd

    r, after, seen, bad = random.Random(seed), b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n", set(), 0
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    odd = [b"0", b"a", b";", b"=", b'"', b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x00", b":", b"x"]

    def next_request(stream):  # (what gunicorn reads after the body: the next path, or its error)
        try:
            request = next(parser := RequestParser(Config(), iter([stream]), ("127.0.0.1", 1)))
            while request.body.read(65536):
                pass
            return next(parser).path
        except Exception as error:  # (StopIteration: nothing after it)
            return type(error).__name__

    for _ in range(count):
        data = r.choice([b"", b"{}", b"abc", HIDDEN, b"z" * r.choice([1, 17, 300])])
        cuts = sorted(r.randint(0, len(data)) for _ in range(r.randint(0, 3)))
        body = b""
        for piece in [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)]) if b > a] + [b""]:
            # (No line past the limit: gunicorn takes it or not by where its reads end, ChunkedEnd calls it bad.)
            form = r.choice(SIZE_LINES_UNDER_LIMIT) if r.random() < 0.4 else "{:x}"
            body += form.format(len(piece)).encode("latin-1") + b"\r\n" + piece + (b"\r\n" if piece else b"")
        body += (r.choice(TRAILERS).encode("latin-1") if r.random() < 0.4 else b"") + b"\r\n"
        for _ in range(r.choice([0, 0, 1, 2])):
            at, what = r.randint(0, len(body)), r.random()
            body = body[:at] + (r.choice(odd) if what < 0.7 else b"") + body[at + (what >= 0.4):]
        stream = body + after
        ends = []  # (what ChunkedEnd said, fed the stream whole, then a byte at a time; and where)
        for pieces in ([stream], [stream[at:at + 1] for at in range(len(stream))]):
            end, taken, said = ChunkedEnd(8190), 0, False
            for piece in pieces:
                taken += len(piece)
                if said := end.feed(piece):
                    break
            ends.append(("bad" if end.bad else "small" if end.small else "end" if said else "wait", taken))
        ours = ends[1]
        theirs = next_request(head + stream)
        if ends[0][0] != ours[0] or ours[0] == "small":
            kind = "whole and by byte differ" if ends[0][0] != ours[0] else None
        elif ours[0] == "bad":
            kind = None if theirs != "/next" else "bad, gunicorn takes it"
        elif ours[0] == "wait":
            kind = None if theirs in ("NoMoreData", "ChunkMissingTerminator") else f"waits, gunicorn: {theirs}"
        else:  # (gunicorn must read from the same byte: the same next request, or the same error)
            rest = next_request(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + stream[ours[1]:])
            kind = None if theirs == rest else f"ends at {ours[1]}, gunicorn: {theirs} (from there: {rest})"
        if kind:
            bad += 1
            if kind.split(",")[0] not in seen:
                seen.add(kind.split(",")[0])
                print(json.dumps({"kind": "chunked-parity", "detail": kind, "body": body.decode("latin-1")}))
    return bad


def kind_of(answer: Answer) -> str:
    """Which of the framing cases' requests an answer is for: B's robots.txt, C's version, A's."""
    if b"User-agent: *" in answer.body:
        return "/robots.txt"
    return "/api/v2/version.json" if b'"api_version"' in answer.body else "A"


def _address(url) -> tuple:
    """(host, port, TLS or not) of a split URL."""
    return url.hostname, url.port or (443 if url.scheme == "https" else 80), url.scheme == "https"


class Fuzzer:
    def __init__(self, args):
        url = urllib.parse.urlsplit(args.url)
        self.host, self.port, self.tls = _address(url)
        # Pushes are made through --create-url where given (a public gateway has no API).
        self.setup = _address(urllib.parse.urlsplit(args.create_url)) if args.create_url else None
        self.args, self.rng, self.state = args, random.Random(args.seed), State()
        self.marker = f"fz{args.seed}"
        self.links = []  # file download paths (/pfb/...)
        if args.token:
            self.state.secrets.add(args.token)

    def send(self, method, path, headers=(), body=b"", note="", then=None) -> Answer:
        """Send a request (then: a second one, (method, path, headers), pipelined after it on
        its connection) and check its answer (and the second's, where the first kept it open)."""
        raw = self.raw = build(method, path, list(headers), body, close=then is None)
        if then:
            raw += build(*then)
        host, port, tls = self.setup if self.setup and note == "setup" else (self.host, self.port, self.tls)
        try:
            data = http(host, port, raw, tls=tls, proxy=None if (host, port) != (self.host, self.port)
                        else self.args.proxy_protocol)
            answer, rest = parse(data, method == "HEAD")
        except OSError as exc:
            answer, rest = Answer(0, {}, str(exc).encode()), b""
        self.check(method, path, list(headers), body, answer, note)
        if then and answer.status and answer.headers.get("connection", "").lower() != "close":
            second, _ = parse(rest, then[0] == "HEAD")
            self.check(*then, b"", second, "pipelined")
        return answer

    def report(self, kind, method, path, headers, body, answer, detail=""):
        finding = {"kind": kind, "detail": detail, "status": answer.status, "method": method,
                   "path": path[:300], "headers": [f"{k}: {v}"[:200] for k, v in headers],
                   "body": body[:300].decode("latin-1"), "answer": answer.body[:300].decode("latin-1")}
        self.state.findings.append(finding)
        if self.args.dump and kind not in ("views", "log-traceback", "log-secret"):  # (the request as sent)
            with open(f"{self.args.dump}/{len(self.state.findings)}.raw", "wb") as f:
                f.write(self.raw)
        print(json.dumps(finding), flush=True)

    def check(self, method, path, headers, body, answer, note):
        rep = lambda kind, detail="": self.report(kind, method, path, headers, body, answer, detail)  # noqa: E731
        # (A transfer coding gunicorn does not know: its 501, RFC 9112 6.1, the one 5xx expected.)
        unknown_coding = answer.status == 501 and note == "framing" and any(
            k.lower() == "transfer-encoding" for k, _ in headers)
        if answer.status == 0 or answer.status >= 500 and not unknown_coding:
            rep("5xx" if answer.status else "no-answer")
        if not path.startswith("/static/") and answer.status:
            for name, want in SECURITY_HEADERS.items():
                if want not in answer.headers.get(name, "\0"):
                    rep("security-header", f"{name}: {answer.headers.get(name)!r}")
        text = answer.body.decode("utf-8", "replace")
        for url_token, payload, passphrase in self.state.pushes:
            # (As the app routes it: an absolute-form target's path, "//" merged, no trailing "/".)
            bare = re.sub("/+", "/", re.split("[?#]", re.sub(r"^https?://[^/]*", "", path))[0]).rstrip("/")
            # (A URL push's retrieval is its 303 to the URL, which the redirect's page names.)
            served = (answer.status in (200, 303) and re.fullmatch(RETRIEVALS.format(re.escape(url_token)), bare)
                      or answer.status in (200, 206) and any(bare.startswith(link) for link in self.links))
            if payload in text and not served:
                rep("payload-leak", url_token)
            # (A redirect may quote the request's own URL: sign-in's ?next=.)
            echoed = 300 <= answer.status < 400 and urllib.parse.quote(passphrase or "") in path
            if passphrase and passphrase in text and not echoed:
                rep("passphrase-leak", url_token)
        if self.args.token and self.args.token in text and note != "token-page":
            rep("token-leak")

    # -- setup: pushes to aim at, a session ------------------------------------------------

    def api_headers(self):
        a = self.args
        return [("Authorization", f"Bearer {a.token}")] if a.token else []

    def push(self, views, passphrase=None, auth=True, retrieval_step=False):
        """Create a push through API v2; remember its token and payload."""
        payload = f"{self.marker}-secret-{self.rng.getrandbits(64):016x}"
        fields = {"payload": payload, "expire_after_views": views, "retrieval_step": retrieval_step}
        if passphrase:
            fields["passphrase"] = passphrase
        body = json.dumps({"push": fields}).encode()
        headers = [("Content-Type", "application/json")] + (self.api_headers() if auth else [])
        answer = self.send("POST", "/api/v2/pushes", headers, body, note="setup")
        if answer.status != 201:
            print(f"setup: cannot create a push: {answer.status} {answer.body[:200]!r}", file=sys.stderr)
            raise SystemExit(2)
        url_token = json.loads(answer.body)["url_token"]
        self.state.pushes.append((url_token, payload, passphrase))
        self.state.secrets.update({payload, url_token} | ({passphrase} if passphrase else set()))
        return url_token, payload

    def file_push(self):
        """A file push (multipart, API v2); its download links join the paths fuzzed."""
        payload = f"{self.marker}-file-{self.rng.getrandbits(64):016x}"
        boundary = "fzsetup"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="push[payload]"\r\n\r\nnote\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="push[files][]"; filename="a.txt"\r\n'
                f"Content-Type: text/plain\r\n\r\n{payload}\r\n--{boundary}--\r\n").encode()
        answer = self.send("POST", "/api/v2/pushes", [("Content-Type", f"multipart/form-data; boundary={boundary}")]
                           + self.api_headers(), body, note="setup")
        if answer.status == 201:
            url_token = json.loads(answer.body)["url_token"]
            self.state.pushes.append((url_token, payload, None))
            self.state.secrets.update({payload, url_token})
            got = self.send("GET", f"/api/v2/pushes/{url_token}", self.api_headers(), note="setup")
            for f in json.loads(got.body).get("files") or []:
                # (A download: /pfb/<link>/ and any name after it, the name only the browser's.)
                self.links.append(urllib.parse.urlsplit(f["url"]).path.rsplit("/", 1)[0] + "/")

    def sign_in(self):
        """A web session (cookie) and its CSRF token, if a password was given."""
        a = self.args
        answer = self.send("GET", "/users/sign_in", [("Accept", "text/html")], note="setup")
        cookie = answer.headers.get("set-cookie", "").split(";")[0]
        csrf = re.search(rb'name="csrf_token" value="([^"]+)"', answer.body)
        if not (a.password and a.email and csrf):
            return
        body = urllib.parse.urlencode({"email": a.email, "password": a.password,
                                       "csrf_token": csrf.group(1).decode()}).encode()
        answer = self.send("POST", "/users/sign_in", [
            ("Cookie", cookie), ("Sec-Fetch-Site", "same-origin"),
            ("Content-Type", "application/x-www-form-urlencoded")], body, note="setup")
        self.state.cookie = answer.headers.get("set-cookie", cookie).split(";")[0]
        answer = self.send("GET", "/p/new", [("Cookie", self.state.cookie)], note="setup")
        csrf = re.search(rb'name="csrf_token" value="([^"]+)"', answer.body)
        self.state.csrf = csrf.group(1).decode() if csrf else ""
        self.state.secrets.add(a.password)

    # -- generators ------------------------------------------------------------------------

    def odd(self):
        r = self.rng
        if r.random() < 0.15:
            return r.choice([1, -1, 0, 10 ** 30, 1.5, True, False, None, [], {}, ["a", 1], {"a": {"b": []}}])
        return r.choice(ODD)

    def token(self):
        r = self.rng
        if self.state.pushes and r.random() < 0.5:
            return self.state.pushes[r.randrange(len(self.state.pushes))][0]
        return r.choice(ODD_TOKENS)

    def path(self):
        r = self.rng
        path = r.choice(ROUTES)
        path = path.replace("{T}", self.token()).replace("{P}", r.choice(["p", "f", "r", "x"]))
        path = path.replace("{U}", r.choice(["1", "2", "0", "99999999999", "-1", "a"]))
        path = path.replace("{F}", r.choice(["a.txt", "..%2F..%2Fetc%2Fpasswd", "%00", "css/app.css", "x" * 2000]))
        if self.links and r.random() < 0.05:
            path = r.choice(self.links) + "a.txt"
        if r.random() < 0.1:
            path += r.choice(["/", "//", "/.", "/..", "%", "%zz", ";x", "#frag", "/%2e%2e"])
        if r.random() < 0.3:
            path += "?" + self.query()
        if r.random() < 0.03:
            path = r.choice(["*", "http://127.0.0.1" + path, "//" + path, path.replace("/", "\\")])
        return path

    def query(self):
        r = self.rng
        parts = []
        for _ in range(r.randint(1, 4)):
            key = r.choice(["page", "passphrase", "tab", "locale", "next", "page[]", "passphrase[]",
                            "page[a]", "%zz", "", "a%00"])
            value = self.odd()
            value = value if isinstance(value, str) else json.dumps(value)
            if r.random() < 0.5:
                value = urllib.parse.quote(value, safe="")
            parts.append(f"{key}={value}")
        if r.random() < 0.2 and self.state.pushes:  # the right passphrase, in a query
            parts.append("passphrase=" + urllib.parse.quote(r.choice(
                [p for _, _, p in self.state.pushes if p] or ["x"])))
        return "&".join(parts)

    def fields(self):
        """A dict of create-like fields, the root key chosen at random."""
        r = self.rng
        root = r.choice(ROOTS)
        inner = {r.choice(FIELDS): self.odd() for _ in range(r.randint(0, 6))}
        if r.random() < 0.5:
            inner.setdefault("payload", f"{self.marker}-fuzz-{r.getrandbits(32):x}")
        return root, inner

    def body(self):
        """(content type, body bytes)."""
        r = self.rng
        ctype = r.choice(CONTENT_TYPES)
        root, inner = self.fields()
        shape = r.random()
        if ctype and "json" in ctype and shape < 0.7:
            doc = {root: inner} if root else inner
            if r.random() < 0.1:
                doc = r.choice([[doc], "x", 1, None, {root: [inner]}, {root: "x"}, {root: {"payload": inner}}])
            text = json.dumps(doc, ensure_ascii=r.random() < 0.5)
            if r.random() < 0.1:
                text = r.choice([text[:-1], text + "garbage", text.replace("1", "NaN"), "\ufeff" + text,
                                 text.replace("{", '{"a":1,"a":2,', 1), '{"push": {"payload": "\\ud800"}}'])
            return ctype, text.encode("utf-16" if "utf-16" in ctype and r.random() < 0.5 else "utf-8",
                                      "surrogatepass")
        if ctype and ctype.startswith("multipart"):
            return self.multipart(root, inner)
        pairs = []
        for key, value in inner.items():
            name = f"{root}[{key}]" if root else key
            if key == "files" or r.random() < 0.1:
                name += r.choice(["[]", "[0]", "[a][b]", "["])
            value = value if isinstance(value, str) else json.dumps(value)
            pairs.append((name, value))
            if r.random() < 0.1:
                pairs.append((name, self.odd() if r.random() < 0.5 else value))
        text = "&".join(f"{urllib.parse.quote(k, safe='[]')}={urllib.parse.quote(str(v))}" for k, v in pairs)
        if r.random() < 0.15:
            text += r.choice(["&%zz=%", "&=", "&&&", "&a=%E9", "&push[payload]=%C3%28", "&\x00=\x00"])
        if self.state.csrf and r.random() < 0.6:
            text += "&csrf_token=" + (self.state.csrf if r.random() < 0.8 else "bad")
        return ctype, text.encode("utf-8", "surrogateescape")

    def multipart(self, root, inner):
        r = self.rng
        boundary = "fzb" + str(r.getrandbits(32))
        parts = []
        for key, value in inner.items():
            name = f"{root}[{key}]" if root else key
            value = value if isinstance(value, str) else json.dumps(value)
            if key == "files" or r.random() < 0.2:
                filename = r.choice(["a.txt", "", "..", "../x", "é.pdf", "a\x00b", "\u202etxt.exe", "x" * 400])
                size = r.choice([0, 1, 100, 70000])
                parts.append(f'Content-Disposition: form-data; name="{name}[]"; filename="{filename}"\r\n'
                             f"Content-Type: {r.choice(['text/plain', '', 'é'])}\r\n\r\n"
                             + (self.marker + "F") * (size // 4))
            else:
                parts.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}')
        if self.state.csrf:
            parts.append(f'Content-Disposition: form-data; name="csrf_token"\r\n\r\n{self.state.csrf}')
        body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
        if r.random() < 0.1:
            body = body[:len(body) // 2]
        ctype = r.choice([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                          f"multipart/form-data; boundary={boundary}x", f'multipart/form-data; boundary="{boundary}"'])
        return ctype, body.encode("utf-8", "surrogateescape")

    def headers(self, ctype):
        r, a, h = self.rng, self.args, []
        accept = r.choice(ACCEPTS)
        if accept is not None:
            h.append(("Accept", accept))
        if ctype is not None:
            h.append(("Content-Type", ctype))
        auth = r.random()
        if a.token and auth < 0.3:
            h.append(("Authorization", r.choice([f"Bearer {a.token}", a.token, f"bearer  {a.token}"])))
        elif a.token and auth < 0.45:
            h += [("X-User-Email", r.choice([a.email or "", "nobody@example.com", "é", ""])),
                  ("X-User-Token", r.choice([a.token, "bad", ""]))]
        elif auth < 0.55:
            h.append(("Authorization", r.choice(["Bearer", "Bearer ", "Bearer x", "Basic YTpi", "Bearer é",
                                                  "Bearer " + "x" * 5000, "Token token=x"])))
        if self.state.cookie and r.random() < 0.4:
            h.append(("Cookie", self.state.cookie))
            if r.random() < 0.7:
                h.append(("Sec-Fetch-Site", r.choice(["same-origin", "cross-site", "none", "é"])))
        elif r.random() < 0.05:
            h.append(("Cookie", r.choice(["session=x", "session=", "pwp_device=%%", "a" * 5000])))
        if r.random() < 0.1:
            h.append(("Origin", r.choice(["null", "http://127.0.0.1", "http://evil.example", "é"])))
        if r.random() < 0.05:
            h.append(("Range", r.choice(["bytes=0-1", "bytes=-1", "bytes=5-1", "bytes=0-0,2-3", "bytes=x"])))
        if r.random() < 0.05:
            h.append(("Accept-Language", r.choice(["fr", "xx-YY", "*", "é;q=2", "de;q=NaN"])))
        if r.random() < 0.03:
            h.append(("X-Forwarded-For", r.choice(["1.2.3.4", "é", "::1, x"])))
        return h

    def one(self):
        r = self.rng
        if self.args.creates and r.random() < self.args.creates:
            return self.create()
        method = r.choice(METHODS) if r.random() < 0.4 else r.choice(["GET", "POST"])
        path = self.path()
        ctype, body = self.body() if method in ("POST", "PUT", "PATCH", "DELETE") or r.random() < 0.05 \
            else (None, b"")
        if r.random() < 0.02:
            body = body * 20
        headers = self.headers(ctype)
        if body and r.random() < self.args.chunked:  # chunked, in odd pieces (Content-Length then not sent)
            headers.append(("Transfer-Encoding", "chunked"))
            cut = r.randint(0, len(body))
            body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:cut], body[cut:]) if p) + b"0\r\n\r\n"
        then = None
        if self.args.pipelined and r.random() < self.args.pipelined:  # a second request on its connection
            then = (r.choice(["GET", "GET", "HEAD", "POST", "DELETE"]), self.path(), self.headers(None))
        self.send(method, path, headers, body, then=then)

    def create(self):
        """A creation near a valid one (the route's root, a payload, the API token, JSON or
        multipart, a file where the kind takes one) with a few odd fields: odd values reach the
        code past the checks. A push it makes joins those whose payload and passphrase must
        not leak."""
        r = self.rng
        path, root, kind = r.choice([("/api/v2/pushes", "push", None), ("/api/v2/pushes", "push", "url"),
                                     ("/api/v2/pushes", "push", "qr"), ("/api/v2/pushes", "push", "file"),
                                     ("/p.json", "password", None), ("/r.json", "url", None),
                                     ("/f.json", "file_push", None)])
        is_url, is_file = kind == "url" or root == "url", kind == "file" or root == "file_push"
        secret = f"{self.marker}-made-{r.getrandbits(64):016x}"
        payload = f"https://example.com/{secret}" if is_url else secret
        inner = {"payload": payload} | ({"kind": kind} if kind else {})
        for _ in range(r.randint(0, 3)):
            inner[r.choice(FIELDS[1:10])] = self.odd()
        passphrase = f"{self.marker}-pp-{r.getrandbits(32):x}" if r.random() < 0.3 else None
        if passphrase:
            inner["passphrase"] = passphrase
        headers = self.api_headers() if r.random() < 0.9 else []
        if is_file or r.random() < 0.2:
            boundary = "fzc" + str(r.getrandbits(32))
            parts = [f'Content-Disposition: form-data; name="{root}[{k}]"\r\n\r\n'
                     + (v if isinstance(v, str) else json.dumps(v)) for k, v in inner.items() if k != "files"]
            if is_file:
                parts += [f'Content-Disposition: form-data; name="{root}[files][]"; filename="{r.choice(["a.txt", "é.pdf", ".x", "a b"])}"'
                          f"\r\nContent-Type: text/plain\r\n\r\n{secret}-file" for _ in range(r.randint(1, 2))]
            body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
            headers.append(("Content-Type", f"multipart/form-data; boundary={boundary}"))
        else:
            body = json.dumps({root: inner}, ensure_ascii=r.random() < 0.5)
            headers.append(("Content-Type", "application/json"))
        answer = self.send("POST", path, headers, body.encode("utf-8", "surrogateescape"),
                           note="setup" if self.setup else "")  # (a gateway's pushes: its internal instance's)
        if answer.status == 201:
            try:
                url_token = json.loads(answer.body)["url_token"]
            except (ValueError, KeyError, TypeError):
                self.report("created", "POST", path, headers, b"", answer, "a 201 without its url_token")
                return
            self.state.pushes.append((url_token, secret, passphrase))
            self.state.secrets.update({secret, url_token} | ({passphrase} if passphrase else set()))

    def framing(self):
        """A connection's bytes framed oddly (--framing): A with a body declared, chunked (odd
        size lines, extensions, chunks' CRLFs, trailers, codings), both, or neither, maybe
        carrying C inside it, maybe cut (then the stream ends there, or the connection is reset),
        then B; sent whole or in pieces (a few, or each CRLF cut in two), the write side then
        closed (plain TCP). The answers must be for the requests
        gunicorn's own parser reads from the same bytes, in order (never one it did not read: a
        request smuggled past a proxy that frames as gunicorn does), a 4xx where it refuses
        one, and none missing but after an answer that said Connection: close."""
        r = self.rng
        method, path = r.choice(FRAMED)
        version = 0 if r.random() < 0.05 else 1
        lines = [f"{method} {path} HTTP/1.{version}", "Host: 127.0.0.1"]
        if r.random() < (0.5 if version == 0 else 0.05):  # (close: B never answered, gunicorn reads no more)
            lines.append("Connection: " + r.choice(["close", "keep-alive", "Keep-Alive, close", "upgrade"]))
        if r.random() < 0.5:
            lines.append("Content-Type: application/json")
        if r.random() < 0.15:
            lines.append("Expect: " + r.choice(["100-continue", "100-Continue", "100-continue "]))
        data = r.choice([b"", b"{}", b'{"push": {"payload": "%s-framed"}}' % self.marker.encode(), HIDDEN,
                         b"a=1&" + HIDDEN, b"z" * r.choice([1, 100, 70000])])
        how = r.choices(["length", "chunked", "both", "none"], [4, 6, 1, 1])[0]
        body = data
        if how in ("length", "both"):
            length = max(len(data) + r.choice([0, 0, 0, 0, -1, 1, -len(data), 10]), 0)
            form = r.choice(["{}"] * 6 + ["+{}", "0{}", " {} ", "{}, {}", "{}\x00", "{}.0"])
            lines.append("Content-Length: " + form.format(length, length))
            if r.random() < 0.05:
                lines.append(f"Content-Length: {r.choice([length, length + 1])}")
        if how in ("chunked", "both"):
            lines.append("Transfer-Encoding: " + (r.choice(CODINGS) if r.random() < 0.3 else "chunked"))
            if r.random() < 0.05:
                lines.append("Transfer-Encoding: " + r.choice(CODINGS))
            cuts = sorted(r.randint(0, len(data)) for _ in range(r.randint(0, 3)))
            pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)]) if b > a]
            body = b""
            for piece in pieces + [b""]:
                form = r.choice(SIZE_LINES) if r.random() < 0.2 else "{:x}"
                size = len(piece) + (r.choice([-1, 1]) if piece and r.random() < 0.05 else 0)
                body += form.format(size).encode("latin-1") + b"\r\n" + piece
                if piece:
                    body += r.choice([b"\r\n"] * 19 + [b"\n", b"", b"xx"])
            body += r.choice(TRAILERS).encode("latin-1") if r.random() < 0.2 else b""
            body += r.choice([b"\r\n"] * 19 + [b"", b"\n"])
        stream = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body
        if r.random() < 0.1:
            stream += HIDDEN
        reset = False
        if r.random() < 0.1:
            stream = stream[:r.randint(1, len(stream))]
            reset = r.random() < 0.3  # (then a reset, no answer awaited: the log says what came of it)
        else:
            stream += LAST
        if r.random() < 0.05:
            stream = r.choice([b"\r\n", b"\r\n\r\n", b"\n"]) + stream  # (one empty line may come first)
        split = r.random()
        if split < 0.1:  # (between each CR and its LF: a CRLF the server reads in two)
            cuts = [at + 1 for at in range(len(stream) - 1) if stream[at] == 13][:40]
        else:
            cuts = sorted(r.randint(1, len(stream)) for _ in range(r.randint(1, 3) if split < 0.4 else 0))
        paths, stopped, in_body = gunicorn_reads(stream)
        self.raw = stream
        sock = socket.create_connection((self.host, self.port), timeout=30)
        data = b""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(PROXY[self.args.proxy_protocol])
            if self.tls:
                sock = TLS.wrap_socket(sock, server_hostname=self.host)
                if stopped == "more":  # (no half close over TLS: the server waits, up to `timeout`)
                    sock.settimeout(3)
            try:
                for a, b in zip([0] + cuts, cuts + [len(stream)]):
                    sock.sendall(stream[a:b])
                    if b < len(stream):
                        time.sleep(r.choice([0, 0.005, 0.02]))  # (pieces the server reads apart)
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if not self.tls:
                    sock.shutdown(socket.SHUT_WR)
            except (OSError, ssl.SSLError):  # (the server answered and closed before it took all: read that)
                pass
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except (OSError, ssl.SSLError):  # (a reset, the TLS case's timeout)
                pass
        finally:
            sock.close()
        answers, continues = [], 0
        while data:
            answer, data = parse(data)
            if answer.status == 0:
                break
            if answer.status == 100:
                continues += 1
                if continues > 1:  # (one 100 Continue a request at most, before its answer)
                    self.report("framing", method, path, [], stream[:300], answer, "a second 100 Continue")
                continue
            continues = 0
            answers.append(answer)
        got = [kind_of(a) for a in answers]
        want = [p if p in ("/robots.txt", "/api/v2/version.json") else "A" for p in paths]
        head = [(k, v) for k, _, v in (line.partition(": ") for line in lines[1:])]
        for answer in answers:
            self.check(method, path, head, body[:300], answer, "framing")
        detail = f"gunicorn read {want} then {stopped or 'the end'}; answers {[a.status for a in answers]} for {got}"
        # (A refusal of a head: one more answer, a 4xx. Of a body: the app's answer may come first.)
        refused = len(answers) > len(paths) and answers[len(paths)].status < 400
        extra = len(got) - len(want) - (stopped not in ("", "more") and not in_body)
        closed = answers and answers[-1].headers.get("connection", "").lower() == "close"
        if got[:len(want)] != want[:len(got)] or extra > 0 or refused:
            self.report("framing", method, path, head, body, answers[-1] if answers else Answer(0, {}, b""), detail)
        elif len(got) < len(want) - (stopped == "more" and in_body) and not closed:
            self.report("framing-unanswered", method, path, head, body,
                        answers[-1] if answers else Answer(0, {}, b""), detail)
        elif stopped not in ("", "more") and len(got) == len(want) and not closed:
            # (A body gunicorn refuses: its answer, the app's or the 400, must close the connection.)
            self.report("framing-kept-open", method, path, head, body, answers[-1], detail)

    def every_route(self):
        """Each route (a push's token, user 1, p, a.txt) with HEAD and OPTIONS, robots.txt's GET
        after it on its connection: no body after a HEAD's head, the next answer robots.txt's."""
        token = self.state.pushes[0][0]
        for route in ROUTES:
            path = route.replace("{T}", token).replace("{U}", "1").replace("{P}", "p").replace("{F}", "a.txt")
            for method in ("HEAD", "OPTIONS"):
                self.raw = build(method, path, [], close=False) + LAST
                try:
                    data = http(self.host, self.port, self.raw, tls=self.tls, proxy=self.args.proxy_protocol)
                except OSError as exc:
                    data = str(exc).encode()
                first, rest = parse(data, head_only=method == "HEAD")
                self.check(method, path, [], b"", first, "")
                if first.status and first.headers.get("connection", "").lower() != "close":
                    second, rest = parse(rest)
                    if kind_of(second) != "/robots.txt" or rest:
                        self.report("head-framing", method, path, [], b"", second,
                                    f"after {first.status}: {second.status}, {len(rest)} bytes more")

    # -- runs ------------------------------------------------------------------------------

    def fuzz(self):
        for views in range(1, 6):
            self.push(views)
            self.push(views, passphrase=f"{self.marker}-pass-{views}-{self.rng.getrandbits(32):x}")
            self.push(views, retrieval_step=True, auth=bool(self.args.token) and views % 2 == 0)
        if self.args.token:
            for _ in range(3):
                self.file_push()
        self.sign_in()
        if self.args.every_route:
            self.every_route()
        for i in range(self.args.requests):
            if self.args.framing and self.rng.random() < self.args.framing:
                self.framing()
                continue
            self.one()
            if i % 200 == 199:  # fresh pushes to burn as the old ones expire
                self.push(self.rng.randint(1, 3))
                print(f"# {i + 1} requests, {len(self.state.findings)} findings", file=sys.stderr)

    def views(self, threads=8):
        """Pushes of 1-3 views, each retrieved by `threads` threads at once: served <= views."""
        ways = [("/api/v2/pushes/{}", "application/json"), ("/p/{}.json", "application/json"),
                ("/p/{}", "text/html"), ("/api/v2/pushes/{}.json", "*/*")]
        if self.setup:  # (a public gateway: its page only, the APIs are 404s there)
            ways = [("/p/{}", "text/html")]
        for views in (1, 2, 3):
            for _ in range(3):
                url_token, payload = self.push(views)
                got, barrier = [], threading.Barrier(threads)

                def take(i, url_token=url_token, payload=payload, got=got, barrier=barrier):
                    path, accept = ways[i % len(ways)]
                    barrier.wait()
                    answer = self.send("GET", path.format(url_token), [("Accept", accept)])
                    got.append(payload in answer.body.decode("utf-8", "replace"))
                workers = [threading.Thread(target=take, args=(i,)) for i in range(threads)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                if sum(got) != views:
                    self.report("views", "GET", url_token, [], b"", Answer(0, {}, b""),
                                f"{sum(got)} payloads served for {views} views")

    def scan_log(self, path):
        with open(path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        for n, line in enumerate(log.splitlines(), 1):
            if "Traceback" in line:
                self.report("log-traceback", "", path, [], b"", Answer(0, {}, b""), f"line {n}")
        for secret in sorted(self.state.secrets):
            if secret in log:
                self.report("log-secret", "", path, [], b"", Answer(0, {}, b""), secret[:12] + "...")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--email", help="an account's e-mail (X-User-Email, web sign-in)")
    parser.add_argument("--token", help="that account's API token")
    parser.add_argument("--password", help="that account's web password (a session with CSRF token)")
    parser.add_argument("--log", help="the server's log file, scanned at the end")
    parser.add_argument("--create-url", help="where to make its pushes, if not --url (a public gateway's internal instance)")
    parser.add_argument("--proxy-protocol", choices=["v1", "v2"], help="send a PROXY header first (gunicorn --proxy-protocol)")
    parser.add_argument("--creates", type=float, default=0.2,
                        help="the share of requests that are creations near a valid one (0: the sequence of before)")
    parser.add_argument("--chunked", type=float, default=0.05, help="the share of bodies sent chunked")
    parser.add_argument("--pipelined", type=float, default=0.1,
                        help="the share of requests followed by a second on their connection (0: none)")
    parser.add_argument("--framing", type=float, default=0.1,
                        help="the share of requests whose connection's framing is odd, checked against gunicorn's parser (0: none)")
    parser.add_argument("--parity", type=int, metavar="N",
                        help="no server: N chunked bodies, the worker's ChunkedEnd against gunicorn's parser")
    parser.add_argument("--every-route", action="store_true", help="first HEAD and OPTIONS on every route")
    parser.add_argument("--dump", metavar="DIR", help="write each finding's request as sent to DIR/<n>.raw")
    parser.add_argument("--no-views", action="store_true", help="skip the concurrent view check")
    args = parser.parse_args()
    if args.parity:
        found = chunked_parity(args.seed, args.parity)
        print(json.dumps({"parity": args.parity, "seed": args.seed, "disagreed": found}), file=sys.stderr)
        return 1 if found else 0
    fuzzer = Fuzzer(args)
    fuzzer.fuzz()
    if not args.no_views:
        fuzzer.views()
    if args.log:
        fuzzer.scan_log(args.log)
    kinds = {}
    for finding in fuzzer.state.findings:
        kinds[finding["kind"]] = kinds.get(finding["kind"], 0) + 1
    print(json.dumps({"requests": args.requests, "seed": args.seed, "findings": kinds}), file=sys.stderr)
    return 1 if fuzzer.state.findings else 0


if __name__ == "__main__":
    sys.exit(main())
