"""Jobs that fail, lose their worker or are cancelled leave nothing half-written behind."""

import os
import threading

from conftest import wait_for
from finetune.models import Checkpoint, File
from testkit.fake_worker import Disconnect
from workers.models import Connection

from .conftest import TRAINING, chunk_frames, training_frames

MODEL = "mistralai/Mistral-7B-Instruct-v0.1"


def start(api, start_ft_worker, script):
    worker = start_ft_worker(api.server, script)
    file_id = api.upload(TRAINING).json()["id"]
    return worker, api.create_job(file_id, worker)["id"]


def multipart_uploads(s3, prefix: str) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix).get("Uploads", [])


def test_a_disconnect_mid_upload_fails_the_job_and_aborts_the_upload(s3_api, s3, start_ft_worker):
    proceed = threading.Event()

    def script(job):
        yield from training_frames()
        yield from chunk_frames("lora", b"lora")
        yield from chunk_frames("gguf", os.urandom(6 * 1024 * 1024))[:90]  # past one 5 MiB part
        proceed.wait(20)
        yield Disconnect()

    worker, job_id = start(s3_api, start_ft_worker, script)
    prefix = wait_for(lambda: File.objects.filter(job__public_id=job_id, kind="gguf").values_list("storage_name", flat=True).first(), what="gguf upload")
    wait_for(lambda: multipart_uploads(s3, prefix), what="a multipart upload in the bucket")
    upload_id = multipart_uploads(s3, prefix)[0]["UploadId"]
    wait_for(lambda: s3.list_parts(Bucket=s3.bucket, Key=prefix, UploadId=upload_id).get("Parts"), what="a part uploaded")
    proceed.set()

    job = s3_api.wait_failed(job_id)
    assert job["error"]["code"] == "worker_disconnected" and "disconnected" in job["error"]["message"]
    assert job["fine_tuned_model"] is None and job["result_files"] == []
    final_name = prefix.removesuffix(".gguf")
    assert multipart_uploads(s3, final_name) == []
    assert s3.list_objects_v2(Bucket=s3.bucket, Prefix=final_name)["KeyCount"] == 0
    assert not File.objects.filter(job__public_id=job_id).exists()


def test_a_training_error_fails_the_job_with_the_workers_reason(s3_api, start_ft_worker):
    def script(job):
        yield {"status": "download_data"}
        yield {"status": "error", "detail": "OutOfMemoryError('CUDA out of memory')"}
        yield {}

    worker, job_id = start(s3_api, start_ft_worker, script)
    job = s3_api.wait_failed(job_id)
    assert job["error"]["code"] == "training_failed" and "CUDA out of memory" in job["error"]["message"]
    events = s3_api.http.get(f"/v1/fine_tuning/jobs/{job_id}/events").json()["data"]
    assert events[0]["level"] == "error" and "CUDA out of memory" in events[0]["message"]
    wait_for(lambda: Connection.objects.get(worker__identity=worker.identity).state == "free", what="connection freed")


def test_a_worker_error_frame_fails_the_job(s3_api, start_ft_worker):
    def script(job):
        yield {"error": "'NoneType' object has no attribute 'train'", "error_type": "AttributeError"}

    _, job_id = start(s3_api, start_ft_worker, script)
    job = s3_api.wait_failed(job_id)
    assert job["error"]["code"] == "worker_failed" and "has no attribute" in job["error"]["message"]


def test_done_without_a_model_fails_instead_of_crashing(s3_api, s3, start_ft_worker):
    def script(job):
        yield from chunk_frames("lora", b"adapter")
        yield {"status": "done"}
        yield {}

    _, job_id = start(s3_api, start_ft_worker, script)
    job = s3_api.wait_failed(job_id)
    assert "without sending the model" in job["error"]["message"]
    assert multipart_uploads(s3, "") == [] or all(job_id not in u["Key"] for u in multipart_uploads(s3, ""))


def test_a_chunk_that_is_not_base64_fails_the_job(s3_api, start_ft_worker):
    def script(job):
        yield {"status": "lora", "chunk": "not base64!", "pct": 0.1}
        yield {}

    _, job_id = start(s3_api, start_ft_worker, script)
    assert s3_api.wait_failed(job_id)["error"]["code"] == "invalid_worker_response"


def test_a_cancelled_job_ignores_later_frames_while_its_worker_drains(s3_api, s3, start_ft_worker):
    proceed = threading.Event()
    finished = threading.Event()

    def script(job):
        yield {"status": "download_data"}
        yield {"status": "load_model"}
        proceed.wait(20)
        yield from training_frames()
        yield from chunk_frames("lora", b"lora")
        yield from chunk_frames("gguf", b"gguf")
        yield {"status": "done"}
        yield {}
        finished.set()

    worker, job_id = start(s3_api, start_ft_worker, script)
    wait_for(lambda: len(s3_api.http.get(f"/v1/fine_tuning/jobs/{job_id}/events").json()["data"]) >= 4, what="load_model event")
    cancelled = s3_api.openai.fine_tuning.jobs.cancel(job_id)
    assert cancelled.status == "cancelled"
    # The original worker cannot be stopped: its connection stays busy until it finishes
    # (the row follows the live pool within the state mirror's interval).
    wait_for(lambda: Connection.objects.get(worker__identity=worker.identity).state == "busy", timeout=2, what="busy connection")
    proceed.set()
    assert finished.wait(20)
    wait_for(lambda: Connection.objects.get(worker__identity=worker.identity).state == "free", what="drained connection")

    job = s3_api.job(job_id)
    assert job["status"] == "cancelled" and job["fine_tuned_model"] is None and job["result_files"] == []
    messages = [e["message"] for e in s3_api.http.get(f"/v1/fine_tuning/jobs/{job_id}/events").json()["data"]]
    assert messages[0] == "Job cancelled."
    assert not any("Training started" in m for m in messages)
    assert not Checkpoint.objects.filter(job__public_id=job_id).exists()
    assert not File.objects.filter(job__public_id=job_id).exists()


def test_cancelling_a_queued_job_and_cancelling_twice(s3_api, db_access):
    file_id = s3_api.upload(TRAINING).json()["id"]
    body = {"model": MODEL, "training_file": file_id, "gpu_filter": {"pubkey": "nobody-connects"}}
    job_id = s3_api.http.post("/v1/fine_tuning/jobs", json=body).json()["id"]
    assert s3_api.http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    again = s3_api.http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_a_finished_job_cannot_be_cancelled(s3_api, start_ft_worker):
    from .conftest import fine_tune_script

    _, job_id = start(s3_api, start_ft_worker, fine_tune_script(b"l", b"g"))
    s3_api.wait_succeeded(job_id)
    response = s3_api.http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    assert response.status_code == 400 and response.json()["error"]["code"] == "job_not_cancellable"


def test_a_job_naming_someone_elses_file_or_a_non_training_file_is_a_400(s3_api, db_access):
    from .conftest import Api, new_key

    theirs = Api(s3_api.server, new_key()).upload(TRAINING).json()["id"]
    notes = s3_api.upload(b"just notes", purpose="user_data").json()["id"]
    for file_id, needle in [(theirs, "not one of your files"), (notes, "purpose 'user_data'"), ("file-nope", "not one of your files")]:
        response = s3_api.http.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": file_id})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "training_file" and needle in response.json()["error"]["message"]
