"""AES-256-GCM for users' provider keys, with key ids so the master key can be rotated.

Master keys come from KEY_ENCRYPTION_KEYS ("id:base64-32-bytes,…"); the first is current. Each row
stores the id of the key that sealed it, a fresh 96-bit nonce, and the ciphertext. The associated
data binds a ciphertext to its row's owner and provider, so a sealed key copied onto another user's
row does not open. In development (DEBUG, no KEY_ENCRYPTION_KEYS) a key is derived from SECRET_KEY
with HKDF, under the id "dev"; production refuses to start without real keys (config/settings/production.py).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


@cache
def _keyring(spec: str, secret_key: str) -> tuple[str, dict[str, bytes]]:
    if not spec:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"studio-provider-keys",
                       info=b"dev").derive(secret_key.encode())
        return "dev", {"dev": derived}
    ring: dict[str, bytes] = {}
    current = ""
    for item in spec.split(","):
        key_id, sep, encoded = item.strip().partition(":")
        if not sep or not key_id:
            raise ImproperlyConfigured("KEY_ENCRYPTION_KEYS entries look like id:base64key")
        key = base64.b64decode(encoded)
        if len(key) != 32:
            raise ImproperlyConfigured(f"KEY_ENCRYPTION_KEYS key {key_id!r} must be 32 bytes (AES-256).")
        ring[key_id] = key
        current = current or key_id
    return current, ring


def keyring() -> tuple[str, dict[str, bytes]]:
    return _keyring(settings.KEY_ENCRYPTION_KEYS, settings.SECRET_KEY)


def _aad(user_id: int, provider: str) -> bytes:
    return f"user:{user_id}|provider:{provider}".encode()


def seal(plaintext: str, *, user_id: int, provider: str) -> Sealed:
    key_id, ring = keyring()
    nonce = os.urandom(12)
    return Sealed(key_id=key_id, nonce=nonce,
                  ciphertext=AESGCM(ring[key_id]).encrypt(nonce, plaintext.encode(), _aad(user_id, provider)))


def open_sealed(sealed: Sealed, *, user_id: int, provider: str) -> str:
    _, ring = keyring()
    try:
        key = ring[sealed.key_id]
    except KeyError:
        raise ImproperlyConfigured(f"No master key {sealed.key_id!r} in KEY_ENCRYPTION_KEYS to open a stored key.")
    return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, _aad(user_id, provider)).decode()


def new_master_key() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()
