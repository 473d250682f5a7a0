"""API keys: stored as one hash, the same one workers' auth keys get, in the table they always had."""

import pytest
from django.core.management import call_command

from api.hashing import hash_secret
from api.models import ApiKey


def test_it_hashes_a_secret_as_hex_sha256():
    assert hash_secret("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_it_hashes_no_secret_as_nothing_to_match():
    assert hash_secret("") == ""


@pytest.mark.django_db
def test_it_stores_a_new_key_by_the_hash_a_worker_auth_key_gets():
    key, raw = ApiKey.create_key(name="hash-test")
    assert raw.startswith("qb-") and key.prefix == raw[:8]
    assert ApiKey.objects.get(pk=key.pk).key_hash == hash_secret(raw)


def test_it_keeps_the_table_it_had_in_routing():
    assert ApiKey._meta.db_table == "routing_apikey"


@pytest.mark.django_db
def test_its_migrations_match_the_models():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
