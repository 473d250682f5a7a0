"""Billing fixtures: accounts with API keys, workers that already proved themselves,
and a server billing through a real local HTTP billing backend."""

import uuid

import openai
import pytest

from api.hashing import hash_secret
from api.models import ApiKey
from billing import services
from billing.models import Account, LedgerEntry
from billing.tests.billing_server import BillingServer
from conftest import wait_for
from finetune.tests.conftest import start_ft_worker  # noqa: F401 (a fixture)
from routing.models import Job
from testkit.server import QueenProcess, free_port
from workers.models import TrustState, Worker

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
HI = [{"role": "user", "content": "hi"}]
BILLING_SECRET = "billing-shared-secret"


def tag() -> str:
    return f"bill-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_account(django_db_setup, db_access):
    """make_account(credits, **limits) -> (account, raw API key)."""

    def make(credits: int = 100, **limits) -> tuple[Account, str]:
        account = services.create_account(name=tag(), credits=credits, **limits)
        _, raw = ApiKey.create_key(name=account.name, account_id=account.pk)
        return account, raw

    return make


@pytest.fixture
def proven_worker(start_worker, client):
    """A worker whose proof-of-work job is done and whose identity is verified
    (trust/), so its next jobs are billed and paid at once.

    Each gets a capability of its own; `.extra` routes a request to it.
    """

    def start(**kwargs):
        capability = tag()
        kwargs["capabilities"] = [*kwargs.get("capabilities", ["llama-infer"]), capability]
        script = kwargs.pop("script", None)
        worker = start_worker(**kwargs)
        worker.extra = {"gpu_filter": {"capabilities": [capability]}}
        proof = client.chat.completions.create(model=MODEL, messages=HI, extra_body=worker.extra)
        wait_for(lambda: Job.objects.filter(public_id=proof.id, proof_of_work=True).exists(), what="proof of work recorded")
        Worker.objects.filter(identity=worker.identity).update(trust_state=TrustState.VERIFIED)
        if script is not None:
            worker.script = script
        return worker

    return start


def sdk(queen, raw: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{queen.url}/v1", api_key=raw, max_retries=0, timeout=30)


def charges_of(account: Account) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.CHARGE))


def jobs_of(raw: str):
    return Job.objects.filter(api_key__key_hash=hash_secret(raw))


@pytest.fixture(scope="package")
def billing_server():
    server = BillingServer(port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def remote_queen(server_env, billing_server, tmp_path_factory):
    """A server billing through `billing_server`; fine-tunes keep their files in a folder of its own."""
    env = {
        **server_env,
        "MEDIA_ROOT": str(tmp_path_factory.mktemp("remote-media")),
        "BILLING_URL": billing_server.url,
        "BILLING_SECRET": BILLING_SECRET,
        # Long enough for a request during the outage to be admitted on the cached answer.
        "BILLING_CHECK_CACHE_SECONDS": "60",
        "BILLING_RETRY_FIRST_DELAY": "0.2",
        "BILLING_RETRY_MAX_DELAY": "0.5",
        "BILLING_OUTBOX_POLL": "0.5",
        "CACHE_KEY_PREFIX": tag(),  # its own check cache when Redis is shared
        # The backend is told of verifiers' payouts (trust/tests/test_remote_holds.py).
        "BILLING_REMOTE_VERIFY_PAYOUTS": "1",
        "LOG_LEVEL": "DEBUG",
    }
    process = QueenProcess(env, name="test-billing-queen").start()
    yield process
    process.stop()


@pytest.fixture(scope="package")
def fine_tune_queen(server_env, tmp_path_factory):
    """A server of local accounts whose fine-tunes keep their files in a folder of its own.

    Package-scoped, like `remote_queen`: both stop before other apps' tests, so their
    heartbeats do not load the shared SQLite file while those run.
    """
    process = QueenProcess({**server_env, "MEDIA_ROOT": str(tmp_path_factory.mktemp("billing-media"))}, name="billing-fine-tunes").start()
    yield process
    process.stop()
