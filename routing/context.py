"""How many tokens of context a chat or text completion needs, counted before any worker sees it.

Pure: no Django. Workers may announce their context window (the connect
message's `context_length`, workers/protocol.py); a request goes only to a
worker whose window holds its prompt (`Need.context_tokens`, matched by
`Need.fits`), and when none does the caller
gets OpenAI's 400 `context_length_exceeded` (routing/services.py).

Queenbee has no tokenizer of the worker's model, so the prompt is counted as a
**lower bound**, never an average. The two mistakes cost differently: counting
too many refuses an honest request that would have fitted (a wrong 400), while
counting too few only sends a long prompt to a worker that then refuses it
itself ("exceed context window", which routing retries on another worker
before it answers the same 400). So a worker known to be too small for the
prompt never gets it, and a prompt near the edge is left to the worker to judge.

The bound: every run of letters and digits (a word, a number) is at least one
token, and so is every run of other visible characters (punctuation, symbols),
since tokenizers split at those boundaries; three in four of these pieces are
counted, because a tokenizer does at times merge a word with the punctuation
next to it ("'s", ".com"). Whitespace counts for nothing (runs of spaces are
one token or a part of one). Measured with Gemma 3's tokenizer (262k
entries, among the most frugal): English prose and Markdown, Python, JSON
tool definitions, German, URLs and contraction-heavy English came out at 55 to
75 % of their real token count; Chinese, numbers and base64 far lower (a run
of CJK characters or digits is one piece), which errs on the safe side. A
"characters / 4" rule, by contrast, counts German 10 % over and a line of
4,000 "=" or spaces 3 to 6 times over.

What is counted: the text of every message (content parts' text, tool calls'
names and arguments) and the tool definitions, which a worker with the `tools`
feature renders into the prompt; the chat template's own tokens and images are
not (they would only raise the bound). A completion's list of prompts counts
its longest, each being its own sequence. `max_tokens` (or
`max_completion_tokens`) is not counted: it is an upper bound, and a
llama.cpp worker cuts a completion where its window ends (`finish_reason`
"length"), so a caller sending the common `max_tokens: 4096` to workers with a
4096-token window is served, not refused. Counting is linear in the text: about 0.1 s per MB, as parsing the
body's JSON costs.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from trust.usage import text_of

# A run of letters and digits, or a run of other visible characters.
PIECE = re.compile(r"\w+|[^\w\s]+")
# Of the pieces, this share is counted (see the module's docstring).
PIECES_COUNTED, PIECES_PER = 3, 4


@dataclass(frozen=True)
class ContextNeed:
    """The tokens a request needs in a worker's context window, at least."""

    prompt_tokens: int  # a lower bound of the prompt's tokens


def tokens_at_least(text: str) -> int:
    """A lower bound of the tokens of `text` in any usual tokenizer."""
    return len(PIECE.findall(text)) * PIECES_COUNTED // PIECES_PER


def context_need(data: dict[str, Any]) -> ContextNeed:
    """What a chat or text completion request (its validated body) needs."""
    return ContextNeed(_prompt_tokens(data))


def _prompt_tokens(data: dict[str, Any]) -> int:
    messages = data.get("messages")
    if isinstance(messages, list):
        parts = [_message_text(m) for m in messages if isinstance(m, dict)]
        for key in ("tools", "functions"):
            if data.get(key):
                parts.append(json.dumps(data[key], ensure_ascii=False))
        return tokens_at_least("\n".join(parts))
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        return tokens_at_least(prompt)
    if isinstance(prompt, list):
        return max((tokens_at_least(p) for p in prompt if isinstance(p, str)), default=0)
    return 0


def _message_text(message: dict[str, Any]) -> str:
    text = text_of(message.get("content"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            text += f"\n{function.get('name') or ''} {function.get('arguments') or ''}"
    return text


def describe_too_long(need: ContextNeed, *, largest: int, field: str) -> str:
    """The refusal's message when no worker's window holds the request, as OpenAI words it."""
    return (
        f"This request needs a context window of at least {need.prompt_tokens} tokens for its {field} "
        f"(a lower bound, counted from the text). The largest context window of a connected worker that can "
        f"serve it is {largest} tokens. Please reduce the length of the {field}."
    )
