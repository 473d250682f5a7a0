"""GET /v1/usage: a key's own usage by day and model."""

import httpx
from django.utils import timezone

from billing.tests.conftest import HI, MODEL, charges_of, sdk
from conftest import wait_for


def test_usage_shows_a_keys_own_jobs_by_day_and_model(queen, make_account, proven_worker):
    worker = proven_worker()
    account, raw = make_account(credits=100)
    _, other = make_account(credits=100)
    for key in (raw, raw, other):
        sdk(queen, key).chat.completions.create(model=MODEL, messages=HI, extra_body=worker.extra)
    wait_for(lambda: len(charges_of(account)) == 2, what="charges")
    response = httpx.get(f"{queen.url}/v1/usage", headers={"Authorization": f"Bearer {raw}"}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{
        "date": timezone.now().date().isoformat(),
        "model": MODEL,
        "requests": 2,
        "prompt_tokens": 14,
        "completion_tokens": 8,
        "total_tokens": 22,
        "images": 0,
        "credits": 4,
    }]


def test_usage_refuses_a_bad_days_parameter(queen, make_account):
    _, raw = make_account()
    response = httpx.get(f"{queen.url}/v1/usage?days=0", headers={"Authorization": f"Bearer {raw}"}, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["param"] == "days"
