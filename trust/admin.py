from django.contrib import admin, messages

from workers.admin import WorkerAdmin
from workers.models import TrustState, Worker

from . import services
from .models import Canary, CanaryRun, TrustEvent, Verification


@admin.register(TrustEvent)
class TrustEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "worker", "kind", "from_state", "to_state", "job_id", "detail")
    list_filter = ("kind", "to_state")
    search_fields = ("worker__identity", "job_id")
    readonly_fields = [f.name for f in TrustEvent._meta.fields]


@admin.register(Verification)
class VerificationAdmin(admin.ModelAdmin):
    list_display = ("job_id", "worker", "verifier", "status", "tokens", "implausible", "mean_gap", "seconds", "created_at")
    list_filter = ("status",)
    search_fields = ("job_id", "worker__identity")
    readonly_fields = [f.name for f in Verification._meta.fields]


@admin.register(Canary)
class CanaryAdmin(admin.ModelAdmin):
    """Known answers; delete one to have it learned again from a trusted worker."""

    list_display = ("model", "prompt", "answer", "answered_by", "created_at")
    search_fields = ("model", "prompt")
    readonly_fields = [f.name for f in Canary._meta.fields]


@admin.register(CanaryRun)
class CanaryRunAdmin(admin.ModelAdmin):
    list_display = ("created_at", "worker", "canary", "passed", "agreement", "seconds")
    list_filter = ("passed",)
    search_fields = ("worker__identity", "canary__model")
    readonly_fields = [f.name for f in CanaryRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


class TrustEventInline(admin.TabularInline):
    model = TrustEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "from_state", "to_state", "job_id", "detail")
    readonly_fields = fields
    ordering = ("-created_at",)


def _set(state: str, label: str):
    @admin.action(description=label)
    def action(modeladmin, request, queryset):
        for worker_id in queryset.values_list("pk", flat=True):
            services.set_state(worker_id=worker_id, state=state, by=request.user.get_username())
        modeladmin.message_user(request, f"{queryset.count()} identities set to {state}.", messages.SUCCESS)

    action.__name__ = f"set_{state}"
    return action


# The admin's actions on identities: trust, quarantine, release (back to new).
TRUST_ACTIONS = [
    _set(TrustState.TRUSTED, "Trust the selected identities"),
    _set(TrustState.QUARANTINED, "Quarantine the selected identities"),
    _set(TrustState.NEW, "Release the selected identities (back to new)"),
]


# The worker page gains its trust history and the actions; the workers app
# knows nothing of trust (it sits below it).
admin.site.unregister(Worker)


@admin.register(Worker)
class TrustedWorkerAdmin(WorkerAdmin):
    actions = TRUST_ACTIONS
    inlines = [*WorkerAdmin.inlines, TrustEventInline]
