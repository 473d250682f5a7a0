"""Validation of `/v1/responses` requests: what Queenbee honours, and a 400 naming what it cannot.

As on the chat endpoint, fields not declared here are passed on to the chat
path (and so to the worker) unchanged. Responses fields that ask for what a
crowd of llama.cpp workers cannot do (hosted tools, background runs, reasoning
effort, server-side conversations …) are declared, and refused by name when set.
"""

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .responses import LOGPROBS_INCLUDE
from .serializers import (
    MAX_MESSAGES,
    MAX_TOKENS_LIMIT,
    NAME,
    MetadataField,
    ModelField,
    PassThroughSerializer,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    WorkerExtensions,
)

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text")
# `include` values honoured: logprobs, and encrypted reasoning, of which there is never any.
INCLUDES = (LOGPROBS_INCLUDE, "reasoning.encrypted_content")


def _refuse(message: str, path: str = ""):
    raise serializers.ValidationError({path: [message]} if path else message)


def _string(value: Any, path: str) -> None:
    if not isinstance(value, str):
        _refuse("must be a string", path)


def _check_part(part: Any, path: str, *, role: str) -> None:
    if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
        _refuse("must be a content part object with a type", path)
    kind = part["type"]
    if kind in TEXT_PARTS or (kind == "refusal" and role == "assistant"):
        key = "refusal" if kind == "refusal" else "text"
        _string(part.get(key), f"{path}.{key}")
    elif kind == "input_image":
        if part.get("file_id") is not None:
            _refuse("images by file_id are not supported; send image_url (a URL or a data: URL)", f"{path}.file_id")
        _string(part.get("image_url"), f"{path}.image_url")
        if part.get("detail") not in (None, "auto", "low", "high"):
            _refuse('must be "auto", "low" or "high"', f"{path}.detail")
    else:
        _refuse(f"{kind!r} content is not supported; use input_text or input_image", f"{path}.type")


def _check_message(item: Mapping, path: str) -> None:
    if item.get("role") not in ROLES:
        _refuse(f"must be one of {', '.join(ROLES)}", f"{path}.role")
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        _refuse("must be a string or a list of content parts", f"{path}.content")
    for j, part in enumerate(content):
        _check_part(part, f"{path}.content.{j}", role=item["role"])


def _check_item(item: Any, path: str) -> None:
    if not isinstance(item, Mapping):
        _refuse("must be an input item object", path)
    kind = item.get("type", "message")
    if kind == "message":
        _check_message(item, path)
    elif kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            _string(item.get(key), f"{path}.{key}")
    elif kind == "function_call_output":
        _string(item.get("call_id"), f"{path}.call_id")
        output = item.get("output")
        if isinstance(output, list):
            for j, part in enumerate(output):
                if not isinstance(part, Mapping) or part.get("type") != "input_text" or not isinstance(part.get("text"), str):
                    _refuse("only input_text parts are supported in a function call's output", f"{path}.output.{j}")
        else:
            _string(output, f"{path}.output")
    else:
        _refuse(f"{kind!r} items are not supported; send message, function_call or function_call_output items", f"{path}.type")


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}, "maxItems": MAX_MESSAGES}]})
class ResponseInputField(serializers.Field):
    """A string (one user message) or a list of message, function_call and function_call_output items."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            return data
        if not isinstance(data, list) or not data or len(data) > MAX_MESSAGES:
            _refuse(f"must be a string or a list of 1 to {MAX_MESSAGES} input items")
        for i, item in enumerate(data):
            _check_item(item, str(i))
        return [dict(item) for item in data]

    def to_representation(self, value):
        return value


class FunctionToolSerializer(PassThroughSerializer):
    type = serializers.CharField()
    name = StrictCharField(validators=[NAME], required=False)
    description = StrictCharField(required=False, allow_null=True, allow_blank=True)
    parameters = serializers.DictField(required=False, allow_null=True, help_text="The arguments as a JSON Schema object.")
    strict = StrictBooleanField(required=False, allow_null=True)

    def validate(self, attrs):
        if attrs["type"] != "function":
            raise serializers.ValidationError({"type": [f"{attrs['type']!r} tools are not supported; only function tools are"]})
        if "name" not in attrs:
            raise serializers.ValidationError({"name": ["This field is required."]})
        return attrs


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": ["none", "auto", "required"]},
            {"type": "object", "properties": {"type": {"type": "string", "enum": ["function"]}, "name": {"type": "string"}}, "required": ["type", "name"]},
        ],
        "nullable": True,
    }
)
class ResponseToolChoiceField(serializers.Field):
    def to_internal_value(self, data):
        if isinstance(data, str) and data in ("none", "auto", "required"):
            return data
        if isinstance(data, Mapping) and data.get("type") == "function" and isinstance(data.get("name"), str):
            return {"type": "function", "name": data["name"]}
        _refuse('must be "none", "auto", "required" or {"type": "function", "name": …}; hosted tools are not supported')

    def to_representation(self, value):
        return value


class TextFormatSerializer(PassThroughSerializer):
    type = serializers.ChoiceField(["text", "json_object", "json_schema"])
    name = StrictCharField(validators=[NAME], required=False)
    schema = serializers.DictField(required=False, help_text="Required for json_schema.")
    description = StrictCharField(required=False, allow_blank=True)
    strict = StrictBooleanField(required=False, allow_null=True)

    def validate(self, attrs):
        if attrs["type"] == "json_schema":
            for key in ("name", "schema"):
                if key not in attrs:
                    raise serializers.ValidationError({key: ["is required when type is json_schema"]})
        return attrs


class TextConfigSerializer(serializers.Serializer):
    format = TextFormatSerializer(required=False, allow_null=True)
    verbosity = serializers.ChoiceField(
        ["medium"], required=False, allow_null=True,
        error_messages={"invalid_choice": "only the default, medium, is supported (a local model has no verbosity control)"},
    )


class RefusedField(serializers.JSONField):
    """A Responses field Queenbee cannot honour: accepted only when null or off."""

    def __init__(self, why: str, **kwargs):
        self.why = why
        super().__init__(required=False, allow_null=True, **kwargs)

    def to_internal_value(self, data):
        if data in (None, False, [], {}):
            return data
        raise serializers.ValidationError(f"is not supported: {self.why}")


class ReasoningSerializer(serializers.Serializer):
    effort = serializers.ChoiceField(
        ["none"], required=False, allow_null=True,
        error_messages={"invalid_choice": "reasoning effort is not supported by Queenbee's workers"},
    )
    summary = RefusedField("reasoning summaries are not supported")
    generate_summary = RefusedField("reasoning summaries are not supported")


class ResponseStreamOptionsSerializer(serializers.Serializer):
    include_obfuscation = serializers.ChoiceField(
        [False], required=False, error_messages={"invalid_choice": "stream obfuscation is not supported"},
    )


class ResponseCreateSerializer(WorkerExtensions):
    """A `/v1/responses` request. Fields not listed here are forwarded to the worker unchanged."""

    model = ModelField(max_length=400)
    input = ResponseInputField()
    instructions = StrictCharField(required=False, allow_null=True, allow_blank=True)
    previous_response_id = StrictCharField(required=False, allow_null=True, max_length=64)
    store = StrictBooleanField(required=False, allow_null=True, help_text="Default true: kept for retrieval and previous_response_id.")
    stream = StrictBooleanField(required=False, default=False)
    stream_options = ResponseStreamOptionsSerializer(required=False, allow_null=True)
    max_output_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_TOKENS_LIMIT)
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    top_logprobs = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=20)
    include = serializers.ListField(
        child=serializers.ChoiceField(INCLUDES, error_messages={"invalid_choice": "{input!r} is not supported"}),
        required=False, allow_null=True, max_length=16,
    )
    tools = serializers.ListField(child=FunctionToolSerializer(), required=False, allow_null=True, max_length=128)
    tool_choice = ResponseToolChoiceField(required=False, allow_null=True)
    parallel_tool_calls = StrictBooleanField(required=False, allow_null=True)
    max_tool_calls = StrictIntegerField(required=False, allow_null=True, min_value=1, help_text="Applies to hosted tools, of which there are none.")
    text = TextConfigSerializer(required=False, allow_null=True)
    reasoning = ReasoningSerializer(required=False, allow_null=True)
    metadata = MetadataField(required=False, allow_null=True)
    user = StrictCharField(required=False, allow_null=True, max_length=256)
    safety_identifier = StrictCharField(required=False, allow_null=True, max_length=128)
    prompt_cache_key = StrictCharField(required=False, allow_null=True, max_length=256)
    truncation = serializers.ChoiceField(
        ["disabled"], required=False, allow_null=True,
        error_messages={"invalid_choice": "only disabled is supported: an input too long for the model is an error"},
    )
    service_tier = serializers.ChoiceField(
        ["auto", "default"], required=False, allow_null=True, error_messages={"invalid_choice": "only auto and default are supported"},
    )
    n = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=1,
        error_messages={"max_value": "a response has one output; send several requests for several answers"},
    )
    messages = RefusedField("this is the chat completions field; the Responses API takes input")
    background = RefusedField("responses run while the request is open")
    conversation = RefusedField("use previous_response_id")
    prompt = RefusedField("there are no stored prompt templates")
    context_management = RefusedField("there is no server-side compaction")
    moderation = RefusedField("there is no moderation")
    prompt_cache_retention = RefusedField("there is no prompt cache to keep")
    prompt_cache_options = RefusedField("there is no prompt cache to keep")
    background_options = RefusedField("responses run while the request is open")
    image = RefusedField("there is no image context compression")
    access_programs = RefusedField("there are no access programs")

    def validate(self, attrs):
        choice = attrs.get("tool_choice")
        declared = {tool["name"] for tool in attrs.get("tools") or ()}
        if choice == "required" and not declared:
            raise serializers.ValidationError({"tool_choice": ['"required" needs tools']})
        if isinstance(choice, Mapping) and choice["name"] not in declared:
            raise serializers.ValidationError({"tool_choice": [f"names the function {choice['name']!r}, which tools do not declare"]})
        return attrs


class InputItemsQuerySerializer(serializers.Serializer):
    """The query of `GET /v1/responses/{id}/input_items`."""

    order = serializers.ChoiceField(["asc", "desc"], required=False, default="desc")
    after = serializers.CharField(required=False, max_length=64)
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)
