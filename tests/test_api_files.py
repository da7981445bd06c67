"""File pushes: multipart upload, encrypted storage, short-lived downloads."""
import io
from urllib.parse import quote

import pytest

from conftest import bearer, no_snapshot_held, sql
from pwp import pushes
from pwp.downloads import content_disposition
from pwp.models import AuditKind


def upload(client, token, files, **fields):
    data = {f"push[{k}]": v for k, v in fields.items()}
    data["push[files][]"] = [(io.BytesIO(content), name) for name, content in files]
    return client.post("/api/v2/pushes", headers=bearer(token), data=data,
                       content_type="multipart/form-data")


def download(client, url):
    return client.get(url.replace("http://localhost", ""))


def test_file_push_round_trip(app, client, token):
    content = bytes(range(256)) * 10 + "é\n$HOME`x`".encode()
    r = upload(client, token, [("report.bin", content), ("notes é.txt", b"second")],
               payload="", expire_after_views=2)
    assert r.status_code == 201
    t = r.json["url_token"]
    (stored,), = sql(app, "SELECT ciphertext FROM push_files ORDER BY id LIMIT 1")
    assert content not in bytes(stored)
    body = client.get(f"/api/v2/pushes/{t}").json
    assert body["payload"] == ""
    assert [f["filename"] for f in body["files"]] == ["report.bin", "notes é.txt"]
    assert set(body["files"][0]) == {"filename", "content_type", "url"}
    got = download(client, body["files"][0]["url"])
    assert got.status_code == 200 and got.data == content
    assert got.headers["Cache-Control"] == "no-store"
    assert "attachment" in got.headers["Content-Disposition"]


def test_file_kind_is_inferred_from_files(client, token):
    r = upload(client, token, [("a.txt", b"a")])
    assert r.status_code == 201
    body = client.get(f"/api/v2/pushes/{r.json['url_token']}").json
    assert len(body["files"]) == 1


def test_a_file_push_without_a_message_reads_an_empty_payload(client, token):
    # README deviation 22: upstream reads null there (its payload was never set), the value of
    # an expired push; here "" as for an empty message (the pwpush CLI's push[payload]="").
    r = client.post("/f.json", headers=bearer(token), content_type="multipart/form-data",
                    data={"file_push[files][]": [(io.BytesIO(b"a"), "a.txt")]})
    assert r.status_code == 201
    body = client.get(f"/p/{r.json['url_token']}.json").json
    assert body["payload"] == "" and body["expired"] is False and len(body["files"]) == 1


def test_last_viewer_can_still_download_then_nobody(client, token, clock):
    r = upload(client, token, [("a.txt", b"payload-bytes")], expire_after_views=1)
    t = r.json["url_token"]
    body = client.get(f"/api/v2/pushes/{t}").json
    assert body["views_remaining"] == 0 and body["expired"] is False
    url = body["files"][0]["url"]
    clock.advance(seconds=60)
    assert download(client, url).data == b"payload-bytes"
    # The next access expires the push and deletes its files.
    after = client.get(f"/api/v2/pushes/{t}").json
    assert after["expired"] is True and after["files"] == []
    assert download(client, url).status_code == 404


def test_purge_leaves_the_last_viewer_their_five_minutes(app, client, token, clock):
    """purge-expired (cron) must not take the files from under the last viewer's links;
    it takes them once those links have gone stale."""
    t = upload(client, token, [("a.txt", b"payload-bytes")], expire_after_views=1).json["url_token"]
    url = client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"]
    clock.advance(seconds=120)
    with app.app_context():
        assert pushes.purge(clock.now)["expired"] == 0
    assert download(client, url).data == b"payload-bytes"
    clock.advance(seconds=181)
    with app.app_context():
        assert pushes.purge(clock.now) == {"expired": 1, "files_deleted": 1, "anonymous_deleted": 0,
                                           "owned_deleted": 0}
    assert sql(app, "SELECT count(*) FROM push_files") == [(0,)]


@pytest.mark.parametrize("look", ["HEAD /api/v2/pushes/{}", "HEAD /p/{}", "HEAD /p/{}.json", "GET /p/{}/r",
                                  "GET /api/v2/pushes/{}/preview", "HEAD /p/{}/r"])
def test_a_look_that_counts_nothing_leaves_the_last_viewer_the_files(client, token, clock, look):
    """A link checker's HEAD, the sender's preview or the viewer going back to the retrieval
    step must not take the files from under the last viewer's links."""
    t = upload(client, token, [("a.txt", b"payload-bytes")], expire_after_views=1).json["url_token"]
    url = client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"]
    method, path = look.split(" ")
    assert client.open(path.format(t), method=method).status_code == 200
    assert download(client, url).data == b"payload-bytes"
    clock.advance(seconds=301)  # the links are stale now: such a look expires the push
    client.open(path.format(t), method=method)
    assert client.get(f"/api/v2/pushes/{t}").json["files"] == []


def test_the_retrieval_step_of_a_used_up_file_push_is_the_expired_page(app, client, token):
    """Its last view leaves the files to the viewer's links, not the push live: the
    retrieval step says it has expired (a failed view, as upstream), not "Click here"."""
    t = upload(client, token, [("a.txt", b"payload-bytes")], expire_after_views=1,
               retrieval_step=True).json["url_token"]
    url = client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"]
    html = client.get(f"/p/{t}/r").get_data(as_text=True)
    assert "Your Secret Link Has Expired" in html and f"/p/{t}" not in html
    assert sql(app, "SELECT kind FROM audit_logs ORDER BY id")[-1] == (AuditKind.failed_view,)
    assert download(client, url).data == b"payload-bytes"  # the viewer's link still works


def test_download_links_go_stale(client, token, clock):
    t = upload(client, token, [("a.txt", b"x")], expire_after_views=5).json["url_token"]
    url = client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"]
    clock.advance(seconds=301)
    assert download(client, url).status_code == 404
    r = client.get(url.replace("http://localhost", ""),
                   headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})  # a browser
    assert r.status_code == 404 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert "This download link has expired" in page and "5 minutes" in page
    r = client.get(url.replace("http://localhost", ""), headers={"Accept": "*/*"})  # curl, the CLI
    assert r.status_code == 404 and r.json == {"error": "not-found"}


def test_forged_download_tokens_are_404(client):
    for path in ("/pfb/abc/x.txt", "/pfb/" + "A" * 120 + "/x.txt", "/pfb/%00/x"):
        r = client.get(path)
        assert r.status_code == 404 and r.is_json


def test_files_are_deleted_on_expiry(app, client, token):
    t = upload(client, token, [("a.txt", b"x")]).json["url_token"]
    client.delete(f"/api/v2/pushes/{t}", headers=bearer(token))
    assert sql(app, "SELECT count(*) FROM push_files")[0][0] == 0


def test_passphrase_file_push_downloads_with_the_key(client, token):
    t = upload(client, token, [("a.txt", b"guarded-file")], passphrase="pp").json["url_token"]
    assert client.get(f"/api/v2/pushes/{t}").status_code == 401
    url = client.get(f"/api/v2/pushes/{t}?passphrase=pp").json["files"][0]["url"]
    assert download(client, url).data == b"guarded-file"


def test_a_file_link_and_an_unlock_cookie_are_not_each_other(app, client, token):
    """Both are sealed with the master keys: each must be refused where the other is
    expected (a 404 and the passphrase page, not a 500)."""
    t = upload(client, token, [("a.txt", b"guarded-file")], passphrase="pp",
               expire_after_views=5).json["url_token"]
    link = client.get(f"/api/v2/pushes/{t}?passphrase=pp").json["files"][0]["url"]
    file_token = link.split("/pfb/", 1)[1].split("/", 1)[0]
    viewer = app.test_client()  # not the owner: the passphrase applies
    assert viewer.post(f"/p/{t}/access", data={"passphrase": "pp"}).status_code == 302
    unlock = viewer.get_cookie(f"{t}-p", path=f"/p/{t}").value
    assert viewer.get(f"/pfb/{unlock}/a.txt").status_code == 404
    viewer.set_cookie(f"{t}-p", file_token, path=f"/p/{t}")
    r = viewer.get(f"/p/{t}")
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{t}/passphrase"


@pytest.mark.parametrize("settings", [{"PWP__FILES__MAX_TOTAL_BYTES": 1000}])
def test_total_size_cap(client, token, settings):
    r = upload(client, token, [("a.bin", b"x" * 600), ("b.bin", b"y" * 600)])
    assert r.status_code == 422
    assert r.json == {"files": ["The files are too large.  You can only push up to 1000 bytes in total."]}
    # A body far above the cap is refused before it is read: above the files and above the
    # longest text payload sent URL-encoded (a low file cap does not cap text pushes).
    r = upload(client, token, [("big.bin", b"z" * (13 * 1024 * 1024))])
    assert r.status_code == 413 and r.is_json
    text = "\u00e9" * 400_000  # 2.4 MB as a form sends it
    r = client.post("/p.json", data={"password[payload]": text}, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 201 and client.get(f"/p/{r.json['url_token']}.json").json["payload"] == text


def test_v1_file_push(client, token):
    r = client.post("/f.json", headers=bearer(token), content_type="multipart/form-data",
                    data={"file_push[payload]": "msg", "file_push[files][]": [(io.BytesIO(b"v1"), "v1.txt")]})
    assert r.status_code == 201
    body = client.get(f"/f/{r.json['url_token']}.json").json
    assert body["payload"] == "msg" and body["files"][0]["filename"] == "v1.txt"


def test_p_json_with_files_makes_a_file_push(client, token):
    r = client.post("/p.json", headers=bearer(token), content_type="multipart/form-data",
                    data={"password[payload]": "m", "password[files][]": [(io.BytesIO(b"p"), "p.txt")]})
    assert r.status_code == 201
    assert client.get(f"/p/{r.json['url_token']}.json").json["files"][0]["filename"] == "p.txt"


@pytest.mark.parametrize("name,part_type,stored", [(b"a.bin", b"text/plain\x00x", "application/octet-stream"),
                                                   (b"a.txt", b"text/csv", "text/csv"),
                                                   (b"a.bin", b"not a type", "application/octet-stream"),
                                                   (b"a.pdf", b"not a type", "application/pdf"),
                                                   (b"a.txt", None, "text/plain"),  # as the pwpush CLI sends
                                                   (b"a.PNG", None, "image/png"),
                                                   (b"README", None, "application/octet-stream"),
                                                   (b"backup.tar.gz", None, "application/gzip"),
                                                   (b"dump.sql.bz2", None, "application/x-bzip2"),
                                                   (b"data:text/html,x", None, "application/octet-stream")])
def test_a_files_content_type_is_kept_only_when_plain(client, token, name, part_type, stored):
    """The part's type when it is a plain type/subtype, else the file name's, else
    application/octet-stream. (A NUL in the part's type once reached PostgreSQL, which refuses
    NUL in text: a 500.)"""
    type_line = b"Content-Type: " + part_type + b"\r\n" if part_type is not None else b""
    body = (b'--XX\r\nContent-Disposition: form-data; name="push[files][]"; filename="' + name + b'"\r\n'
            + type_line + b"\r\nhello\r\n--XX--\r\n")
    r = client.post("/api/v2/pushes", data=body, headers=bearer(token),
                    content_type="multipart/form-data; boundary=XX")
    assert r.status_code == 201, r.data
    files = client.get(f"/api/v2/pushes/{r.json['url_token']}").json["files"]
    assert [f["content_type"] for f in files] == [stored]


@pytest.mark.parametrize("sent,stored", [
    ("evil\u202etxt.exe", "evil-txt.exe"),  # shown as "evilexe.txt"
    ("a\u2067b\u2069\u200f\u061c.txt", "a-b---.txt"),  # the other bidi controls
    ("a\r\nb\t\x1b\x07\x7f\x85.txt", "a--b-----.txt"),
    ("/etc/passwd", "-etc-passwd"), ("..\\..\\boot.ini", "..-..-boot.ini"),
    ("  spaced  ", "spaced"), ("\t", "file"),
    # A name of nothing visible was a link nobody could see, let alone click, on the payload page.
    ("\u200b", "file"), ("\u2060\ufeff \u200b", "file"), ("\u00ad.txt", "\u00ad.txt"),
    # A name of dots only: curl -OJ failed to save it (.. is a directory), wget saved %2E%2E.
    ("..", "file"), (".", "file"), (". .\u200b.", "file"), ("...a", "...a"),
    # Cut to the column's 255 characters, a long name kept its start and lost its type.
    ("report-" + "x" * 300 + ".pdf", "report-" + "x" * 244 + ".pdf"),
    ("x" * 300 + "." + "y" * 40, "x" * 255),  # (no type is that long: the start is kept)
    # 255 bytes in UTF-8, as file systems count (ext4, APFS): cut at 255 characters, wget
    # (which cut the rest on a byte, mid-character) saved "\u00e9\u00e9...\u00e9\udcc3%", without its .pdf.
    ("\u00e9" * 300 + ".pdf", "\u00e9" * 125 + ".pdf"), ("\u65e5" * 100 + ".txt", "\u65e5" * 83 + ".txt"),
    ("\u65e5" * 86, "\u65e5" * 85),
    ("r\u00e9sum\u00e9 (final); 100%.pdf", "r\u00e9sum\u00e9 (final); 100%.pdf")])
def test_an_uploaded_files_name_has_no_control_direction_or_path_characters(client, token, sent, stored):
    """A file's name as the recipient sees and saves it: each control character, bidi control
    (U+202E shows "evil\u202etxt.exe" as "evilexe.txt") and path separator becomes "-", and
    the name is trimmed, as upstream's storage (ActiveStorage::Filename#sanitized) stores it."""
    disposition = "filename*=UTF-8''" + quote(sent, safe="")
    body = (f'--XX\r\nContent-Disposition: form-data; name="push[files][]"; {disposition}\r\n'
            "\r\nhello\r\n--XX--\r\n").encode()
    r = client.post("/api/v2/pushes", data=body, headers=bearer(token),
                    content_type="multipart/form-data; boundary=XX")
    assert r.status_code == 201, r.data
    (shown,) = client.get(f"/api/v2/pushes/{r.json['url_token']}").json["files"]
    assert shown["filename"] == stored
    assert download(client, shown["url"]).headers["Content-Disposition"] == content_disposition(stored)


@pytest.mark.parametrize("name,fallback", [
    ("report 2024.pdf", "report 2024.pdf"), ("r\u00e9sum\u00e9; 100%.txt", "resume; 100%.txt"),
    ("\u5831\u544a.pdf", "__.pdf"), ('say "hi".txt', "say _hi_.txt")])
def test_a_download_names_the_file_for_clients_that_know_only_filename(client, token, name, fallback):
    """curl -OJ reads filename= only (as upstream's Rails sends it, beside filename*): with
    filename* alone it saved "report%202024.pdf", the link's last path segment as it is."""
    disposition = "filename*=UTF-8''" + quote(name, safe="")
    body = (f'--XX\r\nContent-Disposition: form-data; name="push[files][]"; {disposition}\r\n'
            "\r\nhello\r\n--XX--\r\n").encode()
    r = client.post("/api/v2/pushes", data=body, headers=bearer(token),
                    content_type="multipart/form-data; boundary=XX")
    (shown,) = client.get(f"/api/v2/pushes/{r.json['url_token']}").json["files"]
    assert download(client, shown["url"]).headers["Content-Disposition"] == (
        f'attachment; filename="{fallback}"; filename*=UTF-8\'\'' + quote(name, safe=""))


def test_a_name_stored_before_the_sanitizing_is_output_sanitized(app, client, make_user):
    """A row written by an older version, whose file names kept U+202E, CR/LF and "/": every
    output (v2 and v1 JSON, the download link and its Content-Disposition, the payload page,
    the owner's edit page and its removal message) says the name as a new upload's is stored."""
    from webutil import sign_in
    _, token = sign_in(client, make_user)
    r = upload(client, token, [("a.txt", b"one"), ("b.txt", b"two"), ("c.txt", b"three")], expire_after_views=10)
    url_token = r.json["url_token"]
    ids = [row[0] for row in sql(app, "SELECT id FROM push_files ORDER BY id")]
    for file_id, old in zip(ids, ["evil\u202etxt.exe\r\nBcc/..\\x", " \r\n", "c.txt"]):
        sql(app, "UPDATE push_files SET filename = :n WHERE id = :i", n=old, i=file_id)
    shown = ["evil-txt.exe--Bcc-..-x", "file", "c.txt"]
    files = client.get(f"/api/v2/pushes/{url_token}", headers=bearer(token)).json["files"]
    assert [f["filename"] for f in files] == shown
    assert [f["url"].rsplit("/", 1)[1] for f in files] == [quote(n, safe="") for n in shown]
    assert [download(client, f["url"]).headers["Content-Disposition"] for f in files] == [
        content_disposition(n) for n in shown]
    v1 = client.get(f"/p/{url_token}.json", headers=bearer(token)).json["files"]
    assert [f["filename"] for f in v1] == shown
    for path in (f"/p/{url_token}", f"/p/{url_token}/edit"):
        html = client.get(path).get_data(as_text=True)
        assert "evil-txt.exe--Bcc-..-x" in html and "\u202e" not in html and "Bcc/" not in html
    removed = client.post(f"/p/{url_token}/delete_file", data={"file_id": str(ids[0])})
    html = client.get(removed.headers["Location"]).get_data(as_text=True)
    assert "Removed the file evil-txt.exe--Bcc-..-x." in html


def _statements(app):
    """Record the SQL the app sends (a list filled as requests run)."""
    from sqlalchemy import event

    from pwp.models import db

    sent = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute",
                     lambda conn, cursor, statement, *rest: sent.append(statement))
    return sent


def test_a_view_lists_files_without_reading_their_ciphertext(app, client, token):
    """The page or JSON of a file push names its files; only a download reads one's bytes
    (up to 33 MB of ciphertext, which every view loaded into the worker's memory)."""
    t = upload(client, token, [("a.txt", b"x" * 1000), ("b.txt", b"y")], expire_after_views=3).json["url_token"]
    sent = _statements(app)
    body = client.get(f"/api/v2/pushes/{t}").json
    assert [f["filename"] for f in body["files"]] == ["a.txt", "b.txt"]
    assert any("push_files" in s for s in sent)
    assert not any("ciphertext" in s and "push_files" in s for s in sent)
    assert download(client, body["files"][0]["url"]).data == b"x" * 1000
    assert any("push_files.ciphertext" in s for s in sent)


@pytest.fixture
def small_chunks(monkeypatch):
    """Files split into parts of 1000 bytes, so that small test files have several."""
    from pwp import crypto

    monkeypatch.setattr(crypto, "FILE_CHUNK", 1000)
    return 1000


@pytest.mark.parametrize("passphrase", [None, "pp"])
def test_a_file_is_stored_a_part_to_a_token_and_streamed_back(app, client, token, small_chunks, passphrase):
    content = bytes(range(256)) * 14  # 3 584 bytes: four parts, the last one short
    fields = {"passphrase": passphrase} if passphrase else {}
    t = upload(client, token, [("a.bin", content), ("empty.txt", b"")], **fields).json["url_token"]
    assert sql(app, "SELECT f.filename, count(p.id) FROM push_files f JOIN push_file_parts p ON p.file_id = f.id "
                    "GROUP BY f.id, f.filename ORDER BY f.id") == [("a.bin", 4), ("empty.txt", 1)]
    assert [bytes(c) for c, in sql(app, "SELECT ciphertext FROM push_files")] == [b"", b""]
    assert all(content[:1000] not in bytes(c) for c, in sql(app, "SELECT ciphertext FROM push_file_parts"))
    query = "?passphrase=pp" if passphrase else ""
    links = [f["url"] for f in client.get(f"/api/v2/pushes/{t}{query}").json["files"]]
    got = download(client, links[0])
    assert got.status_code == 200 and got.data == content
    assert got.headers["Content-Length"] == str(len(content))
    empty = download(client, links[1])
    assert empty.status_code == 200 and empty.data == b"" and empty.headers["Content-Length"] == "0"


def test_parts_go_with_their_file(app, client, token, small_chunks):
    t = upload(client, token, [("a.bin", b"x" * 2500)]).json["url_token"]
    assert sql(app, "SELECT count(*) FROM push_file_parts")[0][0] == 3
    assert client.delete(f"/api/v2/pushes/{t}", headers=bearer(token)).status_code == 200
    assert sql(app, "SELECT count(*) FROM push_file_parts")[0][0] == 0


def test_parts_cannot_be_reordered_dropped_or_swapped(small_chunks):
    from cryptography.fernet import InvalidToken

    from pwp import crypto

    ring = crypto.Keyring([crypto.generate_key()])
    content = bytes(range(256)) * 10
    def seal(data):
        return list(ring.seal_parts(io.BytesIO(data), len(data)))

    parts, other, same_count = seal(content), seal(b"z" * 4000), seal(b"q" * len(content))
    assert len(parts) == len(same_count) == 3 and b"".join(ring.open_parts(parts)) == content
    for forged in ([parts[1], parts[0], parts[2]],  # reordered
                   parts[:2],  # the last part dropped
                   [],  # none
                   parts + [other[3]],  # another file's part added
                   [parts[0], other[1], parts[2]],  # one swapped for another file's
                   [parts[0], same_count[1], parts[2]],  # ... of as many parts
                   parts + [ring.seal(b"x")]):  # a token without a header
        with pytest.raises(InvalidToken):
            b"".join(ring.open_parts(forged))


def test_an_upload_waits_encrypted_in_memory_and_on_disk():
    """crypto.UploadSpool: what it keeps (in memory, then in its temporary file past 500 KB)
    is ciphertext; reads give the plaintext back from any position, as a file would."""
    from pwp import crypto

    content = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: on disk
    spool = crypto.UploadSpool()
    for i in range(0, len(content), 65_537):  # in pieces, as the form parser writes
        assert spool.write(content[i:i + 65_537]) == len(content[i:i + 65_537])
    raw = spool._file._file  # (the spool's own temporary file)
    assert not isinstance(raw, io.BytesIO)  # rolled over to the disk
    raw.seek(0)
    on_disk = raw.read()
    assert len(on_disk) == len(content) and content[:4096] not in on_disk and on_disk != content
    assert spool.seek(0, io.SEEK_END) == len(content) and spool.tell() == len(content)
    assert spool.seek(0) == 0 and spool.read() == content
    spool.seek(1_000_003)
    assert spool.read(100) == content[1_000_003:1_000_103] and spool.read(5) == content[1_000_103:1_000_108]
    assert spool.seek(-4, io.SEEK_END) == len(content) - 4 and spool.read() == b"tail"
    spool.seek(len(content) + 10)  # past the end: the gap reads as zeros
    spool.write(b"after")
    spool.seek(len(content))
    assert spool.read() == bytes(10) + b"after"
    small = crypto.UploadSpool()
    small.write(b"in memory")
    assert b"in memory" not in small._file._file.getvalue()
    small.seek(3)
    assert small.read() == b"memory"


def test_a_form_upload_is_held_in_an_upload_spool(app):
    """The app's requests give form files an UploadSpool: a big upload's plaintext never
    waits on the disk (werkzeug's own spool writes it there as it came, past 500 KB)."""
    from flask import request

    from pwp import crypto

    content = b"secret file " * 100_000  # 1.2 MB
    with app.test_request_context("/api/v2/pushes", method="POST", content_type="multipart/form-data",
                                  data={"push[files][]": (io.BytesIO(content), "big.txt")}):
        stream = request.files["push[files][]"].stream
        assert isinstance(stream, crypto.UploadSpool)
        raw = stream._file._file
        raw.seek(0)
        assert b"secret file" not in raw.read()
        stream.seek(0)
        assert stream.read() == content


def test_a_file_stored_before_parts_still_downloads(app, client, token):
    """Files stored before parts are one token in push_files.ciphertext, without parts."""
    t = upload(client, token, [("a.txt", b"old file")], expire_after_views=2).json["url_token"]
    with app.app_context():
        whole = pushes.keyring().seal(b"old file")
    sql(app, "DELETE FROM push_file_parts")
    sql(app, "UPDATE push_files SET ciphertext = :c", c=whole)
    got = download(client, client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"])
    assert got.status_code == 200 and got.data == b"old file" and got.headers["Content-Length"] == "8"


def test_a_file_pushs_message_is_bounded_as_a_texts(client, token):
    """Upstream checks no payload on file pushes; here its message is held to a text
    payload's 1 048 576 characters (without a cap it could be the whole body, one Fernet token
    that every view decrypts whole). A form field past the longest payload is a 413."""
    over = upload(client, token, [("a.txt", b"a")], payload="m" * 1_048_577)
    assert over.status_code == 422
    assert over.json["payload"] == ["The payload is too large.  You can only push up to 1048576 bytes."]
    ok = upload(client, token, [("a.txt", b"a")], payload="m" * 1_048_576)
    assert ok.status_code == 201
    assert client.get(f"/api/v2/pushes/{ok.json['url_token']}").json["payload"] == "m" * 1_048_576
    huge = upload(client, token, [("a.txt", b"a")], payload="m" * (4 * 1_048_576 + 1025))
    assert huge.status_code == 413 and huge.is_json


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # (SQLite: see the next test)
def test_a_file_deleted_after_its_row_was_read_still_downloads_whole(app, client, token, database_url):
    """The file's row and its parts are read in one snapshot: a deletion (expiry,
    purge-expired) committed between the two reads neither empties nor breaks the download
    (it was a 500 when each read saw the latest data)."""
    import psycopg
    from sqlalchemy import event

    from pwp.models import db

    t = upload(client, token, [("a.bin", b"x" * 5000)], expire_after_views=5).json["url_token"]
    url = client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"]
    deleted = []

    def delete_between(conn, cursor, statement, *rest):
        if "FROM push_files JOIN pushes" in statement and not deleted:
            with psycopg.connect(database_url, autocommit=True) as other:
                deleted.append(other.execute("DELETE FROM push_files").rowcount)

    with app.app_context():
        event.listen(db.engine, "after_cursor_execute", delete_between)
    r = download(client, url)
    assert deleted == [1]
    assert r.status_code == 200 and r.data == b"x" * 5000
    assert download(client, url).status_code == 404


def test_a_download_holds_no_lock_and_ends_whole_if_its_file_goes(app, client, token, small_chunks, database_url):
    """Parts are read as the response is sent, from one snapshot on a connection of its own
    that takes no write lock: another connection writes at once between two parts (on
    SQLite a transaction begun as usual holds the write lock for its whole length), and a
    file deleted meanwhile (its push expired: the next view after the last, an owner's
    deletion) still reaches the viewer whose download was under way, whole."""
    import sqlite3

    import psycopg

    content = bytes(range(256)) * 12  # 3 072 bytes: four parts
    t = upload(client, token, [("a.bin", content)], expire_after_views=5).json["url_token"]
    url = client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"]
    r = client.get(url.replace("http://localhost", ""), buffered=False)
    try:
        assert r.status_code == 200 and r.headers["Content-Length"] == "3072"
        chunks = iter(r.response)
        assert next(chunks) == content[:1000]
        if database_url.startswith("sqlite"):
            other = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
            other.execute("PRAGMA foreign_keys=ON")
            other.execute("DELETE FROM push_files")  # "database is locked" if the download held it
            other.close()
        else:
            with psycopg.connect(database_url, autocommit=True) as other:
                other.execute("SET lock_timeout = '1s'")
                other.execute("DELETE FROM push_files")
        assert b"".join(chunks) == content[1000:]
    finally:
        r.close()
    assert sql(app, "SELECT count(*) FROM push_file_parts")[0][0] == 0
    assert download(client, url).status_code == 404


def test_a_download_left_half_way_ends_its_snapshot(app, client, token, small_chunks, database_url):
    """A client that goes away mid-download closes the response: its snapshot's transaction
    ends and the connection goes back (on PostgreSQL nothing stays "idle in transaction";
    on SQLite a checkpoint is not held back by a reader)."""
    t = upload(client, token, [("a.bin", b"y" * 3000)], expire_after_views=5).json["url_token"]
    url = client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"]
    r = client.get(url.replace("http://localhost", ""), buffered=False)
    assert next(iter(r.response)) == b"y" * 1000
    r.close()
    assert no_snapshot_held(database_url)


def test_a_download_link_stops_when_its_push_runs_out_of_time(client, token, clock):
    """A file link from a view just before the push's time ran out does not download after
    it, though nothing has opened the push since (no lazy expiry wrote it expired)."""
    t = upload(client, token, [("a.txt", b"payload-bytes")], expire_after_duration=0,
               expire_after_views=5).json["url_token"]  # five minutes
    clock.advance(minutes=4)
    url = client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"]
    assert download(client, url).data == b"payload-bytes"
    clock.advance(minutes=1)
    late = download(client, url)
    assert (late.status_code, late.data.strip()) == (404, b'{"error":"not-found"}')


@pytest.mark.parametrize("kind", ["text", "url", "qr"])
def test_files_sent_with_a_push_of_another_kind_are_not_stored_and_the_answer_keeps_its_shape(app, client, token,
                                                                                             kind):
    """Not stored (upstream stores them and lists none); the API's answer is the one
    without files, key for key (clients such as the pwpush CLI read it as it is: the web
    form's preview is where a warning says so)."""
    payload = "https://example.com/x" if kind == "url" else "secret"
    with_files = upload(client, token, [("a.txt", b"alpha")], kind=kind, payload=payload)
    without = client.post("/api/v2/pushes", headers=bearer(token), data={"push[kind]": kind, "push[payload]": payload},
                          content_type="multipart/form-data")
    assert with_files.status_code == without.status_code == 201
    assert list(with_files.json) == list(without.json) and set(with_files.headers.keys()) == set(without.headers.keys())
    assert sql(app, "SELECT count(*) FROM push_files") == [(0,)]
