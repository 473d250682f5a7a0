"""What every API's part of /v1/openapi.json shares (drf-spectacular): the bearer-key
scheme, OpenAI's error envelope and the errors every endpoint may answer, and the
schema and docs views.

Each app describes its own endpoints in its own `openapi.py` with these pieces.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Registered by being defined: api's AppConfig imports this module."""

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
    """OpenAI's error envelope (api/errors.py); every error of the API has this shape."""

    error = ErrorDetail()


def error_response(description: str) -> OpenApiResponse:
    """An error answer of one endpoint, in the envelope, described."""
    return OpenApiResponse(ErrorEnvelope, description=description)


COMMON_ERRORS = {
    401: error_response("Missing or wrong API key."),
    405: error_response("Method not allowed."),
    503: error_response(
        "This process is shutting down (code `shutting_down`), no worker can take the job now, "
        "or the remote billing backend did not answer about the key (`billing_unavailable`)."
    ),
}
# The errors of an endpoint that runs a job on a worker (inference, and the admission of a fine-tune).
INFERENCE_ERRORS = {
    **COMMON_ERRORS,
    400: error_response(
        "The request is invalid; `param` names the field. `unsupported_feature`: no connected worker that "
        "could serve it has the feature the field needs; `context_length_exceeded`: the prompt fits no worker's context."
    ),
    413: error_response("The request body is larger than MAX_REQUEST_BYTES."),
    415: error_response("The body is not JSON."),
    429: error_response("Out of credits (`insufficient_quota`) or over the key's rate limit (`rate_limit_exceeded`, with Retry-After)."),
    502: error_response("The worker failed."),
    503: error_response(
        "No worker can serve the request: `no_worker_fits` at once, `all_workers_busy` after waiting in line; "
        "or the remote billing backend did not answer (`billing_unavailable`)."
    ),
    504: error_response("The worker did not answer in time."),
}


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
