"""Reading usage back: a caller's own jobs by day and model."""

from datetime import date, timedelta
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from api.auth import Caller

from .models import LedgerEntry, inference_jobs

# routing.Job.Status.SUCCEEDED: only succeeded jobs are used.
SUCCEEDED = "succeeded"
# /v1/usage looks back at most this far: a year of days by model is a small answer.
MAX_USAGE_DAYS = 366


def usage_by_day_and_model(*, caller: Caller, days: int) -> list[dict[str, Any]]:
    """Succeeded jobs of this caller's key (or remote token), summed per UTC day and model."""
    since = timezone.now() - timedelta(days=days)
    jobs = inference_jobs().filter(status=SUCCEEDED, created_at__gte=since)
    jobs = jobs.filter(api_key_id=caller.api_key_id) if caller.api_key_id is not None else jobs.filter(caller=caller.label)
    rows = (
        jobs.annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(
            requests=Count("pk"), prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens"), images=Sum("images")
        )
        .order_by("day", "model")
    )
    charge_rows = (
        LedgerEntry.objects.filter(job__in=jobs, kind=LedgerEntry.Kind.CHARGE)
        .annotate(day=TruncDate("job__created_at"))
        .values("day", "job__model")
        .annotate(total=Sum("amount"))
        .values_list("day", "job__model", "total")
    )
    charges = {(day, model): total for day, model, total in charge_rows}
    return [
        {
            "date": _iso(row["day"]),
            "model": row["model"],
            "requests": row["requests"],
            "prompt_tokens": row["prompt_tokens"] or 0,
            "completion_tokens": row["completion_tokens"] or 0,
            "total_tokens": (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0),
            "images": row["images"] or 0,
            "credits": -(charges.get((row["day"], row["model"])) or 0),
        }
        for row in rows
    ]


def _iso(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()
