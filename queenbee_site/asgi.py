"""ASGI entry point: HTTP goes to Django, websockets to the worker consumer."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "queenbee_site.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from queenbee_site import daphne_compat  # noqa: E402
from workers.routing import websocket_urlpatterns  # noqa: E402

daphne_compat.install()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
