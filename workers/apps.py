from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self) -> None:
        from runtime import metrics

        from .metrics import ClusterCollector

        metrics.registry.register(ClusterCollector())
