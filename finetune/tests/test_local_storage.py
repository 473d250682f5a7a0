"""The embedded default: files in a local folder, handed to workers as signed Queenbee URLs;
and jobs that outlive the process they were created on."""

import os
import threading
import time
from pathlib import Path
from unittest import mock

from django.core import signing

from finetune.models import File, FineTuningJob
from finetune.storage import SIGNING_SALT
from testkit.server import QueenProcess, free_port
from workers.signature import public_key_b64

from .conftest import TRAINING, Api, chunk_frames, fine_tune_script, local_env, new_key, training_frames


def test_a_job_on_local_storage_runs_with_signed_queenbee_urls(local_api, local_queen, start_ft_worker):
    gguf = os.urandom(700_000)
    seen: dict = {}
    worker = start_ft_worker(local_queen, fine_tune_script(b"adapter", gguf, seen=seen))
    job_id = local_api.create_job(local_api.upload(TRAINING).json()["id"], worker)["id"]
    model = local_api.wait_succeeded(job_id)["fine_tuned_model"]

    training_url = worker.jobs[0]["openai_req"]["training_file"]
    assert training_url.startswith(f"{local_queen.url}/files/signed/") and seen["training_bytes"] == TRAINING
    stored = File.objects.get(job__public_id=job_id, kind="gguf").storage_name
    assert (Path(local_queen.env["MEDIA_ROOT"]) / stored).read_bytes() == gguf

    local_api.openai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], extra_body={"gpu_filter": {"pubkey": worker.pubkey}}
    )
    assert seen["model_url"].startswith(f"{local_queen.url}/files/signed/") and seen["model_bytes"] == gguf


def test_a_tampered_expired_or_dangling_link_is_refused(local_api):
    file_id = local_api.upload(TRAINING).json()["id"]
    name = File.objects.get(public_id=file_id).storage_name
    anonymous = local_api.http.get  # the link is the credential; the key header does not matter

    good = signing.dumps(name, salt=SIGNING_SALT)
    assert anonymous(f"/files/signed/{good}", headers={"Authorization": ""}).content == TRAINING
    tampered = signing.dumps(name.replace(file_id, "file-other"), salt="another salt")
    assert anonymous(f"/files/signed/{tampered}").json()["error"]["code"] == "bad_link"
    with mock.patch("time.time", return_value=time.time() - 7 * 3600):
        old = signing.dumps(name, salt=SIGNING_SALT)
    response = anonymous(f"/files/signed/{old}")
    assert response.status_code == 403 and response.json()["error"]["code"] == "link_expired"
    local_api.http.delete(f"/v1/files/{file_id}")
    assert anonymous(f"/files/signed/{good}").status_code == 404


def test_a_job_queued_before_a_restart_runs_after_it(server_env, tmp_path, start_ft_worker, db_access):
    env = local_env(server_env, tmp_path)
    before = QueenProcess(env, name="finetune-restart").start()
    try:
        api = Api(before, new_key())
        file_id = api.upload(TRAINING).json()["id"]
        worker_key = os.urandom(32)
        body = {"model": "mistralai/Mistral-7B-Instruct-v0.1", "training_file": file_id, "gpu_filter": {"pubkey": public_key_b64(worker_key)}}
        job_id = api.http.post("/v1/fine_tuning/jobs", json=body).json()["id"]
    finally:
        before.stop()
    assert FineTuningJob.objects.get(public_id=job_id).status == "queued"

    after = QueenProcess(env, name="finetune-restart", port=before.port).start()
    try:
        start_ft_worker(after, fine_tune_script(b"lora", b"gguf"), privkey=worker_key)
        job = api.for_server(after).wait_succeeded(job_id)
        assert job["fine_tuned_model"].endswith(job_id)
    finally:
        after.stop()


def test_a_job_whose_process_dies_mid_run_is_run_again_by_another(server_env, tmp_path, start_ft_worker, db_access):
    """Two processes share the database and storage; the one running a job is killed,
    its worker reconnects to the other, which takes the job over and runs it again."""
    survivor = QueenProcess({}, name="finetune-survivor", port=free_port())
    env = {**local_env(server_env, tmp_path), "PUBLIC_URL": survivor.url}  # the address in front of both
    survivor.env.update(env)
    doomed = QueenProcess(env, name="finetune-doomed").start()
    survivor.start()
    try:
        attempts: list[str] = []
        first_run = threading.Event()
        killed = threading.Event()

        def script(job):
            attempts.append(job["openai_req"]["training_file"])
            if len(attempts) == 1:
                first_run.set()
                yield {"status": "download_data"}
                killed.wait(20)
                yield {"status": "load_model"}  # into a dead socket: the worker reconnects
                return
            yield from training_frames()
            yield from chunk_frames("lora", b"lora")
            yield from chunk_frames("gguf", b"gguf")
            yield {"status": "done"}
            yield {}

        worker = start_ft_worker(doomed, script, reconnect=True, fallback_urls=[survivor.ws_url])
        api = Api(doomed, new_key())
        job_id = api.create_job(api.upload(TRAINING).json()["id"], worker)["id"]
        assert first_run.wait(20)  # the job reached the worker through the doomed process
        doomed.kill()
        killed.set()

        job = api.for_server(survivor).wait_status(job_id, "succeeded", "failed", timeout=40)
        assert job["status"] == "succeeded", job["error"]
        assert len(attempts) == 2
        messages = [e["message"] for e in api.for_server(survivor).http.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}).json()["data"]]
        assert any("queued again" in m for m in messages)
        assert FineTuningJob.objects.get(public_id=job_id).attempts == 2
    finally:
        doomed.stop()
        survivor.stop()
