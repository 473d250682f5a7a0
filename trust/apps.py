from django.apps import AppConfig


class TrustConfig(AppConfig):
    name = "trust"
    verbose_name = "Trust"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from runtime.process import Stop, Task, process

        from .canary_loop import loop

        process.register(Task(name="trust.canaries", order=Stop.LOOPS, start=loop.start, stop=loop.stop))
