"""Billing a fine-tune that succeeded, with billing's primitives (billing sits below finetune).

The worker reports no token counts, so a fine-tune is priced per job
(billing.services.fine_tune_cost) and its `complete` says how many examples were
trained for how many epochs (the original sent only `{"job": "fine_tune"}`).
"""

from dataclasses import dataclass
from typing import Any

from billing import services as billing

from .models import File, FineTuningJob


@dataclass(frozen=True)
class FineTuneBill:
    """A succeeded fine-tune as billing sees it (billing.backends.Billable)."""

    job: FineTuningJob
    charge_caller = True
    pay_worker = True
    hold = False  # fine-tunes are not verified

    @property
    def link(self) -> dict[str, int]:
        return {"fine_tune_id": self.job.pk}

    @property
    def api_key_id(self) -> int | None:
        return self.job.api_key_id

    @property
    def bill_to(self) -> str:
        return self.job.bill_to

    @property
    def owner_key_hash(self) -> str:
        return self.job.worker.owner_key_hash if self.job.worker_id else ""

    def cost(self) -> int:
        return billing.fine_tune_cost(model_size=self.job.model_size)

    def complete_command(self) -> dict[str, Any]:
        job = self.job
        examples = File.objects.filter(owner=job.owner, public_id=job.training_file).values_list("lines", flat=True).first()
        seconds = (job.finished_at - job.started_at).total_seconds() if job.started_at and job.finished_at else 0.0
        return {
            "command": "complete",
            "bill_to_token": job.bill_to,
            "pay_to_lnurl": job.worker.payout_address if job.worker_id else "",
            "job_id": job.public_id,
            "kind": "fine_tune",
            "model": job.model,
            "model_size": job.model_size,
            "usage": {"job": "fine_tune", "training_examples": examples or 0, "n_epochs": job.hyperparameters.get("n_epochs")},
            "duration": round(seconds, 3),
            "pay_worker": True,
        }


def bill_fine_tune(*, job: FineTuningJob) -> bool:
    """Charge whoever pays for a fine-tune that just succeeded, and pay its worker's
    owner; call in the transaction that marks it succeeded.

    Failed and cancelled fine-tunes are never billed. A second billing of the same
    fine-tune is refused by the ledger's unique (fine-tune, kind) and the outbox's
    one row per fine-tune. Returns True when a `complete` for the remote backend
    is due (billing.services.deliver_queued).
    """
    if job.status != FineTuningJob.Status.SUCCEEDED:
        return False
    queued = billing.bill(FineTuneBill(job=job))
    if job.bill_to:
        job.bill_to = ""  # the outbox row holds it until delivered; nothing else needs it
        job.save(update_fields=["bill_to"])
    return queued
