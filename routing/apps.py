from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from runtime import db
        from workers.liveness import registry

        from . import checks  # noqa: F401  (registers the system checks)
        from .recorder import recorder

        db.install()
        registry.drain_hooks.append(recorder.drained)  # SIGTERM: write the last jobs first
