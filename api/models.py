"""API keys: who may call the API. Only a key's hash is stored."""

import secrets

from django.db import models

from .hashing import hash_secret

KEY_PREFIX = "qb-"


class ApiKey(models.Model):
    """A caller's key. Only its SHA-256 is stored; the key is shown once, at creation."""

    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, help_text="First characters, to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Who pays for this key's requests. A key without an account is unmetered:
    # its usage is recorded but never charged (keys made before billing, or for
    # the operator's own use). A string reference: billing sits above api.
    account = models.ForeignKey(
        "billing.Account", null=True, blank=True, on_delete=models.PROTECT, related_name="api_keys"
    )

    class Meta:
        verbose_name = "API key"
        # The model was born in routing; its table kept the name (migrations
        # api/0001 and routing/0007 moved it in Django's state only).
        db_table = "routing_apikey"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def create_key(cls, *, name: str, account_id: int | None = None) -> tuple["ApiKey", str]:
        """Create a key; returns the row and the raw key (the only time it exists)."""
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(name=name, prefix=raw[:8], key_hash=hash_secret(raw), account_id=account_id)
        return key, raw
