"""Compiled querysets return what the ORM would, for every value of their arguments."""

from datetime import timedelta

import pytest
from django.utils import timezone

from queenbee_site import compiled
from workers.models import Connection, ServerProcess, Worker

pytestmark = pytest.mark.django_db


def _connection(worker: Worker, process: ServerProcess, channel: str, **fields) -> Connection:
    return Connection.objects.create(worker=worker, process=process, channel_name=channel, **fields)


@pytest.fixture
def rows():
    now = timezone.now()
    live = ServerProcess.objects.create(name="live", heartbeat_at=now, expires_at=now + timedelta(seconds=30))
    worker = Worker.objects.create(identity="w1", advertised_models=["a/b:c"])
    first = _connection(worker, live, "ch-1", advertised_models=["a/b:c"], current_model="a/b:c")
    second = _connection(worker, live, "ch-2", state=Connection.State.BUSY, job_id="job-2")
    return now, live, first, second


def query(now, process_id, state):
    return (
        Connection.objects.filter(process__expires_at__gte=now, process_id=process_id, state=state)
        .order_by("pk")
        .values_list("pk", "channel_name", "advertised_models", "process__expires_at")
    )


def test_each_run_uses_its_own_arguments_and_the_orms_converters(rows):
    now, live, first, second = rows
    run = lambda **args: compiled.run("test-connections", query, **args)  # noqa: E731

    expected_free = list(query(now, live.pk, "free"))
    assert expected_free and expected_free[0][2] == ["a/b:c"]  # JSON decoded, datetimes aware
    assert run(now=now, process_id=live.pk, state="free") == expected_free
    assert run(now=now, process_id=live.pk, state="busy") == list(query(now, live.pk, "busy")) == [
        (second.pk, "ch-2", [], live.expires_at)
    ]
    # Later than the heartbeat's expiry: the process is dead, nothing is live.
    assert run(now=now + timedelta(minutes=5), process_id=live.pk, state="free") == []
    assert run(now=now, process_id=live.pk + 1000, state="free") == []


def test_an_argument_the_query_does_not_use_is_refused(rows):
    with pytest.raises(ValueError, match="'unused'"):
        compiled.run("test-unused", lambda now, unused: Connection.objects.filter(process__expires_at__gte=now), now=timezone.now(), unused=3)


def test_a_filter_django_knows_to_be_empty_returns_no_rows(rows):
    # A value beyond the column's range: Django has no SQL for it (EmptyResultSet), the ORM says [].
    huge = 10**30
    build = lambda now: Connection.objects.filter(process__expires_at__gte=now, ram_bytes=huge).values_list("pk")  # noqa: E731
    assert compiled.run(("test-huge", huge), build, now=timezone.now()) == []


def test_an_insert_stores_what_create_would():
    from django.db import IntegrityError, transaction
    from django.forms.models import model_to_dict

    from routing.models import Job

    fields = dict(
        public_id="chatcmpl-compiled", kind="chat", model="a/b:c", model_size=4.2, stream=True, caller="bypass",
        status="succeeded", prompt_tokens=3, completion_tokens=5, usage_estimated=True, first_token_seconds=None,
        total_seconds=1.5, proof_of_work=True, charge_caller=False,
    )
    before = timezone.now()
    job = compiled.insert(Job(**fields))
    assert job.pk is not None and not job._state.adding
    stored = Job.objects.get(pk=job.pk)
    reference = Job.objects.create(**{**fields, "public_id": "chatcmpl-orm"})
    assert before <= stored.created_at <= timezone.now()
    ignored = {"id", "public_id", "created_at"}
    assert {k: v for k, v in model_to_dict(stored).items() if k not in ignored} == {
        k: v for k, v in model_to_dict(reference).items() if k not in ignored
    }
    assert compiled.insert(Job(**{**fields, "public_id": "chatcmpl-next"})).pk > job.pk
    with pytest.raises(IntegrityError), transaction.atomic():
        compiled.insert(Job(**fields))  # public_id is unique


def test_an_insert_prepares_json_and_foreign_keys_as_create_does(rows):
    from django.forms.models import model_to_dict

    now, live, first, _ = rows
    fields = dict(worker=first.worker, process=live, capabilities_text=",llama-infer,", advertised_models=["a/b:c", "d/e:f"], gpu_memory_mib=8000.5)
    inserted = compiled.insert(Connection(channel_name="ch-compiled", **fields))
    created = Connection.objects.create(channel_name="ch-orm", **fields)
    stored = Connection.objects.get(pk=inserted.pk)
    assert stored.advertised_models == ["a/b:c", "d/e:f"] and stored.connected_at >= now
    ignored = {"id", "channel_name", "connected_at"}
    assert {k: v for k, v in model_to_dict(stored).items() if k not in ignored} == {
        k: v for k, v in model_to_dict(created).items() if k not in ignored
    }
