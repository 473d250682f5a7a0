"""Connect-message signatures of the original worker (BIP-340 Schnorr over secp256k1).

Pure: no Django. The recipe is the reference's §2.2: the worker signs before it
probes its GPUs, so the GPU fields are reset to their defaults before hashing,
and `sig` itself plus any key the coordinator adds are left out.
"""

import base64
import binascii
import hashlib
import json
import os
from typing import Any

from coincurve import PrivateKey, PublicKeyXOnly

# Fields the original worker fills in only after signing.
UNSIGNED_GPU_FIELDS: dict[str, Any] = {
    "nv_gpu_count": None,
    "nv_driver_version": None,
    "cl_driver_version": None,
    "nv_gpus": [],
    "cl_gpus": [],
    "web_gpus": [],
}
# Keys the original coordinator added to the stored message.
COORDINATOR_KEYS = ("sig", "ip", "user_id", "current_model")


class BadSignature(Exception):
    """The connect message carries a key and a signature that do not match."""


def canonical_digest(message: dict[str, Any]) -> bytes:
    """SHA-256 of the canonical JSON text the original worker signs."""
    signed = {k: v for k, v in message.items() if k not in COORDINATOR_KEYS}
    signed.update(UNSIGNED_GPU_FIELDS)
    text = json.dumps(signed, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).digest()


def _b64(value: Any, *, size: int, field: str) -> bytes:
    if not isinstance(value, str):
        raise BadSignature(f"{field} must be a base64 string")
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise BadSignature(f"{field} is not urlsafe base64") from None
    if len(raw) != size:
        raise BadSignature(f"{field} must decode to {size} bytes")
    return raw


def verify_connect_signature(message: dict[str, Any]) -> None:
    """Raise BadSignature unless `sig` is a valid signature by `pubkey`."""
    pubkey = _b64(message.get("pubkey"), size=32, field="pubkey")
    sig = _b64(message.get("sig"), size=64, field="sig")
    try:
        valid = PublicKeyXOnly(pubkey).verify(sig, canonical_digest(message))
    except ValueError:
        raise BadSignature("pubkey is not a valid secp256k1 x-only key") from None
    if not valid:
        raise BadSignature("signature does not match the connect message")


# An owner proves they hold a worker's key by signing a challenge of the owner
# page (pages/views.py) with `python -m workerbee sign-challenge`; the prefix
# keeps such a signature from ever passing for a connect message's. The recipe
# is workerbee/challenge.py's (pages/tests check that the two agree).
CHALLENGE_PREFIX = "queenbee owner challenge\n"


def verify_challenge_signature(*, pubkey: str, signature: str, challenge: str) -> None:
    """Raise BadSignature unless `signature` is `pubkey`'s over the challenge."""
    key = _b64(pubkey, size=32, field="public key")
    sig = _b64(signature, size=64, field="signature")
    digest = hashlib.sha256((CHALLENGE_PREFIX + challenge).encode("utf-8")).digest()
    try:
        valid = PublicKeyXOnly(key).verify(sig, digest)
    except ValueError:
        raise BadSignature("the public key is not a valid secp256k1 x-only key") from None
    if not valid:
        raise BadSignature("the signature does not match this challenge and public key")


def public_key_b64(privkey: bytes) -> str:
    """The urlsafe-base64 x-only public key for a 32-byte private key."""
    return base64.urlsafe_b64encode(PrivateKey(privkey).public_key_xonly.format()).decode()


def sign_connect_message(message: dict[str, Any], privkey: bytes) -> str:
    """Sign like the original worker does (fresh aux randomness each time)."""
    digest = canonical_digest(message)
    return base64.urlsafe_b64encode(PrivateKey(privkey).sign_schnorr(digest, os.urandom(32))).decode()
