"""GET /v1/usage: the calling key's own usage."""

from asgiref.sync import sync_to_async
from rest_framework import serializers
from rest_framework.response import Response

from api.api_view import ApiView

from . import openapi, selectors


class UsageQuery(serializers.Serializer):
    """The query string of GET /v1/usage."""

    days = serializers.IntegerField(min_value=1, max_value=selectors.MAX_USAGE_DAYS, default=30)


class UsageView(ApiView):
    @openapi.usage
    async def get(self, request):
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = await sync_to_async(selectors.usage_by_day_and_model)(caller=request.user, days=query.validated_data["days"])
        return Response({"object": "list", "days": query.validated_data["days"], "data": data})
