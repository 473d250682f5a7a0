from django.contrib import admin

from .models import Connection, ServerProcess, Worker


class ConnectionInline(admin.TabularInline):
    model = Connection
    extra = 0
    can_delete = False
    fields = ("process", "state", "job_id", "current_model", "gpu_memory_mib", "context_length", "connected_at", "stray_frames", "bad_frames")
    readonly_fields = fields


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = (
        "short_name", "live", "trust_state", "worker_version", "capabilities", "gpu_count", "ram_gb", "disk_space_mib", "last_seen",
    )
    # Suspects and quarantined identities: filter by trust state.
    list_filter = ("trust_state", "ephemeral", "worker_version")
    search_fields = ("identity", "pubkey")
    exclude = ("owner_key_hash",)
    readonly_fields = [f.name for f in Worker._meta.fields if f.name != "owner_key_hash"]
    inlines = [ConnectionInline]

    @admin.display(boolean=True)
    def live(self, obj: Worker) -> bool:
        return obj.connections.exists()

    @admin.display(description="RAM (GB)")
    def ram_gb(self, obj: Worker) -> float:
        return round(obj.ram_bytes / 1e9, 1)


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    list_display = ("worker", "process", "state", "job_id", "current_model", "gpu_memory_mib", "context_length", "connected_at")
    list_filter = ("state", "process")
    readonly_fields = [f.name for f in Connection._meta.fields]


@admin.register(ServerProcess)
class ServerProcessAdmin(admin.ModelAdmin):
    list_display = ("name", "started_at", "heartbeat_at", "stopping")
