from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self) -> None:
        from runtime import metrics
        from runtime.process import Task, process

        from . import lifecycle
        from .mailbox import mailbox
        from .metrics import ClusterCollector

        metrics.registry.register(ClusterCollector())
        # No stop step: under uvicorn the requests still open after the drain
        # (a stream relayed from another process's worker) read their replies here.
        process.register(Task(name="workers.mailbox", order=0, start=mailbox.start))
        for task in lifecycle.TASKS:
            process.register(task)
