"""Real llama.cpp inference through Queenbee, with the official SDK, on a tiny model the test writes."""

import pytest

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from workerbee.tests.live import live_worker, recorded_job  # noqa: E402
from workerbee.tests.tiny_model import N_EMBD, write_tiny_llama  # noqa: E402

pytestmark = pytest.mark.worker

REPO = "workerbee-test/tiny-llama-2m-GGUF"
MODEL = f"{REPO}:f32"  # "2m" and "f32" make Queenbee size it at 0.008 GB


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_llama(root / "models" / REPO / "tiny-llama-2m-f32.gguf")
    return root


@pytest.fixture(scope="module")
def worker(queen, django_db_blocker, model_root):
    with live_worker(queen, django_db_blocker, model_root, "--ctx-size", "256", "--packaged-model", "false") as worker:
        yield worker


@pytest.fixture(scope="module")
def vocab(model_root):
    """The model's tokenizer alone, to count tokens independently of the worker."""
    llm = llama_cpp.Llama(str(model_root / "models" / REPO / "tiny-llama-2m-f32.gguf"), vocab_only=True, verbose=False)
    yield lambda text: len(llm.tokenize(text.encode(), add_bos=True, special=True))
    llm.close()


def only(worker) -> dict:
    return {"gpu_filter": {"pubkey": worker.pubkey}}


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello queen"}]
# The fallback transcript for models without a chat template.
CHAT_PROMPT = "Be brief.\n\nUser: hello queen\nAssistant:"


def test_it_advertises_the_models_it_has(worker):
    assert worker.advertised_models() == [MODEL]


def test_it_answers_chat_with_real_token_counts(worker, client, vocab, db_access):
    reply = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=6, temperature=0, extra_body=only(worker))
    assert reply.model == MODEL
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "length"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (vocab(CHAT_PROMPT), 6)
    job = recorded_job(reply.id)
    assert (job.prompt_tokens, job.completion_tokens, job.usage_estimated) == (vocab(CHAT_PROMPT), 6, False)


def test_it_streams_chat_token_by_token_with_usage(worker, client, vocab, db_access):
    whole = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, temperature=0, extra_body=only(worker))
    stream = client.chat.completions.create(
        model=MODEL, messages=CHAT, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}, extra_body=only(worker)
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == whole.choices[0].message.content  # greedy decoding is deterministic
    assert 1 < len(pieces) <= 8
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (vocab(CHAT_PROMPT), 8)
    assert recorded_job(chunks[0].id).usage_estimated is False


def test_it_completes_text_streamed_and_not(worker, client, vocab):
    prompt = "once upon a time the queen"
    whole = client.completions.create(model=MODEL, prompt=prompt, max_tokens=5, temperature=0, extra_body=only(worker))
    assert whole.object == "text_completion"
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (vocab(prompt), 5)
    stream = client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=5, temperature=0, stream=True, stream_options={"include_usage": True}, extra_body=only(worker)
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == 5


def test_it_stops_at_a_stop_sequence(worker, client):
    whole = client.completions.create(model=MODEL, prompt="hello world", max_tokens=12, temperature=0, extra_body=only(worker))
    text = whole.choices[0].text
    stop = text[4:6]
    cut = client.completions.create(model=MODEL, prompt="hello world", max_tokens=12, temperature=0, stop=[stop], extra_body=only(worker))
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_it_embeds_each_input_as_one_vector(worker, client, vocab):
    inputs = ["hello world", "the worker bee is a bee"]
    reply = client.embeddings.create(model=MODEL, input=inputs, extra_body=only(worker))
    assert [d.index for d in reply.data] == [0, 1]
    assert all(len(d.embedding) == N_EMBD for d in reply.data)
    assert reply.data[0].embedding != reply.data[1].embedding
    assert reply.usage.prompt_tokens == sum(vocab(text) for text in inputs)
    single = client.embeddings.create(model=MODEL, input="hello world", extra_body=only(worker))
    assert single.data[0].embedding == pytest.approx(reply.data[0].embedding, abs=1e-4)


def test_an_unknown_model_is_a_clear_client_error(worker, client):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=f"{REPO}:Q4_K_M", prompt="hi", extra_body=only(worker))
    assert "Can't find gguf, ggml or config.json" in caught.value.message
