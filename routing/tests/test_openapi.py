"""The OpenAPI schema, its docs page, and schemathesis fuzzing the API against it.

Schemathesis generates requests from /v1/openapi.json (valid ones and broken
ones) and checks every answer: its status and content type are documented, its
body matches the documented schema, an error is OpenAI's envelope, and nothing
is a server error except the documented "no worker / worker failed / timed
out" answers (503, 502, 504). A fake worker that can serve any job is connected,
so valid requests really run. Examples are bounded so the run stays short.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from conftest import BYPASS

ENVELOPE_KEYS = {"message", "type", "param", "code"}
DOCUMENTED_SERVER_ANSWERS = {502, 503, 504}
EXAMPLES_PER_OPERATION = 12


def test_the_schema_documents_every_api_endpoint(http):
    schema = http.get("/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/images/generations", "/v1/models", "/v1/models/{model_id}", "/worker/stats"):
        assert path in paths, path
    chat = paths["/v1/chat/completions"]["post"]
    assert set(chat["responses"]) >= {"200", "400", "401", "413", "502", "503", "504"}
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_the_request_schema_is_the_validating_serializer(http):
    schema = http.get("/v1/openapi.json").json()
    request = schema["components"]["schemas"]["ChatCompletionRequest"]
    assert set(request["required"]) == {"model", "messages"}
    assert request["properties"]["max_tokens"]["maximum"] == 1_000_000
    assert request["properties"]["messages"]["maxItems"] == 4096


def test_the_schema_and_docs_need_no_key(queen):
    import httpx

    assert httpx.get(f"{queen.url}/v1/openapi.json").status_code == 200
    docs = httpx.get(f"{queen.url}/v1/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "/v1/openapi.json" in docs.text


@schemathesis.check
def errors_use_the_openai_envelope(ctx, response, case):
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            raise AssertionError(f"{response.status_code} for {case.method} {response.request.url} is not JSON: {response.text[:200]}") from None
        assert set(body) == {"error"} and set(body["error"]) == ENVELOPE_KEYS, f"not OpenAI's envelope: {body}"
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@schemathesis.check
def no_server_errors(ctx, response, case):
    assert response.status_code < 500 or response.status_code in DOCUMENTED_SERVER_ANSWERS, (
        f"server error {response.status_code}: {response.text[:500]}"
    )


CHECKS = [no_server_errors, errors_use_the_openai_envelope, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_schema_under_generated_requests(queen, start_worker, mode):
    start_worker(
        capabilities=["llama-infer", "fast-embed", "sdxl"], gpu_memory_mib=2**38, ram_bytes=10**15, disk_mib=10**12
    )
    schema = schemathesis.openapi.from_url(f"{queen.url}/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            case.call_and_validate(base_url=queen.url, headers={"Authorization": f"Bearer {BYPASS}"}, timeout=30, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:  # nothing to break: GET /v1/models has no parameters
            assert mode == GenerationMode.NEGATIVE
