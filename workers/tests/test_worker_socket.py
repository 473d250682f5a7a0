"""The /worker websocket: registration of the original connect message."""

import json

from conftest import connection_count, wait_for
from testkit.fake_worker import FakeWorker
from workers.models import Connection, Worker
from workers.signature import sign_connect_message


def test_it_stores_the_worker_and_its_connection(start_worker, db_access):
    worker = start_worker(auth_key="owner-secret", ln_address="me@getalby.com", models=["a/b-7B-GGUF:Q4_K_M"])
    row = Worker.objects.get(identity=worker.identity)
    assert row.pubkey == worker.pubkey and not row.ephemeral
    assert row.owner_key_hash and "owner-secret" not in row.owner_key_hash
    assert row.payout_address == "me@getalby.com"
    assert row.worker_version == "0.3.1" and row.capabilities == ["llama-infer"]
    assert row.ram_bytes == 64_000_000_000 and row.disk_space_mib == 512_000 and row.cpu_count == 16
    assert row.gpus["nv_gpus"][0]["memory"] == 24576.0 and row.gpu_count == 1
    assert row.advertised_models == ["a/b-7B-GGUF:Q4_K_M"]
    connection = Connection.objects.get(worker=row)
    assert connection.state == "free" and connection.gpu_memory_mib == 24576.0


def test_it_keys_several_processes_of_one_owner_by_slug(start_worker, db_access):
    first = start_worker(slug="gpu0")
    second = start_worker(privkey=first.privkey, slug="gpu1")
    assert first.identity != second.identity
    assert Worker.objects.filter(pubkey=first.pubkey).count() == 2


def test_it_closes_on_a_bad_signature_with_a_reason(queen, db_access):
    worker = FakeWorker(queen.ws_url)
    message = worker.message()
    message["auth_key"] = "tampered after signing"
    worker.start(first_frame=json.dumps(message))
    worker.wait_closed()
    assert worker.close_code == 4001
    assert "signature" in worker.close_reason
    assert connection_count(worker.identity) == 0


def test_it_closes_when_the_key_does_not_match_the_signer(queen, db_access):
    worker = FakeWorker(queen.ws_url)
    message = worker.message()
    message["sig"] = sign_connect_message(message, bytes(range(1, 33)))
    worker.start(first_frame=json.dumps(message))
    worker.wait_closed()
    assert worker.close_code == 4001


def test_it_closes_when_the_first_frame_is_not_a_connect_message(queen):
    worker = FakeWorker(queen.ws_url).start(first_frame="this is not json")
    worker.wait_closed()
    assert worker.close_code == 4002 and worker.close_reason == "frame is not JSON"


def test_it_closes_on_a_wrong_typed_connect_field(queen):
    worker = FakeWorker(queen.ws_url, signed=False)
    message = worker.message()
    message["vram"] = "lots"
    worker.start(first_frame=json.dumps(message))
    worker.wait_closed()
    assert worker.close_code == 4002 and "vram" in worker.close_reason


def test_an_unsigned_worker_lives_only_as_long_as_its_connection(queen, db_access):
    before = set(Worker.objects.filter(ephemeral=True).values_list("pk", flat=True))
    worker = FakeWorker(queen.ws_url, signed=False).start()
    new = wait_for(lambda: set(Worker.objects.filter(ephemeral=True, connections__isnull=False).values_list("pk", flat=True)) - before, what="registration")
    (pk,) = new
    assert Worker.objects.get(pk=pk).identity.startswith("anon-")
    worker.stop()
    wait_for(lambda: not Worker.objects.filter(pk=pk).exists(), what="ephemeral worker removal")


def test_it_counts_frames_that_arrive_with_no_job(start_worker, db_access):
    worker = start_worker()
    worker.send({"choices": [{"delta": {"content": "late"}}]})
    worker.send("garbage")
    wait_for(lambda: Connection.objects.filter(worker__identity=worker.identity, stray_frames=1, bad_frames=1).exists(), what="frame counts")


def test_a_worker_that_connects_again_updates_its_row(start_worker, db_access):
    first = start_worker(models=["a/b-7B-GGUF:Q4_K_M"])
    before = Worker.objects.get(identity=first.identity)
    first.stop()
    wait_for(lambda: connection_count(first.identity) == 0, what="first socket gone")
    start_worker(privkey=first.privkey, models=["c/d-1B-GGUF:Q8_0"], ln_address="new@getalby.com")
    after = Worker.objects.get(identity=first.identity)  # still one row, the same one
    assert after.pk == before.pk and after.first_seen == before.first_seen
    assert after.last_seen > before.last_seen
    assert after.advertised_models == ["c/d-1B-GGUF:Q8_0"] and after.payout_address == "new@getalby.com"
    assert Connection.objects.get(worker=after).advertised_models == ["c/d-1B-GGUF:Q8_0"]
