"""What /v1/openapi.json says about each endpoint (drf-spectacular).

The request schemas are the serializers that validate requests; the response
schemas below describe what the views and services really return (checked by
schemathesis in routing/tests/test_openapi.py). Each view carries one
decorator from here and nothing else about documentation.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from .serializers import ChatCompletionSerializer, CompletionSerializer, EmbeddingsSerializer, ImagesSerializer


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key (`qb-…`) or the BYPASS_TOKEN."}


# --- Errors ---------------------------------------------------------------------


class ErrorDetail(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)


class ErrorEnvelope(serializers.Serializer):
    """OpenAI's error envelope; every error of the API has this shape."""

    error = ErrorDetail()


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorEnvelope, description=description)


COMMON_ERRORS = {
    401: _error("Missing or wrong API key."),
    405: _error("Method not allowed."),
    503: _error(
        "This process is shutting down (code `shutting_down`), no worker can take the job now, "
        "or the remote billing backend did not answer about the key (`billing_unavailable`)."
    ),
}
INFERENCE_ERRORS = {
    **COMMON_ERRORS,
    400: _error(
        "The request is invalid; `param` names the field. `unsupported_feature`: no connected worker that "
        "could serve it has the feature the field needs; `context_length_exceeded`: the prompt fits no worker's context."
    ),
    413: _error("The request body is larger than MAX_REQUEST_BYTES."),
    415: _error("The body is not JSON."),
    429: _error("Out of credits (`insufficient_quota`) or over the key's rate limit (`rate_limit_exceeded`, with Retry-After)."),
    502: _error("The worker failed."),
    503: _error(
        "No worker can serve the request: `no_worker_fits` at once, `all_workers_busy` after waiting in line; "
        "or the remote billing backend did not answer (`billing_unavailable`)."
    ),
    504: _error("The worker did not answer in time."),
}


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
    responses={200: Model, 404: _error("No worker offers this model."), **COMMON_ERRORS},
)
worker_stats = extend_schema(
    operation_id="getWorkerStats", tags=["Workers"], auth=[],
    responses={200: WorkerCounts, 405: COMMON_ERRORS[405], 503: COMMON_ERRORS[503]},
)


class WorkerDetail(serializers.Serializer):
    """One live worker, anonymised (stats/selectors.worker_detail)."""

    busy = serializers.BooleanField()
    worker_version = serializers.CharField(allow_blank=True)
    capabilities = serializers.ListField(child=serializers.CharField())
    gpu_cnt = serializers.IntegerField()
    perf = serializers.FloatField(allow_null=True, help_text="Seconds per token at the reference model size.")
    cnt = serializers.IntegerField(help_text="Jobs served.")
    punished = serializers.BooleanField()
    trust = serializers.ChoiceField(
        choices=["new", "verified", "suspect", "quarantined", "trusted"], required=False,
        help_text="Only for workers of the owner whose auth key is the query (or whose API key calls with query=user).",
    )
    trust_reason = serializers.CharField(required=False, allow_blank=True, help_text="Why, when not in good standing.")


worker_detail = extend_schema(
    operation_id="listWorkerDetails", tags=["Workers"],
    parameters=[
        OpenApiParameter(
            "query", str, OpenApiParameter.QUERY,
            description="Keep one owner's workers: a pubkey, an auth key or a user id; `user` means the caller's own (needs a key).",
        )
    ],
    responses={
        200: WorkerDetail(many=True), 400: _error("`query` holds a NUL character."), 401: COMMON_ERRORS[401],
        405: COMMON_ERRORS[405], 503: COMMON_ERRORS[503],
    },
)


# --- The schema and its docs page -----------------------------------------------------


class JsonErrors:
    """Errors in OpenAI's envelope as plain JSON, whatever the view renders when it succeeds
    (the schema's own media type, the docs page's HTML)."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and response.status_code >= 400:
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(JsonErrors, SpectacularJSONAPIView):
    pass


class DocsView(JsonErrors, SpectacularSwaggerView):
    pass
