"""`python -m workerbee sign-challenge TEXT`: prove to Queenbee's owner page that you hold a worker's key.

The owner page (`/owner/`) shows a challenge; signing it with the worker's
identity key (the `privkey` of its config file: workerbee's, or the original
worker's `~/.config/gputopia`) shows that you run the workers of that public
key, without a sign-up and without sending the key anywhere. The signature is
BIP-340 Schnorr over SHA-256 of CHALLENGE_PREFIX + the challenge, the same
curve and encoding as the connect message's `sig` (workers/signature.py checks it).
"""

import argparse
import base64
import hashlib
import json
import os
from pathlib import Path

from coincurve import PrivateKey

from .config import default_config_path

# Keeps a challenge signature from ever being a valid connect-message signature.
CHALLENGE_PREFIX = "queenbee owner challenge\n"
ORIGINAL_CONFIG = Path("~/.config/gputopia")


def challenge_digest(challenge: str) -> bytes:
    return hashlib.sha256((CHALLENGE_PREFIX + challenge).encode("utf-8")).digest()


def sign_challenge(challenge: str, privkey: bytes) -> str:
    return base64.urlsafe_b64encode(PrivateKey(privkey).sign_schnorr(challenge_digest(challenge), os.urandom(32))).decode()


def public_key(privkey: bytes) -> str:
    return base64.urlsafe_b64encode(PrivateKey(privkey).public_key_xonly.format()).decode()


def read_privkey(path: Path) -> bytes:
    try:
        data = json.loads(path.expanduser().read_text())
        key = base64.urlsafe_b64decode(data["privkey"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"workerbee: no identity key in {path} ({exc})") from None
    if len(key) != 32:
        raise SystemExit(f"workerbee: the privkey in {path} is not 32 bytes")
    return key


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m workerbee sign-challenge", description=__doc__.splitlines()[0])
    parser.add_argument("challenge", help="the challenge the owner page shows")
    parser.add_argument("--config", help=f"the worker's config file (default {default_config_path()}, else {ORIGINAL_CONFIG})")
    args = parser.parse_args(argv)
    path = Path(args.config) if args.config else default_config_path()
    if not args.config and not path.exists() and ORIGINAL_CONFIG.expanduser().exists():
        path = ORIGINAL_CONFIG
    key = read_privkey(path)
    print(f"public key: {public_key(key)}")
    print(f"signature:  {sign_challenge(args.challenge, key)}")
    return 0
