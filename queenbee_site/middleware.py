"""One log line and the HTTP metrics for every request, and its request id."""

import re
import time
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from runtime import client_ip, logs, observe

# A caller (or the proxy in front) may name its request; anything else is replaced.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def endpoint_of(request) -> str:
    """The URL pattern that served the request: a bounded label, unlike the path."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.url_name == "unknown_url":
        return "unmatched"
    return match.route or "unmatched"


class RequestLogMiddleware:
    """Outermost middleware: it sees every answer, the draining 503s included.

    A streamed response is logged when its last chunk is sent (or the caller
    leaves), so the line carries the whole duration.
    """

    async_capable = True
    sync_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    async def __call__(self, request):
        given = request.headers.get("X-Request-Id", "")
        rid = given if REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        logs.request_id.set(rid)
        started = time.monotonic()
        response = await self.get_response(request)
        response["X-Request-Id"] = rid

        def finished() -> None:
            observe.request_finished(
                method=request.method, endpoint=endpoint_of(request), path=request.path,
                status=response.status_code, seconds=time.monotonic() - started, ip=client_ip.from_request(request),
            )

        if response.streaming:
            response.streaming_content = _then(response, finished)
        else:
            finished()
        return response


def _then(response, callback):
    """The response's chunks, then `callback` however the stream ends."""
    content = response.streaming_content
    if response.is_async:

        async def chunks():
            try:
                async for chunk in content:
                    yield chunk
            finally:
                callback()

    else:

        def chunks():
            try:
                yield from content
            finally:
                callback()

    return chunks()
