"""The Responses API translated to and from the chat path (pure: no database, no I/O).

`/v1/responses` runs as a chat completion: `chat_request` turns a validated
Responses request (and the items of the response it continues) into a chat
request the chat path routes, bills and verifies like any other;
`response_from_completion` turns the chat completion back into a Response
object, and `EventTranslator` turns the chat stream into the Responses stream
events, in the order the official SDKs accumulate them:

    response.created, response.in_progress,
    per message:       response.output_item.added, response.content_part.added,
                       response.output_text.delta…, response.output_text.done,
                       response.content_part.done, response.output_item.done
    per function call: response.output_item.added, response.function_call_arguments.delta…,
                       response.function_call_arguments.done, response.output_item.done
    response.completed (or response.incomplete at the token limit, response.failed on error)

Items are kept in the Responses shapes (`message`, `function_call`,
`function_call_output`) so a stored response can be continued; chat messages
exist only on the way to the worker.
"""

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

# Responses fields that shape the chat request or only the Response object; the
# rest of the request (sampling fields, Queenbee's extensions, unknown fields)
# is passed to the chat path unchanged, as the chat endpoint forwards it.
OWN_FIELDS = frozenset({
    "input", "instructions", "previous_response_id", "store", "metadata", "text", "tools", "tool_choice",
    "include", "top_logprobs", "stream", "stream_options", "truncation", "service_tier", "reasoning",
    "max_tool_calls", "safety_identifier", "prompt_cache_key", "messages", "max_output_tokens",
    # Refused unless null or off (responses_serializers.RefusedField).
    "background", "conversation", "prompt", "context_management", "moderation", "prompt_cache_retention",
    "prompt_cache_options", "background_options", "image", "access_programs",
})
ITEM_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
LOGPROBS_INCLUDE = "message.output_text.logprobs"
# The chat roles a worker's chat template knows: `developer` is a system message there.
CHAT_ROLES = {"developer": "system"}


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# --- Items -------------------------------------------------------------------------------


def input_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request's `input` as the items OpenAI lists: each with an id and a status, a
    message's content as parts (a string input is one user message)."""
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items = []
    for item in value:
        kind = item.get("type", "message")
        normal = {**item, "type": kind, "id": item.get("id") or new_item_id(ITEM_ID_PREFIXES[kind]), "status": item.get("status") or "completed"}
        if kind == "message" and isinstance(item["content"], str):
            part = {"type": "output_text", "text": item["content"], "annotations": []} if item["role"] == "assistant" else {"type": "input_text", "text": item["content"]}
            normal["content"] = [part]
        items.append(normal)
    return items


def _text_of_parts(parts: list[dict[str, Any]]) -> str:
    return "".join(str(p.get("text") if "text" in p else p.get("refusal") or "") for p in parts)


def chat_content(content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A message's content for chat: a string, or chat parts when it holds an image."""
    if isinstance(content, str):
        return content
    if not any(part["type"] == "input_image" for part in content):
        return _text_of_parts(content)
    parts: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "input_image":
            image = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            parts.append({"type": "text", "text": _text_of_parts([part])})
    return parts


def chat_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as chat messages; consecutive function calls join one assistant message."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            role = CHAT_ROLES.get(item["role"], item["role"])
            messages.append({"role": role, "content": chat_content(item["content"])})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and isinstance(last["content"], (str, type(None))):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": output if isinstance(output, str) else _text_of_parts(output)})
    return messages


# --- The chat request ---------------------------------------------------------------------


def chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if tool.get(key) is not None}
    return {"type": "function", "function": function}


def chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    return choice if isinstance(choice, str) else {"type": "function", "function": {"name": choice["name"]}}


def chat_response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if not fmt or fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = {key: fmt[key] for key in ("name", "schema", "description", "strict") if fmt.get(key) is not None}
    return {"type": "json_schema", "json_schema": schema}


def wants_logprobs(body: dict[str, Any]) -> bool:
    return LOGPROBS_INCLUDE in (body.get("include") or ()) or body.get("top_logprobs") is not None


def chat_request(body: dict[str, Any], *, context: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat request for a validated Responses request; `context` holds every item before
    this turn's output (the continued response's items, then this request's input)."""
    chat = {key: value for key, value in body.items() if key not in OWN_FIELDS}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    messages = chat_messages(context)
    if body.get("instructions"):  # not carried over from a previous response, as OpenAI
        messages.insert(0, {"role": "system", "content": body["instructions"]})
    chat["messages"] = messages
    if body.get("tools"):
        chat["tools"] = [chat_tool(tool) for tool in body["tools"]]
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = chat_tool_choice(body["tool_choice"])
    response_format = chat_response_format(body.get("text"))
    if response_format:
        chat["response_format"] = response_format
    if wants_logprobs(body):
        chat["logprobs"] = True
        chat["top_logprobs"] = body.get("top_logprobs") or 0
    if body.get("stream"):
        # The usage chunk is what the chat path bills; response.completed reports it.
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


# --- The Response object --------------------------------------------------------------------


def usage_of(chat_usage: dict[str, int] | None) -> dict[str, Any] | None:
    if not chat_usage:
        return None
    prompt, completion = chat_usage.get("prompt_tokens", 0), chat_usage.get("completion_tokens", 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def response_object(
    body: dict[str, Any], *, id: str, created_at: int, model: str, status: str, output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None, error: dict[str, Any] | None = None, incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """A Response with the request's settings echoed, as OpenAI returns it."""
    text = body.get("text") or {}
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": body.get("store", True) is not False,
        "temperature": 1.0 if body.get("temperature") is None else body["temperature"],
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity") or "medium"},
        "tool_choice": body.get("tool_choice") if body.get("tool_choice") is not None else "auto",
        "tools": list(body.get("tools") or ()),
        "top_logprobs": body.get("top_logprobs") or 0,
        "top_p": 1.0 if body.get("top_p") is None else body["top_p"],
        "truncation": "disabled",
        "usage": usage,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def response_logprobs(chat_logprobs: Any) -> list[dict[str, Any]]:
    """Chat's `logprobs.content` in the Responses shape (the same fields, nested alike)."""
    content = chat_logprobs.get("content") if isinstance(chat_logprobs, dict) else None
    out = []
    for entry in content or ():
        if not isinstance(entry, dict):
            continue
        out.append({
            "token": str(entry.get("token", "")),
            "bytes": entry.get("bytes") or [],
            "logprob": entry.get("logprob", 0.0),
            "top_logprobs": [
                {"token": str(top.get("token", "")), "bytes": top.get("bytes") or [], "logprob": top.get("logprob", 0.0)}
                for top in entry.get("top_logprobs") or () if isinstance(top, dict)
            ],
        })
    return out


def delta_logprobs(logprobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Logprobs as stream events carry them: without `bytes`."""
    return [
        {"token": lp["token"], "logprob": lp["logprob"], "top_logprobs": [{"token": t["token"], "logprob": t["logprob"]} for t in lp["top_logprobs"]]}
        for lp in logprobs
    ]


def message_item(text: str, *, id: str | None = None, status: str = "completed", logprobs: list | None = None) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}
    return {"id": id or new_item_id("msg"), "type": "message", "role": "assistant", "status": status, "content": [part]}


def function_call_item(call: dict[str, Any], *, id: str | None = None, status: str = "completed") -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    arguments = function.get("arguments", "")
    return {
        "id": id or new_item_id("fc"),
        "type": "function_call",
        "status": status,
        "call_id": call.get("id") or new_item_id("call"),
        "name": str(function.get("name") or ""),
        "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
    }


def incomplete_reason(finish_reason: Any) -> str | None:
    return "max_output_tokens" if finish_reason == "length" else None


def response_from_completion(completion: dict[str, Any], *, body: dict[str, Any]) -> dict[str, Any]:
    """The Response for a chat completion the chat path returned."""
    choice = completion["choices"][0] if isinstance(completion["choices"][0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    text = content if isinstance(content, str) else _text_of_parts(content) if isinstance(content, list) else ""
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    reason = incomplete_reason(choice.get("finish_reason"))
    status = "incomplete" if reason else "completed"  # the last item was cut too
    output = []
    if text or not calls:
        output.append(message_item(text, status=status, logprobs=response_logprobs(choice.get("logprobs"))))
    output += [function_call_item(call, status=status) for call in calls]
    return response_object(
        body, id=completion["id"], created_at=completion["created"], model=completion["model"],
        status=status, output=output, usage=usage_of(completion.get("usage")),
        incomplete_reason=reason,
    )


# --- Streaming ---------------------------------------------------------------------------------


def sse_event(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


@dataclass
class _OpenItem:
    index: int
    item: dict[str, Any]
    text: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)


class EventTranslator:
    """Chat stream chunks in, Responses stream events (dicts) out, numbered in order."""

    def __init__(self, body: dict[str, Any]):
        self.body = body
        self.sequence = 0
        self.response: dict[str, Any] | None = None
        self.output: list[dict[str, Any]] = []  # finished items, by output index
        self.message: _OpenItem | None = None
        self.calls: dict[int, _OpenItem] = {}  # open function calls by the chat tool-call index
        self.finish_reason: Any = None
        self.usage: dict[str, Any] | None = None

    def _event(self, type: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def _snapshot(self, status: str, **fields: Any) -> dict[str, Any]:
        return response_object(self.body, id=self.response["id"], created_at=self.response["created_at"], model=self.response["model"], status=status, output=[i for i in self.output if i], **fields)

    def start(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        self.response = {"id": chunk["id"], "created_at": chunk["created"], "model": chunk["model"]}
        snapshot = self._snapshot("in_progress")
        return [self._event("response.created", response=snapshot), self._event("response.in_progress", response=snapshot)]

    def chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of one chat chunk (the usage chunk has none)."""
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage_of(chunk["usage"])
        events: list[dict[str, Any]] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    events += self._call_delta(call)
            content = delta.get("content")
            if isinstance(content, str) and content:
                events += self._text_delta(content, response_logprobs(choice.get("logprobs")))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _add(self, item: dict[str, Any]) -> tuple[_OpenItem, dict[str, Any]]:
        opened = _OpenItem(index=len(self.output), item=item)
        self.output.append({})  # its place, filled when it is done
        return opened, self._event("response.output_item.added", output_index=opened.index, item=dict(item))

    def _open_message(self) -> list[dict[str, Any]]:
        self.message, added = self._add({**message_item("", status="in_progress"), "content": []})
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [added, self._event("response.content_part.added", item_id=self.message.item["id"], output_index=self.message.index, content_index=0, part=part)]

    def _text_delta(self, text: str, logprobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        events = self._open_message() if self.message is None else []
        self.message.text.append(text)
        self.message.logprobs += logprobs
        events.append(self._event(
            "response.output_text.delta", item_id=self.message.item["id"], output_index=self.message.index,
            content_index=0, delta=text, logprobs=delta_logprobs(logprobs),
        ))
        return events

    def _close_message(self, status: str = "completed") -> list[dict[str, Any]]:
        opened, self.message = self.message, None
        if opened is None:
            return []
        text = "".join(opened.text)
        item = message_item(text, id=opened.item["id"], status=status, logprobs=opened.logprobs)
        self.output[opened.index] = item
        ids = {"item_id": item["id"], "output_index": opened.index, "content_index": 0}
        return [
            self._event("response.output_text.done", **ids, text=text, logprobs=delta_logprobs(opened.logprobs)),
            self._event("response.content_part.done", **ids, part=item["content"][0]),
            self._event("response.output_item.done", output_index=opened.index, item=item),
        ]

    def _call_delta(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        index = call.get("index", 0) if isinstance(call.get("index", 0), int) else 0
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        events = []
        opened = self.calls.get(index)
        if opened is None:
            events += self._close_message()
            item = function_call_item({"id": call.get("id"), "function": {"name": function.get("name"), "arguments": ""}}, status="in_progress")
            opened, added = self._add(item)
            self.calls[index] = opened
            events.append(added)
        elif function.get("name"):  # a name sent in pieces
            opened.item["name"] += str(function["name"])
        arguments = function.get("arguments")
        if arguments:
            piece = arguments if isinstance(arguments, str) else json.dumps(arguments)
            opened.text.append(piece)
            events.append(self._event("response.function_call_arguments.delta", item_id=opened.item["id"], output_index=opened.index, delta=piece))
        return events

    def _close_calls(self, status: str = "completed") -> list[dict[str, Any]]:
        events = []
        for opened in sorted(self.calls.values(), key=lambda o: o.index):
            item = {**opened.item, "arguments": "".join(opened.text), "status": status}
            self.output[opened.index] = item
            events += [
                self._event("response.function_call_arguments.done", item_id=item["id"], output_index=opened.index, arguments=item["arguments"]),
                self._event("response.output_item.done", output_index=opened.index, item=item),
            ]
        self.calls = {}
        return events

    def finish(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The closing events and the final Response (sent last, after it is stored)."""
        # Nothing at all was said: still one (empty) message, as a reply has.
        events = self._open_message() if not self.output else []
        reason = incomplete_reason(self.finish_reason)
        status = "incomplete" if reason else "completed"  # what is still open was cut too
        events += self._close_message(status) + self._close_calls(status)
        final = self._snapshot(status, usage=self.usage, incomplete_reason=reason)
        return events, final

    def done(self, final: dict[str, Any]) -> dict[str, Any]:
        return self._event("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)

    def failed(self, error: dict[str, Any]) -> list[dict[str, Any]]:
        """response.failed, with what was said so far; OpenAI's codes say only `server_error` fits."""
        message = str(error.get("message") or "The worker failed.")
        if self.response is None:  # the very first chunk was unusable: there is no response to fail
            return [self._event("error", code=error.get("code"), message=message, param=None)]
        failure = {"code": "server_error", "message": message, "param": None, "type": error.get("type")}
        return [self._event("response.failed", response=self._snapshot("failed", error=failure))]
