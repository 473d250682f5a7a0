"""OpenAI's error envelope, produced here and nowhere else.

Services raise the ApiError subclasses below; views never build error bodies.
Status codes follow DESIGN.md: 400 bad request, 401 bad key, 404 unknown object,
429 over quota, 502 worker failed, 503 no worker can take it now, 504 timed out.
"""

import logging
from typing import Any

from django import db
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views import csrf
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf
from rest_framework.response import Response

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after  # seconds, sent as Retry-After
        if code is not None:
            self.code = code


class InvalidRequest(ApiError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(ApiError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class NotFound(ApiError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class InsufficientQuota(ApiError):
    """The caller's account cannot pay for another request."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class RateLimited(ApiError):
    """Over the key's requests per minute or concurrent streams."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class BillingUnavailable(ApiError):
    """The remote billing backend did not answer `check`."""

    status = 503
    type = "service_unavailable"
    code = "billing_unavailable"


class NoWorkerAvailable(ApiError):
    """No connected worker can serve the request, now or (with `code`) ever."""

    status = 503
    type = "service_unavailable"
    code = "no_worker_available"


class ChannelLayerDown(ApiError):
    """The channel layer (Redis) cannot carry a job to its worker (workers/dispatch.py: LayerDown)."""

    status = 503
    type = "service_unavailable"
    code = "channel_layer_unavailable"


class WorkerFailed(ApiError):
    status = 502
    type = "worker_error"
    code = "worker_failed"


class WorkerTimedOut(ApiError):
    status = 504
    type = "timeout"
    code = "worker_timeout"


def error_body(message: str, *, type: str, param: str | None = None, code: Any = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def api_error_body(exc: ApiError) -> dict:
    return error_body(exc.message, type=exc.type, param=exc.param, code=exc.code)


def _first_validation_error(detail: Any, path: str = "") -> tuple[str | None, str]:
    """The first (field, message) of a DRF ValidationError detail, with dotted paths."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                return _first_validation_error(value, path)
            return _first_validation_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(detail, list) and detail:
        first = next((d for d in detail if d), detail[0])
        if isinstance(first, (dict, list)):
            index = detail.index(first)
            return _first_validation_error(first, f"{path}.{index}" if path else str(index))
        return _first_validation_error(first, path)
    return (path or None), str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's exception handler: every error leaves in OpenAI's envelope."""
    if isinstance(exc, ApiError):
        response = Response(api_error_body(exc), status=exc.status)
        if exc.retry_after is not None:
            response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, RequestDataTooBig):
        message = f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        return Response(error_body(message, type="invalid_request_error", code="request_too_large"), status=413)
    if isinstance(exc, drf.ValidationError):
        param, message = _first_validation_error(exc.detail)
        text = f"{param}: {message}" if param else message
        return Response(error_body(text, type="invalid_request_error", param=param), status=400)
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        message = str(exc.detail) if isinstance(exc, drf.AuthenticationFailed) else (
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'."
        )
        return Response(
            error_body(message, type="invalid_request_error", code="invalid_api_key"), status=401
        )
    if isinstance(exc, drf.APIException):
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        response = Response(error_body(str(exc.detail), type=kind), status=exc.status_code)
        if isinstance(exc, drf.Throttled) and exc.wait:
            response["Retry-After"] = str(int(exc.wait) + 1)
        return response
    if isinstance(exc, (db.OperationalError, db.InterfaceError)):
        log.warning("database unavailable: %s", exc)
        return Response(error_body("The database is unavailable; retry shortly.", type="service_unavailable", code="database_unavailable"), status=503)
    log.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
    return Response(error_body("The server had an error while processing your request.", type="server_error"), status=500)


def json_error(status: int, message: str, *, type: str, code: Any = None) -> JsonResponse:
    """For Django-level errors that never reach DRF (404 routes, 500s)."""
    return JsonResponse(error_body(message, type=type, code=code), status=status)


@csrf_exempt  # API callers hold a bearer key, not a CSRF cookie: any method gets the 404
def unknown_url(request, *args, **kwargs) -> JsonResponse:
    return handler404(request)


def handler404(request, exception=None) -> JsonResponse:
    return json_error(404, f"Unknown URL: {request.method} {request.path}", type="invalid_request_error", code="unknown_url")


def handler400(request, exception=None) -> JsonResponse:
    return json_error(400, "Bad request.", type="invalid_request_error")


def handler500(request) -> JsonResponse:
    return json_error(500, "The server had an error while processing your request.", type="server_error")


# The API's top-level paths: every answer under them is JSON (the admin may be HTML).
API_ROOTS = ("v1", "worker")


def is_api_path(path: str) -> bool:
    root = path.strip("/").split("/", 1)[0]
    return root in API_ROOTS


def csrf_failure(request, reason: str = ""):
    """settings.CSRF_FAILURE_VIEW: the envelope on API paths, Django's page elsewhere (the admin).

    Every API view is exempt from CSRF (a test walks the URLs), so on an API path
    this is a safety net: a view added without the exemption still answers JSON.
    """
    if is_api_path(request.path):
        return json_error(403, f"CSRF check failed ({reason}); API calls need no CSRF token.", type="invalid_request_error", code="csrf_failed")
    return csrf.csrf_failure(request, reason)
