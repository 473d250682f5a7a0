"""Replays: a long sampled answer delivered twice, for different prompts, was sampled once.

The verifier's statistics ask "could this model have sampled this text", so an
answer the same model wrote for another prompt passes them (bench/RESULTS.md).
But sampling does not repeat itself: at a temperature of TRUST_REPLAY_MIN_TEMPERATURE
or more, without a seed, two samples of TRUST_REPLAY_MIN_CHARS characters for
unrelated prompts are never the same text. So Queenbee remembers a fingerprint of
every such answer (a hash of the text, a sketch of its prompt's words, the job)
for TRUST_REPLAY_WINDOW, in the cache every process shares, and a worker that
delivers a remembered answer for an unrelated prompt is caught replaying,
whoever wrote the answer first.

Not fingerprinted, because an honest model may well write the same long text
twice there: requests without an explicit temperature (the original worker's
llama-cpp-python then samples chat at 0.2, nearly greedy) or below the minimum,
seeded requests, near-greedy sampling (top_k 1, a tiny top_p, a large min_p),
constrained output (tools, response_format, logit_bias), and answers that copy
their prompt (a text echoed, reformatted or corrected reads the same whatever
asked for it). And two prompts whose words mostly agree (a template filled in
twice, one question reworded) may draw the same peaked answer: a repeat counts
only when the prompts' sketches share less than PROMPTS_ALIKE of their words and
word pairs. The sketch is a bottom-k MinHash over the conversation without its
system messages (an application's fixed system prompt would make all its
requests alike, and hide a replay among them), punctuation and case ignored:
hashes of words, not the words, so no prompt is kept. bench/replays.py measures
the thresholds on Gemma 270M.
"""

import hashlib
import re
from typing import Any

from django.conf import settings
from django.core.cache import caches

from .usage import prompt_text, text_of

# Characters of the answer's start that, found in the prompt, make it a copy.
COPIED_PREFIX = 64
# A prompt's sketch: the SKETCH smallest hashes of its words and word pairs.
SKETCH = 32
# Prompts whose sketches agree this much (estimated Jaccard) are alike. Reworded
# questions scored 0.24-0.89 in bench/replays.py, unrelated ones at most 0.12.
PROMPTS_ALIKE = 0.2


def is_sampled(request: dict[str, Any]) -> bool:
    """Whether two honest answers to `request` differ as samples do."""
    temperature = request.get("temperature")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
        return False
    if temperature < settings.TRUST_REPLAY_MIN_TEMPERATURE:
        return False
    if request.get("seed") is not None:
        return False
    if any(request.get(k) for k in ("tools", "functions", "response_format", "logit_bias", "grammar")):
        return False
    top_k, top_p, min_p = request.get("top_k"), request.get("top_p"), request.get("min_p")
    if isinstance(top_k, int) and top_k == 1:
        return False
    if isinstance(top_p, (int, float)) and top_p < 0.1:
        return False
    return not (isinstance(min_p, (int, float)) and min_p > 0.9)


def fingerprint(*, request: dict[str, Any], completion: str) -> tuple[str, list[int]] | None:
    """(the answer's hash, its prompt's sketch), or None when the answer is not
    one whose repetition would mean anything."""
    if settings.TRUST_REPLAY_MIN_CHARS <= 0 or len(completion.strip()) < settings.TRUST_REPLAY_MIN_CHARS:
        return None
    if not is_sampled(request):
        return None
    text, prompt = " ".join(completion.split()), " ".join(prompt_text(request).split())
    if text[:COPIED_PREFIX] in prompt:
        return None
    return _digest(text), sketch(asked_text(request))


def asked_text(request: dict[str, Any]) -> str:
    """What the sketch is of: the conversation but its system messages, or the prompt."""
    if isinstance(request.get("messages"), list):
        return " ".join(text_of(m.get("content")) for m in request["messages"] if isinstance(m, dict) and m.get("role") not in ("system", "developer"))
    return prompt_text(request)


def sketch(text: str) -> list[int]:
    words = re.findall(r"\w+", text.lower())
    pieces = {*words, *(f"{a} {b}" for a, b in zip(words, words[1:]))}
    return sorted(int(_digest(p)[:15], 16) for p in pieces)[:SKETCH]


def alike(a: list[int], b: list[int]) -> float:
    """The share of words two prompts have in common, estimated from their sketches."""
    union = sorted({*a, *b})[:SKETCH]
    if not union:
        return 1.0
    both = set(a) & set(b)
    return sum(1 for h in union if h in both) / len(union)


def replayed_job(*, job_id: str, request: dict[str, Any], completion: str) -> str:
    """The job whose answer, for an unrelated prompt, job `job_id` delivers again,
    or "" (remembering this answer when it is new)."""
    marks = fingerprint(request=request, completion=completion)
    if marks is None:
        return ""
    answer, prompt = marks
    cache, key = caches["replays"], f"trust:answer:{answer}"
    if cache.add(key, {"job": job_id, "prompt": prompt}, timeout=settings.TRUST_REPLAY_WINDOW):
        return ""
    first = cache.get(key)
    if not isinstance(first, dict) or first.get("job") == job_id or not isinstance(first.get("prompt"), list):
        return ""
    return str(first["job"]) if alike(first["prompt"], prompt) < PROMPTS_ALIKE else ""


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
