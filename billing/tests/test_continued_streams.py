"""A stream continued on another worker is billed once, for the whole answer; its failed part never."""

from billing.models import Account, LedgerEntry
from billing.tests.conftest import HI, MODEL, charges_of, jobs_of, sdk, tag
from conftest import wait_for
from routing.models import Job
from routing.tests.test_continuation import STORY, failing, finishing, ranked_last


def test_a_continued_stream_is_billed_once_for_both_parts_and_the_failed_worker_earns_nothing(queen, make_account, proven_worker, start_worker):
    shared = tag()
    owner, owner_key = make_account(credits=0)
    dying = proven_worker(script=failing(3), capabilities=["llama-infer", shared], auth_key=owner_key)
    rescuer = proven_worker(script=finishing(), capabilities=["llama-infer", shared], features=["continue"])
    ranked_last(rescuer)
    account, raw = make_account(credits=100)
    stream = sdk(queen, raw).chat.completions.create(
        model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True}, extra_body={"gpu_filter": {"capabilities": [shared]}}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(STORY)
    assert chunks[-1].usage.completion_tokens == len(STORY)
    wait_for(lambda: jobs_of(raw).count() == 2, what="both parts recorded")
    [charge] = wait_for(lambda: charges_of(account), what="charge")
    assert charge.job.public_id == chunks[0].id and charge.job.continuations == 1
    assert charge.job.completion_tokens == len(STORY)
    part = Job.objects.get(public_id=f"{chunks[0].id}-part1")
    assert part.status == "failed" and part.worker.identity == dying.identity
    assert not LedgerEntry.objects.filter(job=part).exists()
    assert not LedgerEntry.objects.filter(account=owner).exists()  # the failed worker's owner earned nothing
    assert Account.objects.get(pk=account.pk).balance == 100 + charge.amount
