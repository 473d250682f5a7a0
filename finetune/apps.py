from django.apps import AppConfig


class FinetuneConfig(AppConfig):
    name = "finetune"
    verbose_name = "Fine-tuning"

    def ready(self) -> None:
        from django.core.signals import request_started

        from . import checks  # noqa: F401  (registers the system checks)
        from .scheduler import start_on_request

        request_started.connect(start_on_request, dispatch_uid="finetune-scheduler")
