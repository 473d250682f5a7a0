from django.contrib import admin, messages

from . import services
from .models import Account, LedgerEntry, OutboxMessage, Price


class LedgerInline(admin.TabularInline):
    model = LedgerEntry
    fields = ("created_at", "kind", "amount", "balance_after", "unpaid", "job", "fine_tune", "note")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-created_at",)
    show_change_link = True


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("name", "balance", "requests_per_minute", "concurrent_streams", "created_at")
    search_fields = ("name",)
    # A balance changes only with a ledger row: add a top-up entry below the list.
    readonly_fields = ("balance", "worker_key_hash", "created_at")
    inlines = [LedgerInline]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    """Read-only, except adding a top-up or adjustment, which moves the balance with it."""

    list_display = ("created_at", "account", "kind", "amount", "balance_after", "unpaid", "job", "fine_tune")
    list_filter = ("kind",)
    search_fields = ("account__name", "job__public_id", "fine_tune__public_id")
    fields = ("account", "kind", "amount", "note")
    raw_id_fields = ("account",)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if obj.kind not in (LedgerEntry.Kind.TOP_UP, LedgerEntry.Kind.ADJUSTMENT):
            messages.error(request, "Only top-ups and adjustments are entered by hand.")
            return
        entry = services.credit(account_id=obj.account_id, amount=obj.amount, kind=obj.kind, note=obj.note)
        obj.pk = entry.pk


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ("kind", "min_size", "per_request", "per_1k_prompt_tokens", "per_1k_completion_tokens", "per_image")


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ("pk", "job", "fine_tune", "state", "attempts", "next_attempt_at", "last_error", "delivered_at")
    list_filter = ("state",)
    exclude = ("payload",)  # holds the caller's token until delivered
    readonly_fields = ("job", "fine_tune", "state", "attempts", "next_attempt_at", "claimed_until", "last_error", "created_at", "delivered_at")
    actions = ["retry_now"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Send again now")
    def retry_now(self, request, queryset):
        count = services.retry_outbox_now(ids=list(queryset.values_list("pk", flat=True)))
        messages.success(request, f"{count} message(s) queued to be sent now.")
