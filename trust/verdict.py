"""Whether a verifier's teacher-forced scores refute a completion. Pure: no Django.

The verifier (another worker serving the same model) scores the returned text
token by token with the real model and reports, for each token, its raw
log-probability, its rank, the probability mass of the tokens ranked above it
and the log-probability of the most likely token (workerbee/verify.py).

A token is *implausible* when the claimed model would not have sampled it under
the request's own settings, with slack for what differs between machines
(numerics, a repetition penalty, how a text re-tokenizes):
- greedy (temperature <= 0): more than GREEDY_GAP nats below the best token;
- top_k: a rank of at least SLACK_K × top_k;
- min_p: a probability below min_p × the best token's / MIN_P_SLACK;
- top_p: more than top_p + TOP_P_SLACK of the mass ranked above it.
Workers sample with llama.cpp's chain (top_k, top_p, min_p on the raw
distribution, then temperature), so the support does not depend on the
temperature. Unset values take the defaults that both the original worker
(llama-cpp-python) and ours apply: top_k 40, min_p 0.05; top_p unset is 1.
A repeat, presence or frequency penalty moves greedy choices off the raw best
token (repeat_penalty 1.1 put honest greedy tokens up to 2.3 nats below it), so
penalized greedy answers are judged by the top_k and min_p support instead;
penalties beyond MAX_PENALTY are counted, not judged.

A completion fails when more than MAX_IMPLAUSIBLE_SHARE of its tokens are
implausible (at least MIN_IMPLAUSIBLE of them, so one odd token never fails an
answer), or when its tokens sit on average more than MAX_MEAN_GAP nats below
the best token (measured on Gemma 270M over 360 honest jobs: samples at
temperature 1 with top_k 0 and min_p 0, where the support test is loosest,
reached 3.58 nats; random words 7.0 and more), or when it claims `finish_reason: stop` where
the model would not have ended (the end-of-turn token implausible after it).
The thresholds and how they were chosen: bench/RESULTS.md, "Trust".
"""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

GREEDY_GAP = 1.5
SLACK_K = 2
MIN_P_SLACK = 4.0
TOP_P_SLACK = 0.03
MAX_IMPLAUSIBLE_SHARE = 0.2
MIN_IMPLAUSIBLE = 2
MAX_MEAN_GAP = 6.0
# Beyond these, a penalty can push any token out of the raw distribution's support.
MAX_PENALTY = {"repeat_penalty": 1.5, "presence_penalty": 1.0, "frequency_penalty": 1.0}
DEFAULT_TOP_K = 40
DEFAULT_MIN_P = 0.05


def _number(request: dict[str, Any], key: str, default: float) -> float:
    value = request.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _penalties(request: dict[str, Any]) -> dict[str, float]:
    """How far each penalty is from having no effect (repeat 1, presence and frequency 0)."""
    return {
        "repeat_penalty": abs(_number(request, "repeat_penalty", 1.0) - 1.0) + 1.0,
        "presence_penalty": abs(_number(request, "presence_penalty", 0.0)),
        "frequency_penalty": abs(_number(request, "frequency_penalty", 0.0)),
    }


@dataclass(frozen=True)
class Sampling:
    greedy: bool
    top_k: int
    top_p: float
    min_p: float

    @classmethod
    def of(cls, request: dict[str, Any]) -> "Sampling":
        penalized = _penalties(request) != {"repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
        return cls(
            greedy=_number(request, "temperature", 1.0) <= 0 and not penalized,
            top_k=int(_number(request, "top_k", DEFAULT_TOP_K)),
            top_p=_number(request, "top_p", 1.0),
            min_p=_number(request, "min_p", DEFAULT_MIN_P),
        )


def judged(request: dict[str, Any]) -> bool:
    """Whether the sampling rules apply to this request's answer."""
    if request.get("mirostat_mode"):
        return False
    if request.get("tools"):
        return False
    if any(value > MAX_PENALTY[key] for key, value in _penalties(request).items()):
        return False
    format_ = request.get("response_format")
    if isinstance(format_, dict) and format_.get("type") not in (None, "text"):
        return False
    return not request.get("logit_bias") and not request.get("grammar")


def implausible(token: list[float], s: Sampling) -> bool:
    logprob, rank, mass_before, top_logprob = token
    if s.greedy:
        return top_logprob - logprob > GREEDY_GAP
    if s.top_k > 0 and rank >= SLACK_K * s.top_k:
        return True
    if s.min_p > 0 and logprob < top_logprob + math.log(s.min_p / MIN_P_SLACK):
        return True
    return s.top_p < 1 and mass_before > s.top_p + TOP_P_SLACK


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    tokens: int
    implausible: int
    mean_gap: float
    judged: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def share(self) -> float:
        return self.implausible / self.tokens if self.tokens else 0.0


def decide(
    *, request: dict[str, Any], tokens: list[list[float]], end: list[float] | None, finish_reason: str, same_prompt: bool = True
) -> Verdict:
    """Judge one completion from its scored tokens (and the end-of-turn token after it).

    `same_prompt` False: the verifier may have written the chat prompt otherwise
    than the worker did (a model without a chat template), so the greedy rule,
    which needs the very same prompt, gives way to the support rules and the
    end check is left out."""
    if not judged(request):
        return Verdict(True, "constrained sampling: counted, not judged", len(tokens), 0, 0.0, judged=False)
    s = Sampling.of(request)
    if not same_prompt:
        s, end = dataclasses.replace(s, greedy=False), None
    bad = sum(implausible(t, s) for t in tokens)
    mean_gap = sum(t[3] - t[0] for t in tokens) / len(tokens) if tokens else 0.0
    if bad >= MIN_IMPLAUSIBLE and bad > MAX_IMPLAUSIBLE_SHARE * len(tokens):
        return Verdict(False, f"{bad} of {len(tokens)} tokens are not what the model would sample", len(tokens), bad, mean_gap)
    if len(tokens) >= MIN_IMPLAUSIBLE and mean_gap > MAX_MEAN_GAP:
        return Verdict(False, f"tokens are {mean_gap:.1f} nats below the model's choice on average", len(tokens), bad, mean_gap)
    stops = request.get("stop")
    if end is not None and finish_reason == "stop" and not stops and implausible(end, s):
        return Verdict(False, "the answer claims to be finished where the model would go on", len(tokens), bad, mean_gap)
    return Verdict(True, "", len(tokens), bad, mean_gap)
