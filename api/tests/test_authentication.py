"""API keys at the edge: a missing, wrong or deactivated key is a 401 in OpenAI's envelope."""

import openai
import pytest

from api.models import ApiKey


def assert_envelope(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def test_a_missing_key_is_a_401(http):
    response = http.post("/v1/chat/completions", json={}, headers={"Authorization": ""})
    error = assert_envelope(response, 401)
    assert error["code"] == "invalid_api_key"


def test_a_wrong_key_raises_the_sdks_authentication_error(queen):
    client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key="qb-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_an_api_key_from_the_database_works_and_is_stored_hashed(queen, db_access):
    key, raw = ApiKey.create_key(name="test")
    assert raw not in key.key_hash
    client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=raw, max_retries=0)
    assert client.models.list().object == "list"


def test_a_deactivated_key_is_refused(queen, db_access):
    key, raw = ApiKey.create_key(name="gone")
    key.is_active = False
    key.save()
    client = openai.OpenAI(base_url=f"{queen.url}/v1", api_key=raw, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
