from django.apps import AppConfig
from django.conf import settings


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from runtime.process import Stop, Task, process

        from . import checks  # noqa: F401  (registers the system checks)
        from . import outbox

        # Only a remote backend has an outbox to deliver; decided once, at start.
        if settings.BILLING_URL:
            process.register(Task(name="billing.outbox", order=Stop.FLUSH, start=outbox.delivery.start, stop=outbox.flush))
