"""The admin's worker page draws the speed chart the owner page draws."""

import pytest

from stats.models import WorkerStats

from .helpers import connect, measure

pytestmark = pytest.mark.django_db


def test_the_admin_worker_page_charts_its_speed_against_the_network_median(admin_client):
    worker = connect()
    measure(worker, bin=4, seconds_per_token=0.1)
    measure(connect(), bin=4, seconds_per_token=0.05)
    page = admin_client.get(f"/admin/workers/worker/{worker.pk}/change/").text
    assert 'id="speed-chart"' in page
    assert "4: 10 tokens/s (this worker)" in page and "(network median)" in page


def test_an_unmeasured_worker_says_so_in_the_admin(admin_client):
    worker = connect()
    page = admin_client.get(f"/admin/workers/worker/{worker.pk}/change/").text
    assert "No job of this worker has been measured yet." in page


def test_the_admin_stats_page_keeps_its_ema_table_and_adds_the_chart(admin_client):
    worker = connect()
    measure(worker, bin=4, seconds_per_token=0.1)
    stats = WorkerStats.objects.create(worker=worker, inferences=3)
    page = admin_client.get(f"/admin/stats/workerstats/{stats.pk}/change/").text
    assert "EMA by model size" in page  # the stats app's own table
    assert 'id="speed-chart"' in page and "4: 10 tokens/s (this worker)" in page
