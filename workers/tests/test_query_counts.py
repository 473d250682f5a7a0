"""The hot path's database cost, pinned: a worker connect, and a claim's one read."""

import os

import pytest

from stats.tests.factories import live_process, make_worker
from testkit.fake_worker import FakeWorker
from workers import services
from workers.protocol import parse_connect_message

pytestmark = pytest.mark.django_db


def test_a_worker_connect_costs_two_statements(django_assert_num_queries):
    process = live_process()
    info = parse_connect_message(FakeWorker("ws://unused/worker").message())
    # the identity's upsert and the connection's insert, in one transaction (a
    # savepoint and its release inside the test's own)
    with django_assert_num_queries(4) as captured:
        services.register_connection(process_id=process.pk, channel_name=f"test.chan!{os.urandom(4).hex()}", info=info)
    assert len([q for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]) == 2


def test_a_claims_standings_cost_three_queries_for_one_worker_or_forty(django_assert_num_queries):
    for count in (1, 40):
        ids = {make_worker().pk for _ in range(count)}
        # trust (workers); punishment and proof, then the speed estimates (stats)
        with django_assert_num_queries(3):
            standing = services.standings(worker_ids=ids, size=4.2, capabilities=("llama-infer",))
        assert set(standing) == ids
