"""The base of every async API view: adrf's APIView, authenticating on the event loop.

adrf 0.1.14 runs DRF's `initial()` (authentication, permissions, throttles) in a
worker thread through sync_to_async, and drives an `async def authenticate` from
that thread with async_to_sync, back on the event loop. Authentication may wait on
the remote billing backend (`check`): there it would hold a thread while it waits,
or hop twice. So the caller is resolved here, awaited on the loop, before adrf's
dispatch; `ApiKeyAuthentication` (run inside `initial()`) then returns that result
or raises its error, and DRF renders it as it renders any other.
"""

from adrf.views import APIView
from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from .auth import RESOLVED, ApiKeyAuthentication, resolve


class ApiView(APIView):
    """adrf's APIView whose API-key authentication runs on the event loop."""

    async def async_dispatch(self, request, *args, **kwargs):
        if any(issubclass(cls, ApiKeyAuthentication) for cls in self.authentication_classes):
            setattr(request, RESOLVED, await resolve(request))
        return rendered(await super().async_dispatch(request, *args, **kwargs))


def rendered(response):
    """A JSON Response rendered here, on the loop, as a plain HttpResponse.

    Django renders any response that has a `render` method through
    sync_to_async: a thread hop per request to serialise a dict (bench/RESULTS.md).
    JSON rendering does no I/O, so it is done here and the handler sees a
    response with nothing left to render. Other renderers (the schema's) keep
    Django's way.
    """
    if not isinstance(response, Response) or not isinstance(getattr(response, "accepted_renderer", None), JSONRenderer):
        return response
    response.render()
    plain = HttpResponse(response.content, status=response.status_code, headers=response.headers)
    plain.cookies = response.cookies
    return plain
