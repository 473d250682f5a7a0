"""Writing finished jobs in batches: their stats, their Job rows and their charges.

Each finished job used to cost two transactions of its own (its stats outcome,
then its Job row with its ledger rows) and two thread hops. Now `record()` puts
it on a per-process list and one writer task writes what has gathered in one
call on a database thread. While it writes, the next batch gathers; an idle
process writes a job at once (no timer, nothing waits for a batch to fill).

Where the database serialises writers (SQLite; runtime/backends.py) one batch
is written at a time and the whole batch is one transaction (a commit is what
costs). Where it takes writers in parallel (PostgreSQL) several batches are
written at once (`max_writers`) and each job keeps its own transaction: one batch would hold the rows it locks (a worker's stats, the
cluster's bins, accounts) until its end, and batches of two processes could
deadlock. Either way each job's stats and each job's record are their own
savepoint or transaction, so one bad record (a duplicate `public_id`) loses
nothing else, and the promises of billing/services.py (a job billed at most
once, in the transaction of its record) hold as before.

A batch whose transaction fails as a whole is written again a few times before
its records are given up (and named in the log). A process killed mid-write
loses what it had not written, as it lost in-flight background writes before; a
SIGTERM drain waits for the writers (`drained()`, a stop step of the process
runtime: routing/apps.py).
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from billing import outbox
from runtime import observe
from runtime.backends import backends
from runtime.db import on_db_threads
from stats.services import JobOutcome, Recorded, record_outcome
from trust import verify
from trust.services import Check, plan_job

from .models import Job
from .records import record_and_bill

log = logging.getLogger(__name__)

# Jobs written per database call, at most: a long batch holds SQLite's write lock.
MAX_BATCH = 50
# A batch whose transaction fails is tried again this many times, after pauses
# doubling from RETRY_PAUSE (a database back within ~4 s loses nothing).
RETRIES = 3
RETRY_PAUSE = 0.5
# Finished jobs waiting to be written, above which the log says so.
BACKLOG_WARNING = 10_000


@dataclass
class FinishedJob:
    worker_id: int
    outcome: JobOutcome | None  # None: nothing for stats (the caller left)
    fields: dict[str, Any]  # the Job row, without the proof-of-work flags
    bill_to: str = field(default="", repr=False)
    check: Check | None = field(default=None, repr=False)  # a text job a verifier could re-score
    trust_state: str = ""  # the worker's, as its claim read it ("": read it when planning)
    verify: bool = False  # set when recorded: start its verification


def write_batch(jobs: list[FinishedJob]) -> bool:
    """Write the jobs; returns whether any `complete` went to the billing outbox."""
    queued = False
    whole = transaction.atomic() if backends().serialised_writes else contextlib.nullcontext()
    with whole:
        for job in jobs:
            queued |= _write(job)
    return queued


def _write(job: FinishedJob) -> bool:
    fields = dict(job.fields)
    try:
        job.verify = plan_job(worker_id=job.worker_id, fields=fields, check=job.check, state=job.trust_state)
    except Exception:
        log.exception("could not plan the verification of job %s", fields["public_id"])
    refuted = fields.get("verification") == Job.Verification.FAILED  # a replay, caught as it is recorded
    recorded = Recorded()
    if job.outcome is not None and not refuted:
        try:
            recorded = record_outcome(worker_id=job.worker_id, outcome=job.outcome)
        except Exception:
            log.exception("could not record stats of job %s", job.fields["public_id"])
        if recorded.punished:
            observe.worker_punished(reason=str(job.outcome.failure or "slow"))
    proof = recorded.proof_of_work
    try:
        fields = {**fields, "proof_of_work": proof, "charge_caller": not (proof or refuted), "pay_worker": not (proof or refuted)}
        return record_and_bill(fields=fields, bill_to=job.bill_to)[1]
    except Exception:  # the answer was delivered; a lost record must not break it
        log.exception("could not record job %s", job.fields["public_id"])
        job.verify = False
        return False


_write_batch = on_db_threads(write_batch)


def max_writers() -> int:
    """Batches written at once: one where the database serialises writers; else
    (each job its own transaction and a round trip) several, so recording keeps
    up with a busy process."""
    return 1 if backends().serialised_writes else max(1, settings.DB_THREADS // 2)


class Recorder:
    def __init__(self):
        self.pending: list[FinishedJob] = []
        self.writers: set[asyncio.Task] = set()

    def record(self, job: FinishedJob) -> None:
        self.pending.append(job)
        if len(self.pending) == BACKLOG_WARNING:
            log.warning("%d finished jobs are waiting to be recorded: the database is slow or down", BACKLOG_WARNING)
        self.writers = {w for w in self.writers if not w.done()}
        if len(self.writers) < max_writers():
            self.writers.add(asyncio.get_running_loop().create_task(self._write_all()))

    async def _write_all(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            await self._write(batch)

    async def _write(self, batch: list[FinishedJob]) -> None:
        for attempt in range(RETRIES + 1):
            try:
                if await _write_batch(batch):
                    outbox.ensure_delivery(wake=True)
                for job in batch:
                    if job.verify:
                        verify.schedule(check=job.check, worker_id=job.worker_id)
                return
            except Exception:
                # The batch's transaction failed as a whole (SQLite: BEGIN or COMMIT;
                # each job's own errors are caught inside), so nothing of it was
                # written and it can be written again.
                if attempt == RETRIES:
                    log.exception("could not record %d jobs: %s", len(batch), ", ".join(j.fields["public_id"] for j in batch))
                    return
                log.warning("could not record %d jobs (attempt %d); retrying", len(batch), attempt + 1, exc_info=True)
                await asyncio.sleep(RETRY_PAUSE * 2**attempt)

    async def drained(self) -> None:
        """Wait until every job recorded so far is written."""
        while writers := [w for w in self.writers if not w.done()]:
            await asyncio.gather(*writers, return_exceptions=True)


recorder = Recorder()
