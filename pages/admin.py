"""The admin's stats page draws the owner page's speed chart too.

The stats app knows nothing of the pages (it sits below them), so its admin is
re-registered here with a template that adds the chart to its own.
"""

from django.contrib import admin

from stats.admin import WorkerStatsAdmin
from stats.models import WorkerStats

admin.site.unregister(WorkerStats)


@admin.register(WorkerStats)
class WorkerStatsWithChartAdmin(WorkerStatsAdmin):
    change_form_template = "admin/stats/workerstats/change_form_with_chart.html"
