"""Encryption at rest: AES-256-GCM with a data key per conversation, wrapped by a master key.

The keyring holds the primary master key (wraps new data keys) and, during a rotation, older
keys that can still unwrap. A key is named by the first 8 bytes of its SHA-256, so a stored
data key says which master key wrapped it without revealing it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cachetools import LRUCache
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
_WRAP_AAD = b"directo:data-key"
KEY_FILE = "master.key"


class MasterKeyError(Exception):
    """A master key is missing or malformed."""


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_key(text: str) -> bytes:
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as error:
        raise MasterKeyError("a master key must be base64url") from error
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"a master key must be {KEY_BYTES} bytes, base64url encoded")
    return key


def generate_key() -> str:
    return encode_key(secrets.token_bytes(KEY_BYTES))


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


class Keyring:
    def __init__(self, primary: bytes, previous: list[bytes] | None = None) -> None:
        self.primary_id = key_id(primary)
        self._keys = {key_id(k): AESGCM(k) for k in [*(previous or []), primary]}
        self._data_keys: LRUCache[bytes, AESGCM] = LRUCache(50_000)  # unwrapped, by wrapped

    def new_data_key(self) -> tuple[str, bytes]:
        """A fresh data key, wrapped: ``(master key id, nonce + ciphertext)``."""
        return self.wrap(secrets.token_bytes(KEY_BYTES))

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._keys[self.primary_id].encrypt(nonce, data_key, _WRAP_AAD)
        return self.primary_id, nonce + sealed

    def unwrap(self, master_id: str, wrapped: bytes) -> bytes:
        master = self._keys.get(master_id)
        if master is None:
            raise MasterKeyError(f"master key {master_id} is not configured")
        return master.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _WRAP_AAD)

    def _cipher(self, master_id: str, wrapped: bytes) -> AESGCM:
        cipher = self._data_keys.get(wrapped)
        if cipher is None:
            cipher = self._data_keys[wrapped] = AESGCM(self.unwrap(master_id, wrapped))
        return cipher

    def seal(self, master_id: str, wrapped: bytes, plaintext: str, context: str) -> bytes:
        """Encrypt text under a conversation's data key, bound to ``context`` (the message id)."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._cipher(master_id, wrapped).encrypt(
            nonce, plaintext.encode(), context.encode())

    def open(self, master_id: str, wrapped: bytes, sealed: bytes, context: str) -> str:
        try:
            return self._cipher(master_id, wrapped).decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context.encode()).decode()
        except InvalidTag as error:
            raise MasterKeyError("stored ciphertext does not verify") from error

    def forget(self, wrapped: bytes) -> None:
        self._data_keys.pop(wrapped, None)


def read_key_file(path: Path) -> list[bytes]:
    return [decode_key(line) for line in path.read_text().splitlines() if line.strip()]


def _write_private(path: Path, keys: list[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(encode_key(k) + "\n" for k in keys))
        handle.flush()
        os.fsync(handle.fileno())


def _sync_directory(path: Path) -> None:
    """Make a rename or link in ``path`` durable: without it, a power cut can bring back the
    old key file after the database already depends on the new one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Replace the key file (primary key first) atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    _write_private(tmp, keys)
    os.replace(tmp, path)
    _sync_directory(path.parent)


def create_key_file(path: Path) -> None:
    """Create the key file with a fresh key unless it exists. Processes starting together on
    a new data directory all end up with the one key that was linked first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    _write_private(tmp, [secrets.token_bytes(KEY_BYTES)])
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    _sync_directory(path.parent)


def load_keyring(master_key: str | None, previous: str | None, data_dir: Path) -> Keyring:
    """The environment's key if set, else the data directory's key file (made on first run)."""
    older = [decode_key(k) for k in (previous or "").split(",") if k.strip()]
    if master_key:
        return Keyring(decode_key(master_key), older)
    path = data_dir / KEY_FILE
    if not path.exists():
        create_key_file(path)
    keys = read_key_file(path)
    if not keys:
        raise MasterKeyError(f"{path} holds no key")
    return Keyring(keys[0], keys[1:] + older)
