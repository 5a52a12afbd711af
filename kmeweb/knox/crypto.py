"""RSA key handling, Knox JWT signing and the userName/userToken encryption (no I/O).

Keys come as the portal's keys.json (`Public`/`Private`, base64 DER), or as PEM text.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KNOX_AUDIENCE = "KnoxWSM"
JWT_ALGORITHM = "RS512"
#: RSA-2048 PKCS#1 v1.5 takes at most 245 bytes of plain text.
MAX_ENCRYPT_BYTES = 245


def _der_or_pem(text: str | bytes) -> tuple[bytes, bool]:
    raw = text.encode() if isinstance(text, str) else text
    if b"-----BEGIN" in raw:
        return raw, True
    return base64.b64decode(b"".join(raw.split())), False


def load_private_key(text: str | bytes) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM or base64 DER (PKCS#8 or PKCS#1). Raises ValueError."""
    data, is_pem = _der_or_pem(text)
    try:
        key = (
            serialization.load_pem_private_key(data, password=None)
            if is_pem
            else serialization.load_der_private_key(data, password=None)
        )
    except (ValueError, TypeError) as exc:
        raise ValueError("unreadable RSA private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("private key is not RSA")
    return key


def load_public_key(text: str | bytes) -> rsa.RSAPublicKey:
    """An RSA public key from PEM or base64 DER SubjectPublicKeyInfo. Raises ValueError."""
    data, is_pem = _der_or_pem(text)
    try:
        key = (
            serialization.load_pem_public_key(data)
            if is_pem
            else serialization.load_der_public_key(data)
        )
    except (ValueError, TypeError) as exc:
        raise ValueError("unreadable RSA public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("public key is not RSA")
    return key


def public_key_b64(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """Base64 DER SubjectPublicKeyInfo of a key (the form Knox expects in `publicKey`)."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def private_key_b64(key: rsa.RSAPrivateKey) -> str:
    """Base64 DER PKCS#8 of a private key (the keys.json `Private` form)."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(der).decode()


def generate_private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A new RSA private key (CPU: tens to hundreds of ms)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def keys_json_for(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """A keys.json-shaped dict (`Public`, `Private`) for a private key."""
    return {"Public": public_key_b64(key), "Private": private_key_b64(key)}


def load_key_pair(
    keys_json: str | Mapping[str, Any] | None = None,
    private_key: str | None = None,
    public_key: str | None = None,
) -> tuple[rsa.RSAPrivateKey, str]:
    """The private key and base64 DER public key from keys.json content or PEM/base64 text.

    The public key is derived from the private key when not given. Raises ValueError.
    """
    if keys_json is not None:
        data = json.loads(keys_json) if isinstance(keys_json, str) else dict(keys_json)
        private_key = data.get("Private") or data.get("private") or private_key
        public_key = data.get("Public") or data.get("public") or public_key
    if not private_key:
        raise ValueError("legacy auth needs a private key (keys.json Private, or PEM)")
    key = load_private_key(private_key)
    pub = public_key_b64(load_public_key(public_key)) if public_key else public_key_b64(key)
    return key, pub


def sign_knox_jwt(
    claims: Mapping[str, Any], key: rsa.RSAPrivateKey, *, lifetime_s: int = 1800
) -> str:
    """An RS512 JWT with Knox's `aud`, a fresh unique `jti`, `iat` now and `exp` iat+lifetime."""
    now = int(time.time())
    payload = {
        **claims,
        "aud": KNOX_AUDIENCE,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + lifetime_s,
    }
    return jwt.encode(payload, key, algorithm=JWT_ALGORITHM, headers={"typ": "JWT"})


def encrypt_value(plaintext: str, public_key: rsa.RSAPublicKey) -> str:
    """RSA PKCS#1 v1.5 encryption then base64, as Knox wants `userName`/`userToken`.

    Raises ValueError when the UTF-8 text is longer than 245 bytes.
    """
    data = plaintext.encode("utf-8")
    if len(data) > MAX_ENCRYPT_BYTES:
        raise ValueError(f"value too long to encrypt for Knox (max {MAX_ENCRYPT_BYTES} bytes)")
    return base64.b64encode(public_key.encrypt(data, padding.PKCS1v15())).decode()


def decrypt_value(ciphertext_b64: str, key: rsa.RSAPrivateKey) -> str:
    """Reverse of `encrypt_value` (used by the simulator). Raises ValueError on bad input."""
    try:
        raw = base64.b64decode(ciphertext_b64, validate=True)
        return key.decrypt(raw, padding.PKCS1v15()).decode("utf-8")
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot decrypt"
        raise ValueError("cannot decrypt value") from exc
