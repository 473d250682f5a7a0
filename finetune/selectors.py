"""Reads for /v1/files, /v1/fine_tuning/jobs and the owner's fine-tuned models,
rendered in OpenAI's shapes. Every read is scoped to its owner: another owner's
object is a 404, never a 403, so ids reveal nothing."""

import dataclasses
from datetime import datetime

from asgiref.sync import sync_to_async

from api.errors import NotFound

from . import storage
from .models import Checkpoint, File, FineTuningJob, JobEvent
from .services import owner_of


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def _page(queryset, *, after: str | None, limit: int, render, descending: bool = True) -> dict:
    """An OpenAI cursor page: `after` is the id of the last object already seen."""
    if after:
        anchor = queryset.filter(public_id=after).values_list("pk", flat=True).first()
        if anchor is None:
            raise NotFound(f"No such object for 'after': {after}", param="after")
        queryset = queryset.filter(pk__lt=anchor) if descending else queryset.filter(pk__gt=anchor)
    rows = list(queryset.order_by("-pk" if descending else "pk")[: limit + 1])
    data = [render(r) for r in rows[:limit]]
    return {
        "object": "list",
        "data": data,
        "has_more": len(rows) > limit,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


# --- Files ------------------------------------------------------------------------------


def _files(owner: str):
    return File.objects.filter(owner=owner, status=File.Status.PROCESSED)


def file_object(file: File) -> dict:
    return {
        "id": file.public_id,
        "object": "file",
        "bytes": file.bytes,
        "created_at": _ts(file.created_at),
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def get_file(*, owner: str, file_id: str) -> File:
    file = _files(owner).filter(public_id=file_id).first()
    if file is None:
        raise NotFound(f"No such File object: {file_id}", param="id")
    return file


def list_files(*, owner: str, purpose: str | None = None, after: str | None = None, limit: int = 10_000, order: str = "desc") -> dict:
    files = _files(owner)
    if purpose:
        files = files.filter(purpose=purpose)
    return _page(files, after=after, limit=limit, render=file_object, descending=order == "desc")


# --- Jobs ----------------------------------------------------------------------------------


def job_object(job: FineTuningJob) -> dict:
    error = {"code": job.error_code, "message": job.error_message, "param": None} if job.status == FineTuningJob.Status.FAILED else None
    results = sorted(f.public_id for f in job.files.all() if f.status == File.Status.PROCESSED)
    return {
        "id": job.public_id,
        "object": "fine_tuning.job",
        "created_at": _ts(job.created_at),
        "finished_at": _ts(job.finished_at),
        "model": job.model,
        "fine_tuned_model": job.fine_tuned_model or None,
        "organization_id": "queenbee",
        "status": job.status,
        "hyperparameters": job.hyperparameters,
        "method": {"type": "supervised", "supervised": {"hyperparameters": job.hyperparameters}},
        "training_file": job.training_file,
        "validation_file": job.validation_file or None,
        "result_files": results,
        "trained_tokens": None,
        "error": error,
        "seed": job.seed,
        "suffix": job.suffix or None,
        "estimated_finish": None,
        "integrations": [],
        "metadata": None,
    }


def _jobs(owner: str):
    return FineTuningJob.objects.filter(owner=owner).prefetch_related("files")


def get_job(*, owner: str, job_id: str) -> dict:
    job = _jobs(owner).filter(public_id=job_id).first()
    if job is None:
        raise NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
    return job_object(job)


def list_jobs(*, owner: str, after: str | None = None, limit: int = 20) -> dict:
    return _page(_jobs(owner), after=after, limit=limit, render=job_object)


def _job_pk(owner: str, job_id: str) -> int:
    pk = FineTuningJob.objects.filter(owner=owner, public_id=job_id).values_list("pk", flat=True).first()
    if pk is None:
        raise NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
    return pk


def event_object(event: JobEvent) -> dict:
    return {
        "id": event.public_id,
        "object": "fine_tuning.job.event",
        "created_at": _ts(event.created_at),
        "level": event.level,
        "message": event.message,
        "data": event.data,
        "type": event.type,
    }


def list_events(*, owner: str, job_id: str, after: str | None = None, limit: int = 20) -> dict:
    """Newest first, as OpenAI lists them; `after` pages towards older events."""
    events = JobEvent.objects.filter(job_id=_job_pk(owner, job_id))
    return _page(events, after=after, limit=limit, render=event_object)


def checkpoint_object(checkpoint: Checkpoint, *, job: FineTuningJob) -> dict:
    return {
        "id": checkpoint.public_id,
        "object": "fine_tuning.job.checkpoint",
        "created_at": _ts(checkpoint.created_at),
        "fine_tuning_job_id": job.public_id,
        "fine_tuned_model_checkpoint": f"user:{job.final_name}:ckpt-step-{checkpoint.step_number}",
        "step_number": checkpoint.step_number,
        "metrics": checkpoint.metrics,
    }


def list_checkpoints(*, owner: str, job_id: str, after: str | None = None, limit: int = 10) -> dict:
    job = FineTuningJob.objects.get(pk=_job_pk(owner, job_id))
    return _page(job.checkpoints.all(), after=after, limit=limit, render=lambda c: checkpoint_object(c, job=job))


# --- Fine-tuned models -------------------------------------------------------------------------


def _models(owner: str):
    """The owner's GGUF results; deleting the GGUF file removes the model."""
    return File.objects.filter(owner=owner, kind=File.Kind.GGUF, status=File.Status.PROCESSED, job__status=FineTuningJob.Status.SUCCEEDED)


def model_object(file: File) -> dict:
    return {"id": file.job.fine_tuned_model, "object": "model", "created": _ts(file.created_at), "owned_by": "user"}


def fine_tuned_models(*, owner: str) -> list[dict]:
    """For /v1/models: only the caller's own fine-tuned models."""
    return [model_object(f) for f in _models(owner).select_related("job").order_by("-pk")]


def fine_tuned_model(*, owner: str, name: str) -> dict | None:
    file = _models(owner).filter(job__fine_tuned_model=name).select_related("job").first()
    return model_object(file) if file else None


def fine_tuned_model_url(*, owner: str, name: str, base_url: str) -> str:
    """A signed URL of the owner's fine-tuned GGUF, for the worker that will serve it."""
    file = _models(owner).filter(job__fine_tuned_model=name).first()
    if file is None:
        raise NotFound(f"The model '{name}' does not exist or is not yours.", param="model", code="model_not_found")
    return storage.signed_url(file.storage_name, base_url=base_url)


async def with_fine_tuned_model(spec, *, base_url: str):
    """A routing JobSpec for a `user:` model, with the worker sent a signed URL of the
    GGUF: the original worker downloads (and caches) any https model URL, and a
    signed URL needs no public bucket. Other models pass through unchanged."""
    if spec.model.kind != "user":
        return spec
    url = await sync_to_async(fine_tuned_model_url)(owner=owner_of(spec.caller), name=spec.model.name, base_url=base_url)
    return dataclasses.replace(spec, model=dataclasses.replace(spec.model, cli_name=url, web_name=url))
