"""ASGI entry point of the framework floor (bench/floor_django.py)."""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.floor_django"

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
