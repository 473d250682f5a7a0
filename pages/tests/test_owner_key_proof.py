"""`/owner/`: proving you hold a worker's key by signing the page's challenge (no sign-up, no secret sent)."""

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from billing import services as billing
from workerbee.challenge import public_key, sign_challenge
from workers.models import TrustState

from .helpers import connect, make_job

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def browser() -> Client:
    return Client()


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


def challenge_of(page: str) -> str:
    [challenge] = re.findall(r"sign-challenge '([^']+)'", page)
    return challenge


def sign_in(browser: Client, key: bytes, challenge: str) -> str:
    response = browser.post("/owner/", {"pubkey": public_key(key), "signature": sign_challenge(challenge, key)})
    assert response.status_code == 200
    return response.text


def test_the_page_shows_a_challenge_that_stays_for_the_session(browser):
    first = challenge_of(browser.get("/owner/").text)
    assert first.startswith("queenbee-owner:testserver:")
    assert challenge_of(browser.get("/owner/").text) == first
    assert challenge_of(Client().get("/owner/").text) != first  # another browser, another challenge


def test_a_signed_challenge_shows_that_keys_workers_with_trust_and_earnings(browser, key):
    mine = connect(auth_key="their-secret", identity=f"{public_key(key)}:gpu0", trust_state=TrustState.SUSPECT, trust_reason="refuted")
    other = connect(auth_key="their-secret")  # the same owner, another key: not proven by this key
    owner = billing.create_account(name="key owner", credits=0)
    billing.credit(account_id=owner.pk, amount=9, kind="earning", job_id=make_job(worker=mine).pk)
    billing.credit(account_id=owner.pk, amount=50, kind="earning", job_id=make_job(worker=other).pk)
    page = sign_in(browser, key, challenge_of(browser.get("/owner/").text))
    assert mine.short_name in page and other.short_name not in page
    assert 'data-trust="suspect"' in page and "Why: refuted" in page
    assert re.search(r'data-earning="credits">9<', page)
    assert 'id="public-only"' not in page


def test_a_challenge_signs_in_once(browser, key):
    connect(identity=f"{public_key(key)}:gpu0")
    challenge = challenge_of(browser.get("/owner/").text)
    assert "data-trust=" in sign_in(browser, key, challenge)
    again = sign_in(browser, key, challenge)
    assert "Not a valid signature of this challenge" in again and "data-trust=" not in again


@pytest.mark.parametrize("wrong", ["another challenge", "a signature by another key", "garbage"])
def test_a_wrong_signature_shows_nothing(browser, key, wrong):
    connect(identity=f"{public_key(key)}:gpu0", trust_state=TrustState.VERIFIED)
    challenge = challenge_of(browser.get("/owner/").text)
    signature = {
        "another challenge": sign_challenge(challenge + "x", key),
        "a signature by another key": sign_challenge(challenge, os.urandom(32)),
        "garbage": "not-base64!",
    }[wrong]
    page = browser.post("/owner/", {"pubkey": public_key(key), "signature": signature}).text
    assert "Not a valid signature of this challenge" in page
    assert "data-trust=" not in page and "data-earning=" not in page


def test_without_a_challenge_in_the_session_it_asks_to_sign_the_new_one(key):
    page = Client().post("/owner/", {"pubkey": public_key(key), "signature": sign_challenge("old", key)}).text
    assert "challenge expired" in page


def test_the_workerbee_command_signs_what_the_page_accepts(browser, key, tmp_path):
    connect(identity=f"{public_key(key)}:gpu0", trust_state=TrustState.VERIFIED)
    config = tmp_path / "gputopia"
    config.write_text(json.dumps({"privkey": base64.urlsafe_b64encode(key).decode()}))  # the original worker's file
    challenge = challenge_of(browser.get("/owner/").text)
    out = subprocess.run(
        [sys.executable, "-m", "workerbee", "sign-challenge", challenge, "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    fields = dict(re.findall(r"^(public key|signature):\s+(\S+)$", out, re.M))
    assert fields["public key"] == public_key(key)
    page = browser.post("/owner/", {"pubkey": fields["public key"], "signature": fields["signature"]}).text
    assert 'data-trust="verified"' in page
