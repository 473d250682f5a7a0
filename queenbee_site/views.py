"""Operator endpoints: /healthz, /readyz and /metrics (not part of the OpenAI API)."""

import asyncio
import hmac
import logging
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from api.errors import json_error

from runtime import metrics

log = logging.getLogger(__name__)

# Each readiness check gets this long. Probes usually time out after 1-5 s; a
# dependency slower than this is as good as down for serving requests.
READY_CHECK_TIMEOUT = 2.0


@require_safe
async def healthz(request) -> JsonResponse:
    """The process is up and answering. Touches nothing else."""
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _channel_layer() -> None:
    # A plain (not "specific.") channel of its own: receiving on it cannot take
    # a message meant for this process's reply channel (see workers/mailbox.py).
    layer = get_channel_layer()
    name = f"queenbee.readyz.{uuid.uuid4().hex}"
    await layer.send(name, {"type": "readyz.ping"})
    await layer.receive(name)


async def _cache() -> None:
    key = f"queenbee:readyz:{uuid.uuid4().hex}"
    await cache.aset(key, 1, timeout=10)
    if await cache.aget(key) != 1:
        raise RuntimeError("the cache lost a value")
    await cache.adelete(key)


async def _check(name: str, probe) -> str:
    try:
        await asyncio.wait_for(probe(), READY_CHECK_TIMEOUT)
        return "ok"
    except Exception:
        log.warning("readiness check %s failed", name, exc_info=True)
        return "failing"


@require_safe
async def readyz(request) -> JsonResponse:
    """Ready for traffic: the database, the channel layer and the cache answer."""
    checks = {
        "database": await _check("database", sync_to_async(_database)),
        "channel_layer": await _check("channel_layer", _channel_layer),
        "cache": await _check("cache", _cache),
    }
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


@require_safe
def metrics_view(request) -> HttpResponse:
    """Prometheus text. Sync on purpose: the cluster gauges query the database."""
    if not settings.METRICS_TOKEN:
        return json_error(404, "Metrics are off: set METRICS_TOKEN to serve them.", type="invalid_request_error", code="unknown_url")
    header = request.headers.get("Authorization", "")
    token = header.split(" ", 1)[1] if header.startswith("Bearer ") else ""
    if not hmac.compare_digest(token.encode(), settings.METRICS_TOKEN.encode()):
        response = json_error(401, "Send the metrics token as 'Authorization: Bearer METRICS_TOKEN'.", type="invalid_request_error", code="invalid_api_key")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)
