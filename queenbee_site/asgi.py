"""ASGI entry point: HTTP goes to Django, websockets to the worker consumer, and
the process runtime starts and stops around them (runtime/asgi.py)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "queenbee_site.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from queenbee_site import daphne_compat  # noqa: E402
from queenbee_site.api_handler import ApiHandler, is_api_path  # noqa: E402
from runtime.asgi import serving  # noqa: E402
from workers.routing import websocket_urlpatterns  # noqa: E402

daphne_compat.install()

api_app = ApiHandler()


async def http_app(scope, receive, send):
    """The API's shorter stack for API paths, the full one (admin) for the rest."""
    app = api_app if is_api_path(scope["path"]) else django_asgi_app
    await app(scope, receive, send)


application = serving(ProtocolTypeRouter({"http": http_app, "websocket": URLRouter(websocket_urlpatterns)}))
