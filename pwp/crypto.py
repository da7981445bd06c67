"""Encryption at rest: the one module that imports Fernet.

Every stored secret is a MultiFernet token under the master key set (first key
encrypts, all decrypt). A passphrase-protected payload is first encrypted with a
key derived from the passphrase, so the database plus the master key alone do
not reveal it; the passphrase itself is kept only as a verifier digest.
"""
import base64
import hashlib
import hmac
import io
import logging
import os
import secrets
import struct
import tempfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import KeysOutOfDate

log = logging.getLogger("pwp")  # (the app's logger: its RedactFilter sees every record)

# scrypt cost: ~20 ms and 16 MiB per passphrase check on this machine kind.
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024}


# A file is stored as Fernet tokens of FILE_CHUNK plaintext bytes each (PushFilePart rows):
# Fernet holds a whole message in memory several times over (encrypting 25 MB peaked at
# 167 MB, decrypting at 108), a part at a time it is ~7 MB. Each part's plaintext starts with
# a random mark of its file, its index and the part count, so parts cannot be reordered,
# dropped or taken from another file unnoticed.
FILE_CHUNK = 1024 * 1024
_PART_HEADER = struct.Struct(">16sII")


def file_tag(mark: bytes) -> str:
    """A file's strong HTTP validator (ETag) from the random mark of its parts: a digest of
    it, so it tells nothing of the file's content, the mark itself or the keys."""
    return '"' + hashlib.sha256(b"pwpush file tag\0" + mark).hexdigest()[:32] + '"'


def fingerprint(key: str) -> str:
    """A short digest of a master key that tells it from others and reveals nothing of it."""
    return hashlib.sha256(b"pwpush master key fingerprint\0" + base64.urlsafe_b64decode(key.strip())).hexdigest()[:16]


class KeyMismatch(ValueError):
    """None of the master keys decrypts a stored secret."""


class Keyring:
    """The master key set, built once per process."""

    def __init__(self, keys):
        if not keys:
            raise ValueError("no key given")
        try:
            fernets = [Fernet(k.strip().encode()) for k in keys]
        except (ValueError, TypeError):
            raise ValueError(
                "each comma-separated key must be a Fernet key (32 url-safe base64-encoded "
                "bytes; make one with `python -c \"from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())\"`)") from None
        self._fernets = fernets
        self._multi = MultiFernet(fernets)
        # What tells the keys apart, and nothing of them: which keys a running instance holds
        # (pwp.instances), the encrypting one first.
        self.fingerprints = tuple(fingerprint(k) for k in keys)
        # Set once the database's key check no longer opens (rotate-key moved it to keys this
        # process lacks), or rotate-key retired the first key (pwp.pushes.keys_left_behind).
        self.out_of_date = False
        self.check_opened = None  # the key check last seen to open (not decrypted again)

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt a stored secret under the first master key; KeysOutOfDate once this process
        found its keys out of date: a push, a note, a file or a two-factor secret written
        under a key the other instances drop at the rotation's end would be lost with it."""
        if self.out_of_date:
            raise KeysOutOfDate()
        return self._multi.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        """Decrypt with any master key."""
        return self._multi.decrypt(token)

    def opens(self, token: bytes) -> bool:
        """Tell whether any master key decrypts the token."""
        try:
            self._multi.decrypt(token)
        except InvalidToken:
            return False
        return True

    def opener(self, token: bytes) -> str | None:
        """The fingerprint of the master key that decrypts the token; None if none does."""
        for key, fernet in zip(self.fingerprints, self._fernets):
            try:
                fernet.decrypt(token)
            except InvalidToken:
                continue
            return key
        return None

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt a token under the first master key; KeyMismatch if no key opens it."""
        try:
            return self._multi.rotate(token)
        except InvalidToken:
            raise KeyMismatch() from None

    def encrypt_at(self, data: bytes, now_ts: int) -> bytes:
        """Encrypt under the first key, stamped with the given time (for short-lived tokens)."""
        return self._multi.encrypt_at_time(data, now_ts)

    def decrypt_fresh(self, token: bytes, ttl: int, now_ts: int) -> bytes | None:
        """Decrypt a token made at most ttl seconds before now_ts; None if stale or forged."""
        try:
            return self._multi.decrypt_at_time(token, ttl, now_ts)
        except InvalidToken:
            return None

    def seal(self, data: bytes, passphrase_key: bytes | None = None) -> bytes:
        """Encrypt, inside a passphrase layer when a passphrase key is given."""
        if passphrase_key is not None:
            data = Fernet(passphrase_key).encrypt(data)
        return self.encrypt(data)

    def open(self, token: bytes, passphrase_key: bytes | None = None) -> bytes:
        """Decrypt what seal() made."""
        data = self.decrypt(token)
        if passphrase_key is not None:
            data = Fernet(passphrase_key).decrypt(data)
        return data

    def seal_parts(self, file: BinaryIO, size: int, passphrase_key: bytes | None = None) -> Iterator[bytes]:
        """Encrypt a file of size bytes as seal() does, FILE_CHUNK bytes to a token, reading
        and sealing one part at a time."""
        count, mark = max(1, -(-size // FILE_CHUNK)), secrets.token_bytes(16)
        for i in range(count):
            data = file.read(FILE_CHUNK)
            if len(data) != min(FILE_CHUNK, size - i * FILE_CHUNK):
                raise ValueError("the file is not the size given")
            yield self.seal(_PART_HEADER.pack(mark, i, count) + data, passphrase_key)

    def open_parts(self, tokens: Iterable[bytes], passphrase_key: bytes | None = None) -> Iterator[bytes]:
        """Decrypt what seal_parts() made, a part at a time; InvalidToken if a token does not
        open, or parts are missing, out of order or another file's."""
        return (data for _mark, data in self.open_part_run(tokens, passphrase_key))

    def open_part_run(self, tokens: Iterable[bytes], passphrase_key: bytes | None = None, first: int = 0,
                      stop: int | None = None, count: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Decrypt parts first..stop-1 of what seal_parts() made (tokens: those parts, in order;
        stop: by default the file's last part, count: the file's part count, when known), a part
        at a time, each with its file's mark (random, the same in every part of a file);
        InvalidToken if a token does not open, or parts are missing, out of order, another
        file's, or of a file of another count."""
        seen, index = None, first  # (mark, count) of the parts so far
        for token in tokens:
            data = self.open(token, passphrase_key)
            if len(data) < _PART_HEADER.size:
                raise InvalidToken()
            part_mark, part_index, part_count = _PART_HEADER.unpack_from(data)
            if (part_index != index or part_index >= part_count or (stop or 0) > part_count
                    or (seen or (part_mark, count or part_count)) != (part_mark, part_count)):
                raise InvalidToken()
            seen, count, index = (part_mark, part_count), part_count, index + 1
            yield part_mark, data[_PART_HEADER.size:]
        if seen is None or index != (stop or count):
            raise InvalidToken()


class UploadSpool(io.RawIOBase):
    """Where a form's file waits while the request is parsed and the push is created.

    Werkzeug keeps each uploaded file in a spooled temporary file, in memory up to 500 KB and
    on disk past that (unlinked, but its blocks stay on the disk after use). Here what the
    spool holds is AES-CTR ciphertext under a random key that lives only in this object, so a
    secret file's plaintext never reaches the disk before it is sealed into the database.
    Reads and writes at any position (CTR's keystream is a function of the offset); lines are
    read a byte at a time (nothing here reads an upload by lines). `file`: an open binary file
    to hold the ciphertext instead (pwp/workers.py's request bodies and answers: an unbuffered
    temporary file, so that a write that fails leaves nothing of itself behind in a buffer)."""

    def __init__(self, max_size: int = 500 * 1024, file: BinaryIO | None = None):
        super().__init__()
        self._key = os.urandom(32)
        self._file = tempfile.SpooledTemporaryFile(max_size=max_size, mode="w+b") if file is None else file
        self._pos = 0
        self._keystream = None  # the CTR context at self._pos, while access is sequential

    def _xor(self, data: bytes) -> bytes:
        if self._keystream is None:
            block, skip = divmod(self._pos, 16)
            self._keystream = Cipher(algorithms.AES(self._key), modes.CTR(block.to_bytes(16, "big"))).encryptor()
            self._keystream.update(bytes(skip))
        self._pos += len(data)
        return self._keystream.update(data)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        # All of it or (OSError: a full disk) none of it: a write that fails midway is cut
        # off the file again, its position as before (a caller that sends the spool's bytes on
        # after the failure, the worker's Outbox, sent its first part twice).
        end, pos = self._file.seek(0, io.SEEK_END), self._pos
        try:
            if pos > end:  # past the end: the gap reads as zeros, as in a file
                self._pos, self._keystream = end, None
                self._write_all(self._xor(bytes(pos - end)))
            self._file.seek(self._pos)
            self._write_all(self._xor(bytes(data)))
        except OSError:
            self._pos, self._keystream = pos, None
            try:
                self._file.truncate(end)
            except OSError:
                pass
            raise
        return len(data)

    def _write_all(self, data: bytes) -> None:
        with memoryview(data) as left:  # (an unbuffered file may take part of it: its rest again)
            while left:
                left = left[self._file.write(left):]

    def readinto(self, buffer) -> int:
        self._file.seek(self._pos)
        data = self._xor(self._file.read(len(buffer)))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset, whence = self._pos + offset, io.SEEK_SET
        pos = self._file.seek(offset, whence)
        if pos != self._pos:
            self._pos, self._keystream = pos, None
        return pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        try:
            self._file.close()  # (may raise: its buffered bytes' write failing, a full disk)
        finally:
            super().close()


def temporary_spool() -> UploadSpool:
    """An UploadSpool over an unbuffered temporary file (TMPDIR, deleted at once): where the
    worker (pwp/workers.py, pwp/outbox.py) keeps request bodies and answers past memory, so a
    body's plaintext (an uploaded secret file, a form's password, the head's credentials) or an
    answer's never touches the disk. Unbuffered: a failed write leaves nothing buffered."""
    return UploadSpool(file=tempfile.TemporaryFile(buffering=0))


def generate_key() -> str:
    """Return a new Fernet key as text."""
    return Fernet.generate_key().decode()


def new_salt() -> bytes:
    """Return a random salt for a passphrase."""
    return secrets.token_bytes(16)


def _verifier(raw_key: bytes) -> bytes:
    return hashlib.sha256(b"pwpush-passphrase-verifier:" + raw_key).digest()


def derive(passphrase: str, salt: bytes) -> tuple[bytes, bytes]:
    """Derive (verifier, fernet_key) from a passphrase with one scrypt call.

    The verifier is a digest of the key, so a key held by a browser for a few
    minutes (the passphrase cookie) can be checked without the passphrase.
    """
    raw = hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return _verifier(raw), base64.urlsafe_b64encode(raw)


def key_matches(key: bytes, verifier: bytes) -> bool:
    """Tell in constant time whether a payload key belongs to this verifier."""
    try:
        raw = base64.urlsafe_b64decode(key)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(_verifier(raw), verifier)


def check_passphrase(passphrase: str, salt: bytes, verifier: bytes) -> bytes | None:
    """Return the payload key when the passphrase matches, else None (constant-time)."""
    candidate, key = derive(passphrase, salt)
    return key if hmac.compare_digest(candidate, verifier) else None


def digest_token(token: str) -> str:
    """Digest an API token for storage and lookup."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_or_create(path: str, make, announce=True) -> str:
    """Read a secret file, or create it atomically with mode 0600 on first start (logged
    unless not announce: the caller logs it, with announce_new, once the file is kept)."""
    try:
        with open(path, encoding="ascii") as fh:
            value = fh.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:  # (a full disk fails the write: no half-written file is left behind)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(make() + "\n")
        # link() fails if another worker won the race: then its file is the one.
        os.link(tmp, path)
        if announce:
            announce_new(path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    with open(path, encoding="ascii") as fh:
        return fh.read().strip()


def announce_new(path: str):
    """Log that a new secret file was made (where, never what)."""
    log.warning("Generated a new secret at %s (mode 0600); keep it and back it up.", path)
