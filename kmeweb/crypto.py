"""Encryption at rest for Knox secrets and enrollment passwords (Fernet)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


def _fernet(key: str | None = None) -> Fernet:
    return Fernet((key or current_app.config["KMEWEB_ENCRYPTION_KEY"]).encode())


def encrypt(plaintext: str | None, key: str | None = None) -> str | None:
    """Encrypt a secret; None stays None."""
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
    """Decrypt a stored secret. Raises ValueError if the key does not match."""
    if ciphertext is None:
        return None
    try:
        return _fernet(key).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored secret cannot be decrypted with KMEWEB_ENCRYPTION_KEY") from exc
