"""Which worker features a request needs, and which of its fields needs each.

Pure: no Django. Workers announce features in their connect message
(workers/protocol.py KNOWN_FEATURES); a request that needs one goes only to
workers that have it, because a worker without it would ignore the field and
answer a silent 200. Fields a worker without the feature still honours (stop,
seed, max_tokens …) need none.
"""

from typing import Any

IMAGE_PARTS = ("image_url", "input_image", "image")


def needed_features(data: dict[str, Any]) -> dict[str, str]:
    """{feature: the request field that needs it}, in a stable order, for a chat or text completion."""
    needs: dict[str, str] = {}
    # Even with `tool_choice: "none"`: a worker that does not know the field may
    # still call a tool (llama-cpp-python's function-calling chat formats do) or
    # render the conversation's tool messages as it pleases.
    if data.get("tools"):
        needs["tools"] = "tools"
    elif data.get("functions"):
        needs["tools"] = "functions"
    response_format = data.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        needs["json_schema"] = "response_format"
    logprobs = data.get("logprobs")
    # Chat's is a switch; the legacy completions' is a count, and 0 still asks for
    # the chosen tokens' logprobs.
    if logprobs is True or (not isinstance(logprobs, bool) and isinstance(logprobs, int)):
        needs["logprobs"] = "logprobs"
    n = data.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        needs["n"] = "n"
    if _has_images(data.get("messages")):
        needs["vision"] = "messages"
    return needs


def _has_images(messages: Any) -> bool:
    # On every request: plain loops over the parsed JSON (dicts and lists), no ABC checks.
    if not isinstance(messages, list):
        return False
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in IMAGE_PARTS:
                    return True
    return False


def describe_missing(feature: str, field: str) -> str:
    """The refusal's message when no worker that could otherwise serve the request has `feature`."""
    return (
        f"No connected worker that can serve this request supports the `{feature}` feature, "
        f"which the `{field}` field needs. Retry without `{field}`, or later when such a worker is connected."
    )
