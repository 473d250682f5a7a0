"""Recording a finished job and billing it, in one transaction."""

from typing import Any

from django.db import transaction

from billing import services as billing
from runtime.db import storable

from .models import Job


def record_and_bill(*, fields: dict[str, Any], bill_to: str = "") -> tuple[Job, bool]:
    """Insert the Job row and bill it if it succeeded, atomically.

    Returns (job, whether a `complete` for the remote billing backend is due). A
    job recorded twice (a retried write, two processes) is refused by its unique
    `public_id` before it could be billed again.
    """
    with transaction.atomic():
        job = Job.objects.create(**storable(fields))
        queued = job.status == Job.Status.SUCCEEDED and billing.bill_job(job=job, bill_to=bill_to)
    return job, queued
