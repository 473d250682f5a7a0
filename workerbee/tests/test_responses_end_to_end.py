"""`/v1/responses` on real llama.cpp inference through Queenbee, with the official SDK (tiny model)."""

import pytest

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from workerbee.tests.live import live_worker, recorded_job  # noqa: E402
from workerbee.tests.tiny_model import write_tiny_llama  # noqa: E402

pytestmark = pytest.mark.worker

REPO = "workerbee-test/tiny-llama-2m-GGUF"
MODEL = f"{REPO}:f32"


@pytest.fixture(scope="module")
def worker(queen, django_db_blocker, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-responses")
    write_tiny_llama(root / "models" / REPO / "tiny-llama-2m-f32.gguf")
    with live_worker(queen, django_db_blocker, root, "--ctx-size", "256", "--packaged-model", "false") as worker:
        yield worker


def only(worker) -> dict:
    return {"gpu_filter": {"pubkey": worker.pubkey}}


def test_a_response_is_generated_and_cut_at_max_output_tokens(worker, client, db_access):
    response = client.responses.create(
        model=MODEL, instructions="Be brief.", input="hello queen", max_output_tokens=5, temperature=0, extra_body=only(worker)
    )
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text and response.usage.output_tokens == 5
    job = recorded_job(response.id)
    assert (job.prompt_tokens, job.completion_tokens) == (response.usage.input_tokens, 5)


def test_a_streamed_response_has_the_text_of_its_deltas(worker, client, db_access):
    with client.responses.stream(model=MODEL, input="hello queen", max_output_tokens=6, temperature=0, extra_body=only(worker)) as stream:
        events = list(stream)
    # Cut at the limit: response.incomplete ends the stream, as OpenAI's (the SDK's
    # get_final_response waits for response.completed only).
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) == 6 and "".join(deltas) == final.output_text
    assert final.usage.output_tokens == 6 and final.output[0].status == "incomplete"
    again = client.responses.create(model=MODEL, input="and?", previous_response_id=final.id, max_output_tokens=2, extra_body=only(worker))
    assert again.usage.input_tokens > final.usage.input_tokens  # the first turn is in the prompt
    assert recorded_job(final.id).stream
