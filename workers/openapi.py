"""What /v1/openapi.json says about /worker/detail (the conventions of api/openapi.py)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers

from api.openapi import COMMON_ERRORS, error_response


class WorkerDetail(serializers.Serializer):
    """One live worker, anonymised (workers/selectors.worker_detail)."""

    busy = serializers.BooleanField()
    worker_version = serializers.CharField(allow_blank=True)
    capabilities = serializers.ListField(child=serializers.CharField())
    gpu_cnt = serializers.IntegerField()
    context_length = serializers.IntegerField(
        help_text="The context window in tokens the worker announced; 0 when it did not say (it is then assumed to hold any request).",
    )
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
        200: WorkerDetail(many=True), 400: error_response("`query` holds a NUL character."), 401: COMMON_ERRORS[401],
        405: COMMON_ERRORS[405], 503: COMMON_ERRORS[503],
    },
)
