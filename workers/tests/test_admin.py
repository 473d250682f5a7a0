"""The operator's admin pages for workers, connections and jobs render."""

import pytest
from django.utils import timezone

from routing.models import Job
from workers.models import Connection, ServerProcess, Worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_worker():
    process = ServerProcess.objects.create(name="admin-test", heartbeat_at=timezone.now())
    worker = Worker.objects.create(
        identity="pubkey-for-the-admin-test", pubkey="pubkey-for-the-admin-test", capabilities=["llama-infer", "sdxl"],
        gpu_count=1, gpus={"nv_gpus": [{"name": "RTX 4090", "memory": 24576.0}]}, owner_key_hash="0" * 64,
    )
    Connection.objects.create(worker=worker, process=process, channel_name="specific.admin!x", capabilities_text=",llama-infer,sdxl,", state="busy", job_id="job-in-progress")
    return worker


def test_the_worker_list_and_page_show_live_state_and_current_job(admin_client, live_worker):
    listing = admin_client.get("/admin/workers/worker/")
    assert listing.status_code == 200 and live_worker.short_name in listing.text
    page = admin_client.get(f"/admin/workers/worker/{live_worker.pk}/change/")
    assert page.status_code == 200
    assert "job-in-progress" in page.text and "RTX 4090" in page.text
    assert "0" * 64 not in page.text  # the owner's key hash stays out of the admin


def test_the_connection_and_job_lists_render(admin_client, live_worker):
    Job.objects.create(public_id="chatcmpl-admin", kind="chat", model="a/b-7B-GGUF:Q4_K_M", status="succeeded", worker=live_worker, prompt_tokens=3, completion_tokens=5)
    assert admin_client.get("/admin/workers/connection/").status_code == 200
    jobs = admin_client.get("/admin/routing/job/")
    assert jobs.status_code == 200 and "chatcmpl-admin" in jobs.text
