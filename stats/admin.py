"""Stats in the admin: one page per worker identity with its bins side by side
(templates/admin/stats/workerstats/change_form.html).

Everything here is measured, so it is read-only; the one action lifts a
punishment (through the service, like every write).
"""

from django.contrib import admin
from django.db.models import Prefetch
from django.utils import timezone
from django.utils.html import format_html_join

from . import ema, services
from .models import Kind, SizeBin, WorkerStats


class PunishedFilter(admin.SimpleListFilter):
    title = "punished"
    parameter_name = "punished"

    def lookups(self, request, model_admin):
        return [("yes", "Punished now"), ("no", "Not punished")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(punished_until__gt=now)
        if self.value() == "no":
            return queryset.exclude(punished_until__gt=now)
        return queryset


class ProvenFilter(admin.SimpleListFilter):
    title = "proof of work"
    parameter_name = "proven"

    def lookups(self, request, model_admin):
        return [("yes", "Proven"), ("no", "Not yet")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(proven_at__isnull=self.value() == "no")
        return queryset


class CapabilityFilter(admin.SimpleListFilter):
    title = "capability"
    parameter_name = "capability"

    def lookups(self, request, model_admin):
        seen: set[str] = set()
        for capabilities in WorkerStats.objects.values_list("worker__capabilities", flat=True).distinct()[:500]:
            seen.update(c for c in capabilities or () if isinstance(c, str))
        return [(c, c) for c in sorted(seen)]

    def queryset(self, request, queryset):
        if self.value():
            # The JSON text of the list holds `"<capability>"`, quotes included.
            return queryset.filter(worker__capabilities__icontains=f'"{self.value()}"')
        return queryset


@admin.register(WorkerStats)
class WorkerStatsAdmin(admin.ModelAdmin):
    list_display = (
        "worker",
        "capabilities",
        "gpu_count",
        "inferences",
        "failures",
        "proven",
        "punishment",
        "ttft",
        "bins",
    )
    list_filter = (PunishedFilter, ProvenFilter, CapabilityFilter)
    search_fields = ("worker__identity", "worker__capabilities")
    readonly_fields = [f.name for f in WorkerStats._meta.fields]
    actions = ["lift_punishment"]

    def get_queryset(self, request):
        bins = Prefetch("worker__stat_bins", queryset=SizeBin.objects.order_by("-kind", "bin"))  # text, then image
        return super().get_queryset(request).select_related("worker").prefetch_related(bins)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "bins_table": self._bins_table(object_id)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="capabilities")
    def capabilities(self, obj: WorkerStats) -> str:
        return ", ".join(obj.worker.capabilities or ())

    @admin.display(description="GPUs")
    def gpu_count(self, obj: WorkerStats) -> int:
        return obj.worker.gpu_count

    @admin.display(boolean=True, description="proven")
    def proven(self, obj: WorkerStats) -> bool:
        return obj.proven_at is not None

    @admin.display(description="punished")
    def punishment(self, obj: WorkerStats) -> str:
        if obj.punished_until and obj.punished_until > timezone.now():
            return f"{obj.punish_reason} until {obj.punished_until:%H:%M:%S}"
        return "—"

    @admin.display(description="TTFT (s)")
    def ttft(self, obj: WorkerStats) -> str:
        return f"{obj.ttft_seconds:.2f}" if obj.ttft_seconds is not None else "—"

    @admin.display(description="s/token by model size (image: s/image)")
    def bins(self, obj: WorkerStats):
        cells = [
            (f"{'image' if b.kind == Kind.IMAGE else f'{ema.bin_size(b.bin):g}'}", f"{b.value:.4g}", b.count)
            for b in obj.worker.stat_bins.all()
        ]
        return format_html_join(" · ", "<b>{}</b>: {} <small>({})</small>", cells) or "—"

    @admin.action(description="Lift the punishment of the selected workers")
    def lift_punishment(self, request, queryset):
        lifted = services.lift_punishment(worker_ids=list(queryset.values_list("worker_id", flat=True)))
        self.message_user(request, f"Lifted the punishment of {lifted} worker(s).")

    def _bins_table(self, object_id) -> list[dict]:
        """Columns of the page's table: text bins by size, then the image key."""
        rows = SizeBin.objects.filter(worker_id=object_id).order_by("-kind", "bin")  # text before image
        return [
            {
                "label": "image" if b.kind == Kind.IMAGE else f"size {ema.bin_size(b.bin):.3g}",
                "bin": b.bin,
                "value": f"{b.value:.4g}",
                "unit": "s/image" if b.kind == Kind.IMAGE else "s/token",
                "count": b.count,
                "updated_at": b.updated_at,
            }
            for b in rows
        ]
