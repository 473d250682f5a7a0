"""The admin shows jobs with their artifacts, checkpoints and events, and files."""

import pytest

from finetune.models import Checkpoint, File, FineTuningJob, JobEvent, new_id


@pytest.mark.django_db
def test_the_admin_lists_and_shows_jobs_and_files(admin_client):
    job = FineTuningJob.objects.create(
        public_id=new_id("ftjob-"), owner="key:1", realm="local:/x", model="m/base", model_size=7, training_file="file-x",
        hyperparameters={"q_level": "q6_k"}, final_name="f/base:q6_k:j", status="succeeded",
    )
    JobEvent.objects.create(public_id=new_id("ft-event-"), job=job, message="Training started.")
    Checkpoint.objects.create(public_id=new_id("ftckpt_"), job=job, step_number=25, metrics={"train_loss": 1.2})
    artifact = File.objects.create(
        public_id=new_id("file-"), owner="key:1", purpose="fine-tune-results", filename="base.gguf", bytes=3,
        kind="gguf", realm="local:/x", storage_name="f/base:q6_k:j.gguf", job=job,
    )
    assert admin_client.get("/admin/finetune/finetuningjob/").status_code == 200
    page = admin_client.get(f"/admin/finetune/finetuningjob/{job.pk}/change/").content.decode()
    assert "Training started." in page and "train_loss" in page and artifact.public_id in page
    assert admin_client.get("/admin/finetune/file/").status_code == 200
    assert admin_client.get(f"/admin/finetune/file/{artifact.pk}/change/").status_code == 200
