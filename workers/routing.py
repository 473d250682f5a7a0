from django.urls import path

from .consumers import WorkerConsumer

# No Origin check: workers are not browsers and send no Origin header.
websocket_urlpatterns = [path("worker", WorkerConsumer.as_asgi())]
