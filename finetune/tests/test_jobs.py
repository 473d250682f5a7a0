"""A fine-tune from upload to chat, with artifacts streamed into S3 (a moto server)."""

import os

import openai
import pytest

from conftest import wait_for
from finetune.models import File, FineTuningJob
from workers.models import Connection

from .conftest import TRAINING, Api, fine_tune_script, new_key


def upload(api: Api) -> str:
    response = api.upload(TRAINING)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def test_a_job_runs_on_a_worker_and_its_artifacts_land_in_s3_byte_for_byte(s3_api, s3, start_ft_worker):
    lora = os.urandom(1024 * 1024 + 77)
    gguf = os.urandom(11 * 1024 * 1024 + 123)  # three 5 MiB parts, the last one short
    seen: dict = {}
    worker = start_ft_worker(s3_api.server, fine_tune_script(lora, gguf, seen=seen))
    created = s3_api.create_job(upload(s3_api), worker, hyperparameters={"n_epochs": 1}, suffix="bees")
    assert created["id"].startswith("ftjob-") and created["object"] == "fine_tuning.job"
    assert created["status"] in ("queued", "running")

    job = s3_api.wait_succeeded(created["id"])
    assert job["fine_tuned_model"].startswith("user:")
    assert job["fine_tuned_model"].endswith(f"/Mistral-7B-Instruct-v0.1-bees:q6_k:{job['id']}")
    assert job["finished_at"] >= job["created_at"] and job["error"] is None

    # The artifacts, as stored (under the owner's folder) and as the API serves them.
    artifacts = {f.kind: f for f in File.objects.filter(job__public_id=job["id"])}
    assert artifacts["gguf"].storage_name == job["fine_tuned_model"][len("user:"):] + ".gguf"
    assert artifacts["lora"].storage_name == job["fine_tuned_model"][len("user:"):] + ".lora.tar.gz"
    assert s3.get_object(Bucket=s3.bucket, Key=artifacts["lora"].storage_name)["Body"].read() == lora
    assert s3.get_object(Bucket=s3.bucket, Key=artifacts["gguf"].storage_name)["Body"].read() == gguf
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=s3.bucket, Prefix=artifacts["gguf"].storage_name)
    assert sorted(job["result_files"]) == sorted(f.public_id for f in artifacts.values())
    assert s3_api.http.get(f"/v1/files/{artifacts['gguf'].public_id}/content").content == gguf

    # What the worker was sent: the original's envelope, a presigned URL, no public bucket.
    [sent] = worker.jobs
    assert sent["openai_url"] == "/v1/fine_tuning/jobs"
    req = sent["openai_req"]
    assert "X-Amz-Signature=" in req["training_file"] and seen["training_bytes"] == TRAINING
    assert req["model"] == "mistralai/Mistral-7B-Instruct-v0.1"
    assert req["final_name"] == job["fine_tuned_model"][len("user:"):]
    assert req["hyperparameters"]["n_epochs"] == 1 and req["hyperparameters"]["lora_alpha"] == 64
    assert req["gpu_filter"]["capabilities"] == ["llama-fine-tune"] and req["gpu_filter"]["min_version"] == "0.2.0"
    assert req["state"] == {} and req["validation_file"] == ""


def test_events_and_checkpoints_are_listed_in_order_and_paged(s3_api, start_ft_worker):
    worker = start_ft_worker(s3_api.server, fine_tune_script(b"lora", b"gguf"))
    job_id = s3_api.create_job(upload(s3_api), worker)["id"]
    s3_api.wait_succeeded(job_id)

    events = list(s3_api.openai.fine_tuning.jobs.list_events(job_id, limit=2))  # the SDK follows `after`
    messages = [e.message for e in reversed(events)]  # OpenAI lists newest first
    expected = [
        "Fine-tuning job created",
        "Fine-tuning job started on a worker.",
        "The worker is downloading the training data.",
        "The worker is loading the base model.",
        "Training started.",
        "Metrics: loss=1.9",
        "Checkpoint at step 25.",
        "Metrics: eval_loss=1.4",
        "Metrics: loss=1.1",
        "Checkpoint at step 50.",
        "Receiving the LoRA adapter from the worker.",
        "Quantizing the merged model to q6_k.",
        "Receiving the GGUF model from the worker.",
        "New fine-tuned model created: user:",
        "The job has successfully completed.",
    ]
    assert len(messages) == len(expected)
    for message, start in zip(messages, expected):
        assert message.startswith(start), (message, start)
    assert events[-1].object == "fine_tuning.job.event" and events[-1].level == "info"
    assert [e.data for e in reversed(events)][2] == {"status": "download_data"}

    checkpoints = list(s3_api.openai.fine_tuning.jobs.checkpoints.list(job_id))
    assert [c.step_number for c in checkpoints] == [50, 25]
    assert checkpoints[0].metrics.train_loss == 1.1 and checkpoints[0].metrics.valid_loss == 1.4
    assert checkpoints[1].metrics.train_loss == 1.9 and checkpoints[1].fine_tuning_job_id == job_id


def test_the_fine_tuned_model_is_its_owners_alone_and_serves_chat(s3_api, start_ft_worker, db_access):
    gguf = os.urandom(300_000)
    seen: dict = {}
    worker = start_ft_worker(s3_api.server, fine_tune_script(b"lora bytes", gguf, seen=seen))
    job_id = s3_api.create_job(upload(s3_api), worker)["id"]
    model = s3_api.wait_succeeded(job_id)["fine_tuned_model"]

    assert model in [m.id for m in s3_api.openai.models.list()]
    assert s3_api.openai.models.retrieve(model).id == model
    reply = s3_api.openai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], extra_body={"gpu_filter": {"pubkey": worker.pubkey}}
    )
    assert reply.choices[0].message.content == "fine-tuned hello" and reply.model == model
    # The worker got a signed URL of the GGUF (the original fetches https URLs), never a public one.
    assert "X-Amz-Signature=" in seen["model_url"] and seen["model_bytes"] == gguf

    other = Api(s3_api.server, new_key())
    assert model not in [m.id for m in other.openai.models.list()]
    with pytest.raises(openai.NotFoundError):
        other.openai.models.retrieve(model)
    with pytest.raises(openai.NotFoundError) as raised:
        other.openai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "model_not_found"
    for path in ("", "/events", "/checkpoints"):
        assert other.http.get(f"/v1/fine_tuning/jobs/{job_id}{path}").status_code == 404
    assert other.http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").status_code == 404
    assert other.http.get("/v1/fine_tuning/jobs").json()["data"] == []
    assert len(worker.jobs) == 2  # the fine-tune and the owner's chat, nothing for the other key


def test_jobs_are_listed_newest_first_with_after_and_limit(s3_api, db_access):
    file_id = upload(s3_api)
    never = {"pubkey": "no-such-worker"}
    ids = [s3_api.http.post("/v1/fine_tuning/jobs", json={"model": "mistralai/Mistral-7B-Instruct-v0.1", "training_file": file_id, "gpu_filter": never}).json()["id"] for _ in range(3)]
    page = s3_api.openai.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == ids[:0:-1] and page.has_more
    assert [j.id for j in s3_api.openai.fine_tuning.jobs.list(limit=2, after=ids[1]).data] == ids[:1]
    assert all(s3_api.job(i)["status"] == "queued" for i in ids)
    for job_id in ids:
        s3_api.http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")


def test_a_job_needs_a_fine_tune_capable_nvidia_worker_with_enough_memory(s3_api, start_ft_worker, db_access):
    file_id = upload(s3_api)
    tag = f"ft-need-{os.getpid()}"
    script = fine_tune_script(b"l", b"g")
    no_gpu = start_ft_worker(s3_api.server, script, gpu_memory_mib=0, capabilities=["llama-infer", "llama-fine-tune", tag])
    small = start_ft_worker(s3_api.server, script, gpu_memory_mib=8000, capabilities=["llama-infer", "llama-fine-tune", tag])
    no_cap = start_ft_worker(s3_api.server, script, capabilities=["llama-infer", tag])
    old = start_ft_worker(s3_api.server, script, version="0.1.9", capabilities=["llama-infer", "llama-fine-tune", tag])
    body = {"model": "mistralai/Mistral-7B-Instruct-v0.1", "training_file": file_id, "gpu_filter": {"capabilities": [tag]}}
    job_id = s3_api.http.post("/v1/fine_tuning/jobs", json=body).json()["id"]
    good = start_ft_worker(s3_api.server, script, capabilities=["llama-infer", "llama-fine-tune", tag])
    s3_api.wait_succeeded(job_id)
    assert [len(w.jobs) for w in (no_gpu, small, no_cap, old, good)] == [0, 0, 0, 0, 1]
    assert FineTuningJob.objects.get(public_id=job_id).worker.identity == good.identity
    wait_for(lambda: Connection.objects.get(worker__identity=good.identity).state == "free", timeout=2, what="freed connection")
