"""Encryption at rest for uploaded credentials and agent tokens (Fernet, with key rotation).

Keys come from ``encryption_keys`` (newest first); without any, one is generated once in
``data_dir/secret.key`` (mode 0600). Rotation: prepend a new key, run
``slices-blueprint admin rotate-keys`` to re-encrypt, then drop the old key.
"""

from __future__ import annotations

import os
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from slices_blueprint.core.config import Settings


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        try:
            return self._fernet.decrypt(ciphertext)
        except InvalidToken as exc:
            raise ValueError("stored secret cannot be decrypted with the configured keys") from exc

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt with the newest key."""
        return self._fernet.rotate(ciphertext)


def _local_key(settings: Settings) -> bytes:
    path = settings.data_dir / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
    return path.read_bytes().strip()


@lru_cache(maxsize=8)
def _box(keys: tuple[bytes, ...]) -> SecretBox:
    return SecretBox(list(keys))


def secret_box(settings: Settings) -> SecretBox:
    """The box for the configured keys (or the generated local key)."""
    keys = tuple(k.get_secret_value().encode() for k in settings.encryption_keys)
    return _box(keys or (_local_key(settings),))
