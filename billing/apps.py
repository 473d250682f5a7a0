from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from runtime.process import process

        from . import backends, checks  # noqa: F401  (checks registers the system checks)

        backends.choose()  # the one place that reads BILLING_URL to decide who bills
        for task in backends.active().tasks():  # the remote backend's outbox delivery
            process.register(task)
