"""Encryption at rest for Knox secrets and enrollment passwords (Fernet, keys rotatable).

`KMEWEB_ENCRYPTION_KEY` encrypts; it and every key in `KMEWEB_ENCRYPTION_KEYS_OLD` decrypt
(cryptography's MultiFernet). `flask rotate-encryption-key` (kmeweb/ops/rotate.py) re-encrypts
stored secrets with the current key, after which the old keys can be dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app


def _keys(key: str | None, old: Sequence[str] | None) -> list[str]:
    if key is not None:
        return [key, *(old or [])]
    cfg = current_app.config
    return [cfg["KMEWEB_ENCRYPTION_KEY"], *cfg.get("KMEWEB_ENCRYPTION_KEYS_OLD", [])]


def _fernet(key: str | None = None, old: Sequence[str] | None = None) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in _keys(key, old)])
    except ValueError as exc:  # malformed key: a one-line message without the key
        raise ValueError(
            "KMEWEB_ENCRYPTION_KEY and KMEWEB_ENCRYPTION_KEYS_OLD must be Fernet keys "
            "(32 url-safe base64-encoded bytes)"
        ) from exc


def encrypt(plaintext: str | None, key: str | None = None) -> str | None:
    """Encrypt a secret with the current key; None stays None."""
    if plaintext is None:
        return None
    return _fernet(key).encrypt(plaintext.encode()).decode()


def encrypt_bytes(data: bytes) -> bytes:
    """Encrypt a blob (a device import preview kept in Redis)."""
    return _fernet().encrypt(data)


def decrypt_bytes(token: bytes) -> bytes:
    """Decrypt a blob from encrypt_bytes. Raises ValueError if it cannot be decrypted."""
    try:
        return _fernet().decrypt(token)
    except InvalidToken as exc:
        raise ValueError("blob cannot be decrypted with KMEWEB_ENCRYPTION_KEY") from exc


def decrypt(ciphertext: str | None, key: str | None = None) -> str | None:
    """Decrypt a stored secret with the current or an old key. ValueError if none matches."""
    if ciphertext is None:
        return None
    try:
        return _fernet(key).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with KMEWEB_ENCRYPTION_KEY") from exc


def rotate(ciphertext: str, fernet: MultiFernet | None = None) -> str:
    """The same secret encrypted with the current key (MultiFernet.rotate). ValueError if no
    configured key decrypts it."""
    try:
        return (fernet or _fernet()).rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with any configured key") from exc


def current_key_decrypts(ciphertext: str, fernet: Fernet | None = None) -> bool:
    """True when the current key alone decrypts `ciphertext` (already rotated)."""
    f = fernet or Fernet(current_app.config["KMEWEB_ENCRYPTION_KEY"].encode())
    try:
        f.decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True
