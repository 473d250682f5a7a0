"""Reads behind the pages (pages/selectors.py)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pages import selectors
from routing.models import Job

from .helpers import make_job

pytestmark = pytest.mark.django_db


def test_jobs_per_minute_counts_each_minute_and_fills_the_quiet_ones_with_zeros():
    now = timezone.now().replace(second=30, microsecond=0)
    for minutes_ago in (0, 0, 5):
        Job.objects.filter(pk=make_job().pk).update(created_at=now - timedelta(minutes=minutes_ago))
    Job.objects.filter(pk=make_job().pk).update(created_at=now - timedelta(hours=4))  # too old
    timeline = selectors.jobs_per_minute(now=now)
    assert len(timeline) == selectors.TIMELINE_HOURS * 60
    assert timeline[-1] == (now.replace(second=0), 2)
    assert timeline[-6][1] == 1
    assert sum(n for _, n in timeline) == 3


def test_an_empty_query_owns_nothing():
    assert selectors.owned_workers(query="") == []
