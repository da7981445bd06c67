"""The lifecycle module directly: purge, key rotation, claims; time passed as `now`."""
import collections
from datetime import timedelta

import pytest
from sqlalchemy import delete

from conftest import NOW, TEST_MASTER_KEY, make_config, sql
from pwp import create_app, crypto, pushes
from pwp.auth import create_user
from pwp.config import ConfigError
from pwp.models import Push, db
from pwp.pushes import Actor, NewPush


def create(app, now=NOW, user=None, **fields):
    fields.setdefault("payload", "secret")
    with app.app_context():
        return pushes.create(NewPush(**fields), Actor(user=user), now).url_token


def retrieve(app, token, now=NOW, **kwargs):
    with app.app_context():
        result = pushes.retrieve(token, Actor(), now, **kwargs)
        return result.payload, result.push.expired


def test_claim_view_after_last_view_returns_expired(app):
    token = create(app, expire_after_views=1)
    assert retrieve(app, token) == ("secret", True)
    assert retrieve(app, token) == (None, True)


def test_expiry_nulls_ciphertext_and_passphrase(app):
    token = create(app, expire_after_views=1, passphrase="pp")
    assert retrieve(app, token, passphrase="pp")[0] == "secret"
    (payload, salt, verifier), = sql(app, "SELECT payload_ciphertext, passphrase_salt, passphrase_verifier FROM pushes")
    assert (payload, salt, verifier) == (None, None, None)


def test_purge_expires_pushes_past_their_limits(app):
    live = create(app, expire_after_days=7)
    old = create(app, expire_after_days=1)
    with app.app_context():
        counts = pushes.purge(NOW + timedelta(days=2))
    assert counts["expired"] == 1
    rows = dict(sql(app, "SELECT url_token, expired FROM pushes"))
    assert bool(rows[old]) is True and bool(rows[live]) is False
    assert sql(app, "SELECT payload_ciphertext FROM pushes WHERE url_token = :t", t=old)[0][0] is None


def test_purge_is_idempotent(app):
    create(app, expire_after_days=1)
    with app.app_context():
        first = pushes.purge(NOW + timedelta(days=2))
        second = pushes.purge(NOW + timedelta(days=2))
    assert first["expired"] == 1 and second["expired"] == 0


def test_purge_deletes_anonymous_rows_after_the_grace_period(app, make_user):
    uid, _ = make_user()
    with app.app_context():
        user = db.session.get(pushes.User, uid)
        owned = pushes.create(NewPush(payload="o", expire_after_days=1), Actor(user=user), NOW).url_token
    anon = create(app, expire_after_days=1)
    with app.app_context():
        pushes.purge(NOW + timedelta(days=1, hours=1))
        assert pushes.purge(NOW + timedelta(days=1, hours=2))["anonymous_deleted"] == 0
        counts = pushes.purge(NOW + timedelta(days=2, hours=2))
    assert counts["anonymous_deleted"] == 1 and counts["owned_deleted"] == 0
    tokens = [r[0] for r in sql(app, "SELECT url_token FROM pushes")]
    assert tokens == [owned] and anon not in tokens
    assert sql(app, "SELECT count(*) FROM audit_logs WHERE push_id NOT IN (SELECT id FROM pushes)")[0][0] == 0


@pytest.mark.parametrize("settings", [{"PWP__PURGE_AFTER": 90 * 86400}])
def test_purge_after_deletes_owned_rows(app, make_user, settings):
    uid, _ = make_user()
    with app.app_context():
        user = db.session.get(pushes.User, uid)
        pushes.create(NewPush(payload="o", expire_after_days=1), Actor(user=user), NOW)
        pushes.purge(NOW + timedelta(days=2))
        assert pushes.purge(NOW + timedelta(days=60))["owned_deleted"] == 0
        assert pushes.purge(NOW + timedelta(days=95))["owned_deleted"] == 1


def test_purge_removes_files_of_expired_pushes(app, make_user):
    uid, _ = make_user()
    with app.app_context():
        user = db.session.get(pushes.User, uid)
        pushes.create(NewPush(kind="file", files=[pushes.Upload("a", "text/plain", b"x")],
                              expire_after_days=1), Actor(user=user), NOW)
        assert sql(app, "SELECT count(*) FROM push_file_parts")[0][0] == 1
        assert pushes.purge(NOW + timedelta(days=3))["files_deleted"] == 1
    assert sql(app, "SELECT count(*) FROM push_files")[0][0] == 0
    assert sql(app, "SELECT count(*) FROM push_file_parts")[0][0] == 0


def test_rotate_key_reencrypts_under_the_new_first_key(database_url, tmp_path):
    old_app = create_app(make_config(database_url), instance_path=str(tmp_path / "i"))
    token = create(old_app, note="n")
    pp_token = create(old_app, passphrase="pp", payload="guarded")
    with old_app.app_context():
        owner = create_user("files@example.com")
        file_tokens = [pushes.create(NewPush(kind="file", passphrase=pp, files=[
            pushes.Upload("a.bin", "application/octet-stream", content)]), Actor(user=owner), NOW).url_token
            for pp, content in ((None, b"plain file"), ("pp", b"guarded file"), (None, b"old file"))]
        # The third as stored before files had parts: one token in push_files.ciphertext.
        old_file = db.session.scalar(db.select(pushes.PushFile).join(Push).filter(Push.url_token == file_tokens[2]))
        db.session.execute(db.delete(pushes.PushFilePart).filter_by(file_id=old_file.id))
        old_file.ciphertext = pushes.keyring().seal(b"old file")
        db.session.commit()
    new_key = crypto.generate_key()
    app = create_app(make_config(database_url, PWPUSH_MASTER_KEY=f"{new_key},{TEST_MASTER_KEY}"),
                     instance_path=str(tmp_path / "i"))
    # Before the rotation the new key alone cannot start: the database's key check says so.
    with pytest.raises(ConfigError, match="none of its keys decrypts"):
        create_app(make_config(database_url, PWPUSH_MASTER_KEY=new_key), instance_path=str(tmp_path / "i"))
    with app.app_context():
        assert pushes.rotate_keys(batch_size=1) == 5
    only_new = create_app(make_config(database_url, PWPUSH_MASTER_KEY=new_key), instance_path=str(tmp_path / "i"))
    assert retrieve(only_new, token)[0] == "secret"
    assert retrieve(only_new, pp_token, passphrase="pp")[0] == "guarded"
    with only_new.app_context():
        for file_token, pp, content in zip(file_tokens, (None, "pp", None),
                                           (b"plain file", b"guarded file", b"old file")):
            got = pushes.retrieve(file_token, Actor(), NOW, passphrase=pp)
            link = pushes.file_link_token(got.files[0], got.file_key, NOW)
            download = pushes.open_file(link, NOW)
            download.select(0, download.size)
            assert b"".join(download) == content
            download.close()
    with only_new.app_context():
        assert pushes.note_of(db.session.scalar(db.select(Push).filter_by(url_token=token))) == "n"
    for a in (old_app, app, only_new):
        with a.app_context():
            db.engine.dispose()


def test_expired_pushes_cannot_be_claimed_even_if_counts_allow(app):
    token = create(app, expire_after_views=5)
    with app.app_context():
        push = db.session.scalar(db.select(Push).filter_by(url_token=token))
        push.deletable_by_viewer = True
        db.session.commit()
        pushes.expire_now(token, Actor(), NOW)
    assert retrieve(app, token) == (None, True)


def test_a_rotation_batch_holds_its_pushes_until_it_commits(app):
    """A view or a purge during a rotation batch must wait for it: otherwise the batch's
    write would put an expired push's ciphertext back (PostgreSQL; SQLite's transactions
    take the write lock at their start)."""
    token = create(app, expire_after_views=1)
    with app.app_context():
        assert [p.url_token for p in pushes.rotation_batch(0, 10)] == [token]
        other = db.engine.raw_connection()  # another connection, straight to the driver
        try:
            cursor = other.cursor()
            cursor.execute("SET lock_timeout = '200ms'" if db.engine.dialect.name == "postgresql"
                           else "PRAGMA busy_timeout = 200")
            with pytest.raises(db.engine.dialect.dbapi.OperationalError):
                cursor.execute("UPDATE pushes SET view_count = view_count + 1")
        finally:
            other.rollback()
            other.close()
        db.session.rollback()


def test_a_rotation_batch_locks_no_push_while_its_files_are_re_encrypted(app, monkeypatch):
    """A batch's files can take minutes (1000 pushes of 25 MB): views, creates and purges
    of the batch's pushes, and on SQLite every write, must not wait for them."""
    with app.app_context():
        owner = create_user("files@example.com")
        token = pushes.create(NewPush(kind="file", files=[pushes.Upload("a.bin", "application/octet-stream",
                                                                        b"f" * 3_000_000)]),
                              Actor(user=owner), NOW).url_token
    writes = []

    def write_meanwhile(ring, table, row_id, push_id):
        other = db.engine.raw_connection()  # another connection, straight to the driver
        try:
            cursor = other.cursor()
            cursor.execute("SET lock_timeout = '200ms'" if db.engine.dialect.name == "postgresql"
                           else "PRAGMA busy_timeout = 200")
            cursor.execute("UPDATE pushes SET view_count = view_count + 1")
            other.commit()
            writes.append(row_id)
        finally:
            other.close()
        rotate_stored(ring, table, row_id, push_id)

    rotate_stored = pushes._rotate_stored
    monkeypatch.setattr(pushes, "_rotate_stored", write_meanwhile)
    with app.app_context():
        assert pushes.rotate_keys() == 1
    assert len(writes) == 3  # a part per MiB, each rotated with the push free
    assert sql(app, "SELECT view_count FROM pushes WHERE url_token = :t", t=token) == [(3,)]


def test_rotate_key_without_the_old_key_names_the_push_and_changes_nothing(database_url, tmp_path):
    old_app = create_app(make_config(database_url), instance_path=str(tmp_path / "i"))
    create(old_app, expire_after_views=1)
    token = create(old_app, expire_after_views=1)
    retrieve(old_app, token)  # expired: start-up's check reads only live pushes
    second = sql(old_app, "SELECT id FROM pushes WHERE url_token = :t", t=token)[0][0]
    sql(old_app, "UPDATE pushes SET payload_ciphertext = NULL WHERE id <> :i", i=second)  # (as if expired too)
    sql(old_app, "UPDATE pushes SET note_ciphertext = :c WHERE id = :i",
        c=crypto.Keyring([TEST_MASTER_KEY]).encrypt(b"note"), i=second)
    before = sql(old_app, "SELECT id, payload_ciphertext, note_ciphertext FROM pushes ORDER BY id")
    sql(old_app, "DELETE FROM key_check")  # (a database from before the key check: start-up cannot tell)
    app = create_app(make_config(database_url, PWPUSH_MASTER_KEY=crypto.generate_key()),
                     instance_path=str(tmp_path / "i"))
    with app.app_context(), pytest.raises(crypto.KeyMismatch, match=f"^push {second}$"):
        pushes.rotate_keys(batch_size=10)
    assert sql(old_app, "SELECT id, payload_ciphertext, note_ciphertext FROM pushes ORDER BY id") == before
    for a in (old_app, app):
        with a.app_context():
            db.engine.dispose()


def test_url_tokens_are_unique_and_url_safe():
    tokens = {pushes.new_url_token() for _ in range(2000)}
    assert len(tokens) == 2000
    assert all(len(t) == 24 and t.isalnum() and t.islower() for t in tokens)


def test_url_token_characters_are_uniform():
    counts = collections.Counter("".join(pushes.new_url_token() for _ in range(20_000)))
    # 480 000 characters: 13 333 of each expected, sigma ~114; a modulo bias (b % 36
    # over all 256 byte values) would put a quarter of them ~1 900 off.
    assert set(counts) == set("abcdefghijklmnopqrstuvwxyz0123456789")
    assert all(abs(n - 480_000 / 36) < 700 for n in counts.values()), counts


def test_url_token_draws_again_when_too_many_bytes_are_rejected(monkeypatch):
    draws = iter([bytes([252, 253, 254, 255]) * 8, bytes(range(32))])
    monkeypatch.setattr(pushes.secrets, "token_bytes", lambda n: next(draws))
    assert pushes.new_url_token() == "abcdefghijklmnopqrstuvwx"


def test_passphrase_key_check_is_exact():
    salt = crypto.new_salt()
    verifier, key = crypto.derive("correct horse", salt)
    assert crypto.check_passphrase("correct horse", salt, verifier) == key
    assert crypto.check_passphrase("correct horsE", salt, verifier) is None
    assert crypto.key_matches(key, verifier)
    assert not crypto.key_matches(crypto.derive("other", salt)[1], verifier)
    assert not crypto.key_matches(b"not base64 !!", verifier)


def _columns(push) -> dict:
    return {key: getattr(push, key) for key in Push.__table__.c.keys()}


def test_hot_paths_return_plain_rows_equal_to_the_stored_push(app):
    """create() and the common retrieval return PushRows (no ORM state): every column and
    rule must read as the stored Push does, after the create, a counted view and the last."""
    from pwp.models import PushRow

    with app.app_context():
        created = pushes.create(NewPush(payload="secret", expire_after_views=2, note="n",
                                        name="a name"), Actor(), NOW)
        for views in (0, 1, 2):
            result_push = created if views == 0 else pushes.retrieve(created.url_token, Actor(), NOW).push
            assert isinstance(result_push, PushRow)
            db.session.expire_all()
            stored = db.session.get(Push, created.id)
            assert stored.view_count == views
            assert _columns(result_push) == _columns(stored)
            for rule in ("has_passphrase", "kind_name"):
                assert getattr(result_push, rule) == getattr(stored, rule)
            assert result_push.past_limits(NOW) == stored.past_limits(NOW)
        assert stored.expired and stored.payload_ciphertext is None  # the last view expired it


def test_an_expired_push_purged_while_it_is_being_read_is_not_found(app, monkeypatch):
    """purge-expired deletes the row between a reader's lookup and its failed-view count:
    a 404, as for any push that is gone (was a 500 from the UPDATE that found no row)."""
    token = create(app, expire_after_views=1)
    retrieve(app, token)
    found = pushes.find

    def find_then_purge(url_token):
        push = found(url_token)
        # The row gone before the count, as after purge-expired's commit on PostgreSQL (on
        # SQLite the reader's write lock keeps the purge out; the statement is the same).
        db.session.execute(delete(Push).where(Push.url_token == url_token))
        return push

    monkeypatch.setattr(pushes, "find", find_then_purge)
    with pytest.raises(pushes.NotFound):
        retrieve(app, token)
