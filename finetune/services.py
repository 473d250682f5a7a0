"""Writes for files and fine-tuning jobs. Sync, typed, keyword-only: views call them
through sync_to_async, the runner through database_sync_to_async.

A job's life is a row: every transition is one compare-and-set UPDATE on
(status, runner), so a cancel from the API and a frame from the worker can race
and exactly one wins; a runner that lost simply stops.
"""

import random
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from api.errors import ApiError, InvalidRequest, NotFound
from api.gpu_filter import parse_gpu_filter
from api.model_names import model_size
from workers.liveness import live_connections
from workers.models import Connection
from workers.protocol import version_key
from workers.services import Need, fitting_connection_ids

from . import storage
from .billing import bill_fine_tune
from .models import Checkpoint, File, FineTuningJob, JobEvent, new_id
from .training_data import BadTrainingFile, check_training_lines

Status = FineTuningJob.Status
# The original coordinator's filter for fine-tuning workers (reference §8.4).
MIN_WORKER_VERSION = "0.2.0"
# Queued jobs a scheduler tick looks at, oldest first.
SCHEDULE_SCAN = 20


class FileTooLarge(ApiError):
    status = 413
    type = "invalid_request_error"
    code = "file_too_large"


def owner_of(caller) -> str:
    """The owner string of an API caller: its key, or the bypass token's label."""
    return f"key:{caller.api_key_id}" if caller.api_key_id is not None else caller.label


# --- Files ----------------------------------------------------------------------------


def upload_file(*, owner: str, uploaded, purpose: str) -> File:
    """Store an upload for its owner; a training file is checked first."""
    if uploaded.size > settings.FILES_MAX_BYTES:
        raise FileTooLarge(f"The file is {uploaded.size} bytes; the limit is {settings.FILES_MAX_BYTES}.", param="file")
    lines = None
    if purpose == "fine-tune":
        try:
            lines = check_training_lines(uploaded)
        except BadTrainingFile as exc:
            raise InvalidRequest(f"Invalid training file: {exc}.", param="file", code="invalid_training_file") from None
        uploaded.seek(0)
    public_id = new_id("file-")
    name = storage.save_upload(name=f"{storage.owner_folder(owner)}/{public_id}", content=uploaded)
    return File.objects.create(
        public_id=public_id,
        owner=owner,
        purpose=purpose,
        filename=uploaded.name[:255],
        bytes=uploaded.size,
        realm=storage.realm(),
        storage_name=name,
        lines=lines,
    )


def delete_file(*, owner: str, file_id: str) -> None:
    """Delete a file and its stored bytes. Deleting a fine-tune's GGUF removes that model."""
    file = File.objects.filter(owner=owner, public_id=file_id, status=File.Status.PROCESSED).first()
    if file is None:
        raise NotFound(f"No such File object: {file_id}", param="id")
    storage.delete(file.storage_name)
    file.delete()


# --- Jobs: the API side ---------------------------------------------------------------------


def _training_file(*, owner: str, file_id: str, param: str) -> File:
    file = File.objects.filter(owner=owner, public_id=file_id, status=File.Status.PROCESSED).first()
    if file is None:
        raise InvalidRequest(f"{param} '{file_id}' is not one of your files.", param=param, code="invalid_file")
    if file.purpose != "fine-tune":
        raise InvalidRequest(f"{param} '{file_id}' was uploaded with purpose '{file.purpose}', not 'fine-tune'.", param=param, code="invalid_file")
    return file


def create_job(*, owner: str, data: dict, base_url: str, api_key_id: int | None = None, bill_to: str = "") -> FineTuningJob:
    """Queue a fine-tune for `owner`, paid by `api_key_id`'s account (or, with
    BILLING_URL, by the token `bill_to`) when it succeeds. `data` is
    JobCreateSerializer's output."""
    _training_file(owner=owner, file_id=data["training_file"], param="training_file")
    if data["validation_file"]:
        _training_file(owner=owner, file_id=data["validation_file"], param="validation_file")
    public_id = new_id("ftjob-")
    base = data["model"].rsplit("/", 1)[-1] + (f"-{data['suffix']}" if data["suffix"] else "")
    hyperparameters = data["hyperparameters"]
    with transaction.atomic():
        job = FineTuningJob.objects.create(
            public_id=public_id,
            owner=owner,
            realm=storage.realm(),
            model=data["model"],
            model_size=model_size(data["model"]),
            training_file=data["training_file"],
            validation_file=data["validation_file"],
            hyperparameters=hyperparameters,
            suffix=data["suffix"],
            seed=data["seed"] if data.get("seed") is not None else random.randrange(2**31),
            gpu_filter=dict(data.get("gpu_filter") or {}),
            base_url=base_url,
            api_key_id=api_key_id,
            bill_to=bill_to,
            final_name=f"{storage.owner_folder(owner)}/{base}:{hyperparameters['q_level']}:{public_id}",
            status=Status.QUEUED,
        )
        add_event(job_pk=job.pk, message=f"Fine-tuning job created; waiting for a worker with {job_need(job).describe()}.")
    return job


def cancel_job(*, owner: str, job_id: str) -> FineTuningJob:
    """Cancel a queued or running job. A running worker is not stopped (the original
    cannot be told to): its connection drains and later frames are ignored."""
    with transaction.atomic():
        job = FineTuningJob.objects.select_for_update().filter(owner=owner, public_id=job_id).first()
        if job is None:
            raise NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
        if job.status in (Status.SUCCEEDED, Status.FAILED):
            raise InvalidRequest(f"The job has already {job.status}.", param="fine_tuning_job_id", code="job_not_cancellable")
        if job.status != Status.CANCELLED:
            job.status = Status.CANCELLED
            job.finished_at = timezone.now()
            job.bill_to = ""  # a cancelled job is never billed
            job.save(update_fields=["status", "finished_at", "bill_to"])
            add_event(job_pk=job.pk, message="Job cancelled.", level=JobEvent.Level.WARN)
    return job


def add_event(*, job_pk: int, message: str, level: str = JobEvent.Level.INFO, type: str = "message", data=None) -> JobEvent:
    return JobEvent.objects.create(public_id=new_id("ft-event-"), job_id=job_pk, level=level, message=message, type=type, data=data)


def job_need(job: FineTuningJob) -> Need:
    """What a worker needs to run this job: the fine-tune capability, the original's
    version filter, and GPU memory for the base model times FINETUNE_GPU_FACTOR."""
    wanted = parse_gpu_filter(job.gpu_filter)
    newer = wanted.min_version and version_key(wanted.min_version) > version_key(MIN_WORKER_VERSION)
    return Need(
        size=job.model_size,
        capabilities=tuple(dict.fromkeys(("llama-fine-tune", *wanted.capabilities))),
        worker_kind="cli",
        min_version=wanted.min_version if newer else MIN_WORKER_VERSION,
        pubkey=wanted.pubkey,
        slug=wanted.slug,
        user_id=wanted.user_id,
        gpu_factor=settings.FINETUNE_GPU_FACTOR,
    )


# --- Jobs: the runner side ----------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """Everything a runner needs to send a job, read once."""

    job_pk: int
    public_id: str
    final_name: str
    need: Need
    payload: dict


def capable_workers(need: Need):
    """Free connections that can fine-tune: `need`'s filters, and NVIDIA GPUs.

    The connect message carries no OS; NVIDIA GPUs reported through NVML plus the
    llama-fine-tune capability (the CUDA torch stack) is the closest sign of the
    Linux + NVIDIA machine the original worker's training needs.
    """
    # SQLite compares the JSON null of a GPU-less worker as text, greater than any number.
    free = live_connections().filter(state=Connection.State.FREE, worker__gpus__nv_gpu_count__gt=0).exclude(worker__gpus__nv_gpu_count=None)
    return Connection.objects.filter(pk__in=fitting_connection_ids(need, among=free))


def take_runnable_jobs(*, realm: str, runner: str, process_id: int | None = None) -> list[tuple[int, str]]:
    """Claim (for `runner`) the queued jobs that a free capable worker could start now.

    Returns (job pk, worker identity) pairs. The claim only reserves the job; the
    runner then claims that worker's connection, and gives the job back if it lost it.
    `process_id` limits the workers to those whose sockets this process holds (an
    in-memory channel layer reaches no other process).
    """
    taken: list[tuple[int, str]] = []
    promised: set[str] = set()
    now = timezone.now()
    for job in FineTuningJob.objects.filter(realm=realm, status=Status.QUEUED, runner="").order_by("created_at")[:SCHEDULE_SCAN]:
        workers = capable_workers(job_need(job))
        if process_id is not None:
            workers = workers.filter(process_id=process_id)
        identities = set(workers.values_list("worker__identity", flat=True)[:32]) - promised
        if not identities:
            continue
        won = FineTuningJob.objects.filter(pk=job.pk, status=Status.QUEUED, runner="").update(runner=runner, runner_seen_at=now)
        if won:
            identity = random.choice(sorted(identities))
            promised.add(identity)
            taken.append((job.pk, identity))
    return taken


def release_run(*, job_pk: int, runner: str) -> None:
    """The runner could not get a worker after all: the job waits for the next tick."""
    FineTuningJob.objects.filter(pk=job_pk, runner=runner, status=Status.QUEUED).update(runner="", runner_seen_at=None)


def run_spec(*, job_pk: int) -> RunSpec | None:
    """The job's envelope for the worker, with signed URLs for its files; None when
    a file is gone (the job is failed here)."""
    job = FineTuningJob.objects.get(pk=job_pk)
    urls = {}
    for param in ("training_file", "validation_file"):
        file_id = getattr(job, param)
        if not file_id:
            urls[param] = ""
            continue
        file = File.objects.filter(owner=job.owner, public_id=file_id, status=File.Status.PROCESSED).first()
        if file is None:
            _finish(job_pk=job.pk, runner=job.runner, statuses=(Status.QUEUED,), status=Status.FAILED, code="invalid_file", message=f"The {param.replace('_', ' ')} {file_id} was deleted.")
            return None
        urls[param] = storage.signed_url(file.storage_name, base_url=job.base_url)
    need = job_need(job)
    payload = {
        "model": job.model,
        "training_file": urls["training_file"],
        "validation_file": urls["validation_file"],
        "hyperparameters": job.hyperparameters,
        "suffix": job.suffix,
        "gpu_filter": {**(job.gpu_filter or {}), "capabilities": list(need.capabilities), "min_version": need.min_version},
        "checkpoint": "",
        "state": {},
        "final_name": job.final_name,
    }
    return RunSpec(job.pk, job.public_id, job.final_name, need, payload)


def mark_running(*, job_pk: int, runner: str, worker_id: int) -> bool:
    """The worker is ours: the job is running (unless it was cancelled meanwhile)."""
    with transaction.atomic():
        won = FineTuningJob.objects.filter(pk=job_pk, runner=runner, status=Status.QUEUED).update(
            status=Status.RUNNING,
            worker_id=worker_id,
            started_at=timezone.now(),
            runner_seen_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
        if won:
            add_event(job_pk=job_pk, message="Fine-tuning job started on a worker.")
    return bool(won)


class Beat:
    RUNNING = "running"
    STOPPED = "stopped"  # cancelled, or taken over by another process after we stalled
    LOST = "lost"  # the worker's socket is gone without a word: its process died


def beat(*, job_pk: int, runner: str, connection_id: int, dispatch_id: str) -> str:
    """The runner's heartbeat, which also checks the worker's connection.

    A worker's socket may live in another process. If that process dies, nobody
    reports the disconnect, and with frames hours apart the runner would wait for
    hours: so the connection row must still exist, for this job, in a process
    whose own heartbeat is fresh.
    """
    now = timezone.now()
    if not FineTuningJob.objects.filter(pk=job_pk, runner=runner, status=Status.RUNNING).update(runner_seen_at=now):
        return Beat.STOPPED
    fresh = now - timedelta(seconds=settings.PROCESS_GRACE)
    alive = Connection.objects.filter(pk=connection_id, job_id=dispatch_id, process__heartbeat_at__gte=fresh).exists()
    return Beat.RUNNING if alive else Beat.LOST


def _running(job_pk: int, runner: str) -> bool:
    """Inside a transaction: lock the job and tell whether this runner still runs it."""
    return FineTuningJob.objects.select_for_update().filter(pk=job_pk, runner=runner, status=Status.RUNNING).exists()


def record_event(*, job_pk: int, runner: str, message: str, data: dict | None = None, type: str = "message") -> bool:
    """A worker frame as an event; False (and nothing recorded) if the job was cancelled."""
    with transaction.atomic():
        if not _running(job_pk, runner):
            return False
        add_event(job_pk=job_pk, message=message, type=type, data=data)
    return True


def record_checkpoint(*, job_pk: int, runner: str, step: int, metrics: dict, data: dict) -> bool:
    with transaction.atomic():
        if not _running(job_pk, runner):
            return False
        Checkpoint.objects.create(public_id=new_id("ftckpt_"), job_id=job_pk, step_number=step, metrics=metrics)
        add_event(job_pk=job_pk, message=f"Checkpoint at step {step}.", type="metrics", data={**data, "step": step, "metrics": metrics})
    return True


def start_artifact(*, job_pk: int, runner: str, kind: str, storage_name: str, upload_id: str) -> int | None:
    """Record an artifact whose upload just began (so a dead runner's upload can be
    aborted by whoever recovers the job); None if the job was cancelled."""
    with transaction.atomic():
        job = FineTuningJob.objects.select_for_update().filter(pk=job_pk, runner=runner, status=Status.RUNNING).first()
        if job is None:
            return None
        suffix = ".lora.tar.gz" if kind == File.Kind.LORA else ".gguf"
        file = File.objects.create(
            public_id=new_id("file-"),
            owner=job.owner,
            purpose="fine-tune-results",
            filename=job.final_name.rsplit("/", 1)[-1] + suffix,
            status=File.Status.UPLOADING,
            kind=kind,
            realm=job.realm,
            storage_name=storage_name,
            upload_id=upload_id,
            job=job,
        )
        add_event(job_pk=job.pk, message=f"Receiving the {'LoRA adapter' if kind == File.Kind.LORA else 'GGUF model'} from the worker.")
    return file.pk


def succeed(*, job_pk: int, runner: str, artifacts: list[tuple[int, str, int]]) -> bool:
    """`done`: the artifacts (file pk, storage name, bytes) are complete in storage.
    The job is billed in the same transaction (finetune/billing.py)."""
    with transaction.atomic():
        job = FineTuningJob.objects.select_for_update().filter(pk=job_pk, runner=runner, status=Status.RUNNING).first()
        if job is None:
            return False
        for file_pk, name, size in artifacts:
            File.objects.filter(pk=file_pk).update(status=File.Status.PROCESSED, storage_name=name, bytes=size, upload_id="")
        job.status = Status.SUCCEEDED
        job.fine_tuned_model = f"user:{job.final_name}"
        job.finished_at = timezone.now()
        job.runner = ""
        job.save(update_fields=["status", "fine_tuned_model", "finished_at", "runner"])
        add_event(job_pk=job.pk, message=f"New fine-tuned model created: {job.fine_tuned_model}")
        add_event(job_pk=job.pk, message="The job has successfully completed.")
        bill_fine_tune(job=job)  # in this transaction: billed if and only if it succeeded
    return True


def fail(*, job_pk: int, runner: str, code: str, message: str) -> bool:
    return _finish(job_pk=job_pk, runner=runner, statuses=(Status.RUNNING,), status=Status.FAILED, code=code, message=message)


def _finish(*, job_pk: int, runner: str, statuses: tuple[str, ...], status: str, code: str, message: str) -> bool:
    with transaction.atomic():
        won = FineTuningJob.objects.filter(pk=job_pk, runner=runner, status__in=statuses).update(
            status=status, error_code=code, error_message=message[:4000], finished_at=timezone.now(), runner="", bill_to=""
        )
        if won:
            add_event(job_pk=job_pk, message=f"Fine-tuning job failed: {message}", level=JobEvent.Level.ERROR)
    return bool(won)


def drop_artifacts(*, job_pk: int) -> list[tuple[str, str]]:
    """Forget the job's unfinished artifacts; returns (storage name, upload id) to abort."""
    rows = list(File.objects.filter(job_id=job_pk, status=File.Status.UPLOADING).values_list("pk", "storage_name", "upload_id"))
    File.objects.filter(pk__in=[r[0] for r in rows]).delete()
    return [(name, upload_id) for _, name, upload_id in rows]


def let_go(*, job_pk: int, runner: str) -> None:
    """The runner is done with the job, whatever became of it."""
    FineTuningJob.objects.filter(pk=job_pk, runner=runner).update(runner="")


def requeue_or_fail(*, job_pk: int, runner: str, reason: str, runner_seen_before=None) -> bool:
    """The job lost its worker through no fault of the worker (a Queenbee process
    died): queue it again, up to FINETUNE_MAX_ATTEMPTS runs, else fail it."""
    with transaction.atomic():
        mine = FineTuningJob.objects.filter(pk=job_pk, runner=runner, status=Status.RUNNING)
        if runner_seen_before is not None:
            mine = mine.filter(runner_seen_at__lt=runner_seen_before)
        attempts = mine.values_list("attempts", flat=True).first()
        if attempts is None:
            return False
        if attempts < settings.FINETUNE_MAX_ATTEMPTS:
            mine.update(status=Status.QUEUED, runner="", runner_seen_at=None, worker=None, started_at=None)
            add_event(job_pk=job_pk, message=f"{reason}; the job is queued again.", level=JobEvent.Level.WARN)
        else:
            message = f"{reason}, {attempts} times."
            mine.update(
                status=Status.FAILED, runner="", error_code="coordinator_stopped", error_message=message, finished_at=timezone.now(), bill_to=""
            )
            add_event(job_pk=job_pk, message=f"Fine-tuning job failed: {message}", level=JobEvent.Level.ERROR)
    return True


def recover_orphans(*, realm: str) -> list[tuple[str, str]]:
    """Jobs whose runner stopped beating (its process died): a running job is queued
    again or failed (requeue_or_fail), a half-claimed one released. Returns the
    orphaned uploads to abort."""
    cutoff = timezone.now() - timedelta(seconds=settings.FINETUNE_RUNNER_GRACE)
    orphans = list(
        FineTuningJob.objects.filter(realm=realm, runner_seen_at__lt=cutoff).exclude(runner="").values_list("pk", "runner", "status")[:50]
    )
    to_abort: list[tuple[str, str]] = []
    for pk, runner, status in orphans:
        if status == Status.RUNNING:
            won = requeue_or_fail(job_pk=pk, runner=runner, reason="The Queenbee process running this job stopped", runner_seen_before=cutoff)
        else:  # a claim that never started, or a cancelled job its runner never let go
            won = FineTuningJob.objects.filter(pk=pk, runner=runner, runner_seen_at__lt=cutoff).update(runner="", runner_seen_at=None)
        if won:
            to_abort += drop_artifacts(job_pk=pk)
    return to_abort
