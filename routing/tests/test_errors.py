"""Invalid inference requests: a 400 in OpenAI's envelope that names the field."""

import openai
import pytest

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"


def assert_envelope(response, status: int, *, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


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


def test_an_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nobody/offers-this-GGUF:Q4_K_M")
