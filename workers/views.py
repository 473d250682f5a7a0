"""`GET /worker/detail`: connected workers, anonymised."""

from adrf.views import APIView
from asgiref.sync import sync_to_async
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from api.errors import InvalidRequest, Unauthorized

from . import openapi, selectors


class WorkerDetailView(APIView):
    """Public. `?query=<pubkey | auth key | user id>` keeps that owner's workers;
    `?query=user` with an API key keeps the caller's own."""

    permission_classes = [AllowAny]

    @openapi.worker_detail
    async def get(self, request):
        query = request.query_params.get("query", "")
        if "\x00" in query:  # PostgreSQL refuses NUL in text; no identifier holds one
            raise InvalidRequest("query must not contain NUL characters.", param="query")
        if query == "user" and not request.auth:
            raise Unauthorized(
                "query=user lists the workers connected with your API key: send it as 'Authorization: Bearer YOUR_KEY'."
            )
        return Response(await sync_to_async(selectors.worker_detail)(query=query, caller_token=request.auth or ""))
