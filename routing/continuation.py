"""Continuing a stream on another worker when its worker fails mid-answer.

A worker lost after its first token (disconnect, stall past the gap timeout,
error frame, garbage) leaves the caller with part of an answer. The answer goes
on elsewhere: the same request is sent to another worker with the text already
delivered, and what that worker streams is relayed as the rest of one stream
(routing/services.py `_relay`).

- Chat: the delivered text becomes a final assistant message, marked
  `"continue_final_message": true, "add_generation_prompt": false` (vLLM's names
  for it). A worker formats that with its chat template and no new generation
  prompt, and continues the message. The original worker would answer a new
  turn instead, so only workers that announce the feature "continue" get these
  jobs (workers/protocol.py KNOWN_FEATURES; features match like capabilities).
- Completions: the delivered text is appended to the prompt, which any worker
  continues the same way.

A delivered text that is still empty (the worker failed after the role chunk)
needs no continuation: the request is sent again unchanged, to any worker.

The decisions and the rewritten request only, no I/O: the relay is in services.py.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

from workers.services import Need

FEATURE = "continue"
CHAT_URL = "/v1/chat/completions"
COMPLETIONS_URL = "/v1/completions"
# OpenAI's (and the worker's) max_tokens of a completion that names none: the
# continuation must stop where the whole answer would have.
COMPLETIONS_MAX_TOKENS = 16


@dataclass(frozen=True)
class Delivered:
    """What the caller already has of the answer (choice 0, the only one continued)."""

    text: str
    tokens: int  # counted by Queenbee (one per chunk), for max_tokens


def continuable(*, openai_url: str, payload: dict[str, Any], choices: set[int], tool_calls: bool, finished: bool) -> bool:
    """Whether a stream of this request can be continued from what it delivered.

    One choice only (continuing `n` parallel texts would need as many jobs); not a
    stream of tool calls (a half-written JSON argument is not a message to
    continue); not a stream whose choice already finished (nothing is missing);
    not an answer under a grammar or with tools (the grammar would start over in
    the middle of the JSON the first worker began).
    """
    if finished or tool_calls or not choices <= {0} or constrained(payload):
        return False
    if payload.get("n") not in (None, 1):
        return False
    if openai_url == CHAT_URL:
        return isinstance(payload.get("messages"), list)
    if openai_url == COMPLETIONS_URL:
        prompt = payload.get("prompt")
        return isinstance(prompt, str) or isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str)
    return False


def constrained(payload: dict[str, Any]) -> bool:
    """Whether the answer is generated under a grammar (response_format, tools, grammar)."""
    format_ = payload.get("response_format")
    return bool(payload.get("tools") or payload.get("grammar")) or isinstance(format_, dict) and format_.get("type") not in (None, "text")


def limit_reached(*, openai_url: str, payload: dict[str, Any], delivered_tokens: int) -> bool:
    """Whether the delivered text used the caller's whole token limit: the answer
    is whole, its finish ("length") is all that is missing."""
    return any(n <= 0 for n in _remaining_tokens(_limits(openai_url, payload), delivered_tokens).values())


def continued_request(*, openai_url: str, payload: dict[str, Any], need: Need, delivered: Delivered) -> tuple[dict[str, Any], Need] | None:
    """The request and the need of the job that continues `delivered`; None when
    the delivered text already used the caller's whole token limit."""
    if not delivered.text:
        return payload, need
    remaining = _remaining_tokens(_limits(openai_url, payload), delivered.tokens)
    if any(n <= 0 for n in remaining.values()):
        return None
    payload = {**payload, **remaining}
    if openai_url == CHAT_URL:
        payload["messages"] = [*payload["messages"], {"role": "assistant", "content": delivered.text}]
        payload["continue_final_message"] = True
        payload["add_generation_prompt"] = False
        capabilities = tuple(dict.fromkeys((*need.capabilities, FEATURE)))
        gpu_filter = dict(payload.get("gpu_filter") or {})
        payload["gpu_filter"] = {**gpu_filter, "capabilities": list(capabilities)}
        need = dataclasses.replace(need, capabilities=capabilities)
    else:
        prompt = payload["prompt"]
        payload["prompt"] = (prompt if isinstance(prompt, str) else prompt[0]) + delivered.text
        payload["echo"] = False  # the caller already has the prompt, if it asked for it
    return payload, need


def _limits(openai_url: str, payload: dict[str, Any]) -> dict[str, Any]:
    return payload if openai_url == CHAT_URL else {**payload, "max_tokens": payload.get("max_tokens") or COMPLETIONS_MAX_TOKENS}


def _remaining_tokens(payload: dict[str, Any], delivered_tokens: int) -> dict[str, int]:
    """The caller's token limits less what was delivered, so that the whole answer
    stops where one worker's would have (and its usage stays within bounds)."""
    return {
        key: value - delivered_tokens
        for key in ("max_completion_tokens", "max_tokens")
        if isinstance(value := payload.get(key), int) and not isinstance(value, bool) and value > 0
    }
