"""Teacher-forced scoring of another worker's completion: the "verify" feature.

Queenbee checks a share of finished jobs by sending the prompt and the returned
completion to a different worker serving the same model. That worker evaluates
prompt + completion once, reads the model's raw next-token distribution at each
completion position (temperature 1, no penalties, softmax over the logits) and
reports, per completion token, how likely the model found it.

Wire format. A worker announces the feature with `"features": ["verify"]` in its
connect message (only such workers get these jobs). The job is an ordinary
envelope `{"openai_url": "/queenbee/verify", "openai_req": {...}}` with

    {"model": "hf-user/hf-repo:filter",       # as for any job
     "request_url": "/v1/chat/completions",   # or "/v1/completions"
     "request": {...},                        # the original request: messages or prompt, ...
     "completion": "text"}                    # choice 0 as the checked worker returned it

and its only reply frame is

    {"verification": {"prompt_tokens": int, "completion_tokens": int,
                      "tokens": [[logprob, rank, mass_before, top_logprob], ...],
                      "end": [logprob, rank, mass_before, top_logprob] | null,
                      "truncated": false, "chat_template": true}}

The prompt is tokenized exactly as the generation would (chat template and
tokenization of Engine.chat, or the prompt of Engine.completions, choice 0's for
a list); the completion with the model's tokenizer, without BOS or special
tokens. For completion token i: `logprob` is its log probability, `rank` the
number of tokens strictly more likely (0 = the most likely), `mass_before` their
total probability, `top_logprob` the log probability of the most likely token.
`end` scores ending the answer right after the completion: the most likely of
the tokens that end a generation at that position (the model's end-of-turn and
end-of-sequence tokens, and the first token of each stop sequence: the
request's `stop` and the chat prompt's own), so that Queenbee can tell an
answer cut short from a finished one; it is null when the completion was
truncated or filled the context. `chat_template` is false when the model has no
chat template and the chat prompt was this worker's plain transcript, which
another worker implementation may write differently.
Sampling fields of the request play no part. `completion_tokens` counts every
completion token, but only the first 4096 (fewer if the context is shorter) are
scored, and then `truncated` is true. Floats are rounded to 4 decimals. A bad
request or an unknown model gets the usual `{"error", "error_type"}` frame.

The scoring reuses the worker's resident llama.cpp context: a `logits_all=True`
instance would preallocate n_ctx × n_vocab floats (4 GiB for Gemma 3 at 4096
tokens) and load the model a second time. Instead the tokens are decoded with
llama.cpp's batch API, asking for logits only at the completion's positions, a
bounded number of rows per decode; afterwards the context is cleared so the next
generation evaluates its prompt afresh.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .generation import ShuttingDown, token_bytes

# Completion tokens scored at most; the rest is counted but not scored ("truncated").
MAX_SCORED_TOKENS = 4096
# Logits read per decode, in floats: 64 MiB of float32 whatever the vocabulary
# (64 rows for Gemma 3's 262k tokens, n_batch rows for a 32k vocabulary). llama.cpp
# keeps its output buffer at the largest size ever asked for, so this bounds it.
LOGIT_FLOATS_PER_DECODE = 2**24
# Floats are rounded to keep the reply frame small.
DECIMALS = 4
# A token the model gives no chance at all (a masked logit of -inf) still needs a JSON number.
LOGPROB_FLOOR = -1e4


@dataclass(frozen=True)
class Verification:
    prompt_tokens: int
    completion_tokens: int
    tokens: list[list[float]]  # [logprob, rank, mass_before, top_logprob] per scored token
    end: list[float] | None  # the same for ending right after the completion
    truncated: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "end": self.end,
            "truncated": self.truncated,
        }


def score_rows(logits: np.ndarray, targets: np.ndarray) -> list[list[float]]:
    """[logprob, rank, mass_before, top_logprob] of each target under its row of raw logits.

    rank counts the tokens strictly more likely than the target (0 = most likely);
    mass_before is their total probability.
    """
    rows = np.arange(len(targets))
    top = logits.max(axis=1)
    weights = np.exp(logits - top[:, None])  # float32 in [0, 1], the largest exactly 1
    log_z = np.log(weights.sum(axis=1, dtype=np.float64))
    chosen = logits[rows, targets]
    above = logits > chosen[:, None]
    rank = above.sum(axis=1)
    mass_before = np.where(above, weights, 0).sum(axis=1, dtype=np.float64) / np.exp(log_z)
    logprob = np.maximum(chosen.astype(np.float64) - top - log_z, LOGPROB_FLOOR)
    return [
        [round(float(lp), DECIMALS), int(r), round(float(m), DECIMALS), round(float(-z), DECIMALS)]
        for lp, r, m, z in zip(logprob, rank, mass_before, log_z)
    ]


def adds_space_prefix(llm: Any) -> bool:
    """Whether the tokenizer puts a space before the text it is given (SentencePiece's dummy prefix)."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    tokens = llm.tokenize(b"a", add_bos=False, special=False)
    return b"".join(token_bytes(vocab, t) for t in tokens) == b" a"


def completion_tokens(llm: Any, text: str) -> list[int]:
    """The completion as the model's tokens, without BOS or special tokens.

    A generated reply's first token carries its own leading space (" world"); a
    SentencePiece tokenizer with a dummy prefix would add a second one, so that
    space is left to the prefix instead. A text without a leading space still gets
    the prefix: its first token may then differ from the one the model sampled.
    """
    if text.startswith(" ") and adds_space_prefix(llm):
        text = text[1:]
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []


class _Batch:
    """A llama.cpp batch of one sequence, freed on exit."""

    def __init__(self, capacity: int):
        import llama_cpp

        self.batch = llama_cpp.llama_batch_init(capacity, 0, 1)

    def fill(self, tokens: Sequence[int], first_pos: int, outputs_from: int) -> None:
        b = self.batch
        b.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            b.token[i] = token
            b.pos[i] = first_pos + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = first_pos + i >= outputs_from

    def __enter__(self) -> "_Batch":
        return self

    def __exit__(self, *exc: object) -> None:
        import llama_cpp

        llama_cpp.llama_batch_free(self.batch)


def clear_context(llm: Any) -> None:
    """Forget every evaluated token, so the next generation decodes its whole prompt."""
    import llama_cpp

    memory = llama_cpp.llama_get_memory(llm.ctx)
    if memory is not None:
        llama_cpp.llama_memory_clear(memory, True)
    llm.reset()


def eog_tokens(llm: Any) -> list[int]:
    """The tokens that end a generation (end of sequence, end of turn), as llama.cpp knows them."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]


def score_end(row: np.ndarray, ends: Sequence[int]) -> list[float]:
    """The score of ending here: the most likely of the tokens that end a generation."""
    best = max(ends, key=lambda t: row[t])
    return score_rows(row[None, :], np.array([best]))[0]


def teacher_force(
    llm: Any, prompt: list[int], completion: list[int], *, ends: Sequence[int] = (), should_stop: Callable[[], bool] = lambda: False
) -> Verification:
    """Score `completion` as the continuation of `prompt` on the loaded model `llm`,
    and, given the tokens that end a generation (`ends`), how likely the model was to end after it."""
    import llama_cpp

    if not prompt:
        raise ValueError("the prompt has no tokens: nothing predicts the completion's first token")
    n_ctx = llm.n_ctx()
    if len(prompt) >= n_ctx:
        raise ValueError(f"Requested tokens ({len(prompt)}) exceed context window of {n_ctx}")
    # Generation never evaluates its last sampled token, so n_ctx - len(prompt) + 1 fit.
    scored = completion[: min(MAX_SCORED_TOKENS, n_ctx - len(prompt) + 1)]
    tokens = prompt + scored
    # Position i predicts tokens[i + 1]; the position after the last token predicts the end.
    wants_end = bool(ends) and len(scored) == len(completion) and len(tokens) <= n_ctx
    evaluated = len(tokens) if wants_end else len(tokens) - 1 if scored else 0
    first_out = len(prompt) - 1
    n_vocab = llm.n_vocab()
    n_batch = llm.n_batch
    rows_per_decode = max(1, min(n_batch, LOGIT_FLOATS_PER_DECODE // n_vocab))
    results: list[list[float]] = []
    end: list[float] | None = None
    clear_context(llm)
    try:
        with _Batch(n_batch) as batch:
            pos = 0
            while pos < evaluated:
                if should_stop():
                    raise ShuttingDown("the worker is shutting down")
                size = min(n_batch, evaluated - pos)
                if pos + size > first_out:
                    size = min(size, max(pos, first_out) - pos + rows_per_decode)
                batch.fill(tokens[pos : pos + size], pos, first_out)
                if llama_cpp.llama_decode(llm.ctx, batch.batch) != 0:
                    raise RuntimeError("llama_decode failed while scoring")
                outputs = pos + size - max(pos, first_out)
                if outputs > 0:
                    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(outputs * n_vocab,))
                    rows = logits.reshape(outputs, n_vocab)
                    first = pos + size - outputs  # the position of rows[0]
                    targets = np.array(tokens[first + 1 : first + 1 + outputs], dtype=np.int64)
                    results += score_rows(rows[: len(targets)], targets)
                    if len(targets) < outputs:
                        end = score_end(rows[-1], ends)
                pos += size
    finally:
        clear_context(llm)
    return Verification(
        prompt_tokens=len(prompt),
        completion_tokens=len(completion),
        tokens=results,
        end=end,
        truncated=len(scored) < len(completion),
    )
