"""`/`: the network now, for anyone, without a single worker's identity."""

import json
import re

import pytest
from django.test import Client

from .helpers import connect, make_job, measure, new_identity

pytestmark = pytest.mark.django_db

SEVEN_B = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"


@pytest.fixture
def browser() -> Client:
    return Client()


def stat(page: str, name: str) -> int:
    return int(re.search(rf'data-stat="{name}">(\d+)<', page).group(1))


def test_it_shows_the_numbers_of_worker_stats(browser):
    connect(models=(SEVEN_B,))
    connect(models=(SEVEN_B,), busy=True)
    page = browser.get("/").text
    api = json.loads(browser.get("/worker/stats").content)
    assert api["connected"] >= 2
    assert {name: stat(page, name) for name in ("connected", "busy", "waiting")} == {
        k: api[k] for k in ("connected", "busy", "waiting")
    }
    assert stat(page, "free") == api["connected"] - api["busy"]


def test_it_lists_every_model_offered_with_its_free_and_busy_workers(browser):
    connect(models=(SEVEN_B, "org/tiny-270M-GGUF:Q8_0"))
    connect(models=(SEVEN_B,), busy=True)
    page = browser.get("/").text
    row = re.search(rf'<tr data-model="{re.escape(SEVEN_B)}">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'data-col="workers">2<', row)
    assert re.search(r'data-col="free">1<', row)
    assert re.search(r'data-col="busy">1<', row)
    assert 'data-model="org/tiny-270M-GGUF:Q8_0"' in page


def test_it_gives_each_model_its_workers_median_speed_at_its_size(browser):
    fast, slow = connect(models=(SEVEN_B,)), connect(models=(SEVEN_B,))
    # 7B at Q4 is size 4.2: bin 4 (see stats/ema.py).
    measure(fast, bin=4, seconds_per_token=0.02)
    measure(slow, bin=4, seconds_per_token=0.05)
    row = re.search(rf'<tr data-model="{re.escape(SEVEN_B)}">(.*?)</tr>', browser.get("/").text, re.S).group(1)
    assert ">35.0<" in row  # the median of 50 and 20 tokens/s


def test_it_shows_typical_speed_by_model_size(browser):
    for seconds in (0.1, 0.2, 0.4):
        measure(connect(), bin=2, seconds_per_token=seconds)
    measure(None, bin=2, seconds_per_token=1.0)  # the cluster's row is not a worker
    page = browser.get("/").text
    table = re.search(r'<table id="speeds">(.*?)</table>', page, re.S).group(1)
    assert re.search(r"<td>2</td><td class=\"n\">5.0</td><td class=\"n\">3</td>", table)


def test_it_charts_jobs_per_minute(browser):
    for _ in range(3):
        make_job()
    page = browser.get("/").text
    assert '<span id="jobs-total">3</span>' in page
    assert "3 jobs/min" in page  # the bar's title


def test_it_never_shows_an_identity_key_or_address(browser):
    worker = connect(auth_key="owner-secret-key", models=(SEVEN_B,), identity=new_identity("rig7"), payout_address="bee@pay.example")
    page = browser.get("/").text
    for secret in (worker.identity, worker.pubkey, worker.pubkey[:10], "owner-secret-key", worker.owner_key_hash, "bee@pay.example", "rig7"):
        assert secret not in page


def test_its_commands_use_this_servers_own_address(browser, settings):
    settings.ALLOWED_HOSTS = ["bees.example"]
    page = browser.get("/", HTTP_HOST="bees.example").text
    assert "--queen-url ws://bees.example/worker" in page
    assert "curl http://bees.example/v1/chat/completions" in page
    secure = browser.get("/", HTTP_HOST="bees.example", secure=True).text
    assert "--queen-url wss://bees.example/worker" in secure
    assert 'base_url="https://bees.example/v1"' in secure


def test_it_says_so_when_no_worker_is_connected(browser):
    page = browser.get("/").text
    assert 'id="no-models"' in page


def test_it_links_the_admin_for_staff_only(browser, admin_client):
    assert 'href="/admin/"' not in browser.get("/").text
    assert 'href="/admin/"' in admin_client.get("/").text


def test_api_paths_keep_the_json_error_envelope(browser):
    for path in ("/v1/nope", "/worker/nope", "/owner/nope"):
        response = browser.get(path)
        assert response.status_code == 404
        assert set(json.loads(response.content)["error"]) == {"message", "type", "param", "code"}
    assert browser.post("/").status_code == 405
