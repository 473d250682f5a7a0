"""`/owner/`: an owner sees their own workers, and nobody else's, ever."""

import re

import pytest
from django.conf import settings
from django.test import Client

from api.hashing import hash_secret
from billing import prices
from billing import services as billing
from billing.models import LedgerEntry
from stats.models import WorkerStats
from trust.models import Verification
from workers.models import TrustState

from .helpers import connect, make_job, make_worker, measure, new_identity

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser() -> Client:
    return Client()


def show(browser: Client, identifier: str) -> str:
    response = browser.post("/owner/", {"identifier": identifier})
    assert response.status_code == 200
    return response.text


def test_it_asks_for_an_identifier_in_a_form(browser):
    response = browser.get("/owner/")
    assert '<form method="post" action="/owner/"' in response.text
    assert "csrfmiddlewaretoken" in response.text
    assert "no-store" in response["Cache-Control"]


def test_an_owner_sees_their_own_workers_and_not_anothers(browser):
    mine = connect(auth_key="my-auth-key")
    theirs = connect(auth_key="their-auth-key")
    page = show(browser, "my-auth-key")
    assert mine.short_name in page
    assert theirs.short_name not in page
    assert "Workers (1)" in page


@pytest.mark.parametrize("by", ["pubkey", "identity", "user id"])
def test_it_finds_workers_by_what_worker_detail_accepts(browser, by):
    worker = connect(auth_key="uid:4242", identity=new_identity("rig"))
    identifier = {"pubkey": worker.pubkey, "identity": worker.identity, "user id": "4242"}[by]
    assert worker.short_name in show(browser, identifier)


def test_an_unknown_identifier_shows_a_clear_message(browser):
    connect(auth_key="somebody-else")
    page = show(browser, "nobody-has-this")
    assert 'id="unknown"' in page and "No worker is known by that identifier" in page


def test_the_identifier_is_never_echoed_back(browser):
    connect(auth_key="do-not-echo-me")
    page = show(browser, "do-not-echo-me")
    assert "do-not-echo-me" not in page
    assert hash_secret("do-not-echo-me") not in page


def test_the_form_is_csrf_protected():
    connect(auth_key="csrf-key")
    assert Client(enforce_csrf_checks=True).post("/owner/", {"identifier": "csrf-key"}).status_code == 403


def test_it_refuses_a_nul_character_and_the_word_user(browser):
    assert "Null characters are not allowed" in show(browser, "a\x00b")  # Django's own check
    assert "not the word" in show(browser, "user")


def test_a_worker_that_went_away_is_listed_offline(browser):
    make_worker(owner_key_hash=hash_secret("gone-key"))
    connect(auth_key="gone-key")
    page = show(browser, "gone-key")
    assert page.count('data-online="true"') == 1
    assert page.count('data-online="false"') == 1
    assert ">offline<" in page


def test_it_charts_a_workers_speed_against_the_network_median(browser):
    mine = connect(auth_key="chart-key")
    measure(mine, bin=4, seconds_per_token=0.1)
    measure(connect(), bin=4, seconds_per_token=0.05)
    page = show(browser, "chart-key")
    assert "4: 10 tokens/s (this worker)" in page
    assert "(network median)" in page


def test_it_shows_jobs_failures_and_earnings_from_the_ledger(browser):
    mine = connect(auth_key="earning-key")
    WorkerStats.objects.create(worker=mine, inferences=7, failures=2)
    payer = billing.create_account(name="payer", credits=0)
    owner = billing.create_account(name="owner", credits=0)
    for amount in (3, 4):
        billing.credit(account_id=owner.pk, amount=amount, kind="earning", job_id=make_job(worker=mine).pk)
    billing.credit(account_id=payer.pk, amount=100, kind="earning", job_id=make_job(worker=connect()).pk)  # not theirs
    make_job(worker=mine, proof_of_work=True)
    page = show(browser, "earning-key")
    assert re.search(r'data-col="jobs">7<', page) and re.search(r'data-col="failures">2<', page)
    assert earnings(page) == {"credits": 7, "jobs_paid": 2, "unpaid_proof_jobs": 1, "held": 0, "forfeited": 0, "verifying": 0}


def earnings(page: str) -> dict[str, int]:
    return {name: int(n) for name, n in re.findall(r'data-earning="(\w+)">(-?\d+)<', page)}


def hold(*, worker, owner_account, held: int, payer_account=None, charged: int = 0):
    """A job whose earning is held for verification, as billing's bill_job leaves it."""
    job = make_job(worker=worker)
    if payer_account is not None:
        billing.debit(account_id=payer_account.pk, amount=charged, job_id=job.pk)
    LedgerEntry.objects.create(account=owner_account, job=job, kind=LedgerEntry.Kind.HOLD, amount=0, held=held, balance_after=0)
    return job


def test_the_auth_key_shows_each_workers_trust_state_and_why(browser):
    suspect = connect(auth_key="trust-key", trust_state=TrustState.SUSPECT, trust_reason="a verifier refuted job chatcmpl-1")
    connect(auth_key="trust-key", trust_state=TrustState.VERIFIED)
    page = show(browser, "trust-key")
    assert page.count('data-trust="suspect"') == 1 and page.count('data-trust="verified"') == 1
    assert "Why: a verifier refuted job chatcmpl-1" in page
    assert "every job is checked again" in page
    assert suspect.short_name in page
    assert 'id="public-only"' not in page


def test_held_earnings_are_shown_until_paid_and_forfeited_ones_apart(browser):
    mine = connect(auth_key="hold-key", trust_state=TrustState.NEW)
    owner = billing.create_account(name="hold owner", credits=0)
    payer = billing.create_account(name="hold payer", credits=1000)
    hold(worker=mine, owner_account=owner, held=5)  # still open
    hold(worker=mine, owner_account=owner, held=6)  # still open
    settled = hold(worker=mine, owner_account=owner, held=8, payer_account=payer, charged=100)
    assert billing.settle_job(job_id=settled.public_id)
    refuted = hold(worker=mine, owner_account=owner, held=4)
    billing.refund_job(job_id=refuted.public_id, reason="refuted by a verifier")
    hold(worker=connect(auth_key="someone-else"), owner_account=owner, held=100)  # not theirs
    page = show(browser, "hold-key")
    paid = prices.worker_share(100, settings.BILLING_WORKER_SHARE)
    assert earnings(page) == {"credits": paid, "jobs_paid": 1, "unpaid_proof_jobs": 0, "held": 11, "forfeited": 4, "verifying": 0}
    assert "(2 jobs)" in page and "(1 job)" in page


def test_a_verifiers_owner_sees_what_checking_others_jobs_earned_and_the_checked_owner_does_not(browser):
    verifier = connect(auth_key="verifier-key", trust_state=TrustState.TRUSTED)
    checked = connect(auth_key="checked-key")
    owner = billing.create_account(name="verifier owner", credits=0)
    for amount in (2, 3):
        job = make_job(worker=checked)
        Verification.objects.create(job_id=job.public_id, worker=checked, verifier=verifier, status="failed")
        billing.credit(account_id=owner.pk, amount=amount, kind="verify_earning", job_id=job.pk)
    assert earnings(show(browser, "verifier-key"))["verifying"] == 5
    assert "(2 jobs)" in show(browser, "verifier-key")
    assert earnings(show(browser, "checked-key"))["verifying"] == 0
    assert earnings(show(browser, "checked-key"))["credits"] == 0


@pytest.mark.parametrize("by", ["pubkey", "identity", "user id"])
def test_a_public_identifier_shows_public_stats_and_no_trust_or_money(browser, by):
    worker = connect(auth_key="uid:777", identity=new_identity("pub"), trust_state=TrustState.SUSPECT, trust_reason="secret why")
    WorkerStats.objects.create(worker=worker, inferences=5, failures=1)
    owner = billing.create_account(name="public owner", credits=0)
    billing.credit(account_id=owner.pk, amount=9, kind="earning", job_id=make_job(worker=worker).pk)
    hold(worker=worker, owner_account=owner, held=3)
    identifier = {"pubkey": worker.pubkey, "identity": worker.identity, "user id": "777"}[by]
    page = show(browser, identifier)
    assert worker.short_name in page and re.search(r'data-col="jobs">5<', page)
    assert 'id="public-only"' in page and "Paste the auth key" in page
    assert 'id="earnings"' not in page and "data-earning" not in page
    assert "data-trust" not in page and "secret why" not in page and 'class="badge trust-' not in page


def test_the_auth_key_proves_only_its_own_workers(browser):
    """One identifier may match a worker by auth key and (if someone pasted a pubkey as a key) another by pubkey."""
    public = connect(auth_key="a-different-secret", trust_state=TrustState.SUSPECT, trust_reason="not for you")
    mine = connect(auth_key=public.pubkey, trust_state=TrustState.VERIFIED)
    page = show(browser, public.pubkey)
    assert public.short_name in page and mine.short_name in page
    assert 'data-trust="verified"' in page and "not for you" not in page
