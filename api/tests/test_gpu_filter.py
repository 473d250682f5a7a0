"""One reading of `gpu_filter` for inference and fine-tuning."""

from api.gpu_filter import GpuFilter, GpuFilterSerializer, parse_gpu_filter


def test_it_reads_no_filter_as_asking_nothing():
    assert parse_gpu_filter(None) == parse_gpu_filter({}) == GpuFilter()


def test_it_takes_worker_id_as_the_originals_name_for_pubkey():
    assert parse_gpu_filter({"worker_id": "abc"}).pubkey == "abc"
    assert parse_gpu_filter({"worker_id": "abc", "pubkey": "def"}).pubkey == "def"


def test_it_reads_what_the_serializer_validated():
    serializer = GpuFilterSerializer(data={"min_version": "0.4.1", "capabilities": ["sdxl"], "slug": "", "user_id": "u1"})
    assert serializer.is_valid(), serializer.errors
    assert parse_gpu_filter(serializer.validated_data) == GpuFilter(min_version="0.4.1", capabilities=("sdxl",), user_id="u1")


def test_it_refuses_a_version_that_is_not_dotted_numbers():
    assert not GpuFilterSerializer(data={"min_version": "latest"}).is_valid()
