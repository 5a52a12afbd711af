"""RSA keys, JWT verification and userName/userToken decryption for the simulator.

Its own code over pyjwt and cryptography (kme-api.md 1a and 2.1), independent of the client's.
"""

from __future__ import annotations

import base64
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

AUDIENCE = "KnoxWSM"
ALGORITHM = "RS512"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_b64(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """Base64 DER SubjectPublicKeyInfo (keys.json `Public`)."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def private_b64(key: rsa.RSAPrivateKey) -> str:
    """Base64 DER PKCS#8 (keys.json `Private`)."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(der).decode()


def _raw(text: str) -> tuple[bytes, bool]:
    data = text.encode()
    if b"-----BEGIN" in data:
        return data, True
    return base64.b64decode(b"".join(data.split())), False


def read_private(text: str) -> rsa.RSAPrivateKey:
    """A private key from PEM or base64 DER. Raises ValueError."""
    data, pem = _raw(text)
    try:
        key = (
            serialization.load_pem_private_key(data, None)
            if pem
            else serialization.load_der_private_key(data, None)
        )
    except (TypeError, ValueError) as exc:
        raise ValueError("unreadable private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    return key


def read_public(text: str) -> rsa.RSAPublicKey:
    """A public key from PEM or base64 DER. Raises ValueError."""
    data, pem = _raw(text)
    try:
        key = (
            serialization.load_pem_public_key(data)
            if pem
            else serialization.load_der_public_key(data)
        )
    except (TypeError, ValueError) as exc:
        raise ValueError("unreadable public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA key")
    return key


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT without checking it (to find which key should verify it).

    Raises jwt.InvalidTokenError for something that is not a JWT.
    """
    return jwt.decode(token, options={"verify_signature": False})


def verify(token: str, key: rsa.RSAPublicKey, required: list[str]) -> dict[str, Any]:
    """Claims of an RS512 JWT signed by `key` for the KnoxWSM audience, not expired.

    Raises jwt.ExpiredSignatureError or jwt.InvalidTokenError.
    """
    return jwt.decode(
        token, key, algorithms=[ALGORITHM], audience=AUDIENCE, options={"require": required}
    )


def decrypt(value: str, key: rsa.RSAPrivateKey) -> str:
    """Reverse of Samsung's RSA PKCS#1 v1.5 + base64 encryption. Raises ValueError."""
    try:
        return key.decrypt(base64.b64decode(value, validate=True), padding.PKCS1v15()).decode()
    except Exception as exc:  # noqa: BLE001 - any failure is RSA_DECRYPTION_FAIL
        raise ValueError("cannot decrypt") from exc
