"""The OpenAI-compatible endpoints. Each view validates, calls one service, renders."""

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from api.api_view import ApiView
from api.errors import NotFound
from finetune import selectors as fine_tuned
from finetune.services import owner_of

from . import openapi, selectors, services
from .serializers import ChatCompletionSerializer, CompletionSerializer, EmbeddingsSerializer, ImagesSerializer, validate


def validated(serializer_class, request) -> dict:
    return validate(serializer_class, request.data)


def event_stream(events) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx must not buffer tokens
    return response


class ChatCompletionsView(ApiView):
    @openapi.chat_completions
    async def post(self, request):
        data = validated(ChatCompletionSerializer, request)
        spec = services.chat_spec(data=data, caller=request.user)
        spec = await fine_tuned.with_fine_tuned_model(spec, base_url=request.build_absolute_uri("/"))
        if spec.stream:
            return event_stream(await services.stream(spec=spec, prefix="chatcmpl", object_name="chat.completion.chunk"))
        return Response(await services.complete(spec=spec, prefix="chatcmpl", object_name="chat.completion"))


class CompletionsView(ApiView):
    @openapi.completions
    async def post(self, request):
        data = validated(CompletionSerializer, request)
        spec = services.chat_spec(data=data, caller=request.user, openai_url="/v1/completions")
        spec = await fine_tuned.with_fine_tuned_model(spec, base_url=request.build_absolute_uri("/"))
        if spec.stream:
            return event_stream(await services.stream(spec=spec, prefix="cmpl", object_name="text_completion"))
        return Response(await services.complete(spec=spec, prefix="cmpl", object_name="text_completion"))


class EmbeddingsView(ApiView):
    @openapi.embeddings
    async def post(self, request):
        data = validated(EmbeddingsSerializer, request)
        return Response(await services.embeddings(spec=services.embeddings_spec(data=data, caller=request.user)))


class ImagesView(ApiView):
    @openapi.images
    async def post(self, request):
        data = validated(ImagesSerializer, request)
        return Response(await services.images(spec=services.images_spec(data=data, caller=request.user)))


def model_entry(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": name.split("/")[0] if "/" in name else "queenbee"}


class ModelsView(ApiView):
    @openapi.list_models
    async def get(self, request):
        names = await sync_to_async(selectors.advertised_models)()
        own = await sync_to_async(fine_tuned.fine_tuned_models)(owner=owner_of(request.user))
        return Response({"object": "list", "data": own + [model_entry(n) for n in names]})


class ModelDetailView(ApiView):
    @openapi.retrieve_model
    async def get(self, request, model_id: str):
        own = await sync_to_async(fine_tuned.fine_tuned_model)(owner=owner_of(request.user), name=model_id)
        if own:
            return Response(own)
        names = await sync_to_async(selectors.advertised_models)()
        if model_id not in names:
            raise NotFound(f"The model '{model_id}' does not exist or no worker offers it.", param="model", code="model_not_found")
        return Response(model_entry(model_id))


class WorkerStatsView(ApiView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @openapi.worker_stats
    async def get(self, request):
        return Response(await sync_to_async(selectors.worker_counts)())
