"""Token generation on a loaded llama.cpp model, one token at a time.

llama-cpp-python's `create_completion` streams text but reports no usage when
streaming, and may merge several tokens into one chunk, so its chunks cannot be
counted. This loop drives `Llama.generate` itself so that both the streamed and
the whole reply carry the exact number of tokens sampled, and so that a worker
shutting down can stop between two tokens. It handles what create_completion
would: end-of-generation tokens, stop sequences (never streaming text that may
turn out to be one), UTF-8 split across tokens, and the context window.
"""

import codecs
import ctypes
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# OpenAI's sampling defaults where the request says nothing; llama.cpp's otherwise.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0


class ShuttingDown(Exception):
    """The worker is stopping; the job was cut short."""


@dataclass
class Sampling:
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    mirostat_mode: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_request(cls, req: dict[str, Any]) -> "Sampling":
        values = {}
        for key in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "mirostat_mode", "mirostat_tau", "mirostat_eta", "seed"):
            if req.get(key) is not None:
                values[key] = req[key]
        bias = req.get("logit_bias") or {}
        values["logit_bias"] = {int(token): float(value) for token, value in bias.items()}
        return cls(**values)


def token_bytes(vocab: Any, token: int) -> bytes:
    """A token's text. llama-cpp-python's detokenize uses a 32-byte buffer and silently
    returns nothing for longer pieces (Gemma 3 has hundreds), so ask with room to spare."""
    import llama_cpp

    size = 256
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, False)
        if n >= 0:
            return buffer.raw[:n]
        size = -n  # too small: llama.cpp says how much it needs


def stop_list(stop: Any) -> list[str]:
    if not stop:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if s]


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token's log-probability under the model, with the most likely alternatives."""

    text: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...]


def token_logprob(llm: Any, vocab: Any, token: int, top: int) -> TokenLogprob:
    """From the logits the token was sampled from: still the context's last row
    while `Llama.generate` yields it (it evaluates the token on the next step).
    The raw distribution, as OpenAI reports it: before temperature, penalties and grammar."""
    import llama_cpp

    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,)).astype(np.float64)
    logits -= logits.max()
    logprobs = logits - np.log(np.exp(logits).sum())
    best = np.argpartition(-logprobs, top)[:top] if top else np.array([], dtype=int)
    best = best[np.argsort(-logprobs[best])]
    return TokenLogprob(
        text=token_bytes(vocab, token),
        logprob=float(logprobs[token]),
        top=tuple((token_bytes(vocab, int(t)), float(logprobs[t])) for t in best),
    )


class Generation:
    """Iterate to get text pieces; afterwards `completion_tokens` and `finish_reason` are final.

    With `grammar` (a llama_cpp.LlamaGrammar) only text the grammar accepts is
    sampled. With `logprobs` (how many alternatives, 0 for none) every sampled
    token's TokenLogprob is kept in order; `take_logprobs` hands over those not
    taken yet, so a stream sends each with the piece it belongs to.
    """

    def __init__(self, llm: Any, prompt_tokens: list[int], *, max_tokens: int | None, stop: list[str], sampling: Sampling, should_stop: Callable[[], bool], grammar: Any = None, logprobs: int | None = None):
        room = llm.n_ctx() - len(prompt_tokens)
        if room <= 0:
            raise ValueError(f"Requested tokens ({len(prompt_tokens)}) exceed context window of {llm.n_ctx()}")
        self.llm = llm
        self.prompt_tokens = prompt_tokens
        self.max_tokens = min(max_tokens, room) if max_tokens else room
        self.stop = stop
        self.sampling = sampling
        self.should_stop = should_stop
        self.completion_tokens = 0
        self.finish_reason = "length"
        self.grammar = grammar
        self.logprobs = logprobs
        self.token_logprobs: list[TokenLogprob] = []
        self._taken = 0

    def take_logprobs(self) -> list[TokenLogprob]:
        new = self.token_logprobs[self._taken :]
        self._taken = len(self.token_logprobs)
        return new

    def _logits_processor(self):
        if not self.sampling.logit_bias:
            return None
        bias = self.sampling.logit_bias

        def apply(_input_ids, scores):
            for token, value in bias.items():
                if 0 <= token < len(scores):
                    scores[token] += value
            return scores

        return [apply]

    def _held_back(self, text: str) -> int:
        """How many trailing characters of `text` could begin a stop sequence."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), longest, -1):
                if text.endswith(s[:n]):
                    longest = n
                    break
        return longest

    def __iter__(self) -> Iterator[str]:
        import llama_cpp

        llm, s = self.llm, self.sampling
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        llm.set_seed(s.seed if s.seed is not None else random.randrange(2**31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        tokens = llm.generate(
            self.prompt_tokens,
            temp=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            mirostat_mode=s.mirostat_mode,
            mirostat_tau=s.mirostat_tau,
            mirostat_eta=s.mirostat_eta,
            logits_processor=self._logits_processor(),
            grammar=self.grammar,
        )
        try:
            for token in tokens:
                if self.should_stop():
                    raise ShuttingDown("the worker is shutting down")
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    self.finish_reason = "stop"
                    break
                self.completion_tokens += 1
                if self.logprobs is not None:
                    self.token_logprobs.append(token_logprob(llm, vocab, token, self.logprobs))
                pending += decoder.decode(token_bytes(vocab, token))
                hits = [pending.index(s) for s in self.stop if s in pending]
                if hits:
                    pending = pending[: min(hits)]
                    self.finish_reason = "stop"
                    break
                keep = self._held_back(pending)
                if len(pending) > keep:
                    yield pending[: len(pending) - keep]
                    pending = pending[len(pending) - keep :]
                if self.completion_tokens >= self.max_tokens:
                    break
        finally:
            tokens.close()
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending
