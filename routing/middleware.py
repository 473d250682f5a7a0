"""Refuse new API work while this process drains for shutdown."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from api.errors import json_error
from runtime.process import process


class DrainingMiddleware:
    """503 once the process is draining (runtime/process.py).

    A load balancer sees the 503s (and the failing health check) and sends the
    work elsewhere, while requests already running here finish.
    """

    async_capable = True
    sync_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    async def __call__(self, request):
        if process.stopping:
            return json_error(503, "This Queenbee process is shutting down; retry the request.", type="service_unavailable", code="shutting_down")
        return await self.get_response(request)
