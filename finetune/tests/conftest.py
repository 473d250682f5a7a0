"""Fixtures for fine-tuning and files: a real S3 API (a `moto_server` subprocess),
Queenbee servers storing on it and on a local folder, scripted fine-tune workers
(real websocket clients) and an API key per test, so every test is its own owner.
"""

import base64
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import openai
import pytest

from conftest import connection_count, wait_for
from testkit.fake_worker import FakeWorker, chat_reply
from testkit.server import QueenProcess, _die_with_parent, free_port

BASE_MODEL = "mistralai/Mistral-7B-Instruct-v0.1"
CHUNK_BYTES = 64 * 1024  # the original worker's raw bytes per chunk frame
S3_PART_BYTES = 5 * 1024 * 1024  # S3's smallest part, so multi-MiB artifacts take several
FILES_MAX_BYTES = 1024 * 1024

FAST = {
    "FINETUNE_POLL_INTERVAL": "0.3",
    "FINETUNE_HEARTBEAT_INTERVAL": "0.3",
    "FINETUNE_RUNNER_GRACE": "3",
    "FINETUNE_UPLOAD_PART_BYTES": str(S3_PART_BYTES),
    "FILES_MAX_BYTES": str(FILES_MAX_BYTES),
    # A killed process is noticed in seconds, not the default 20.
    "PROCESS_HEARTBEAT_INTERVAL": "1",
    "PROCESS_GRACE": "5",
}


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start; see {log.name}") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def s3(moto_url):
    """A boto3 client on the moto server, and the test bucket."""
    client = boto3.client(
        "s3", endpoint_url=moto_url, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    client.bucket = f"queenbee-test-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=client.bucket)
    return client


@pytest.fixture(scope="session")
def s3_queen(server_env, moto_url, s3) -> Iterator[QueenProcess]:
    env = {
        **server_env,
        **FAST,
        "AWS_STORAGE_BUCKET_NAME": s3.bucket,
        "AWS_S3_ENDPOINT_URL": moto_url,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    process = QueenProcess(env, name="finetune-s3").start()
    yield process
    process.stop()


def local_env(server_env: dict, media_root: Path) -> dict:
    return {**server_env, **FAST, "MEDIA_ROOT": str(media_root)}


@pytest.fixture(scope="session")
def local_queen(server_env, tmp_path_factory) -> Iterator[QueenProcess]:
    process = QueenProcess(local_env(server_env, tmp_path_factory.mktemp("media")), name="finetune-local").start()
    yield process
    process.stop()


class Api:
    """One owner (a fresh API key) talking to one server."""

    def __init__(self, server: QueenProcess, key: str):
        self.server = server
        self.key = key
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        self.openai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30)

    def for_server(self, server: QueenProcess) -> "Api":
        return Api(server, self.key)

    def upload(self, content: bytes, *, purpose: str = "fine-tune", filename: str = "train.jsonl") -> httpx.Response:
        return self.http.post("/v1/files", files={"file": (filename, content)}, data={"purpose": purpose})

    def create_job(self, training_file: str, worker: FakeWorker, **body) -> dict:
        response = self.http.post(
            "/v1/fine_tuning/jobs",
            json={"model": BASE_MODEL, "training_file": training_file, "gpu_filter": {"pubkey": worker.pubkey}, **body},
        )
        assert response.status_code == 200, response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/v1/fine_tuning/jobs/{job_id}").json()

    def wait_status(self, job_id: str, *statuses: str, timeout: float = 30) -> dict:
        return wait_for(lambda: (j := self.job(job_id))["status"] in statuses and j, timeout=timeout, interval=0.2, what=f"job {job_id} {statuses}")

    def wait_succeeded(self, job_id: str, timeout: float = 30) -> dict:
        job = self.wait_status(job_id, "succeeded", "failed", "cancelled", timeout=timeout)
        assert job["status"] == "succeeded", job["error"]
        return job

    def wait_failed(self, job_id: str, timeout: float = 30) -> dict:
        job = self.wait_status(job_id, "succeeded", "failed", "cancelled", timeout=timeout)
        assert job["status"] == "failed", job["status"]
        return job


def new_key() -> str:
    from api.models import ApiKey

    return ApiKey.create_key(name=f"finetune-test-{uuid.uuid4().hex[:6]}")[1]


@pytest.fixture
def s3_api(s3_queen, db_access) -> Iterator[Api]:
    api = Api(s3_queen, new_key())
    yield api
    api.http.close()


@pytest.fixture
def local_api(local_queen, db_access) -> Iterator[Api]:
    api = Api(local_queen, new_key())
    yield api
    api.http.close()


TRAINING = b"".join(
    b'{"messages": [{"role": "user", "content": "Say %d"}, {"role": "assistant", "content": "%d"}]}\n' % (n, n) for n in range(10)
)


def chunk_frames(kind: str, data: bytes) -> list[dict]:
    """An artifact as the original worker streams it: 64 KiB raw per frame, urlsafe base64 with padding."""
    count = max(1, -(-len(data) // CHUNK_BYTES))
    return [
        {"status": kind, "chunk": base64.urlsafe_b64encode(data[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES]).decode(), "pct": (i + 1) / count}
        for i in range(count)
    ]


@pytest.fixture
def start_ft_worker(db_access):
    """Start a fine-tune capable worker (NVIDIA, llama-fine-tune) on a server and wait for it."""
    started: list[FakeWorker] = []

    def start(server: QueenProcess, script, **kwargs) -> FakeWorker:
        kwargs.setdefault("capabilities", ["llama-infer", "llama-fine-tune"])
        worker = FakeWorker(server.ws_url, script=script, **kwargs).start()
        started.append(worker)
        wait_for(lambda: connection_count(worker.identity) == 1, what="worker registration")
        return worker

    yield start
    for worker in started:
        worker.stop()



def training_frames() -> list[dict]:
    """The frames of a short training run before the artifacts (reference §6.5)."""
    return [
        {"status": "download_data"},
        {"status": "load_model"},
        {"status": "start_train"},
        {"status": "log", "logs": {"loss": 1.9, "learning_rate": 2.5e-5, "epoch": 0.5}},
        {"status": "checkpoint"},
        {"status": "log", "logs": {"eval_loss": 1.4, "epoch": 1.0}},
        {"status": "log", "logs": {"loss": 1.1, "learning_rate": 2.0e-5, "epoch": 1.5}},
        {"status": "checkpoint"},
    ]


def fine_tune_script(lora: bytes, gguf: bytes, *, seen: dict | None = None):
    """A worker that fine-tunes: fetches the training file from the URL it is given,
    plays the whole event stream, and serves chat with a fine-tuned model by
    fetching its GGUF from the URL it is given."""
    seen = seen if seen is not None else {}

    def script(job):
        req = job["openai_req"]
        if job["openai_url"] == "/v1/chat/completions":
            seen["model_url"] = req["model"]
            seen["model_bytes"] = httpx.get(req["model"], timeout=10).content
            yield chat_reply("fine-tuned hello")
            return
        seen["training_bytes"] = httpx.get(req["training_file"], timeout=10).content
        yield from training_frames()
        yield from chunk_frames("lora", lora)
        yield {"status": "quantize", "level": req["hyperparameters"]["q_level"]}
        yield from chunk_frames("gguf", gguf)
        yield {"status": "done"}
        yield {}

    return script
