"""Auth and request errors, all in OpenAI's envelope."""

import openai
import pytest

from api.models import ApiKey

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"


def assert_envelope(response, status: int, *, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
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


def test_bad_json_is_a_400(http):
    response = http.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_envelope(response, 400)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": None, "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": "hi"}, "messages"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**9}, "max_tokens"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "gpu_filter": {"min_version": "new"}}, "gpu_filter.min_version"),
    ],
)
def test_invalid_chat_requests_name_the_field(http, body, param):
    assert_envelope(http.post("/v1/chat/completions", json=body), 400, param=param)


def test_embeddings_input_is_validated(http):
    assert_envelope(http.post("/v1/embeddings", json={"model": MODEL, "input": []}), 400, param="input")
    assert_envelope(http.post("/v1/embeddings", json={"model": MODEL, "input": [1, 2]}), 400, param="input")


def test_an_unknown_url_is_a_404_in_the_envelope(http):
    assert_envelope(http.get("/v1/nothing-here"), 404)


def test_an_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nobody/offers-this-GGUF:Q4_K_M")
