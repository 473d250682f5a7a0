"""Model names and sizes (pure; reference §8.1 and its bugs)."""

import pytest

from api.model_names import InvalidModelName, model_size, parse_model


@pytest.mark.parametrize(
    "name, size",
    [
        ("TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M", 4.2),
        ("TheBloke/Llama-2-13B-chat-GGUF:Q4_K_M", 7.8),  # the original said 1.8 (13 → 3)
        ("TheBloke/Llama-2-70B-GGUF:Q4_K_M", 42.0),  # the original said 0
        ("TheBloke/CodeLlama-34B-Instruct-GGUF:Q5_K_M", 23.8),
        ("unsloth/gemma-3-270m-it-GGUF:Q4_K_M", 0.162),
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0-GGUF:Q8_0", 1.1),
        ("someone/llama-7b-GGUF:f16", 14.0),
        ("someone/llama-7b-GGUF:F32", 28.0),
        ("TheBloke/Mixtral-8x7B-v0.1-GGUF:Q2_K", 22.4),
        ("mistralai/Mistral-7B-Instruct-v0.1", 7.0),
        ("BAAI/bge-base-en-v1.5", 13.0),  # no size in the name: the original's default
        ("fastembed:BAAI/bge-small-en-v1.5", 1.0),
    ],
)
def test_it_reads_the_size_from_the_name(name, size):
    assert model_size(name) == pytest.approx(size)


def test_it_routes_aliases_to_either_kind_of_worker():
    model = parse_model("vicuna-v1-7b-q4f32_0")
    assert model.worker_kind == "any"
    assert model.for_worker(is_web=False) == "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M"
    assert model.for_worker(is_web=True) == "webgpu/vicuna-v1-7b-q4f32_0"


@pytest.mark.parametrize(
    "name, kind",
    [
        ("TheBloke/zephyr-7B-alpha-GGUF:Q4_K_S", "hf"),
        ("TheBloke/zephyr-7B-alpha-GGUF", "hf"),
        ("user:me/zephyr:q6_k:ftjob-1", "user"),
        ("https://example.org/models/tiny-1B.Q4_K_M.gguf", "url"),
        ("webgpu/Llama-2-7b-chat-hf-q4f32_1", "webgpu"),
        ("fastembed:BAAI/bge-small-en-v1.5", "fastembed"),
    ],
)
def test_it_accepts_the_original_forms(name, kind):
    assert parse_model(name).kind == kind


@pytest.mark.parametrize("name", ["", "gpt-4", "a/b/c", "x/y:bad filter", "http://example.org/x.gguf", "https://example.org/x.bin", "../etc/passwd", None])
def test_it_refuses_other_names(name):
    with pytest.raises(InvalidModelName):
        parse_model(name)


def test_a_name_is_parsed_once_per_process_and_bad_ones_every_time():
    from api import model_names

    name = "someone/parsed-once-7B-GGUF:Q8_0"
    before = model_names._parse.cache_info()
    assert parse_model(name) is parse_model(f"  {name} ")
    after = model_names._parse.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    for _ in range(2):
        with pytest.raises(InvalidModelName):
            parse_model("not a model")
    assert model_names._parse.cache_info().currsize == after.currsize
    with pytest.raises(InvalidModelName):
        parse_model(["a list", "is not hashable"])
