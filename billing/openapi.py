"""What /v1/openapi.json says about /v1/usage (the conventions of api/openapi.py)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers

from api.openapi import COMMON_ERRORS, error_response


class UsageRow(serializers.Serializer):
    date = serializers.DateField()
    model = serializers.CharField()
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    images = serializers.IntegerField()
    credits = serializers.IntegerField(help_text="Charged to the key's account (0 for an unmetered key or remote billing).")


class UsageList(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    days = serializers.IntegerField()
    data = UsageRow(many=True)


usage = extend_schema(
    operation_id="getUsage",
    tags=["Billing"],
    summary="The calling key's own usage by UTC day and model",
    parameters=[OpenApiParameter("days", int, OpenApiParameter.QUERY, description="Days back from now, 1 to 366 (default 30).")],
    responses={200: UsageList, 400: error_response("`days` is not between 1 and 366."), **COMMON_ERRORS},
)
