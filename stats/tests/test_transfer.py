"""`manage.py export_stats` and `import_stats`: both formats, both ways."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from stats import ema, selectors, services
from stats.models import ImportedRecord, SizeBin, WorkerStats
from workers import transfer
from workers.models import Worker

from .factories import make_worker, new_identity, outcome

pytestmark = pytest.mark.django_db


def export(*args) -> dict:
    out = io.StringIO()
    call_command("export_stats", *args, stdout=out)
    return json.loads(out.getvalue())


def import_file(tmp_path, data, name="stats.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    out = io.StringIO()
    call_command("import_stats", str(path), stdout=out)
    return out.getvalue()


def empty_the_stats() -> None:
    """An empty database, as far as stats go (the test's transaction is rolled back)."""
    identities = list(WorkerStats.objects.values_list("worker__identity", flat=True))
    SizeBin.objects.all().delete()
    WorkerStats.objects.all().delete()
    ImportedRecord.objects.all().delete()
    Worker.objects.filter(identity__in=identities).delete()


def some_stats() -> None:
    for seconds, size in ((1.0, 4.2), (2.0, 13.0), (0.5, 0.3)):
        worker = make_worker(gpu_count=2)
        services.record_outcome(worker_id=worker.pk, outcome=outcome(seconds=seconds, size=size))
        services.record_outcome(
            worker_id=worker.pk,
            outcome=outcome(seconds=seconds * 2, size=size * 3, stream=True, first_token_seconds=0.2),
        )
        services.record_outcome(worker_id=worker.pk, outcome=outcome(kind="image", size=25, seconds=9, images=1))
        services.record_outcome(worker_id=worker.pk, outcome=outcome(succeeded=False, failure="error"))


def test_export_then_import_into_an_empty_database_reproduces_the_stats(tmp_path):
    some_stats()
    before = export()
    empty_the_stats()
    assert export()["workers"] == []
    import_file(tmp_path, before)
    assert export() == before


def test_importing_the_same_file_twice_changes_nothing_the_second_time(tmp_path):
    some_stats()
    data = export()
    empty_the_stats()
    import_file(tmp_path, data)
    once = export()
    assert "skipped 0" not in import_file(tmp_path, data)
    assert export() == once


def test_an_import_merges_count_weighted(tmp_path):
    worker = make_worker()
    services.record_outcome(worker_id=worker.pk, outcome=outcome(seconds=1.0, prompt_tokens=0, completion_tokens=10))
    bin = ema.size_bin(4.2)
    data = {
        "format": "queenbee-stats",
        "version": 1,
        "workers": [
            {
                "identity": worker.identity,
                "inferences": 3,
                "bins": [{"kind": "text", "bin": bin, "value": 0.5, "count": 3}],
            }
        ],
    }
    import_file(tmp_path, data)
    row = SizeBin.objects.get(worker=worker, kind="text", bin=bin)
    assert (row.value, row.count) == (pytest.approx((0.1 * 1 + 0.5 * 3) / 4), 4)
    assert WorkerStats.objects.get(worker=worker).inferences == 4


def test_the_original_format_moves_both_ways(tmp_path):
    identity = new_identity("slug1")
    original = {
        identity: {"dat": {"1": 0.02, "2": 0.05, "3": 0.09}, "cnt": 30},
        "<all>": {"dat": {"2": 0.07}, "cnt": 500},
    }
    empty_the_stats()
    SizeBin.objects.filter(worker=None).delete()
    import_file(tmp_path, original)
    worker = Worker.objects.get(identity=identity)
    assert (worker.pubkey, worker.slug) == tuple(identity.split(":"))
    stats = WorkerStats.objects.get(worker=worker)
    assert stats.inferences == 30 and stats.proven_at is not None
    assert export("--format", "original") == original


def test_keys_of_the_original_that_are_not_identities_are_skipped_and_never_shown(tmp_path):
    secret = "a-users-auth-key-1234"
    out = import_file(
        tmp_path, {secret: {"dat": {"2": 0.05}, "cnt": 3}, new_identity(): {"dat": {"2": 0.05}, "cnt": 3}}
    )
    assert "skipped 1 keys" in out and secret not in out
    assert not Worker.objects.filter(identity=secret).exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json at all", "is not JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"format": "queenbee-stats", "version": 99, "workers": []}), "version 99"),
        (json.dumps({"someone": {"dat": {"x": 1}, "cnt": 1}}), "not a whole number"),
    ],
)
def test_a_bad_file_fails_with_a_clear_error(tmp_path, content, message):
    with pytest.raises(CommandError, match=message):
        import_file(tmp_path, content)


def test_a_bad_record_anywhere_in_the_file_imports_nothing(tmp_path):
    good = {"identity": new_identity(), "inferences": 1, "bins": [{"kind": "text", "bin": 4, "value": 0.1, "count": 1}]}
    bad = {"identity": new_identity(), "bins": [{"kind": "text", "bin": 4, "value": -1, "count": 1}]}
    data = {"format": "queenbee-stats", "version": 1, "workers": [good, bad]}
    with pytest.raises(CommandError, match=r"workers\[1\].bins\[0\].value"):
        import_file(tmp_path, data)
    assert not Worker.objects.filter(identity=good["identity"]).exists()
    assert not ImportedRecord.objects.filter(identity=good["identity"]).exists()


def test_export_can_write_a_file(tmp_path):
    some_stats()
    path = tmp_path / "out.json"
    call_command("export_stats", "--output", str(path), stderr=io.StringIO())
    assert json.loads(path.read_text()) == transfer.export_stats()
