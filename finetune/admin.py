from django.contrib import admin

from .models import Checkpoint, File, FineTuningJob, JobEvent


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class EventInline(ReadOnlyInline):
    model = JobEvent
    fields = ("created_at", "level", "type", "message")


class CheckpointInline(ReadOnlyInline):
    model = Checkpoint
    fields = ("created_at", "step_number", "metrics")


class ArtifactInline(ReadOnlyInline):
    model = File
    verbose_name = "artifact"
    fields = ("public_id", "kind", "status", "bytes", "storage_name")


@admin.register(FineTuningJob)
class FineTuningJobAdmin(admin.ModelAdmin):
    list_display = ("public_id", "owner", "model", "status", "worker", "attempts", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("public_id", "model", "fine_tuned_model", "owner")
    exclude = ("bill_to",)  # the caller's token, until the job is billed
    readonly_fields = [f.name for f in FineTuningJob._meta.fields if f.name != "bill_to"]
    inlines = [ArtifactInline, CheckpointInline, EventInline]


@admin.register(File)
class FileAdmin(admin.ModelAdmin):
    list_display = ("public_id", "owner", "purpose", "filename", "bytes", "status", "created_at")
    list_filter = ("purpose", "status", "kind")
    search_fields = ("public_id", "filename", "owner")
    readonly_fields = [f.name for f in File._meta.fields]
