"""Request validation for the OpenAI endpoints (the edge: nothing unchecked passes).

Pass-through by default: a field a serializer does not declare reaches the
worker unchanged, as OpenAI-compatible servers forward what they do not know
(llama-cpp-python takes the request's keyword arguments). Declared fields are
validated with OpenAI's types and ranges, and an error names the field (see
errors.exception_handler). Queenbee owns `model` (resolved for the worker),
`stream` and its extensions `timeout`, `ft_timeout` and `gpu_filter`.
"""

from collections.abc import Mapping

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.gpu_filter import GpuFilterSerializer
from api.model_names import InvalidModelName, parse_model

MAX_MESSAGES = 4096
MAX_TOKENS_LIMIT = 1_000_000
MAX_INPUTS = 2048
MAX_CHOICES = 128
# Forwarded values cross the channel layer, which channels-redis packs with
# msgpack: it refuses integers outside 64 bits and nests at most 511 deep. A
# request may ask for neither; a real one (a JSON schema included) nests well
# under this.
MAX_DEPTH = 64
INT_RANGE = (-(2**63), 2**64 - 1)
INT64 = {"min_value": -(2**63), "max_value": 2**63 - 1}
# OpenAI's limits for `metadata`.
METADATA_PAIRS, METADATA_KEY_LENGTH, METADATA_VALUE_LENGTH = 16, 64, 512
# Function and json_schema names, as OpenAI allows them.
NAME = RegexValidator(r"^[A-Za-z0-9_-]{1,64}$", "must be 1 to 64 letters, digits, underscores or dashes")


class PassThroughSerializer(serializers.Serializer):
    """An object whose undeclared fields are kept, unchanged, beside the validated ones."""

    def to_internal_value(self, data):
        validated = super().to_internal_value(data)  # refuses a non-object
        extra = {key: value for key, value in data.items() if key not in self.fields}
        return {**extra, **validated}


class RequestSerializer(PassThroughSerializer):
    """A whole request body: also checks that every value can cross the channel layer."""

    def to_internal_value(self, data):
        validated = super().to_internal_value(data)
        problem = _not_forwardable(validated)
        if problem:
            raise serializers.ValidationError({problem[0]: [problem[1]]})
        return validated


def _not_forwardable(data: dict) -> tuple[str, str] | None:
    """(field, why) for the first value msgpack could not carry, else None.

    Iterative, so a deeply nested request cannot exhaust the stack here.
    """
    low, high = INT_RANGE
    stack = [(value, 1, key) for key, value in data.items()]
    while stack:
        value, depth, field = stack.pop()
        if isinstance(value, Mapping):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            if isinstance(value, int) and not low <= value <= high:
                return field, "holds an integer outside 64 bits"
            continue
        if depth > MAX_DEPTH:
            return field, f"is nested deeper than {MAX_DEPTH} levels"
        stack.extend((child, depth + 1, field) for child in children)
    return None


# --- Strict JSON types (DRF's fields also take "true", 1 or "5") ------------------------


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "A valid integer is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ModelField(serializers.CharField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            parse_model(value)
        except InvalidModelName as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


@extend_schema_field(
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}], "nullable": True}
)
class ContentField(serializers.Field):
    """Message content: a string, a list of content parts, or null (tool calls)."""

    def to_internal_value(self, data):
        if data is None or isinstance(data, str):
            return data
        if isinstance(data, list) and all(isinstance(p, dict) and isinstance(p.get("type"), str) for p in data):
            return data
        raise serializers.ValidationError("must be a string or a list of content parts")

    def to_representation(self, value):
        return value


class MessageSerializer(PassThroughSerializer):
    role = serializers.ChoiceField(["system", "developer", "user", "assistant", "tool", "function"])
    content = ContentField(required=False, allow_null=True, default="")
    name = serializers.CharField(required=False, max_length=256)
    tool_calls = serializers.ListField(child=serializers.DictField(), required=False)
    tool_call_id = serializers.CharField(required=False, max_length=256)


class StreamOptionsSerializer(PassThroughSerializer):
    include_usage = serializers.BooleanField(required=False, default=False)


class JsonSchemaSerializer(PassThroughSerializer):
    name = StrictCharField(validators=[NAME])
    schema = serializers.DictField(help_text="A JSON Schema object the answer must match.")
    description = StrictCharField(required=False, allow_blank=True)
    strict = StrictBooleanField(required=False, allow_null=True)


class ResponseFormatSerializer(PassThroughSerializer):
    type = serializers.ChoiceField(["text", "json_object", "json_schema"])
    json_schema = JsonSchemaSerializer(required=False, help_text="Required when `type` is `json_schema`.")

    def validate(self, attrs):
        if attrs["type"] == "json_schema" and "json_schema" not in attrs:
            raise serializers.ValidationError({"json_schema": ["is required when type is json_schema"]})
        return attrs


class FunctionSerializer(PassThroughSerializer):
    name = StrictCharField(validators=[NAME])
    description = StrictCharField(required=False, allow_blank=True)
    parameters = serializers.DictField(required=False, help_text="The arguments as a JSON Schema object.")
    strict = StrictBooleanField(required=False, allow_null=True)


class ToolSerializer(PassThroughSerializer):
    type = serializers.ChoiceField(["function"])
    function = FunctionSerializer()


TOOL_CHOICES = ("none", "auto", "required")


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": list(TOOL_CHOICES)},
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["function"]},
                    "function": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
                },
                "required": ["type", "function"],
            },
        ],
        "nullable": True,
    }
)
class ToolChoiceField(serializers.Field):
    """`none`, `auto`, `required`, or one declared function to call."""

    def to_internal_value(self, data):
        if isinstance(data, str) and data in TOOL_CHOICES:
            return data
        function = data.get("function") if isinstance(data, Mapping) and data.get("type") == "function" else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return data
        raise serializers.ValidationError('must be "none", "auto", "required" or {"type": "function", "function": {"name": …}}')

    def to_representation(self, value):
        return value


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_LENGTH},
        "maxProperties": METADATA_PAIRS,
        "nullable": True,
    }
)
class MetadataField(serializers.DictField):
    """Up to 16 string values, keys up to 64 characters, values up to 512 (as OpenAI)."""

    def __init__(self, **kwargs):
        super().__init__(child=StrictCharField(max_length=METADATA_VALUE_LENGTH, allow_blank=True), **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > METADATA_PAIRS:
            raise serializers.ValidationError(f"holds more than {METADATA_PAIRS} pairs")
        if any(len(key) > METADATA_KEY_LENGTH for key in value):
            raise serializers.ValidationError(f"has a key longer than {METADATA_KEY_LENGTH} characters")
        return value


class WorkerExtensions(RequestSerializer):
    """The original's extension fields, accepted on every inference endpoint."""

    timeout = serializers.FloatField(required=False, min_value=0.1, max_value=86400)
    ft_timeout = serializers.FloatField(required=False, min_value=0.1, max_value=86400)
    gpu_filter = GpuFilterSerializer(required=False)


class GenerationSerializer(WorkerExtensions):
    """What chat and text completions share."""

    model = ModelField(max_length=400)
    stream = serializers.BooleanField(required=False, default=False)
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)
    max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_TOKENS_LIMIT)
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    # n > 1 goes to a worker with the "n" feature, which generates every choice
    # (routing/features.py); OpenAI's own limit.
    n = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_CHOICES,
        help_text="Choices to generate. Above 1, needs a worker with the `n` feature (else a 400 naming `n`).",
    )
    stop = serializers.JSONField(required=False, allow_null=True)
    presence_penalty = serializers.FloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    frequency_penalty = serializers.FloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    logit_bias = serializers.DictField(child=serializers.FloatField(), required=False, allow_null=True)
    seed = StrictIntegerField(required=False, allow_null=True, **INT64)
    user = StrictCharField(required=False, allow_null=True, max_length=256)
    # llama.cpp sampling extensions the original accepted.
    top_k = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    repeat_penalty = serializers.FloatField(required=False, allow_null=True, min_value=0)
    min_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    mirostat_mode = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=2)
    mirostat_tau = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=10)
    mirostat_eta = serializers.FloatField(required=False, allow_null=True, min_value=0.001, max_value=1)

    def validate_stop(self, value):
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and len(value) <= 4 and all(isinstance(v, str) for v in value):
            return value
        raise serializers.ValidationError("must be a string or a list of up to 4 strings")


class ChatCompletionSerializer(GenerationSerializer):
    """A chat completion request. Fields not listed here are forwarded to the worker unchanged."""

    messages = serializers.ListField(child=MessageSerializer(), min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_TOKENS_LIMIT
    )
    logprobs = StrictBooleanField(required=False, allow_null=True, help_text="Needs a worker with the `logprobs` feature (else a 400 naming `logprobs`).")
    top_logprobs = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=20, help_text="Needs `logprobs: true`.")
    response_format = ResponseFormatSerializer(
        required=False, allow_null=True,
        help_text="`json_object` and `json_schema` are grammar-constrained and need a worker with the `json_schema` feature.",
    )
    tools = serializers.ListField(
        child=ToolSerializer(), required=False, allow_null=True, max_length=128,
        help_text="Function tools. Needs a worker with the `tools` feature (else a 400 naming `tools`).",
    )
    tool_choice = ToolChoiceField(required=False, allow_null=True)
    parallel_tool_calls = StrictBooleanField(required=False, allow_null=True)
    metadata = MetadataField(required=False, allow_null=True)
    store = StrictBooleanField(required=False, allow_null=True)
    reasoning_effort = StrictCharField(required=False, allow_null=True, max_length=32)
    service_tier = StrictCharField(required=False, allow_null=True, max_length=32)
    modalities = serializers.ListField(child=StrictCharField(max_length=32), required=False, allow_null=True, max_length=8)

    def validate(self, attrs):
        if attrs.get("top_logprobs") is not None and attrs.get("logprobs") is not True:
            raise serializers.ValidationError({"top_logprobs": ["needs logprobs: true"]})
        choice = attrs.get("tool_choice")
        declared = {tool["function"]["name"] for tool in attrs.get("tools") or ()}
        if choice == "required" and not declared:
            raise serializers.ValidationError({"tool_choice": ['"required" needs tools']})
        if isinstance(choice, Mapping) and choice["function"]["name"] not in declared:
            raise serializers.ValidationError({"tool_choice": [f"names the function {choice['function']['name']!r}, which tools do not declare"]})
        return attrs


class CompletionSerializer(GenerationSerializer):
    """`/v1/completions`: a prompt instead of messages. Fields not listed here are forwarded unchanged."""

    prompt = serializers.JSONField()
    echo = serializers.BooleanField(required=False, default=False)
    # Here (the legacy API) logprobs is how many, not a switch.
    logprobs = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=5)
    suffix = StrictCharField(required=False, allow_null=True, allow_blank=True)

    def validate_prompt(self, value):
        if isinstance(value, str) or (
            isinstance(value, list) and 0 < len(value) <= MAX_INPUTS and all(isinstance(v, str) for v in value)
        ):
            return value
        raise serializers.ValidationError("must be a string or a list of strings")


class EmbeddingsSerializer(WorkerExtensions):
    """An embeddings request. Fields not listed here are forwarded to the worker unchanged."""

    model = ModelField(max_length=400)
    input = serializers.JSONField()
    encoding_format = serializers.ChoiceField(["float", "base64"], required=False, default="float")
    dimensions = StrictIntegerField(required=False, min_value=1, max_value=65536)
    user = StrictCharField(required=False, allow_null=True, max_length=256)

    def validate_input(self, value):
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and 0 < len(value) <= MAX_INPUTS and all(isinstance(v, str) and v for v in value):
            return value
        raise serializers.ValidationError(f"must be a non-empty string or a list of 1 to {MAX_INPUTS} non-empty strings")


class ImagesSerializer(WorkerExtensions):
    """An image generation request. Fields not listed here are forwarded to the worker unchanged."""

    model = ModelField(max_length=400, required=False, default="stabilityai/stable-diffusion-xl-base-1.0")
    prompt = serializers.CharField(max_length=32000)
    negative_prompt = serializers.CharField(required=False, allow_blank=True, default="", max_length=32000)
    n = serializers.IntegerField(required=False, default=1, min_value=1, max_value=10)
    size = serializers.RegexField(r"^\d{2,4}x\d{2,4}$", required=False, default="1024x1024")
    response_format = serializers.ChoiceField(["b64_json"], required=False, default="b64_json")
    user = StrictCharField(required=False, allow_null=True, max_length=256)


# --- Validating on the hot path ---------------------------------------------------------

_instances: dict[type[serializers.Serializer], serializers.Serializer] = {}


def validate(serializer_class: type[serializers.Serializer], data) -> dict:
    """`serializer_class(data=data)`'s validated data, or its ValidationError.

    A DRF serializer deep-copies all its declared fields, nested ones included,
    each time it is made: 0.5 ms for a chat request against 0.07 ms for the
    validation itself (bench/RESULTS.md). The inference endpoints therefore keep
    one instance per class and reset it for each request. This is safe because
    validation runs start to end on the event loop's thread, with no context,
    and these serializers keep no state but the data and results reset here.
    """
    serializer = _instances.get(serializer_class)
    if serializer is None:
        serializer = _instances[serializer_class] = serializer_class()
    serializer.initial_data = data
    try:
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data
    finally:  # keep no caller's data between requests
        for state in ("initial_data", "_validated_data", "_errors", "_data"):
            serializer.__dict__.pop(state, None)
