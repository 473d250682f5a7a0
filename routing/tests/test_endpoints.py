"""Embeddings, images, models and worker stats through the official SDK."""

import httpx
from conftest import wait_for

from routing.models import Job

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"


def test_it_returns_one_embedding_per_input(start_worker, client, db_access):
    worker = start_worker()
    result = client.embeddings.create(model=MODEL, input=["a", "b"], extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    assert [d.index for d in result.data] == [0, 1]
    assert result.data[1].embedding[0] == 0.2
    assert result.usage.prompt_tokens == 6
    assert worker.jobs[0]["openai_url"] == "/v1/embeddings"


def test_fastembed_models_need_the_fast_embed_capability(start_worker, client):
    plain = start_worker()
    embedder = start_worker(capabilities=["llama-infer", "fast-embed"])
    client.embeddings.create(model="fastembed:BAAI/bge-small-en-v1.5", input="a")
    assert embedder.jobs and not plain.jobs
    assert embedder.jobs[0]["openai_req"]["gpu_filter"]["capabilities"] == ["fast-embed"]


def test_images_go_to_an_sdxl_worker_and_are_recorded(start_worker, client, db_access):
    painter = start_worker(capabilities=["llama-infer", "sdxl"], gpu_memory_mib=40000)
    result = client.images.generate(prompt="a bee", n=2, extra_body={"gpu_filter": {"pubkey": painter.pubkey}})
    assert len(result.data) == 2 and result.data[0].b64_json
    assert painter.jobs[0]["openai_req"]["n"] == 2
    # The job is recorded after the reply is sent.
    wait_for(lambda: Job.objects.filter(worker__identity=painter.identity, kind="images", images=2).exists(), what="job recorded")


def test_models_lists_what_workers_advertise_and_the_defaults(start_worker, client):
    start_worker(models=["someone/special-3B-GGUF:Q4_K_M"])
    ids = [m.id for m in client.models.list().data]
    assert "someone/special-3B-GGUF:Q4_K_M" in ids
    assert "TheBloke/zephyr-7B-alpha-GGUF:Q4_K_S" in ids
    assert client.models.retrieve("someone/special-3B-GGUF:Q4_K_M").id == "someone/special-3B-GGUF:Q4_K_M"


def test_worker_stats_count_busy_workers_as_connected(start_worker, queen):
    before = httpx.get(f"{queen.url}/worker/stats").json()
    start_worker()
    after = httpx.get(f"{queen.url}/worker/stats").json()
    assert after["connected"] == before["connected"] + 1
    assert set(after) >= {"connected", "busy", "total"}


def test_the_job_row_records_usage_and_timings(start_worker, client, db_access):
    from conftest import wait_for

    worker = start_worker()
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    job = wait_for(lambda: Job.objects.filter(public_id=reply.id).first(), what="job row")
    assert job.status == "succeeded" and job.caller == "bypass"
    assert (job.prompt_tokens, job.completion_tokens, job.usage_estimated) == (7, 4, False)
    assert job.worker.identity == worker.identity and job.total_seconds > 0
