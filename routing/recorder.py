"""Writing finished jobs in batches: their stats, their Job rows and their charges.

Each finished job used to cost two transactions of its own (its stats outcome,
then its Job row with its ledger rows) and two thread hops. Now `record()` puts
it on a per-process list and one writer task writes what has gathered in one
call on a database thread. While it writes, the next batch gathers; an idle
process writes a job at once (no timer, nothing waits for a batch to fill).

On SQLite the whole batch is one transaction (SQLite has one writer at a time
anyway, and a commit is what costs). On PostgreSQL each job keeps its own
transaction: one batch would hold the rows it locks (a worker's stats, the
cluster's bins, accounts) until its end, and batches of two processes could
deadlock. Either way each job's stats and each job's record are their own
savepoint or transaction, so one bad record (a duplicate `public_id`) loses
nothing else, and the promises of billing/services.py (a job billed at most
once, in the transaction of its record) hold as before.

A process killed mid-write loses that batch's records, as it lost in-flight
background writes before; a SIGTERM drain waits for the writer (`drained()`).
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from billing import outbox
from billing.services import record_and_bill
from queenbee_site.db import on_db_threads
from stats.services import JobOutcome, Recorded, record_outcome

log = logging.getLogger(__name__)

# Jobs written per database call, at most: a long batch holds SQLite's write lock.
MAX_BATCH = 200


@dataclass
class FinishedJob:
    worker_id: int
    outcome: JobOutcome | None  # None: nothing for stats (the caller left)
    fields: dict[str, Any]  # the Job row, without the proof-of-work flags
    bill_to: str = field(default="", repr=False)


def write_batch(jobs: list[FinishedJob]) -> bool:
    """Write the jobs; returns whether any `complete` went to the billing outbox."""
    queued = False
    whole = transaction.atomic() if connection.vendor == "sqlite" else contextlib.nullcontext()
    with whole:
        for job in jobs:
            queued |= _write(job)
    return queued


def _write(job: FinishedJob) -> bool:
    recorded = Recorded()
    if job.outcome is not None:
        try:
            recorded = record_outcome(worker_id=job.worker_id, outcome=job.outcome)
        except Exception:
            log.exception("could not record stats of job %s", job.fields["public_id"])
    proof = recorded.proof_of_work
    try:
        fields = {**job.fields, "proof_of_work": proof, "charge_caller": not proof, "pay_worker": not proof}
        return record_and_bill(fields=fields, bill_to=job.bill_to)[1]
    except Exception:  # the answer was delivered; a lost record must not break it
        log.exception("could not record job %s", job.fields["public_id"])
        return False


_write_batch = on_db_threads(write_batch)


class Recorder:
    def __init__(self):
        self.pending: list[FinishedJob] = []
        self.writer: asyncio.Task | None = None

    def record(self, job: FinishedJob) -> None:
        self.pending.append(job)
        if self.writer is None or self.writer.done():
            self.writer = asyncio.get_running_loop().create_task(self._write_all())

    async def _write_all(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            try:
                if await _write_batch(batch):
                    outbox.ensure_delivery(wake=True)
            except Exception:  # the database is down: these records are lost, say which
                log.exception("could not record %d jobs: %s", len(batch), ", ".join(j.fields["public_id"] for j in batch))

    async def drained(self) -> None:
        """Wait until every job recorded so far is written."""
        while self.writer is not None and not self.writer.done():
            await asyncio.shield(self.writer)


recorder = Recorder()
