from django.contrib import admin

from .models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("public_id", "kind", "model", "status", "caller", "worker", "prompt_tokens", "completion_tokens", "total_seconds", "created_at")
    list_filter = ("status", "kind", "stream")
    search_fields = ("public_id", "model")
    readonly_fields = [f.name for f in Job._meta.fields]
