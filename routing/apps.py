from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from queenbee_site import db

        from . import checks  # noqa: F401  (registers the system checks)

        db.install()
