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

from .auth import RESOLVED, ApiKeyAuthentication, resolve


class ApiView(APIView):
    """adrf's APIView whose API-key authentication runs on the event loop."""

    async def async_dispatch(self, request, *args, **kwargs):
        if any(issubclass(cls, ApiKeyAuthentication) for cls in self.authentication_classes):
            setattr(request, RESOLVED, await resolve(request))
        return await super().async_dispatch(request, *args, **kwargs)
