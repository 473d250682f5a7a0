from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from runtime import db
        from runtime.process import Stop, Task, process

        from . import checks  # noqa: F401  (registers the system checks)
        from .recorder import recorder

        db.install()
        process.register(Task(name="routing.recorder", order=Stop.WRITE, stop=recorder.drained))
