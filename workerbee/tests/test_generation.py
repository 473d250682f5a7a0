"""Token generation on the tiny model, without a coordinator."""

import pytest

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from workerbee.generation import Generation, Sampling, ShuttingDown  # noqa: E402
from workerbee.tests.tiny_model import write_tiny_llama  # noqa: E402

pytestmark = pytest.mark.worker


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    path = write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")
    llm = llama_cpp.Llama(str(path), n_ctx=64, n_threads=1, verbose=False)  # llama.cpp may round it up
    yield llm
    llm.close()


def generate(llm, prompt="hello world", *, max_tokens=10, stop=(), should_stop=lambda: False):
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    return Generation(llm, tokens, max_tokens=max_tokens, stop=list(stop), sampling=Sampling(temperature=0), should_stop=should_stop)


def test_it_counts_every_sampled_token(llm):
    generation = generate(llm, max_tokens=7)
    text = "".join(generation)
    assert text and generation.completion_tokens == 7 and generation.finish_reason == "length"


def test_it_never_streams_the_start_of_a_stop_sequence(llm):
    text = "".join(generate(llm, max_tokens=12))
    stop = text[5:8]
    generation = generate(llm, max_tokens=12, stop=[stop])
    pieces = list(generation)
    assert "".join(pieces) == text[: text.index(stop)]
    assert generation.finish_reason == "stop"


def test_it_stops_between_tokens_when_the_worker_shuts_down(llm):
    with pytest.raises(ShuttingDown):
        list(generate(llm, should_stop=lambda: True))
    assert "".join(generate(llm, max_tokens=3))  # the model is still usable afterwards


def test_a_prompt_longer_than_the_context_is_refused(llm):
    with pytest.raises(ValueError, match=f"exceed context window of {llm.n_ctx()}"):
        generate(llm, "hello " * llm.n_ctx())


def test_max_tokens_is_capped_by_the_context(llm):
    generation = generate(llm, max_tokens=None)
    list(generation)
    assert generation.completion_tokens + len(generation.prompt_tokens) == llm.n_ctx()


def test_long_token_pieces_are_not_lost(llm):
    from workerbee.generation import token_bytes
    from workerbee.tests.tiny_model import LONG_PIECE, vocabulary

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    long_token = vocabulary()[0].index(LONG_PIECE)
    assert token_bytes(vocab, long_token) == b" " + b"=" * 40
    hello = llm.tokenize(b"hello", add_bos=False, special=False)
    assert b"".join(token_bytes(vocab, t) for t in hello) == b" hello"
