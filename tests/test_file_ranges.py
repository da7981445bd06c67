"""File downloads in byte ranges (RFC 9110): resuming a download cut off part way."""
import pytest

from conftest import no_snapshot_held, sql
from pwp.downloads import UNSATISFIABLE, byte_range
from test_api_files import upload

MIB = 1024 * 1024
CONTENT = bytes(range(251)) * (3 * MIB // 251 + 1)  # 3 MiB and 233 bytes: four parts, no two alike
SIZE = len(CONTENT)


def get(client, url, **headers):
    return client.get(url.replace("http://localhost", ""), headers=headers)


def file_link(client, token, content=CONTENT, **fields):
    """Upload one file and view its push: the file's download link."""
    fields.setdefault("expire_after_views", 5)
    t = upload(client, token, [("big.bin", content)], **fields).json["url_token"]
    return client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"], t


@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-0", 10, (0, 1)),
    ("bytes=9-9", 10, (9, 10)),
    ("bytes=2-", 10, (2, 10)),
    ("bytes=-3", 10, (7, 10)),
    ("bytes=-30", 10, (0, 10)),
    ("bytes=3-300", 10, (3, 10)),
    ("BYTES=1-2", 10, (1, 3)),
    ("bytes=0010-", 11, (10, 11)),
    ("bytes=10-", 10, UNSATISFIABLE),
    ("bytes=10-20", 10, UNSATISFIABLE),
    ("bytes=-0", 10, UNSATISFIABLE),
    ("bytes=0-", 0, UNSATISFIABLE),
    ("bytes=-5", 0, UNSATISFIABLE),
    ("bytes=" + "9" * 5000 + "-", 10, UNSATISFIABLE),  # (int() refuses so many digits)
    ("bytes=0-" + "9" * 5000, 10, (0, 10)),
    (None, 10, None),
    ("", 10, None),
    ("bytes=5-2", 10, None),  # last before first: invalid, ignored
    ("bytes=0-1,4-5", 10, None),  # several ranges: the whole file
    ("bytes=0-1,", 10, None),
    ("bytes=-", 10, None),
    ("bytes=a-b", 10, None),
    ("bytes= 0-1", 10, None),
    ("items=0-1", 10, None),
    ("bytes=1.5-2", 10, None),
    ("bytes=-1-2", 10, None),
    ("bytes=\u0663-\u0664", 10, None),  # digits are ASCII ones (RFC 9110's DIGIT), not Arabic-Indic
    ("bytes=1-\uff11", 10, None),  # nor fullwidth
    ("bytes=-\u0663", 10, None),
    ("byte\u017f=1-2", 10, None),  # (the long s is an s to a Unicode IGNORECASE)
])
def test_a_range_header_is_one_range_unsatisfiable_or_ignored(header, size, expected):
    assert byte_range(header, size) == expected


def test_a_range_is_those_bytes_whichever_parts_they_are_in(client, token):
    url, _ = file_link(client, token)
    for header, start, stop in [
        ("bytes=0-0", 0, 1),  # the first byte
        (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE),  # the last
        ("bytes=-1", SIZE - 1, SIZE),
        ("bytes=-300", SIZE - 300, SIZE),  # the last part's 233 bytes and the one before's end
        (f"bytes={MIB - 2}-{MIB + 1}", MIB - 2, MIB + 2),  # across a part boundary
        (f"bytes={MIB}-{2 * MIB - 1}", MIB, 2 * MIB),  # exactly the second part
        (f"bytes={MIB - 1}-{3 * MIB}", MIB - 1, 3 * MIB + 1),  # four parts
        (f"bytes={2 * MIB + 7}-", 2 * MIB + 7, SIZE),  # open-ended, as a resumed download asks
        (f"bytes=5-{10 * SIZE}", 5, SIZE),  # past the end: to the end
        (f"bytes=-{10 * SIZE}", 0, SIZE),
    ]:
        r = get(client, url, Range=header)
        assert (r.status_code, r.headers["Content-Range"]) == (206, f"bytes {start}-{stop - 1}/{SIZE}"), header
        assert r.data == CONTENT[start:stop], header
        assert r.headers["Content-Length"] == str(stop - start)
        assert r.headers["Accept-Ranges"] == "bytes" and r.headers["Cache-Control"] == "no-store"
        assert r.headers["Content-Disposition"].startswith("attachment")
        assert r.headers["X-Content-Type-Options"] == "nosniff" and r.mimetype == "application/octet-stream"
    whole = get(client, url)
    assert whole.status_code == 200 and whole.data == CONTENT and "Content-Range" not in whole.headers
    assert whole.headers["Accept-Ranges"] == "bytes"


def test_a_range_reads_and_decrypts_only_the_parts_it_is_in(app, client, token):
    """A range at the end of a file does not touch its first part: one made unreadable does
    not stop it (a whole download, or a range in that part, fails)."""
    url, _ = file_link(client, token)
    sql(app, "UPDATE push_file_parts SET ciphertext = :c WHERE id = (SELECT min(id) FROM push_file_parts)",
        c=b"not a token")
    r = get(client, url, Range="bytes=-1")
    assert r.status_code == 206 and r.data == CONTENT[-1:]
    assert get(client, url, Range=f"bytes={MIB - 1}-{MIB}").status_code >= 500
    assert get(client, url, Range=f"bytes={MIB}-{MIB}").data == CONTENT[MIB:MIB + 1]


def test_a_range_past_the_end_is_416(client, token):
    url, _ = file_link(client, token)
    for header in (f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 10}", "bytes=-0"):
        r = get(client, url, Range=header)
        assert (r.status_code, r.headers["Content-Range"], r.data) == (416, f"bytes */{SIZE}", b""), header
        assert r.headers["Cache-Control"] == "no-store"
    empty_url, _ = file_link(client, token, content=b"")
    for header in ("bytes=0-", "bytes=-1", "bytes=0-0"):
        r = get(client, empty_url, Range=header)
        assert (r.status_code, r.headers["Content-Range"]) == (416, "bytes */0"), header
    assert get(client, empty_url).status_code == 200


@pytest.mark.parametrize("header", ["bytes=0-1,4-5", "bytes=5-2", "bytes=x-", "pages=1-2", "bytes=-",
                                    "bytes=0-1, 3-4"])
def test_several_ranges_or_a_malformed_one_get_the_whole_file(client, token, header):
    url, _ = file_link(client, token, content=b"0123456789")
    r = get(client, url, Range=header)
    assert (r.status_code, r.data, r.headers["Content-Length"]) == (200, b"0123456789", "10")
    assert "Content-Range" not in r.headers


def test_if_range_is_honoured_only_with_the_files_etag(client, token):
    url, _ = file_link(client, token, content=b"0123456789")
    etag = get(client, url).headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 20  # strong, opaque
    resumed = get(client, url, Range="bytes=4-", **{"If-Range": etag})
    assert (resumed.status_code, resumed.data, resumed.headers["ETag"]) == (206, b"456789", etag)
    for other in ('"0123456789"', "W/" + etag, "Sun, 06 Dec 2026 11:00:00 GMT", ""):
        r = get(client, url, Range="bytes=4-", **{"If-Range": other})
        assert (r.status_code, r.data) == (200, b"0123456789"), other
    assert get(client, url, Range="bytes=10-", **{"If-Range": etag}).status_code == 416
    changed = get(client, url, Range="bytes=10-", **{"If-Range": '"other"'})
    assert (changed.status_code, changed.data) == (200, b"0123456789")


def test_the_etag_is_the_files_not_its_contents(client, token):
    """Two uploads of the same bytes have different validators (random, not a digest of the
    content); two views' links to one file the same."""
    first_url, t = file_link(client, token, content=b"same bytes")
    second_url, _ = file_link(client, token, content=b"same bytes")
    again_url = client.get(f"/api/v2/pushes/{t}").json["files"][0]["url"]
    assert again_url != first_url
    first, second, again = (get(client, u).headers["ETag"] for u in (first_url, second_url, again_url))
    assert first != second and first == again


def test_a_range_counts_no_view_and_follows_the_links_window(app, client, token, clock):
    url, t = file_link(client, token, content=b"payload-bytes", expire_after_views=1)
    for _ in range(3):
        assert get(client, url, Range="bytes=8-").data == b"bytes"
    assert sql(app, "SELECT view_count FROM pushes") == [(1,)]
    clock.advance(seconds=301)
    stale = get(client, url, Range="bytes=8-")
    assert (stale.status_code, stale.json) == (404, {"error": "not-found"})


def test_a_range_of_an_expired_push_is_404(client, token):
    url, t = file_link(client, token, content=b"payload-bytes", expire_after_views=1)
    assert client.get(f"/api/v2/pushes/{t}").json["expired"] is True  # the next access expires it
    for header in ("bytes=0-0", "bytes=-1", "bytes=99-"):
        r = get(client, url, Range=header)
        assert (r.status_code, r.json) == (404, {"error": "not-found"}), header


def test_head_of_a_download_sends_its_headers_and_ends_its_snapshot(app, client, token, database_url):
    url, _ = file_link(client, token, content=b"0123456789")
    head = client.head(url.replace("http://localhost", ""))
    assert (head.status_code, head.data, head.headers["Content-Length"]) == (200, b"", "10")
    assert head.headers["Accept-Ranges"] == "bytes" and head.headers["ETag"]
    ranged = client.head(url.replace("http://localhost", ""), headers={"Range": "bytes=-4"})
    assert (ranged.status_code, ranged.headers["Content-Range"], ranged.headers["Content-Length"]) == \
        (206, "bytes 6-9/10", "4")
    head.close(), ranged.close()  # (as the server does once the headers are sent)
    assert no_snapshot_held(database_url)


def test_a_range_under_way_ends_whole_if_its_file_goes(app, client, token, monkeypatch, database_url):
    """A range is read from one snapshot, as a whole download: a file deleted part way (its
    push expired) still reaches the viewer whose download was under way."""
    import sqlite3

    import psycopg

    from pwp import crypto

    monkeypatch.setattr(crypto, "FILE_CHUNK", 1000)
    content = bytes(range(256)) * 12  # 3 072 bytes: four parts
    url, _ = file_link(client, token, content=content)
    r = client.get(url.replace("http://localhost", ""), headers={"Range": "bytes=900-2999"}, buffered=False)
    try:
        assert r.status_code == 206 and r.headers["Content-Length"] == "2100"
        chunks = iter(r.response)
        assert next(chunks) == content[900:1000]
        if database_url.startswith("sqlite"):
            other = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
            other.execute("PRAGMA foreign_keys=ON")
            other.execute("DELETE FROM push_files")
            other.close()
        else:
            with psycopg.connect(database_url, autocommit=True) as other:
                other.execute("SET lock_timeout = '1s'")
                other.execute("DELETE FROM push_files")
        assert b"".join(chunks) == content[1000:3000]
    finally:
        r.close()
    assert get(client, url, Range="bytes=900-2999").status_code == 404


def test_a_file_stored_before_parts_downloads_in_ranges(app, client, token):
    from pwp import pushes

    url, _ = file_link(client, token, content=b"old file")
    with app.app_context():
        whole = pushes.keyring().seal(b"old file")
    sql(app, "DELETE FROM push_file_parts")
    sql(app, "UPDATE push_files SET ciphertext = :c", c=whole)
    r = get(client, url, Range="bytes=4-")
    assert (r.status_code, r.data, r.headers["Content-Range"]) == (206, b"file", "bytes 4-7/8")
    assert "ETag" not in r.headers
    assert get(client, url, Range="bytes=4-", **{"If-Range": '"x"'}).data == b"old file"


def test_a_link_never_opens_another_push_that_took_its_ids(app, client, token, clock, database_url):
    """SQLite gives a new row the highest rowid + 1 again once the highest rows are deleted:
    a push deleted (with its account, say) within a link's minutes and a new file push can
    have the same push and file ids. The old link must not open the new push's file."""
    url, t = file_link(client, token, content=b"first sender's file")
    ids = sql(app, "SELECT p.id, f.id FROM pushes p JOIN push_files f ON f.push_id = p.id WHERE p.url_token = :t",
              t=t)
    sql(app, "DELETE FROM push_file_parts")
    sql(app, "DELETE FROM push_files")
    sql(app, "DELETE FROM pushes")
    clock.advance(seconds=1)
    _, t2 = file_link(client, token, content=b"second sender's secret")
    ids2 = sql(app, "SELECT p.id, f.id FROM pushes p JOIN push_files f ON f.push_id = p.id WHERE p.url_token = :t",
               t=t2)
    if database_url.startswith("sqlite"):
        assert ids2 == ids  # (the ids are reused: what the link must not be fooled by)
    else:
        assert ids2[0][0] > ids[0][0] and ids2[0][1] > ids[0][1]  # (sequences never go back)
    r = get(client, url)
    assert r.status_code == 404 and b"secret" not in r.data
    assert get(client, url, Range="bytes=0-5").status_code == 404


def test_a_link_made_before_links_named_the_push_creation_is_404(app, client, token):
    url, t = file_link(client, token)
    from pwp import pushes
    with app.app_context():
        push_id, file_id = sql(app, "SELECT p.id, f.id FROM pushes p JOIN push_files f ON f.push_id = p.id "
                                    "WHERE p.url_token = :t", t=t)[0]
        old = pushes.seal_token("file", {"f": file_id, "p": push_id, "k": None}, pushes.utcnow())
    assert get(client, url).status_code == 200
    assert get(client, f"/pfb/{old}/big.bin").status_code == 404


def test_a_range_of_a_passphrase_push_file(client, token):
    t = upload(client, token, [("big.bin", CONTENT)], expire_after_views=5, passphrase="open sesame").json["url_token"]
    assert client.get(f"/api/v2/pushes/{t}").json.get("files") is None  # (no passphrase: no links)
    url = client.get(f"/api/v2/pushes/{t}?passphrase=open%20sesame").json["files"][0]["url"]
    r = get(client, url, Range=f"bytes={MIB - 3}-{MIB + 2}")
    assert (r.status_code, r.data) == (206, CONTENT[MIB - 3:MIB + 3])
    assert get(client, url, Range="bytes=-5").data == CONTENT[-5:]
