"""Request validation for the OpenAI endpoints (the edge: nothing unchecked passes).

Unknown fields are ignored, as OpenAI does; only validated fields are sent on
to workers. Errors name the field (see errors.exception_handler).
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .model_names import InvalidModelName, parse_model

MAX_MESSAGES = 4096
MAX_TOKENS_LIMIT = 1_000_000
MAX_INPUTS = 2048


class ModelField(serializers.CharField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            parse_model(value)
        except InvalidModelName as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class GpuFilterSerializer(serializers.Serializer):
    min_version = serializers.RegexField(r"^\d+(\.\d+){0,3}$", required=False, max_length=32)
    capabilities = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=16
    )
    pubkey = serializers.CharField(required=False, max_length=200)
    worker_id = serializers.CharField(required=False, max_length=200)
    slug = serializers.CharField(required=False, max_length=64, allow_blank=True)
    user_id = serializers.CharField(required=False, max_length=200)


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


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(["system", "developer", "user", "assistant", "tool", "function"])
    content = ContentField(required=False, allow_null=True, default="")
    name = serializers.CharField(required=False, max_length=256)
    tool_calls = serializers.ListField(child=serializers.DictField(), required=False)
    tool_call_id = serializers.CharField(required=False, max_length=256)


class StreamOptionsSerializer(serializers.Serializer):
    include_usage = serializers.BooleanField(required=False, default=False)


class WorkerExtensions(serializers.Serializer):
    """The original's extension fields, accepted on every inference endpoint."""

    timeout = serializers.FloatField(required=False, min_value=0.1, max_value=86400)
    ft_timeout = serializers.FloatField(required=False, min_value=0.1, max_value=86400)
    gpu_filter = GpuFilterSerializer(required=False)


class ChatCompletionSerializer(WorkerExtensions):
    model = ModelField(max_length=400)
    messages = serializers.ListField(child=MessageSerializer(), min_length=1, max_length=MAX_MESSAGES)
    stream = serializers.BooleanField(required=False, default=False)
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)
    max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_TOKENS_LIMIT)
    max_completion_tokens = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_TOKENS_LIMIT
    )
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    n = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1)
    stop = serializers.JSONField(required=False, allow_null=True)
    presence_penalty = serializers.FloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    frequency_penalty = serializers.FloatField(required=False, allow_null=True, min_value=-2, max_value=2)
    logit_bias = serializers.DictField(child=serializers.FloatField(), required=False, allow_null=True)
    seed = serializers.IntegerField(required=False, allow_null=True)
    user = serializers.CharField(required=False, allow_null=True, max_length=256)
    response_format = serializers.DictField(required=False, allow_null=True)
    tools = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True, max_length=128)
    tool_choice = serializers.JSONField(required=False, allow_null=True)
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


class CompletionSerializer(ChatCompletionSerializer):
    """`/v1/completions`: a prompt instead of messages."""

    messages = None
    prompt = serializers.JSONField()
    echo = serializers.BooleanField(required=False, default=False)

    def validate_prompt(self, value):
        if isinstance(value, str) or (
            isinstance(value, list) and 0 < len(value) <= MAX_INPUTS and all(isinstance(v, str) for v in value)
        ):
            return value
        raise serializers.ValidationError("must be a string or a list of strings")


class EmbeddingsSerializer(WorkerExtensions):
    model = ModelField(max_length=400)
    input = serializers.JSONField()
    encoding_format = serializers.ChoiceField(["float", "base64"], required=False, default="float")
    dimensions = serializers.IntegerField(required=False, min_value=1)
    user = serializers.CharField(required=False, allow_null=True, max_length=256)

    def validate_input(self, value):
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and 0 < len(value) <= MAX_INPUTS and all(isinstance(v, str) and v for v in value):
            return value
        raise serializers.ValidationError(f"must be a non-empty string or a list of 1 to {MAX_INPUTS} non-empty strings")


class ImagesSerializer(WorkerExtensions):
    model = ModelField(max_length=400, required=False, default="stabilityai/stable-diffusion-xl-base-1.0")
    prompt = serializers.CharField(max_length=32000)
    negative_prompt = serializers.CharField(required=False, allow_blank=True, default="", max_length=32000)
    n = serializers.IntegerField(required=False, default=1, min_value=1, max_value=10)
    size = serializers.RegexField(r"^\d{2,4}x\d{2,4}$", required=False, default="1024x1024")
    response_format = serializers.ChoiceField(["b64_json"], required=False, default="b64_json")
    user = serializers.CharField(required=False, allow_null=True, max_length=256)


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
