"""The worker's identity: an x-only secp256k1 key and the signed connect message.

The recipe is the original worker's (reference §2.2), kept byte for byte so that
any Queenbee verifies it: the message is signed with its GPU fields at their
defaults (the original signs before probing GPUs), `sig` left out, as compact
JSON with sorted keys, SHA-256, BIP-340 Schnorr with fresh aux randomness.
"""

import base64
import copy
import hashlib
import json
import os
from typing import Any

from coincurve import PrivateKey

from .hardware import HardwareReport

# The fields the original fills in only after signing, at their defaults, in wire order.
UNSIGNED_GPU_FIELDS: dict[str, Any] = {
    "nv_gpu_count": None,
    "nv_driver_version": None,
    "nv_gpus": [],
    "cl_driver_version": None,
    "cl_gpus": [],
    "web_gpus": [],
}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def public_key(privkey: bytes) -> str:
    """The urlsafe-base64 x-only public key: the worker's identity on the coordinator."""
    return _b64(PrivateKey(privkey).public_key_xonly.format())


def slug_for(*, main_gpu: int, tensor_split: str) -> str:
    """Tells apart several worker processes sharing one key, as the original does."""
    if not main_gpu and not tensor_split:
        return ""
    return _b64(hashlib.md5((str(main_gpu) + tensor_split).encode()).digest())


def canonical_digest(message: dict[str, Any]) -> bytes:
    signed = {k: v for k, v in message.items() if k != "sig"} | UNSIGNED_GPU_FIELDS
    text = json.dumps(signed, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).digest()


def sign(message: dict[str, Any], privkey: bytes) -> str:
    return _b64(PrivateKey(privkey).sign_schnorr(canonical_digest(message), os.urandom(32)))


def connect_message(
    *,
    privkey: bytes,
    version: str,
    capabilities: list[str],
    slug: str,
    ln_address: str,
    auth_key: str,
    hardware: HardwareReport,
    models: list[str],
    features: list[str],
    context_length: int = 0,
) -> dict[str, Any]:
    """The first frame of every connection, in the original's field order and units.

    `context_length` and `features` are Queenbee's additive fields (after all of
    the original's, and signed with them): the context window in tokens, and
    abilities beyond the original protocol, such as "verify" or "tools".
    """
    message: dict[str, Any] = {
        "worker_version": version,
        "capabilities": capabilities,
        "pubkey": public_key(privkey),
        "slug": slug,
        "sig": "",
        "ln_url": ln_address,  # the original still sends both "for back compat"
        "ln_address": ln_address,
        "auth_key": auth_key,
        "cpu_count": hardware.cpu_count,
        "disk_space": hardware.disk_space_mib,
        "vram": hardware.ram_bytes,  # the original's name for available system RAM
        **copy.deepcopy(UNSIGNED_GPU_FIELDS),
        "models": models,
        "context_length": context_length,
        "features": features,
    }
    message["sig"] = sign(message, privkey)
    if hardware.nv_gpus:
        message["nv_gpu_count"] = len(hardware.nv_gpus)
        message["nv_driver_version"] = hardware.nv_driver_version
        message["nv_gpus"] = [gpu.as_dict() for gpu in hardware.nv_gpus]
    return message
