"""`/v1/responses`: create (streamed or not), retrieve, delete, list input items.

Each view validates, calls one service (routing/responses_services.py), renders.
"""

from rest_framework.response import Response

from api.api_view import ApiView
from api.errors import InvalidRequest
from finetune.services import owner_of

from . import responses_openapi as openapi
from . import responses_services as services
from .responses_serializers import InputItemsQuerySerializer, ResponseCreateSerializer
from .serializers import validate
from .views import event_stream


class ResponsesView(ApiView):
    @openapi.create_response
    async def post(self, request):
        body = validate(ResponseCreateSerializer, request.data)
        kwargs = dict(body=body, caller=request.user, owner=owner_of(request.user), base_url=request.build_absolute_uri("/"))
        if body["stream"]:
            return event_stream(await services.stream_response(**kwargs))
        return Response(await services.create_response(**kwargs))


class ResponseDetailView(ApiView):
    @openapi.retrieve_response
    async def get(self, request, response_id: str):
        if request.query_params.get("stream") not in (None, "false"):
            raise InvalidRequest("Replaying a stored response as a stream is not supported.", param="stream")
        return Response(await services.retrieve_response(owner=owner_of(request.user), response_id=response_id))

    @openapi.delete_response
    async def delete(self, request, response_id: str):
        return Response(await services.delete_response(owner=owner_of(request.user), response_id=response_id))


class ResponseInputItemsView(ApiView):
    @openapi.list_input_items
    async def get(self, request, response_id: str):
        query = validate(InputItemsQuerySerializer, request.query_params)
        return Response(await services.list_input_items(owner=owner_of(request.user), response_id=response_id, **query))
