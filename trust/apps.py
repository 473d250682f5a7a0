from django.apps import AppConfig


class TrustConfig(AppConfig):
    name = "trust"
    verbose_name = "Trust"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_started

        from .canary_loop import start_on_request

        request_started.connect(start_on_request, dispatch_uid="trust-canaries")
