"""Tool calling: `tools` and `tool_choice` in the prompt, and tool calls out of the answer.

The model sees the tools the way its own chat template shows them (the
template gets `tools`, as Hugging Face templates expect). A model without a
template, or whose template ignores tools (the packaged Gemma GGUF has none),
gets them in the system text of the plain transcript, with the answer format
this module reads back: one JSON object `{"name": …, "arguments": {…}}`, or,
unless the request says `parallel_tool_calls: false`, a JSON array of them for
several calls at once.

`tool_choice` "required" or a named function constrains the answer with a
grammar to exactly such an object, so the call always parses; "auto" lets the
model choose, and an answer that is such an object or array (bare, fenced, or
in `<tool_call>` tags as many templates teach, one tag per call) is taken as
its calls; with `parallel_tool_calls: false` only the first is kept, as OpenAI
never returns more than one then. A forced answer is one call. "none" shows
no tools at all. As OpenAI does, a forced function ends with finish_reason
"stop", a call the model chose (auto or required) with "tool_calls".
"""

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

ANY_OBJECT = {"type": "object"}
# How calls may be wrapped when the model chose them (auto): in tags, one per call, or fenced.
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"^```(?:json)?\s*(?P<fence>.*?)\s*(?:```)?$", re.S)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ToolPlan:
    functions: tuple[dict[str, Any], ...]  # each {"name", "description"?, "parameters"?}
    mode: str  # "auto" | "required" | "function"
    forced: str = ""  # the function's name when mode is "function"
    parallel: bool = True  # several calls in one answer (`parallel_tool_calls`)

    @classmethod
    def from_request(cls, req: dict[str, Any]) -> "ToolPlan | None":
        """The plan for a request, or None when it shows the model no tools."""
        functions = tuple(
            t["function"] for t in req.get("tools") or () if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict)
        )
        choice = req.get("tool_choice")
        if not functions and req.get("functions"):  # the deprecated form
            functions = tuple(f for f in req["functions"] if isinstance(f, dict))
            choice = req.get("function_call")
            if isinstance(choice, dict) and "name" in choice:
                choice = {"type": "function", "function": {"name": choice["name"]}}
        if not functions or choice == "none":
            return None
        names = [f.get("name") for f in functions]
        parallel = req.get("parallel_tool_calls") is not False
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if name not in names:
                raise ValueError(f"tool_choice names the function {name!r}, which tools do not declare")
            return cls(functions, "function", name, parallel)
        return cls(functions, "required" if choice == "required" else "auto", parallel=parallel)

    @property
    def template_tools(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": f} for f in self.functions]

    def call_schema(self) -> dict[str, Any] | None:
        """The JSON Schema an answer must match, or None when the model may answer in text."""
        if self.mode == "auto":
            return None
        chosen = [f for f in self.functions if self.mode != "function" or f.get("name") == self.forced]
        options = [
            {
                "type": "object",
                "properties": {"name": {"const": f.get("name")}, "arguments": f.get("parameters") or ANY_OBJECT},
                "required": ["name", "arguments"],
            }
            for f in chosen
        ]
        return options[0] if len(options) == 1 else {"anyOf": options}

    def instructions(self) -> str:
        """The tools described in plain text, for a prompt without a template that shows them."""
        lines = ["You can call these functions:"]
        for f in self.functions:
            line = f"- {f.get('name')}"
            if f.get("description"):
                line += f": {f['description']}"
            line += f"\n  arguments (JSON Schema): {json.dumps(f.get('parameters') or ANY_OBJECT, separators=(',', ':'))}"
            lines.append(line)
        if self.mode == "function":
            lines.append(f"Call {self.forced} now.")
        elif self.mode == "required":
            lines.append("Call one of them now.")
        lines.append('To call a function, answer with only a JSON object: {"name": "<function name>", "arguments": {<the arguments>}}.')
        if self.parallel and self.mode == "auto":
            lines.append("To call several functions at once, answer with only a JSON array of such objects.")
        return "\n".join(lines)

    def parse(self, text: str) -> list[ToolCall]:
        """The calls in an answer; [] when it is plain text (possible only under auto)."""
        items = _items(text)
        if items is None:
            return []
        if not self.parallel:
            items = items[:1]
        names = {f.get("name") for f in self.functions}
        calls = []
        for item in items:
            if not isinstance(item, dict) or item.get("name") not in names:
                return []
            arguments = item.get("arguments", item.get("parameters", {}))
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError:
                    return []
            if not isinstance(arguments, dict):
                return []
            calls.append(ToolCall(new_call_id(), item["name"], json.dumps(arguments, ensure_ascii=False)))
        return calls

    def finish_reason(self) -> str:
        return "stop" if self.mode == "function" else "tool_calls"


def _items(text: str) -> list[Any] | None:
    """The JSON values an answer holds: one per `<tool_call>` tag, or the one
    value (an array's items) bare or fenced; None when it is not JSON."""
    body = text.strip()
    if body.startswith("<tool_call>"):
        tagged = _TAGGED.findall(body)
        if "".join(_TAGGED.split(body)[::2]).strip():  # text between or around the tags
            return None
    else:
        fenced = _FENCED.match(body)
        tagged = [fenced.group("fence") if fenced else body]
    try:
        values = [json.loads(t) for t in tagged]
    except ValueError:
        return None
    if len(values) == 1 and isinstance(values[0], list):
        return values[0] or None
    return values


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def could_be_call(text: str) -> bool:
    """Whether an answer beginning with `text` may turn out to be a call (so it is held back)."""
    start = text.lstrip()
    return not start or start[0] in "{[<`"


def stream_deltas(calls: list[ToolCall], *, piece: int = 16) -> list[dict[str, Any]]:
    """The `tool_calls` deltas of a stream, as OpenAI sends them: per call, a first
    delta with its index, id, type, name and empty arguments, then the arguments in pieces."""
    deltas = []
    for index, call in enumerate(calls):
        deltas.append({"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}})
        for start in range(0, len(call.arguments), piece):
            deltas.append({"index": index, "function": {"arguments": call.arguments[start : start + piece]}})
    return deltas


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as Hugging Face chat templates expect them: a call's arguments as an object."""
    out = []
    for m in messages:
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            m = {**m, "tool_calls": [_template_call(c) for c in calls if isinstance(c, dict)]}
        out.append(m)
    return out


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    if isinstance(function.get("arguments"), str):
        try:
            function["arguments"] = json.loads(function["arguments"])
        except ValueError:
            pass
    return {**call, "function": function}


def transcript_call(call: dict[str, Any]) -> str:
    """A call the assistant made, written as it is asked to write one in the plain transcript."""
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    arguments = function.get("arguments", "{}")
    try:
        arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        pass
    return json.dumps({"name": function.get("name"), "arguments": arguments}, ensure_ascii=False)


# The head of a grammar-forced call, up to where its arguments begin.
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


class CallStream:
    """The `tool_calls` deltas of a call forced by the grammar, sent while it is generated.

    The grammar writes `{"name": …, "arguments": {…}}` in that order, so the
    name (and the call's first delta) is known once the arguments begin; the
    arguments then stream as they come, holding back their last character
    until the next one shows it is not the closing brace of the outer object.
    """

    def __init__(self) -> None:
        self.text = ""
        self.call_id = new_call_id()
        self.name = ""
        self._start = -1  # where the arguments begin in `text`
        self._sent = 0  # how much of the arguments went out
        self.arguments = ""  # all that went out, once finished

    def feed(self, piece: str) -> list[dict[str, Any]]:
        self.text += piece
        deltas = []
        if self._start < 0:
            head = _HEAD.match(self.text)
            if not head:
                return []
            self.name, self._start = json.loads(f'"{head.group(1)}"'), head.end()
            deltas.append({"index": 0, "id": self.call_id, "type": "function", "function": {"name": self.name, "arguments": ""}})
        arguments = self.text[self._start :]
        safe = len(arguments.rstrip()) - 1
        if safe > self._sent:
            deltas.append({"index": 0, "function": {"arguments": arguments[self._sent : safe]}})
            self._sent = safe
        return deltas

    def finish(self) -> list[dict[str, Any]]:
        """The last deltas once the generation ended; [] if no call ever began."""
        if self._start < 0:
            return []
        arguments = self.text[self._start :].rstrip()
        if arguments.endswith("}") and _balanced(arguments[:-1]):
            arguments = arguments[:-1].rstrip()  # the outer object's brace
        rest = arguments[self._sent :]  # nothing when what went out ended in spaces
        self.arguments = self.text[self._start : self._start + self._sent] + rest
        self._sent += len(rest)
        return [{"index": 0, "function": {"arguments": rest}}] if rest else []


def _balanced(text: str) -> bool:
    """Whether `text` is a complete JSON value (so a brace after it closes something else)."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
