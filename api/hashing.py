"""The one hash of a secret Queenbee keeps instead of the secret: API keys and workers' auth keys.

Both go through this function, and must: a worker's owner is paid into the account
whose API key is the worker's auth key, found by comparing the two hashes
(billing.ledger.worker_owner_account).
"""

import hashlib


def hash_secret(value: str) -> str:
    """SHA-256 of the secret, as hex; "" for no secret (nothing to match)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest() if value else ""
