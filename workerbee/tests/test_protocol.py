"""The worker speaks the original wire protocol to a scripted fake queen (reference §1-7)."""

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workerbee import VERSION, hardware
from workerbee.connection import backoff_delay
from workerbee.generation import ShuttingDown
from workers.protocol import parse_connect_message
from workers.signature import verify_connect_signature

ROOT = Path(__file__).resolve().parents[2]

WIRE_ORDER = [
    "worker_version", "capabilities", "pubkey", "slug", "sig", "ln_url", "ln_address", "auth_key",
    "cpu_count", "disk_space", "vram", "nv_gpu_count", "nv_driver_version", "nv_gpus",
    "cl_driver_version", "cl_gpus", "web_gpus", "models", "context_length", "features",
]


def place_model(models_dir: Path, repo: str, file_name: str) -> Path:
    path = models_dir / repo / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF")
    return path


class ScriptedEngine:
    """Stands in for llama.cpp: replies from a script, to test the framing alone."""

    loaded_name = None

    def __init__(self, script):
        self.script = script
        self.jobs = []

    def run(self, openai_url, req):
        self.jobs.append((openai_url, req))
        return self.script(openai_url, req)


def test_it_sends_the_original_connect_message(fake_queen, make_config, run_worker, tmp_path):
    place_model(tmp_path / "models", "TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q4_K_M.gguf")
    run_worker(make_config(fake_queen.url, "--ln-address", "bee@example.com", "--auth-key", "keyme"))
    hello = fake_queen.hello()
    assert list(hello) == WIRE_ORDER
    assert hello["worker_version"] == VERSION
    assert hello["capabilities"] == ["llama-infer"]
    assert hello["ln_address"] == hello["ln_url"] == "bee@example.com"
    assert hello["auth_key"] == "keyme"
    assert hello["slug"] == ""
    assert hello["cpu_count"] == os.cpu_count()
    assert abs(hello["disk_space"] - shutil.disk_usage(tmp_path).free // 2**20) < 1024
    assert 0.5 < hello["vram"] / hardware.available_ram() < 2
    assert hello["models"] == ["TheBloke/Llama-2-7B-Chat-GGUF:Q4_K_M"]
    assert (hello["nv_gpus"], hello["cl_gpus"], hello["web_gpus"]) == ([], [], [])
    # Queenbee's additive fields, after the original's
    assert hello["features"] == ["verify", "tools", "json_schema", "logprobs", "n", "continue"]
    assert hello["context_length"] == 4096


def test_its_connect_message_passes_queenbee_verification(fake_queen, make_config, run_worker):
    worker = run_worker(make_config(fake_queen.url))
    hello = fake_queen.hello()
    verify_connect_signature(hello)
    info = parse_connect_message(hello)
    assert info.identity == worker.identity == hello["pubkey"]
    assert len(base64.urlsafe_b64decode(hello["sig"])) == 64


def test_its_signature_leaves_out_the_gpus_like_the_original(fake_queen, make_config, run_worker, monkeypatch):
    gpu = hardware.Gpu(name="NVIDIA Fake 4090", uuid="GPU-0000", memory=24564.0, clock=2520)
    monkeypatch.setattr(hardware, "nvidia_gpus", lambda: ("550.54.14", (gpu,)))
    run_worker(make_config(fake_queen.url, "--main-gpu", "1"))
    hello = fake_queen.hello()
    assert hello["nv_gpu_count"] == 1 and hello["nv_driver_version"] == "550.54.14"
    assert hello["nv_gpus"] == [{"name": "NVIDIA Fake 4090", "uuid": "GPU-0000", "memory": 24564.0, "clock": 2520, "clock_unit": "MHz"}]
    assert len(hello["slug"]) == 24
    verify_connect_signature(hello)
    assert parse_connect_message(hello).gpu_memory_mib == 24564.0


def test_it_keeps_its_identity_across_restarts(fake_queen, make_config, run_worker, tmp_path):
    first = make_config(fake_queen.url)
    again = make_config(fake_queen.url)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["privkey"] == first.privkey == again.privkey
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o600
    run_worker(again)
    hello = fake_queen.hello()
    from workers.signature import public_key_b64

    assert hello["pubkey"] == public_key_b64(base64.urlsafe_b64decode(saved["privkey"]))


def test_backoff_doubles_with_jitter_up_to_the_cap():
    rng = random.Random(7)
    for attempt in range(8):
        delay = backoff_delay(attempt, base=1.0, cap=30.0, rng=rng)
        step = min(30.0, 2.0**attempt)
        assert step / 2 <= delay <= step
    delays = {backoff_delay(3, base=1.0, cap=30.0, rng=rng) for _ in range(20)}
    assert len(delays) > 10  # jittered
    assert backoff_delay(10_000, base=1.0, cap=30.0, rng=rng) <= 30.0


def test_it_reconnects_with_growing_delays(fake_queen, make_config, run_worker):
    fake_queen.reject = 4
    run_worker(make_config(fake_queen.url))
    for _ in range(5):
        fake_queen.hello()
    times = fake_queen.connected_at[:5]
    gaps = [b - a for a, b in zip(times, times[1:])]
    for attempt, gap in enumerate(gaps):
        assert gap >= 0.1 * 2**attempt / 2  # never sooner than half the step
    assert gaps[-1] > gaps[0] * 2


def test_it_measures_its_hardware_and_models_again_on_reconnect(fake_queen, make_config, run_worker, tmp_path):
    run_worker(make_config(fake_queen.url))
    assert fake_queen.hello()["models"] == []
    place_model(tmp_path / "models", "someone/tiny-1b-GGUF", "tiny-1b.Q8_0.gguf")
    fake_queen.drop_connection()
    assert fake_queen.hello()["models"] == ["someone/tiny-1b-GGUF:Q8_0"]


def test_it_answers_a_bad_envelope_with_an_error_frame(fake_queen, make_config, run_worker):
    run_worker(make_config(fake_queen.url))
    fake_queen.hello()
    fake_queen.send("this is not json")
    assert fake_queen.next_frame() == {"error": "job envelope is not JSON", "error_type": "ValueError"}
    fake_queen.send({"openai_url": "/v1/chat/completions"})
    assert fake_queen.next_frame()["error_type"] == "ValueError"
    [reply] = fake_queen.job("/v1/images/generations", {"model": "gputopia/sdxl", "prompt": "a bee"})
    assert reply == {"error": "This worker does not serve /v1/images/generations", "error_type": "UnsupportedJob"}


def test_it_reports_models_it_cannot_find_like_the_original(fake_queen, make_config, run_worker, tmp_path):
    place_model(tmp_path / "models", "TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q4_K_M.gguf")
    place_model(tmp_path / "models", "TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q4_K_S.gguf")
    run_worker(make_config(fake_queen.url))
    fake_queen.hello()
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    [reply] = fake_queen.job("/v1/chat/completions", {**chat, "model": "TheBloke/Llama-2-7B-Chat-GGUF:Q4_K"})
    assert reply["error"].startswith("Multiple files match, please specify a better filter")
    assert reply["error_type"] == "ModelNotFound"
    [reply] = fake_queen.job("/v1/chat/completions", {**chat, "model": "TheBloke/Mistral-7B-GGUF:Q4_K_M", "stream": True})
    assert reply["error"].startswith("Can't find gguf, ggml or config.json")
    # A failed stream sends no `{}` after its error: the next frame answers the next job.
    [reply] = fake_queen.job("/v1/embeddings", {"model": "https://example.com/m.gguf", "input": "x"})
    assert "cannot fetch" in reply["error"]


def test_it_ends_a_stream_with_an_empty_frame(fake_queen, make_config, run_worker):
    def script(url, req):
        return iter([{"choices": [{"index": 0, "delta": {"content": t}}]} for t in ("Hel", "lo")])

    run_worker(make_config(fake_queen.url), engine=ScriptedEngine(script))
    fake_queen.hello()
    frames = fake_queen.job("/v1/chat/completions", {"model": "a/b", "stream": True})
    assert [f["choices"][0]["delta"]["content"] for f in frames[:-1]] == ["Hel", "lo"]
    assert frames[-1] == {}


def test_a_stream_that_fails_midway_ends_with_the_error_frame(fake_queen, make_config, run_worker):
    def script(url, req):
        yield {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}
        raise RuntimeError("out of memory")

    run_worker(make_config(fake_queen.url), engine=ScriptedEngine(script))
    fake_queen.hello()
    frames = fake_queen.job("/v1/chat/completions", {"model": "a/b", "stream": True})
    assert frames[1:] == [{"error": "out of memory", "error_type": "RuntimeError"}]
    # Nothing trails the error: the next frame belongs to the next job.
    frames = fake_queen.job("/v1/chat/completions", {"model": "a/b", "stream": True})
    assert frames[0]["choices"][0]["delta"]["content"] == "Hel"


def test_stopping_cuts_a_job_short_and_closes_with_going_away(fake_queen, make_config, run_worker):
    state = {}

    def script(url, req):
        while not state["worker"].stopping:
            yield {"choices": [{"index": 0, "delta": {"content": "."}}]}
            time.sleep(0.01)
        raise ShuttingDown("the worker is shutting down")

    state["worker"] = worker = run_worker(make_config(fake_queen.url), engine=ScriptedEngine(script))
    fake_queen.hello()
    fake_queen.send({"openai_url": "/v1/chat/completions", "openai_req": {"model": "a/b", "stream": True}})
    assert fake_queen.next_frame()["choices"]
    worker.stop()
    frame = fake_queen.next_frame()
    while "error" not in frame:
        frame = fake_queen.next_frame()
    assert frame == {"error": "the worker is shutting down", "error_type": "ShuttingDown"}
    assert fake_queen.close_codes.get(timeout=10) == 1001


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_process_exits_cleanly_on_a_signal(fake_queen, tmp_path, signum):
    env = {**os.environ, "WORKERBEE_QUEEN_URL": fake_queen.url, "WORKERBEE_PACKAGED_MODEL": "false", "XDG_CONFIG_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "workerbee"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        hello = fake_queen.hello(timeout=30)
        assert hello["pubkey"]
        assert (tmp_path / "workerbee" / "config.json").exists()
        proc.send_signal(signum)
        assert proc.wait(15) == 0
        assert fake_queen.close_codes.get(timeout=5) == 1001
    finally:
        proc.kill()
        proc.wait()
        if proc.returncode != 0:
            print(proc.stderr.read())
