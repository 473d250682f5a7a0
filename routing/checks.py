"""System checks for dangerous setting combinations."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def check_channel_layer(app_configs, **kwargs):
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if not settings.DEBUG and backend.endswith("InMemoryChannelLayer"):
        return [
            Warning(
                "The in-memory channel layer only works inside one process.",
                hint="Set REDIS_URL so several Queenbee processes can act as one.",
                id="queenbee.W001",
            )
        ]
    return []

