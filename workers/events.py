"""The channel-layer vocabulary between API requests and worker consumers.

Every message crossing the channel layer is built here and holds only JSON-safe
values (channels-redis serialises with msgpack; the in-memory layer does not, so
tests round-trip these through JSON). The `type` picks the handler: "worker.job"
runs `WorkerConsumer.worker_job`.

To a worker consumer (its channel name is on its Connection row):
  worker.job     a job to forward to the worker
  worker.cancel  the caller left: drain the job, relay nothing more
  worker.close   close the socket (process shutting down, registry lost)
  worker.audit   the heartbeat asks: do you still run this job? (frees dead claims)
To a request's reply channel:
  job.frame      one worker frame of the job (its JSON text), `last` when the job is over
  job.gone       the worker disconnected (or was dropped) before its last frame
  queue.claimed  a freed connection was handed to this waiting request
"""

from typing import Any

JOB_FRAME = "job.frame"
JOB_GONE = "job.gone"
QUEUE_CLAIMED = "queue.claimed"


def process_group(process_id: int) -> str:
    """All worker consumers of one process."""
    return f"queenbee-process-{process_id}"


def job(
    *, job_id: str, reply_channel: str, openai_url: str, openai_req: dict[str, Any], ends_with_marker: bool, max_seconds: float
) -> dict[str, Any]:
    return {
        "type": "worker.job",
        "job_id": job_id,
        "reply_channel": reply_channel,
        "openai_url": openai_url,
        "openai_req": openai_req,
        "ends_with_marker": ends_with_marker,
        "max_seconds": max_seconds,
    }


def cancel(*, job_id: str) -> dict[str, Any]:
    return {"type": "worker.cancel", "job_id": job_id}


def audit(*, job_id: str) -> dict[str, Any]:
    return {"type": "worker.audit", "job_id": job_id}


def close(*, code: int, reason: str) -> dict[str, Any]:
    return {"type": "worker.close", "code": code, "reason": reason}


def frame(*, job_id: str, text: str, last: bool) -> dict[str, Any]:
    return {"type": JOB_FRAME, "job_id": job_id, "text": text, "last": last}


def local_frame(*, job_id: str, frame: dict[str, Any], last: bool) -> dict[str, Any]:
    """A frame for a request of the consumer's own process: the decoded frame
    itself, never crossing the layer (so never parsed twice)."""
    return {"type": JOB_FRAME, "job_id": job_id, "frame": frame, "last": last}


def gone(*, job_id: str, reason: str) -> dict[str, Any]:
    return {"type": JOB_GONE, "job_id": job_id, "reason": reason}


def claimed(*, job_id: str, claim: dict[str, Any]) -> dict[str, Any]:
    return {"type": QUEUE_CLAIMED, "job_id": job_id, "claim": claim}
