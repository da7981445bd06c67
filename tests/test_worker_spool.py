"""pwp/workers.py: request bodies the worker's main loop writes to a temporary file (past
BODY_IN_MEMORY) while they come, with the real gunicorn and the real worker."""
import json
import os
import re
import select
import selectors
import socket
import ssl
import subprocess
import time

import pytest
from urllib.parse import urlsplit

from servers import bearer, create_user, gunicorn, server_env
from test_gunicorn_conf import _sending_slowly, _still_open, _until_closed, _wait_until_read, _worker_pid


def _deleted_files(pid) -> list[bytes]:
    """What the worker's open, deleted files (its temporary files) hold, read through /proc."""
    contents = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(" (deleted)"):
                with open(f"/proc/{pid}/fd/{fd}", "rb") as file:
                    contents.append(file.read())
        except OSError:
            pass  # (closed meanwhile, or not a file)
    return contents


def _multipart(name: str, data: bytes, boundary: bytes) -> bytes:
    return (b"--%s\r\nContent-Disposition: form-data; name=\"push[files][]\"; filename=\"%s\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n%s\r\n--%s--\r\n"
            % (boundary, name.encode(), data, boundary))


def test_a_spooled_body_is_ciphertext_in_its_temporary_file_and_comes_to_the_app_whole(tmp_path):
    """The main loop wrote a body past BODY_IN_MEMORY to its temporary file as it came: a file
    upload's plaintext (a form's password) sat on the disk in the clear, where the README
    promises a secret file's plaintext never touches it. The file now holds AES-CTR ciphertext
    under a key only the worker's memory holds for that body; the app reads the body as sent."""
    from pwp.worker_bodies import BODY_IN_MEMORY
    marker = b"SECRET-MARKER-" + os.urandom(8).hex().encode()
    data = marker + os.urandom(4 * BODY_IN_MEMORY) + marker
    boundary = b"spooled-" + os.urandom(8).hex().encode()
    body = _multipart("secret.bin", data, boundary)
    head = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n" % (boundary, len(body)))
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log") as server:
        token = create_user(env, "spool@example.com")
        pid = _worker_pid(server)
        half = len(body) // 2  # (its first BODY_IN_MEMORY bytes and more written to the file)
        upload = _sending_slowly(server.port, head + b"Authorization: Bearer %s\r\n\r\n" % token.encode(),
                                 body[:half])
        _wait_until_read(server.port, [upload])
        files = _deleted_files(pid)
        assert any(len(content) >= BODY_IN_MEMORY for content in files)  # (the body's file, written to)
        runs = [data[at:at + 32] for at in range(len(marker), half - BODY_IN_MEMORY - 512, 4096)]
        assert len(runs) > 10
        assert not any(marker in content for content in files)  # (was: there, in the clear)
        assert not any(run in content for content in files for run in runs)
        upload.sendall(body[half:])
        answer_head, _, answer = _until_closed(upload).partition(b"\r\n\r\n")
        assert answer_head.startswith(b"HTTP/1.1 201 "), answer_head
        status, push = server.json("GET", f"/api/v2/pushes/{json.loads(answer)['url_token']}",
                                   headers=bearer(token))
        assert status == 200
        status, _headers, got = server.request("GET", urlsplit(push["files"][0]["url"]).path)
        assert status == 200 and got == data
        assert "Traceback" not in server.logs()


def _answer_while_sending(port, request: bytes, context=None) -> bytes:
    """What the server answers to a request sent whole while it is read, until the server
    closes the connection (or resets it, having read no more of the body); over TLS with an
    ssl context. One thread sends and reads (a non-blocking socket): an SSLSocket written by
    one thread while another reads it crashed the test's process now and then (OpenSSL's
    connection is not shared between threads)."""
    conn = socket.create_connection(("127.0.0.1", port))
    if context is not None:
        conn = context.wrap_socket(conn, server_hostname="127.0.0.1")
    conn.setblocking(False)
    deadline = time.monotonic() + 20  # (a failure guard only)
    rest, received = memoryview(request), b""
    with conn, selectors.DefaultSelector() as selector:
        selector.register(conn, selectors.EVENT_READ)
        while True:
            if rest:  # (the server's answer and the request's rest both wait on the one socket)
                selector.modify(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
                try:
                    rest = rest[conn.send(rest[:65536]):]
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    pass
                except OSError:  # (the server closed the connection without reading the rest)
                    rest = rest[:0]
                if not rest:
                    selector.modify(conn, selectors.EVENT_READ)
            try:
                chunk = conn.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                chunk = None
            except (ConnectionResetError, ssl.SSLError):
                break
            if chunk == b"":
                break
            if chunk:
                received += chunk
                continue  # (a TLS record read may leave more in the ssl layer: read it first)
            if context is not None and conn.pending():
                continue
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"no end of the answer within 20 s; received {received[:200]!r}")
    return received


@pytest.mark.parametrize("path, content_type, body", [
    ("/api/v2/pushes", "application/json; charset=utf-8", b'{"status":503,"error":"Service Unavailable"}'),
    ("/p", "text/plain; charset=utf-8", b"Service Unavailable: the server cannot take this request's body now; "
                                        b"try again later.\n"),
])
def test_a_body_whose_temporary_file_cannot_be_written_gets_a_503_and_the_connection_closes(
        tmp_path, path, content_type, body):
    """A body past BODY_IN_MEMORY whose temporary file cannot be written (TMPDIR full: here a
    file past RLIMIT_FSIZE, EFBIG) was dropped without an answer, a reset for the client. It now
    gets a 503 with Retry-After (JSON for the API, text otherwise), from the main loop, and the
    connection closes; the worker goes on serving."""
    from pwp.worker_bodies import BODY_IN_MEMORY
    fsize = 2 * BODY_IN_MEMORY + 65536  # (the database, the log stay smaller)
    env = server_env(tmp_path / "instance")
    size = 16 * fsize
    request = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (path.encode(), size) + b"{" + b" " * (size - 1))
    with gunicorn(env, tmp_path / "log", fsize=fsize) as server:
        pid = _worker_pid(server)
        answer_head, _, answer = _answer_while_sending(server.port, request).partition(b"\r\n\r\n")
        assert answer_head.startswith(b"HTTP/1.1 503 "), answer_head  # (was: b"", dropped)
        fields = dict(line.split(b": ", 1) for line in answer_head.split(b"\r\n")[1:])
        assert fields[b"Retry-After"].isdigit() and fields[b"Connection"] == b"close"
        assert fields[b"Content-Type"] == content_type.encode() and answer == body
        # (The app's security headers and no-store, as on every answer.)
        assert fields[b"X-Content-Type-Options"] == b"nosniff" and fields[b"X-Frame-Options"] == b"DENY"
        assert fields[b"Cache-Control"] == b"no-store" and b"frame-ancestors 'none'" in fields[b"Content-Security-Policy"]
        assert server.request("GET", "/up", timeout=20)[0] == 200
        assert _worker_pid(server) == pid
        assert "Traceback" not in server.logs()
        assert "could not be written to a temporary file" in server.logs()


def test_a_body_that_alone_would_pass_the_spools_cap_gets_a_503(tmp_path):
    """A body that needs more room than the spool's cap holds, with no unfinished body to take
    it from, was dropped without an answer; it now gets the 503 of a full spool. JSON for the
    paths the app answers as the API's: `//api/v2/pushes` (a base URL that ends in a slash)
    and `/%61pi/...` too, as gunicorn and the app read them (the 503 was text)."""
    from pwp.worker_bodies import BODY_IN_MEMORY
    env = server_env(tmp_path / "instance", PWPUSH_BODIES_SPOOLED=str(2 * BODY_IN_MEMORY))
    size = 8 * BODY_IN_MEMORY
    with gunicorn(env, tmp_path / "log") as server:
        for target in (b"/api/v2/pushes", b"//api/v2/pushes", b"http://x//api/v2/pushes/", b"/%61pi/v2/pushes"):
            request = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % (target, size) + b"{" + b" " * (size - 1))
            answer = _answer_while_sending(server.port, request)
            assert answer.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 30\r\n" in answer  # (was: b"")
            assert answer.endswith(b'{"status":503,"error":"Service Unavailable"}'), (target, answer)
        assert server.request("GET", "/up", timeout=20)[0] == 200
        assert "Traceback" not in server.logs() and "temporary file" not in server.logs()


def test_the_spool_is_whole_again_after_bodies_refused_with_a_503(tmp_path):
    """The bytes of bodies refused with a 503 (their file past RLIMIT_FSIZE, here
    3 x 64 KiB; written as they came, or with their last bytes as they were handed over;
    one with a request pipelined before it; each declared within the cap, which refuses a
    longer one at its head) come out of the spool's count: a body as long as a file may be is
    still taken afterwards (the refused bodies' counts left over would fill the cap: its 503)."""
    from test_gunicorn_conf import _spool_files, _until_out_of_files_of

    from pwp.worker_bodies import BODY_IN_MEMORY
    cap, limit = 8 * BODY_IN_MEMORY, 3 * BODY_IN_MEMORY  # (the database, the log stay smaller)
    env = server_env(tmp_path / "instance", PWPUSH_BODIES_SPOOLED=str(cap))
    post = b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

    def json_body(size):
        return b'{"push": {"payload": "refused"}}' + b" " * (size - 32)

    with gunicorn(env, tmp_path / "log", fsize=limit) as server:
        files = _spool_files(server)
        for _ in range(3):
            size = 2 * limit
            answer = _answer_while_sending(server.port, post + b"Content-Length: %d\r\n\r\n" % size + json_body(size))
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
            pipelined = _answer_while_sending(
                server.port, b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n" + post + b"Content-Length: %d\r\n\r\n" % size
                + json_body(size))
            assert re.findall(rb"HTTP/1\.1 \d\d\d", pipelined) == [b"HTTP/1.1 200", b"HTTP/1.1 503"], pipelined[:400]
            size = limit + 1024
            head = post + b"Content-Length: %d\r\n\r\n" % size
            start = json_body(size)[:BODY_IN_MEMORY + 32 * 1024]  # (64 KiB written, the rest in memory)
            upload = _sending_slowly(server.port, head, start)
            _wait_until_read(server.port, [upload])
            upload.sendall(json_body(size)[len(start):])  # (its end: one write past the file's limit)
            assert _until_closed(upload).startswith(b"HTTP/1.1 503 ")
        _until_out_of_files_of(server, files)
        body = json_body(limit - 1024)
        status, _headers, answer = server.request(
            "POST", "/api/v2/pushes", body=body, headers={"Content-Type": "application/json"}, timeout=20)
        assert status == 201, answer
        assert "Traceback" not in server.logs()


def test_a_spool_reads_back_what_was_written_after_any_seeks_and_partial_reads():
    """crypto.temporary_spool (AES-CTR, its keystream kept while access is sequential) reads
    as a file would, whatever came before: writes, reads and seeks of any length and position,
    across blocks and 64 KiB, compared with an in-memory file (random, seeded: reproducible)."""
    import io
    import random

    from pwp.crypto import temporary_spool
    choose = random.Random(20261207)
    for _ in range(30):
        spool, model = temporary_spool(), io.BytesIO()
        for _ in range(30):
            action = choose.random()
            if action < 0.35:
                data = choose.randbytes(choose.choice([1, 15, 16, 17, 4095, 65535, 65536, 65537, 100_000]))
                assert spool.write(data) == len(data)
                model.write(data)
            elif action < 0.7:
                size = choose.choice([-1, 1, 7, 16, 65536, 70_000])
                assert spool.read(size) == model.read(size)
            else:
                whence, end = choose.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END]), len(model.getbuffer())
                offset = {io.SEEK_SET: choose.randint(0, end + 20), io.SEEK_CUR: choose.randint(-model.tell(), 20),
                          io.SEEK_END: choose.randint(-end, 10)}[whence]
                assert spool.seek(offset, whence) == model.seek(offset, whence)
            assert spool.tell() == model.tell()
        spool.seek(0)
        assert spool.read() == model.getvalue()
        spool.close()


def test_a_body_declared_past_the_spools_cap_gets_its_503_at_once_and_drops_no_other_upload(tmp_path):
    """A body whose Content-Length alone passes the spool's cap was read until its file passed
    the cap, and on its way took the room of the unfinished uploads that sent nothing for
    longest, dropped without an answer, though it was refused itself (503) a moment later:
    seen in a soak with an 8 MiB cap, where 9 MiB uploads cut slower ones that would have
    fitted. Its 503 now comes once its head is read; the other upload ends as it would have."""
    from pwp.worker_bodies import BODY_IN_MEMORY
    env = server_env(tmp_path / "instance", PWPUSH_BODIES_SPOOLED=str(8 * BODY_IN_MEMORY))
    data = os.urandom(5 * BODY_IN_MEMORY)
    boundary = b"slower-" + os.urandom(8).hex().encode()
    body = _multipart("fits.bin", data, boundary)
    big = 16 * BODY_IN_MEMORY
    too_big = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % big + b"{" + b" " * (big - 1))
    with gunicorn(env, tmp_path / "log") as server:
        token = create_user(env, "cap@example.com")
        head = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer %s\r\n"
                b"Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n"
                % (token.encode(), boundary, len(body)))
        slower = _sending_slowly(server.port, head, body[:4 * BODY_IN_MEMORY])  # (spooled: half the cap)
        _wait_until_read(server.port, [slower])
        answer = _answer_while_sending(server.port, too_big)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 30\r\n" in answer
        assert _still_open(slower)  # (was: closed, unanswered)
        slower.sendall(body[4 * BODY_IN_MEMORY:])
        answer_head, _, answer = _until_closed(slower).partition(b"\r\n\r\n")
        assert answer_head.startswith(b"HTTP/1.1 201 "), answer_head
        assert "Traceback" not in server.logs()


_UPLOAD = 20 * 1024 * 1024  # (under the app's limit, MAX_CONTENT_LENGTH: 26 MiB; far past any socket's buffers)


def _sent_whole_then_read(port, request: bytes) -> bytes:
    """What the server answers a client that sends its request whole before it reads anything
    (curl without `Expect`, Python's requests, the pwpush CLI), until the server closes."""
    conn = socket.socket()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # (no autotuning: the body waits on the server)
    conn.settimeout(20)  # (a failure guard only)
    conn.connect(("127.0.0.1", port))
    conn.sendall(request)  # (was: ConnectionResetError, the server gone having read 64 KiB more)
    return _until_closed(conn)


@pytest.mark.parametrize("refused", ["declared past the cap", "its file cannot be written",
                                     "chunked, its file cannot be written"])
def test_a_client_that_sends_a_refused_body_whole_before_it_reads_gets_its_503(tmp_path, refused):
    """A body refused with a 503 (declared past the spool's cap, or its temporary file cannot be
    written) while its client goes on sending it: the worker read 64 KiB more of it (or 2 s),
    then closed a connection with the rest of the body unread, a reset, and a client that sends
    its request whole before it reads its answer failed to send instead of reading the 503. The
    worker now reads and drops the rest of the body (its Content-Length; chunked: while it
    comes, up to the app's limit), then closes: the client reads its 503."""
    from pwp.worker_bodies import BODY_IN_MEMORY
    settings, fsize = {}, None
    if refused == "declared past the cap":
        settings["PWPUSH_BODIES_SPOOLED"] = str(2 * BODY_IN_MEMORY)
    else:
        fsize = 2 * BODY_IN_MEMORY + 65536  # (the database, the log stay smaller)
    post = b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    body = b"{" + b" " * (_UPLOAD - 1)
    if refused.startswith("chunked"):
        request = post + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        request = post + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    env = server_env(tmp_path / "instance", **settings)
    with gunicorn(env, tmp_path / "log", fsize=fsize) as server:
        answer_head, _, answer = _sent_whole_then_read(server.port, request).partition(b"\r\n\r\n")
        assert answer_head.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 30\r\n" in answer_head + b"\r\n"
        assert answer == b'{"status":503,"error":"Service Unavailable"}'
        assert server.request("GET", "/up", timeout=20)[0] == 200
        assert "Traceback" not in server.logs()


def test_curl_uploading_a_file_past_the_spools_cap_without_expect_prints_the_503(tmp_path):
    """curl without `Expect: 100-continue` sends the whole file before it reads the answer: it
    failed (a reset: "Send failure" or "Recv failure") where the worker refused the body; it
    now prints the 503's JSON."""
    from pwp.worker_bodies import BODY_IN_MEMORY
    env = server_env(tmp_path / "instance", PWPUSH_BODIES_SPOOLED=str(2 * BODY_IN_MEMORY))
    (tmp_path / "big.json").write_bytes(b"{" + b" " * (_UPLOAD - 1))
    with gunicorn(env, tmp_path / "log") as server:
        done = subprocess.run(
            ["curl", "-sS", "-H", "Expect:", "-H", "Content-Type: application/json", "-w", "\\n%{http_code}",
             "--data-binary", f"@{tmp_path / 'big.json'}", f"{server.url}/api/v2/pushes"],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout == '{"status":503,"error":"Service Unavailable"}\n503', done.stdout


@pytest.mark.parametrize("path, sent_type, content_type, body", [
    ("/api/v2/pushes", "application/json", "application/json; charset=utf-8",
     b'{"status":413,"error":"Request Entity Too Large"}'),
    ("/p", "application/x-www-form-urlencoded", "text/html; charset=utf-8", b"Too large to send"),
])
def test_a_client_that_sends_a_chunked_body_past_the_apps_limit_whole_before_it_reads_gets_its_413(
        tmp_path, path, sent_type, content_type, body):
    """A chunked body past the app's limit went to a thread once that much came, cut, and the
    app answered the body it got: a JSON one with a 400 "not valid JSON", where a body whose
    Content-Length passes the limit gets a 413. The worker now answers it a 413 itself (JSON
    on the API, as the app's), the thread never taken (a page's form: the app's 413 page, from
    a thread given the body cut past the limit), and reads and drops up to the app's
    limit more of it (within DRAIN_SECONDS) before it closes, as a refused body's: a client
    that sends its request whole before it reads (Python's requests with a generator body)
    reads its answer, not a reset."""
    size = 40 * 1024 * 1024  # (the app's limit: 26 MiB; past it more than a socket's buffers take)
    data = b"{" + b" " * (size - 1)
    request = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (path.encode(), sent_type.encode(), size, data))
    with gunicorn(server_env(tmp_path / "instance"), tmp_path / "log") as server:
        answer_head, _, answer = _sent_whole_then_read(server.port, request).partition(b"\r\n\r\n")  # (was: BrokenPipeError)
        assert answer_head.startswith(b"HTTP/1.1 413 "), answer_head  # (was: 400)
        assert b"\r\nConnection: close\r\n" in answer_head + b"\r\n"
        assert b"\r\nContent-Type: %s\r\n" % content_type.encode() in answer_head + b"\r\n"
        assert answer == body if path.startswith("/api/") else body in answer  # (was: {"error": "The request body is not valid JSON."})
        assert server.request("GET", "/up", timeout=20)[0] == 200
        assert "Traceback" not in server.logs()


def _unacknowledged(sock) -> int:
    """The bytes a TCP socket sent that its peer has not acknowledged yet (Linux: its send
    queue, SIOCOUTQ, less the bytes not sent yet, SIOCOUTQNSD)."""
    import fcntl
    import struct
    import termios

    def queue(request):
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))[0]
    return queue(termios.TIOCOUTQ) - queue(0x894B)  # (SIOCOUTQNSD)


def _filled(sock) -> bytes:
    """Fill a connection's send buffer to its last byte with bytes its client does not read
    (answers it has not read yet): until no room is left and every byte sent was acknowledged
    (an acknowledgement that came later freed room, where a write that should have found none
    went through)."""
    filled = bytearray()
    for _ in range(1000):  # (a failure guard only)
        for block in (65536, 1):
            while True:
                try:
                    filled += b"x" * sock.send(b"x" * block, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
        if not _unacknowledged(sock):
            return bytes(filled)  # (the client's window closed: no room until it reads)
        _wait_writable(sock, 0.05)  # (room, once the acknowledgements come)
    raise AssertionError("the send buffer did not stay full")


def _wait_writable(sock, seconds):
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_WRITE)
        selector.select(seconds)


def _read_running(worker, theirs) -> bytes:
    """What a client reads until the server's end of the connection closed, the worker's main
    loop (its poller) run meanwhile in this process."""
    theirs.setblocking(False)
    received = bytearray()
    for _ in range(10_000):  # (a failure guard only)
        try:
            chunk = theirs.recv(65536)
        except BlockingIOError:
            chunk = None
        if chunk == b"":
            return bytes(received)
        received += chunk or b""
        for key, _events in worker.poller.select(0.01):
            key.data(key.fileobj)
    raise AssertionError("the connection did not close")

def test_a_503_the_socket_takes_only_part_of_is_sent_whole_as_the_client_reads():
    """The 503 of a refused body was one write that did not wait: where the client's socket was
    full (a pipelined exchange whose answers it had not read yet), the 503 was cut, or never
    sent. It now goes through the same path as answers: sent as the client reads, then the
    connection closes (here in a worker's main loop run in this process, its socket real)."""
    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from gunicorn.workers.gthread import TConn
    from test_worker_answers import _files_at_most, _socket_pair

    from pwp.worker_bodies import BODY_IN_MEMORY
    from pwp.workers import ThreadWorker
    cfg = Config()
    worker = ThreadWorker(0, os.getppid(), [], None, 30, cfg, Logger(cfg))
    worker.poller = selectors.DefaultSelector()
    ours, theirs = _socket_pair()
    size = 4 * BODY_IN_MEMORY
    theirs.sendall(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b" " * (BODY_IN_MEMORY + 16384))
    unread = _filled(ours)
    with _files_at_most(BODY_IN_MEMORY):  # (its temporary file cannot be written: a 503)
        worker.enqueue_req(TConn(cfg, ours, ("127.0.0.1", 1), ("127.0.0.1", 2)))
    received = _read_running(worker, theirs)
    theirs.close()
    ours.close()
    assert received[:len(unread)] == unread
    answer_head, _, answer = bytes(received[len(unread):]).partition(b"\r\n\r\n")
    assert answer_head.startswith(b"HTTP/1.1 503 "), answer_head[:100]  # (was: b"", never sent)
    assert answer.startswith(b"Service Unavailable: ")
    assert len(answer) == int(dict(line.split(b": ", 1) for line in answer_head.split(b"\r\n")[1:])[b"Content-Length"])
    worker.tmp.close()


def test_a_client_that_sends_a_body_past_the_apps_limit_whole_before_it_reads_gets_its_413(tmp_path):
    """A body whose Content-Length passes the app's limit gets the app's 413 at once, unread;
    a client that sends its request whole before it reads (the pwpush CLI uploading a file
    a little too large) then got a reset, the worker having read 64 KiB more of it. The worker
    now reads and drops the body it declared (within DRAIN_SECONDS) before it closes."""
    size = 27 * 1024 * 1024  # (the app's limit: 26 MiB)
    request = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % size + b"{" + b" " * (size - 1))
    with gunicorn(server_env(tmp_path / "instance"), tmp_path / "log") as server:
        answer_head, _, answer = _sent_whole_then_read(server.port, request).partition(b"\r\n\r\n")
        assert answer_head.startswith(b"HTTP/1.1 413 ") and b"\r\nConnection: close\r\n" in answer_head + b"\r\n"
        assert json.loads(answer) == {"status": 413, "error": "Request Entity Too Large"}
        assert "Traceback" not in server.logs()


def _draining_a_refused_body(alive=True):
    """A worker's main loop run in this process (its socket real) that refused a body at its
    head (its Content-Length alone passes the spool's cap: a 503 at once) and now drains it:
    the worker and the client's end of the connection."""
    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from gunicorn.workers.gthread import TConn
    from test_worker_answers import _socket_pair

    from pwp.worker_bodies import BODIES_SPOOLED
    from pwp.workers import ThreadWorker
    cfg = Config()
    worker = ThreadWorker(0, os.getppid(), [], None, 30, cfg, Logger(cfg))
    worker.poller = selectors.DefaultSelector()
    worker.body_limit = 4 * BODIES_SPOOLED
    worker.alive = alive  # (False: as its SIGTERM's handler, stopping)
    worker.nr_conns = 1  # (as accept)
    ours, theirs = _socket_pair()
    theirs.sendall(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 * BODIES_SPOOLED))
    worker.enqueue_req(TConn(cfg, ours, ("127.0.0.1", 1), ("127.0.0.1", 2)))
    assert _read_running(worker, theirs).startswith(b"HTTP/1.1 503 ")
    return worker, theirs


def test_a_refused_body_drained_by_a_stopping_worker_keeps_it_no_longer_than_a_kept_alive_connection():
    """A stopping worker (SIGTERM, max_requests) gives its kept-alive connections and heads
    STOP_KEEPALIVE_LINGER (2 s), and cut the drains of refused bodies under way to it too; but
    a body refused once it was stopping (its head came meanwhile) was drained for DRAIN_SECONDS
    (30 s), the worker kept up to its graceful_timeout by a client that sends nothing more.
    Its drain now ends with the kept-alive connections' (here a worker's main loop run in this
    process, its socket real)."""

    from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER

    worker, theirs = _draining_a_refused_body(alive=False)
    assert len(worker.draining) == 1 and worker.nr_conns == 1  # (its rest read and dropped, counted)
    assert worker.draining[0][0] <= time.monotonic() + STOP_KEEPALIVE_LINGER  # (was: DRAIN_SECONDS)
    worker.murder_pending()
    theirs.close()
    worker.draining[0][1].close()
    worker.tmp.close()


def test_a_refused_body_whose_client_sends_nothing_more_is_not_drained_for_long():
    """A refused body's drain lasted DRAIN_SECONDS (30 s) whether or not the client still sent
    anything: a few clients that each sent a 413's or 503's head and then nothing held as many
    of the worker's connections for 30 s (with --worker-connections 5, /up waited 30 s). As
    nginx's lingering_timeout, a drain now ends once the client sent nothing for
    DRAIN_IDLE_SECONDS (here a worker's main loop run in this process, its socket real; the
    time that passed stood in for by the drain's idle deadline)."""

    from pwp.worker_answers import DRAIN_IDLE_SECONDS, DRAIN_SECONDS
    assert DRAIN_IDLE_SECONDS < DRAIN_SECONDS
    worker, theirs = _draining_a_refused_body()
    assert len(worker.draining) == 1
    drain = worker.draining[0]
    assert drain[4] <= time.monotonic() + DRAIN_IDLE_SECONDS  # (was: no idle deadline)
    theirs.sendall(b" " * 1000)  # (a byte of the body: the idle deadline moves on)
    before = drain[4]
    worker.on_lingering_readable(drain)
    assert drain[4] > before and len(worker.draining) == 1
    drain[4] = 0.0  # (DRAIN_IDLE_SECONDS passed with nothing sent)
    worker.bodies_checked = 0.0
    worker.murder_pending()
    assert not worker.draining and worker.nr_conns == 0  # (closed: its slot given back)
    assert theirs.recv(10) == b""
    theirs.close()
    worker.tmp.close()


def test_a_long_body_the_app_left_unread_on_tls_gets_an_answer_that_says_close(tmp_path):
    """On TLS gunicorn reads the request in a thread, and drains a body the app left unread
    for 64 KiB only, then closes the connection: the app's 413 for a 13 MiB JSON body said
    keep-alive, and the request the client pipelined after it was never answered. The answer
    now says close (the client knows to send that request again), and nothing of the body is
    read as a request."""
    from test_security_headers import _self_signed
    certfile, keyfile = _self_signed(tmp_path)
    context = ssl.create_default_context(cafile=certfile)
    fake = b"\r\n\r\nGET /desync HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b'{"push": {"payload": "' + fake * (13 * 1024 * 1024 // len(fake)) + b'"}}'
    request = (b"POST /api/v2/pushes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body) + body + b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
    with gunicorn(server_env(tmp_path / "instance"), tmp_path / "log", args=("--certfile", certfile, "--keyfile", keyfile),
                  context=context) as server:
        received = _answer_while_sending(server.port, request, context)
        head = received.partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 413 ") and b"\r\nConnection: close\r\n" in head, head  # (was: keep-alive)
        assert re.findall(rb"HTTP/1\.1 \d\d\d", received) == [b"HTTP/1.1 413"]
        assert "Traceback" not in server.logs()


@pytest.mark.parametrize("path, content_type, body", [
    ("/api/v2/pushes", "application/json; charset=utf-8",
     b'{"status":400,"error":"The request body\'s chunks are too small: send it in larger chunks (64 bytes and '
     b'more, on average), or with a Content-Length."}'),
    ("/p", "text/plain; charset=utf-8", b"Bad Request: the request body's chunks are too small: send it in larger "
                                        b"chunks (64 bytes and more, on average), or with a Content-Length.\n"),
])
def test_a_chunked_body_of_tiny_chunks_gets_a_400_before_much_of_it_came_and_the_connection_closes(
        tmp_path, path, content_type, body):
    """A chunked body of 1-byte chunks under the app's limit was parsed whole by the main loop
    (~5 us a chunk, every other connection of the worker waiting: 25 s for 26 MiB), then again
    by gunicorn's reader in a thread (32 s more). Past CHUNKS_FREE chunks, and one more for
    every DATA_PER_CHUNK bytes of data, it now gets the worker's 400 (JSON on the API), no
    thread taken, and the connection closes: here once ~16 400 of its chunks came."""
    from pwp.worker_bodies import CHUNKS_FREE
    step = b"1\r\nx\r\n" * 4096
    with gunicorn(server_env(tmp_path / "instance"), tmp_path / "log") as server:
        conn = socket.create_connection(("127.0.0.1", server.port))
        conn.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" % path.encode())
        sent = 0
        while sent < 4 * 1024 * 1024 and not select.select([conn], [], [], 0)[0]:
            conn.sendall(step)
            sent += len(step)
            _wait_until_read(server.port, [conn], unread_max=0)
        # (Refused in the read that passed CHUNKS_FREE; its answer maybe seen a step later.)
        assert sent <= (CHUNKS_FREE // 4096 + 2) * len(step), sent  # (was: 4 MiB sent, unanswered)
        conn.shutdown(socket.SHUT_WR)
        answer_head, _, answer = _until_closed(conn).partition(b"\r\n\r\n")
        assert answer_head.startswith(b"HTTP/1.1 400 "), answer_head
        fields = dict(line.split(b": ", 1) for line in answer_head.split(b"\r\n")[1:])
        assert fields[b"Connection"] == b"close" and fields[b"Content-Type"] == content_type.encode()
        assert answer == body
        assert server.request("GET", "/up", timeout=20)[0] == 200
        assert "Traceback" not in server.logs()


def test_a_file_sent_as_a_generator_of_its_lines_is_taken_whole(tmp_path):
    """Python's requests sends a generator's items as chunks: a file's lines (80 bytes each,
    3 MiB) are taken, not refused as small chunks, and the file is stored as sent."""
    import requests

    line_count = 3 * 1024 * 1024 // 80
    data = b"".join(b"%079d\n" % number for number in range(line_count))
    boundary = b"lines-" + os.urandom(8).hex().encode()
    start, end = _multipart("lines.txt", b"\0", boundary).split(b"\0")

    def lines():
        yield start
        yield from (data[at:at + 80] for at in range(0, len(data), 80))
        yield end
    env = server_env(tmp_path / "instance")
    with gunicorn(env, tmp_path / "log") as server:
        token = create_user(env, "lines@example.com")
        answer = requests.post(f"{server.url}/api/v2/pushes", data=lines(), timeout=60, headers={
            **bearer(token), "Content-Type": f"multipart/form-data; boundary={boundary.decode()}"})
        assert answer.status_code == 201, answer.text
        assert answer.request.headers["Transfer-Encoding"] == "chunked"
        status, push = server.json("GET", f"/api/v2/pushes/{answer.json()['url_token']}", headers=bearer(token))
        assert status == 200
        status, _headers, got = server.request("GET", urlsplit(push["files"][0]["url"]).path)
        assert status == 200 and got == data
        assert "Traceback" not in server.logs()


@pytest.mark.parametrize("body", [
    b"5\r\nabcde\r\n3\r\nxyz\r\n0\r\n\r\n", b"5;name=value\r\nabcde\r\n3 ;x\r\nxyz\r\n0\r\n\r\n",
    b"5\r\nabcde\r\n3\r\nxyz\r\n0\r\nTrailer: yes\r\n\r\n", b"5\r\nabcde\r\nzz\r\nxyz\r\n0\r\n\r\n",
    b"5\r\nabcdeXX\r\n0\r\n\r\n", b"5\r\nabcde\r\n3\nxyz\r\n0\r\n\r\n", b"5\r\nabcde\r\n\r\n", b"5\r\nabcde\r\n3\r\nx",
    b"A\r\n0123456789\r\n1\r\n\r\r\n0\r\n\r\n",
])
def test_chunked_end_says_the_same_of_a_body_read_whole_or_a_byte_at_a_time(body):
    """ChunkedEnd follows a chunk's CRLF and the next size line in one step where a read holds
    them whole, line by line otherwise (a byte at a time: always): both say the same of a body,
    its end, bad framing, or neither yet, and count the same data."""
    from pwp.worker_bodies import ChunkedEnd

    def fed(pieces):
        end = ChunkedEnd(8190)
        return any(end.feed(piece) for piece in pieces), end.bad, end.size
    whole, by_byte = fed([body]), fed([body[at:at + 1] for at in range(len(body))])
    assert whole == by_byte, (whole, by_byte)
    assert whole[0] or body.endswith(b"x")  # (each ends or is bad, but the one cut short)


TRAILERS_REFUSED = [b" folded\r\n", b"Content-Length: 5\r\n", b"X-Sum: " + b"s" * 9000 + b"\r\n",
                    b"no colon\r\n", b"X Sum: yes\r\n", b"X-Sum: a\x00b\r\n"]


@pytest.mark.parametrize("body", [
    b"5\r\nabcde\r\n0\r\n\r\n", b"5 ;x\r\nabcde\r\n0\r\n\r\n", b"5;a=b\r\nabcde\r\n0\r\n\r\n",
    b"5 \r\nabcde\r\n0\r\n\r\n", b"5\t\r\nabcde\r\n0\r\n\r\n", b"5\r\nabcde\r\n0 \r\n\r\n",
    b"5;a=\r\nabcde\r\n0\r\n\r\n", b"5;\x01\r\nabcde\r\n0\r\n\r\n", b"5\r\nabcde\r\n3 ;;\r\nxyz\r\n0\r\n\r\n",
    b"5\r\nabcde\r\n3\r\nxyz\r\n0\r\nX-Sum: yes\r\n\r\n", b"5\r\nabcde\r\n0\r\nA: 1\r\nB: 2\r\n\r\n",
] + [b"5\r\nabcde\r\n0\r\n" + trailer + b"\r\n" for trailer in TRAILERS_REFUSED + [
    (b"X-Sum: " + b"s" * 8000 + b"\r\n") * 120]])  # (past the trailers' limit, max_buffer_headers: bad at once)
def test_chunked_end_refuses_the_size_lines_gunicorn_refuses_and_ends_where_it_does(body):
    """ChunkedEnd (the main loop) and gunicorn's own parser (the thread's, the real one) agree on
    a body: gunicorn reads it to where ChunkedEnd said it ended, or ChunkedEnd called it bad (the
    thread's 400 at once) where gunicorn refuses a chunk's size line (a size with blanks after it
    and no extension, RFC 9112 7.1: was taken, its data then waited for) or its trailers (were
    taken: the app's answer said keep-alive, then the connection closed)."""
    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser
    from pwp.worker_bodies import ChunkedEnd
    end = ChunkedEnd(8190)
    assert end.feed(body)
    after = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    parser = RequestParser(Config(), iter([b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                           + body + after]), ("127.0.0.1", 1))
    try:
        next(parser).body.read()
    except Exception:
        assert end.bad, body
    else:
        assert not end.bad and next(parser).path == "/next", body


# (Trailers gunicorn takes, past what ChunkedEnd keeps to check: fields it drops, "_" in their
# names, never counted; two of 5000 bytes.)
TRAILERS_PAST_KEPT = [b"".join(b"A_%d: 1\r\n" % n for n in range(101)),
                      b"X-A: " + b"a" * 5000 + b"\r\nX-B: " + b"b" * 5000 + b"\r\n"]


@pytest.mark.parametrize("trailers", TRAILERS_PAST_KEPT)
def test_chunked_end_keeps_no_more_trailers_than_one_field(trailers):
    """ChunkedEnd keeps a body's trailers to have gunicorn's parse_headers check them once they
    end: no more than one field's size of them (limit_request_field_size), nor more lines than
    gunicorn's limit_request_fields; past either it says bad at their end (the answer closes the
    connection; gunicorn's parser in the thread reads them). It kept up to max_buffer_headers
    (~800 KB a connection, outside HEADS_HELD: 1000 connections, 800 MB) and parse_headers took
    time growing as the square of their lines in the main loop (its lines.pop(0); fields with
    "_" dropped, never counted): 160 000 of them 5 s, every other connection of the worker
    waiting. Both sections here gunicorn takes (the connection closing is the safe side)."""
    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser
    from pwp.worker_bodies import ChunkedEnd
    body = b"5\r\nabcde\r\n0\r\n" + trailers + b"\r\n"
    end = ChunkedEnd(8190)
    assert end.feed(body) and end.bad  # (before: kept, and taken, as gunicorn's parse_headers takes them)
    assert len(end.trailers) <= 2 * 8190 + 2  # (the line that passed the limit the last kept)
    parser = RequestParser(Config(), iter([b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                           + body + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"]), ("127.0.0.1", 1))
    assert next(parser).body.read() == b"abcde" and next(parser).path == "/next"  # (gunicorn takes them)


def test_chunked_end_reads_trailers_past_what_it_keeps_to_their_end_within_the_allowance():
    """Trailers past what ChunkedEnd keeps (one field's size, limit_request_fields) are read on
    to their end, not kept, each line counted in the body's allowance (CHUNKS_FREE: the worker's
    400 past it, no thread taken), then bad. Said bad at once, gunicorn's parser in the thread
    read the rest of them with no allowance: 800 KB of "_" fields it drops, ~160 000, held the
    thread ~5 s in parse_headers (the time grows as the square of the lines)."""
    from pwp.worker_bodies import CHUNKS_FREE, ChunkedEnd
    end = ChunkedEnd(8190)
    assert not end.feed(b"0\r\n" + b"a_:\r\n" * 200)  # (before: bad at the 101st)
    assert end.feed(b"\r\n") and end.bad and not end.small
    end = ChunkedEnd(8190)
    assert end.feed(b"0\r\n" + b"a_:\r\n" * CHUNKS_FREE + b"\r\n") and end.small
    assert len(end.trailers) <= 8190  # (none kept past it)


LONG_SIZE_LINES = [b"2;" + b"e" * 20000, b"0" * 20000 + b"2"]


@pytest.mark.parametrize("line", LONG_SIZE_LINES)
def test_chunked_end_calls_a_size_line_past_the_limit_bad_however_it_came(line):
    """A chunk size line past limit_request_field_size that came whole in one read: ChunkedEnd
    took it (it measured only a line still unended at a read's end; the one-step match any
    number of digits), where gunicorn's parser refuses it if one of its reads ends in it past
    the limit, as its 8 KiB reads of a spooled body do (the app's answer, the body unread, then
    said keep-alive and the connection closed, the request pipelined after it unanswered)."""
    from gunicorn.config import Config
    from gunicorn.http.errors import InvalidChunkSize
    from gunicorn.http.parser import RequestParser
    from pwp.worker_bodies import ChunkedEnd
    body = line + b"\r\n{}\r\n0\r\n\r\n"
    end = ChunkedEnd(8190)
    assert end.feed(b"5\r\nabcde\r\n" + body) and end.bad  # (before: ended, not bad)
    stream = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n" + body
    parser = RequestParser(Config(), iter([stream[at:at + 8192] for at in range(0, len(stream), 8192)]),
                           ("127.0.0.1", 1))
    with pytest.raises(InvalidChunkSize):
        next(parser).body.read()


def test_a_spooled_chunked_body_with_a_size_line_past_the_limit_gets_an_answer_that_says_close(tmp_path):
    """The same through the worker: a chunked body spooled (past 64 KiB), then a size line past
    the limit, whole in one read; the app leaves the body unread (a 404). Its answer said
    keep-alive, then gunicorn's parser, draining the body in 8 KiB reads, refused the line and
    closed the connection: the request pipelined after it never answered, unsaid."""
    pipelined = b"GET /robots.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with gunicorn(server_env(tmp_path / "instance"), tmp_path / "log") as server:
        for line in LONG_SIZE_LINES:
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            conn.sendall(b"PUT /api/v2/pushes/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + b"%x\r\n" % 70000 + b"z" * 70000 + b"\r\n")
            conn.sendall(line + b"\r\n{}\r\n0\r\n\r\n" + pipelined)
            answers = re.findall(rb"HTTP/1\.1 (\d\d\d)[^\r]*\r\n(?:[^\r]+\r\n)*?Connection: (\S+)",
                                 _until_closed(conn))
            assert answers == [(b"404", b"close")], (line[:8], answers)  # (was: keep-alive, alone)
        assert "Traceback" not in server.logs()


def test_a_chunked_body_whose_trailers_gunicorn_refuses_gets_an_answer_that_says_close(tmp_path):
    """A chunked body read by the main loop whose trailers gunicorn's parser refuses (an
    obsolete fold, a field it forbids in trailers, one past its field size, a line without a
    colon, a bad name or value): ChunkedEnd took them, the app's answer (its 404, the body
    unread; its 400, read) said keep-alive, and the connection then closed as gunicorn met them
    (the request pipelined after it never answered, unsaid). It now says close, as for bad chunk
    sizes, and as for trailers past what the main loop keeps to check (TRAILERS_PAST_KEPT); a
    body with trailers gunicorn takes keeps its connection."""
    pipelined = b"GET /robots.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with gunicorn(server_env(tmp_path / "instance"), tmp_path / "log") as server:
        for trailer in TRAILERS_REFUSED + TRAILERS_PAST_KEPT + [b"X-Sum: yes\r\n"]:
            for head in (b"PUT /api/v2/pushes/x HTTP/1.1\r\n",
                         b"POST /api/v2/pushes HTTP/1.1\r\nContent-Type: application/json\r\n"):
                conn = socket.create_connection(("127.0.0.1", server.port), timeout=20)
                conn.sendall(head + b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
                             + trailer + b"\r\n" + pipelined)
                received = _until_closed(conn)
                answers = re.findall(rb"HTTP/1\.1 (\d\d\d)[^\r]*\r\n(?:[^\r]+\r\n)*?Connection: (\S+)", received)
                if trailer in TRAILERS_REFUSED + TRAILERS_PAST_KEPT:
                    assert answers in ([(b"404", b"close")], [(b"400", b"close")]), (trailer, head, answers)  # (was: keep-alive)
                else:
                    assert answers in ([(b"404", b"keep-alive"), (b"200", b"close")],
                                       [(b"400", b"keep-alive"), (b"200", b"close")]), (head, answers)
        assert "Traceback" not in server.logs()


def test_chunked_end_refuses_lines_past_their_allowance():
    """A body may have CHUNKS_FREE lines, and one more for every DATA_PER_CHUNK bytes of data:
    the line past that is refused (small), whether the chunks came in one read or a chunk a
    read; chunks of DATA_PER_CHUNK bytes never are."""
    from pwp.worker_bodies import CHUNKS_FREE, DATA_PER_CHUNK, ChunkedEnd
    for size, refused in ((1, True), (DATA_PER_CHUNK // 2, True), (DATA_PER_CHUNK, False)):
        chunk = b"%x\r\n%s\r\n" % (size, b"x" * size)
        count = 3 * CHUNKS_FREE  # (past the allowance of chunks of half DATA_PER_CHUNK)
        for pieces in ([chunk * count], [chunk] * count):
            end = ChunkedEnd(8190)
            said = any(end.feed(data) for data in pieces)
            assert said == refused and end.small == refused and not end.bad, (size, len(pieces))
            assert end.lines == (CHUNKS_FREE + end.size // DATA_PER_CHUNK + 1 if refused else count)
