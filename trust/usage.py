"""What a worker may bill: usage bounded by what it sent and what was asked. Pure: no Django.

A token is at least one byte of text (a piece of a multi-byte character is
still a byte), so a completion has at most as many tokens as its UTF-8 bytes,
plus a few special tokens per choice; and never more than `max_tokens` (or
`max_completion_tokens`) per choice when the caller set it. A prompt has at
most as many tokens as the bytes of the request's JSON text, plus what a chat
template adds per message; an image costs a bounded number of tokens more.
"""

import json
from dataclasses import dataclass
from typing import Any

# Characters per token when Queenbee counts itself (OpenAI's rule of thumb).
CHARS_PER_TOKEN = 4
SPECIAL_TOKENS_PER_CHOICE = 8
TEMPLATE_TOKENS = 64
TEMPLATE_TOKENS_PER_MESSAGE = 16
# No tokenizer in use averages more bytes per token than this over a text
# (Gemma's longest pieces are runs of ~31 spaces; prose is ~4 bytes a token).
MAX_BYTES_PER_TOKEN = 32
# Vision models spend up to a few thousand tokens per image (llava's 576, Gemma 3's 256, tiles more).
TOKENS_PER_IMAGE = 4096


@dataclass(frozen=True)
class Counted:
    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False  # Queenbee counted: the worker said nothing
    corrected: bool = False  # the worker's report was out of bounds and replaced


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def prompt_text(request: dict[str, Any]) -> str:
    if "messages" in request:
        return "".join(text_of(m.get("content")) for m in request["messages"] if isinstance(m, dict))
    prompt = request.get("prompt") or request.get("input") or ""
    return prompt if isinstance(prompt, str) else "".join(p for p in prompt if isinstance(p, str))


def estimate_prompt_tokens(request: dict[str, Any]) -> int:
    return max(1, len(prompt_text(request)) // CHARS_PER_TOKEN)


def estimate_completion_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN


def _images(request: dict[str, Any]) -> int:
    return sum(
        1
        for m in request.get("messages") or ()
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for part in m["content"]
        if isinstance(part, dict) and part.get("type") in ("image_url", "input_image", "image")
    )


def max_prompt_tokens(request: dict[str, Any]) -> int:
    asked = {k: request[k] for k in ("messages", "prompt", "input", "tools", "functions") if k in request}
    messages = request.get("messages")
    per_message = TEMPLATE_TOKENS_PER_MESSAGE * (len(messages) if isinstance(messages, list) else 1)
    return len(json.dumps(asked, ensure_ascii=False).encode()) + TEMPLATE_TOKENS + per_message + TOKENS_PER_IMAGE * _images(request)


def max_completion_tokens(request: dict[str, Any], *, text: str, choices: int = 1) -> int:
    by_text = len(text.encode()) + SPECIAL_TOKENS_PER_CHOICE * max(1, choices)
    asked = request.get("max_completion_tokens") or request.get("max_tokens")
    if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        return min(by_text, asked * max(1, choices))
    return by_text


def bounded(
    *, reported: tuple[int, int] | None, request: dict[str, Any], text: str, choices: int = 1, counted: int | None = None
) -> Counted:
    """The usage to bill: the worker's report when it is within bounds, else Queenbee's own count
    (`counted` completion tokens when the caller knows better than characters, e.g. stream chunks)."""
    limit = max_completion_tokens(request, text=text, choices=choices)
    own_completion = estimate_completion_tokens(text) if counted is None else counted
    own = Counted(estimate_prompt_tokens(request), min(own_completion, limit))
    if reported is None:
        return Counted(own.prompt_tokens, own.completion_tokens, estimated=True)
    prompt, completion = reported
    if prompt > max_prompt_tokens(request) or completion > max_completion_tokens(request, text=text, choices=choices):
        return Counted(own.prompt_tokens, own.completion_tokens, estimated=True, corrected=True)
    return Counted(prompt, completion)


def scored(*, request: dict[str, Any], completion: str, prompt_tokens: int, completion_tokens: int) -> tuple[int, int]:
    """The prompt and completion tokens a verifier is paid for scoring: its own counts, within
    the bounds a worker's usage is held to (a verifier is a worker too, and its word is not money)."""
    return min(prompt_tokens, max_prompt_tokens(request)), min(completion_tokens, max_completion_tokens(request, text=completion))


def verifier_counts_doubt(
    *, request: dict[str, Any], completion: str, prompt_tokens: int, completion_tokens: int, scored_tokens: int, truncated: bool
) -> str:
    """Why a verifier's token counts cannot be billed, or "" when they can.

    A passed verification bills the verifier's counts (it tokenized the text with
    the real model), but a verifier is a worker too: its counts must agree with
    the tokens it scored (one score per completion token, all of them unless it
    says it truncated), and lie within what the texts can hold: at most the
    bounds a worker's usage is held to, at least a token per MAX_BYTES_PER_TOKEN
    bytes. Counts that fail are recorded but not billed: the job keeps its own."""
    if completion_tokens < scored_tokens or (completion_tokens != scored_tokens and not truncated):
        return f"it counted {completion_tokens} completion tokens but scored {scored_tokens}"
    completion_bytes, prompt_bytes = len(completion.encode()), len(prompt_text(request).encode())
    if not completion_bytes // MAX_BYTES_PER_TOKEN <= completion_tokens <= max_completion_tokens(request, text=completion):
        return f"{completion_tokens} completion tokens cannot spell {completion_bytes} bytes"
    if not prompt_bytes // MAX_BYTES_PER_TOKEN <= prompt_tokens <= max_prompt_tokens(request):
        return f"{prompt_tokens} prompt tokens cannot spell a prompt of {prompt_bytes} bytes"
    return ""
