"""A worker that sends faster than its consumer keeps up is slowed down, not dropped."""

import openai

from conftest import BYPASS, connection_count, wait_for
from testkit.fake_worker import FakeWorker, stream_chunks
from testkit.server import QueenProcess

MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"


def test_a_fast_stream_over_the_backlog_arrives_whole(server_env, db_access):
    process = QueenProcess({**server_env, "WORKER_MAX_BACKLOG": "20", "WORKER_FRAME_RATE": "100000", "WORKER_FRAME_BURST": "100000"}, name="backpressure").start()
    tokens = [f"t{i} " for i in range(3000)]
    worker = FakeWorker(process.ws_url, script=lambda job: iter([*stream_chunks(tokens), {}])).start()
    try:
        wait_for(lambda: connection_count(worker.identity) == 1, what="registration")
        client = openai.OpenAI(base_url=f"{process.url}/v1", api_key=BYPASS, max_retries=0, timeout=60)
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go"}], stream=True, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "".join(tokens)
        assert worker.close_code is None and connection_count(worker.identity) == 1
    finally:
        worker.stop()
        process.stop()
