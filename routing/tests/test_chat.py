"""Chat completions through a live server and real websocket workers, with the official SDK."""


MODEL = "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"


def only(worker) -> dict:
    return {"gpu_filter": {"pubkey": worker.pubkey}}


def test_it_answers_a_chat_request_from_a_worker(start_worker, client, db_access):
    worker = start_worker()
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body=only(worker)
    )
    assert reply.choices[0].message.content == "Hello from the worker"
    assert reply.model == MODEL
    assert reply.usage.prompt_tokens == 7 and reply.usage.completion_tokens == 4
    sent = worker.jobs[0]
    assert sent["openai_url"] == "/v1/chat/completions"
    assert sent["openai_req"]["messages"] == [{"role": "user", "content": "hi"}]


def test_it_streams_chunks_and_ends_with_done(start_worker, client):
    worker = start_worker()
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body=only(worker),
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the worker"
    assert chunks[-1].usage.completion_tokens == 4
    assert len({c.id for c in chunks}) == 1
