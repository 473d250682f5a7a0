"""The pages' charts for other apps' templates: the admin's worker page draws the owner page's chart."""

from django import template

from pages import charts, selectors

register = template.Library()


@register.simple_tag
def worker_speed_chart(worker) -> charts.Chart | None:
    """`{% worker_speed_chart original as chart %}`: a worker's tokens/s by size beside the network's median."""
    if worker is None or worker.pk is None:
        return None
    return charts.speed_chart(selectors.worker_speeds(worker_id=worker.pk), selectors.network_medians())
