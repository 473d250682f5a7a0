"""What /v1/openapi.json says about each endpoint (drf-spectacular).

The request schemas are the serializers that validate requests; the response
schemas below describe what the views and services really return (checked by
schemathesis in routing/tests/test_openapi.py). Each view carries one
decorator from here and nothing else about documentation; the shared pieces
(the key scheme, the error envelope, the schema views) are api/openapi.py's.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers

from api.openapi import COMMON_ERRORS, INFERENCE_ERRORS, error_response

from .serializers import ChatCompletionSerializer, CompletionSerializer, EmbeddingsSerializer, ImagesSerializer

# --- Replies -------------------------------------------------------------------------


class Usage(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class ChatMessageOut(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_null=True, required=False)


class ChatChoice(serializers.Serializer):
    index = serializers.IntegerField(required=False)
    message = ChatMessageOut(required=False)
    finish_reason = serializers.CharField(allow_null=True, required=False)


class ChatCompletion(serializers.Serializer):
    """The worker's reply, with Queenbee's id, model name and usage."""

    id = serializers.CharField()
    object = serializers.CharField(help_text='Always "chat.completion".')
    created = serializers.IntegerField()
    model = serializers.CharField()
    choices = ChatChoice(many=True)
    usage = Usage()


class CompletionChoice(serializers.Serializer):
    index = serializers.IntegerField(required=False)
    text = serializers.CharField(allow_blank=True, required=False)
    finish_reason = serializers.CharField(allow_null=True, required=False)


class Completion(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(help_text='Always "text_completion".')
    created = serializers.IntegerField()
    model = serializers.CharField()
    choices = CompletionChoice(many=True)
    usage = Usage()


@extend_schema_field({"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]})
class EmbeddingVector(serializers.Field):
    """A list of floats, or base64 when `encoding_format` is `base64`."""


class Embedding(serializers.Serializer):
    object = serializers.CharField(help_text='Always "embedding".')
    index = serializers.IntegerField()
    embedding = EmbeddingVector()


class EmbeddingUsage(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class EmbeddingList(serializers.Serializer):
    object = serializers.CharField(help_text='Always "list".')
    data = Embedding(many=True)
    model = serializers.CharField()
    usage = EmbeddingUsage()


class Image(serializers.Serializer):
    b64_json = serializers.CharField(required=False)
    url = serializers.CharField(required=False)


class ImageList(serializers.Serializer):
    created = serializers.IntegerField()
    data = Image(many=True)


class Model(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(help_text='Always "model".')
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class ModelList(serializers.Serializer):
    object = serializers.CharField(help_text='Always "list".')
    data = Model(many=True)


class WorkerCounts(serializers.Serializer):
    connected = serializers.IntegerField(help_text="Live worker connections, busy or not.")
    busy = serializers.IntegerField()
    total = serializers.IntegerField(help_text="Same as `connected` (the original's name).")
    waiting = serializers.IntegerField(help_text="Requests waiting in line for a busy worker.")


SSE = OpenApiResponse(
    OpenApiTypes.STR,
    description="With `stream: true`: server-sent events, one `data: {chunk}` per token, ending with `data: [DONE]` "
    "(a worker that fails mid-stream is replaced by another that continues the same text; an error event and "
    "no `[DONE]` when none can). Lines starting with `:` are keep-alive comments, which SSE clients ignore.",
)

# --- One decorator per operation ---------------------------------------------------------

chat_completions = extend_schema(
    operation_id="createChatCompletion", tags=["OpenAI"], request=ChatCompletionSerializer,
    responses={(200, "application/json"): ChatCompletion, (200, "text/event-stream"): SSE, **INFERENCE_ERRORS},
)
completions = extend_schema(
    operation_id="createCompletion", tags=["OpenAI"], request=CompletionSerializer,
    responses={(200, "application/json"): Completion, (200, "text/event-stream"): SSE, **INFERENCE_ERRORS},
)
embeddings = extend_schema(
    operation_id="createEmbedding", tags=["OpenAI"], request=EmbeddingsSerializer,
    responses={200: EmbeddingList, **INFERENCE_ERRORS},
)
images = extend_schema(
    operation_id="createImage", tags=["OpenAI"], request=ImagesSerializer,
    responses={200: ImageList, **INFERENCE_ERRORS},
)
list_models = extend_schema(
    operation_id="listModels", tags=["OpenAI"], responses={200: ModelList, **COMMON_ERRORS},
)
retrieve_model = extend_schema(
    operation_id="retrieveModel", tags=["OpenAI"],
    parameters=[OpenApiParameter("model_id", str, OpenApiParameter.PATH, description="A model name; may contain `/`.")],
    responses={200: Model, 404: error_response("No worker offers this model."), **COMMON_ERRORS},
)
worker_stats = extend_schema(
    operation_id="getWorkerStats", tags=["Workers"], auth=[],
    responses={200: WorkerCounts, 405: COMMON_ERRORS[405], 503: COMMON_ERRORS[503]},
)
