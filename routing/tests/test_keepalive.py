"""Keep-alive comments: a stream whose first token comes after a proxy's read timeout survives it."""

import asyncio
import json
import threading

import httpx
import openai
import pytest

from testkit.fake_worker import Delay, stream_chunks
from testkit.server import QueenProcess

from .test_continuation import MODEL, HI

KEEPALIVE_INTERVAL = 0.3
# Like nginx's proxy_read_timeout (60 s by default), scaled down: the proxy
# closes a connection whose upstream sent nothing for this long.
PROXY_READ_TIMEOUT = 1.0


class IdleTimeoutProxy:
    """A TCP proxy that drops a connection when the server side is silent for `read_timeout` seconds."""

    def __init__(self, port: int, *, read_timeout: float):
        self.target, self.read_timeout = port, read_timeout
        self.cut = 0  # connections dropped for idleness
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(5)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        started.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def upstream():
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def downstream():
            try:
                while data := await asyncio.wait_for(up_reader.read(65536), self.read_timeout):
                    writer.write(data)
                    await writer.drain()
            except TimeoutError:
                self.cut += 1
            writer.close()
            up_writer.close()

        sending = asyncio.ensure_future(upstream())
        await downstream()
        sending.cancel()


@pytest.fixture(scope="module")
def keepalive_queen(server_env):
    process = QueenProcess({**server_env, "STREAM_KEEPALIVE_INTERVAL": str(KEEPALIVE_INTERVAL)}, name="keepalive-queen").start()
    yield process
    process.stop()


def slow(first: float, gap: float = 0.0):
    def script(job):
        chunks = stream_chunks(["slow", " and", " steady"])
        yield Delay(first)
        yield from chunks[:2]
        yield Delay(gap)
        yield from chunks[2:]
        yield {}

    return script


def port_of(process: QueenProcess) -> int:
    return int(process.url.rsplit(":", 1)[1])


def test_a_stream_whose_first_token_comes_after_the_proxys_read_timeout_survives(keepalive_queen, start_worker):
    worker = start_worker(keepalive_queen.ws_url, script=slow(first=3 * PROXY_READ_TIMEOUT))
    proxy = IdleTimeoutProxy(port_of(keepalive_queen), read_timeout=PROXY_READ_TIMEOUT)
    client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="test-bypass-token", max_retries=0, timeout=30)
    stream = client.chat.completions.create(model=MODEL, messages=HI, stream=True, extra_body={"gpu_filter": {"pubkey": worker.pubkey}})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "slow and steady"
    assert proxy.cut == 0


def test_long_gaps_between_tokens_send_keep_alive_comments(keepalive_queen, start_worker):
    worker = start_worker(keepalive_queen.ws_url, script=slow(first=0, gap=3 * PROXY_READ_TIMEOUT))
    proxy = IdleTimeoutProxy(port_of(keepalive_queen), read_timeout=PROXY_READ_TIMEOUT)
    body = {"model": MODEL, "messages": HI, "stream": True, "gpu_filter": {"pubkey": worker.pubkey}}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer test-bypass-token"}, timeout=30) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    comments = [i for i, line in enumerate(lines) if line.startswith(":")]
    assert comments and all(lines[i] == ": keep-alive" for i in comments)
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in data) == "slow and steady"
    assert proxy.cut == 0


def test_without_keep_alives_the_proxy_cuts_the_same_stream(queen, start_worker):
    """The control: the session's server sends keep-alives every 15 s, far past the proxy's timeout."""
    worker = start_worker(script=slow(first=3 * PROXY_READ_TIMEOUT))
    proxy = IdleTimeoutProxy(port_of(queen), read_timeout=PROXY_READ_TIMEOUT)
    client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="test-bypass-token", max_retries=0, timeout=30)
    with pytest.raises(openai.APIConnectionError):
        list(client.chat.completions.create(model=MODEL, messages=HI, stream=True, extra_body={"gpu_filter": {"pubkey": worker.pubkey}}))
    assert proxy.cut == 1


def test_an_error_after_keep_alives_began_comes_as_an_error_event(keepalive_queen, start_worker):
    worker = start_worker(keepalive_queen.ws_url, script=lambda job: iter([Delay(1), {"error": "CUDA out of memory"}]))
    body = {"model": MODEL, "messages": HI, "stream": True, "gpu_filter": {"pubkey": worker.pubkey}}
    with httpx.stream("POST", f"{keepalive_queen.url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer test-bypass-token"}, timeout=30) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert lines[0] == ": keep-alive"
    assert json.loads(lines[-1][6:])["error"]["message"].startswith("The worker failed")


def test_an_error_before_the_first_keep_alive_keeps_its_status_code(keepalive_queen, start_worker):
    worker = start_worker(keepalive_queen.ws_url, script=lambda job: iter([{"error": "CUDA out of memory"}]))
    body = {"model": MODEL, "messages": HI, "stream": True, "gpu_filter": {"pubkey": worker.pubkey}}
    r = httpx.post(f"{keepalive_queen.url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer test-bypass-token"}, timeout=30)
    assert r.status_code == 502 and r.json()["error"]["type"]
