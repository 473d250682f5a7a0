"""Django for the API path (`/v1/…`, `/worker/…`): a shorter, hop-free middleware stack.

The full stack (sessions, CSRF, auth, messages: the admin's) costs a thread hop
per hook on every request, since Django runs a sync middleware hook with
`sync_to_async`; on a 2-core machine those hops cost more than the rest of a
request (bench/RESULTS.md). The API needs none of them: DRF views are exempt
from CSRF and callers authenticate with a bearer key.

Django still runs each request in its own ThreadSensitiveContext (a new thread
for its first `sync_to_async` call, such as the request_started signal):
sharing one sync thread between all requests was tried, and one slow database
connect (PostgreSQL cut off) then stalled every request and worker of the
process past recovery.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string


class Inline:
    """Runs a MiddlewareMixin's hooks on the event loop instead of a thread.

    Only for middleware whose hooks do no I/O (SecurityMiddleware and
    CommonMiddleware look at headers and settings).
    """

    async_capable = True
    sync_capable = False

    def __init__(self, middleware: MiddlewareMixin, get_response):
        self.middleware = middleware
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        response = None
        if hasattr(self.middleware, "process_request"):
            response = self.middleware.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self.middleware, "process_response"):
            response = self.middleware.process_response(request, response)
        return response


class ApiHandler(ASGIHandler):
    """An ASGIHandler over `settings.API_MIDDLEWARE`: async middleware, or
    MiddlewareMixin classes whose hooks do no I/O (run inline). None of them
    may define process_view, process_exception or process_template_response."""

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        for path in reversed(settings.API_MIDDLEWARE):
            factory = import_string(path)
            if issubclass(factory, MiddlewareMixin):
                middleware = Inline(factory(handler), handler)
            else:
                middleware = factory(handler)
                if not iscoroutinefunction(middleware):
                    raise TypeError(f"API middleware {path} must be async")
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler


def is_api_path(path: str) -> bool:
    return path.startswith(settings.API_PATH_PREFIXES)
