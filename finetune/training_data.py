"""Checking a training file before anyone pays a GPU to read it. Pure: no Django.

A training file is JSONL: one JSON object per line, either a chat record
`{"messages": [{"role", "content"}, …]}` or a `{"prompt", "completion"}` pair.
The original worker stops reading at the first blank line and needs at least two
examples (one goes to evaluation), so both are refused here with the line named.
"""

import json
from collections.abc import Iterable

# The original worker reads at most this many characters of a line.
MAX_LINE_CHARS = 300_000
MIN_EXAMPLES = 2
ROLES = {"system", "user", "assistant", "developer", "tool"}


class BadTrainingFile(ValueError):
    """The file is not usable training data; the message names the first bad line."""


def check_training_lines(lines: Iterable[bytes]) -> int:
    """Validate JSONL training data line by line; returns the number of examples."""
    examples = 0
    blank_at = 0
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise BadTrainingFile(f"line {number} is not UTF-8 text") from None
        if not text:
            blank_at = blank_at or number
            continue
        if blank_at:
            raise BadTrainingFile(f"line {blank_at} is blank: workers stop reading at a blank line, so remove it")
        if len(text) > MAX_LINE_CHARS:
            raise BadTrainingFile(f"line {number} is longer than {MAX_LINE_CHARS} characters")
        try:
            record = json.loads(text)
        except ValueError:
            raise BadTrainingFile(f"line {number} is not valid JSON") from None
        problem = _record_problem(record)
        if problem:
            raise BadTrainingFile(f"line {number} {problem}")
        examples += 1
    if examples < MIN_EXAMPLES:
        raise BadTrainingFile(f"a training file needs at least {MIN_EXAMPLES} examples (one is kept for evaluation); it has {examples}")
    return examples


def _record_problem(record: object) -> str:
    if not isinstance(record, dict):
        return "is not a JSON object"
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            return "has 'messages' that is not a non-empty list"
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                return f"has a message {index} without a valid role ({', '.join(sorted(ROLES))})"
            if not isinstance(message.get("content"), str):
                return f"has a message {index} whose content is not a string"
        if not any(m["role"] == "assistant" for m in messages):
            return "has no assistant message to learn from"
        return ""
    if "prompt" in record or "completion" in record:
        if not isinstance(record.get("prompt"), str) or not isinstance(record.get("completion"), str):
            return "needs both 'prompt' and 'completion' as strings"
        return ""
    return "is neither a chat record ('messages') nor a 'prompt'/'completion' pair"
