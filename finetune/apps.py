from django.apps import AppConfig


class FinetuneConfig(AppConfig):
    name = "finetune"
    verbose_name = "Fine-tuning"

    def ready(self) -> None:
        from runtime.process import Stop, Task, process

        from . import checks  # noqa: F401  (registers the system checks)
        from .scheduler import scheduler

        process.register(Task(name="finetune.scheduler", order=Stop.LOOPS, start=scheduler.start, stop=scheduler.stop))
