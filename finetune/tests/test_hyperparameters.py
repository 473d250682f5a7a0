"""Job requests are validated at the edge: hyperparameter types, ranges and defaults."""

import re
from pathlib import Path

import pytest

from finetune.serializers import HyperparametersSerializer, JobCreateSerializer

DEFAULTS = {
    "n_epochs": 3,
    "batch_size": 2,
    "learning_rate_multiplier": 2.5e-5,
    "accumulation_steps": 4,
    "max_steps": -1,
    "lora_alpha": 64,
    "lora_dropout": 0.05,
    "training_split": 0.8,
    "stop_eval_loss": 0.05,
    "fine_tune_bits": 4,
    "q_level": "q6_k",
    "pad_length": 512,
}


def job(**body) -> JobCreateSerializer:
    return JobCreateSerializer(data={"model": "mistralai/Mistral-7B-Instruct-v0.1", "training_file": "file-x", **body})


def test_defaults_fill_every_hyperparameter_the_worker_reads():
    serializer = job()
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["hyperparameters"] == DEFAULTS


def test_auto_means_the_default_and_q_level_is_case_insensitive():
    serializer = job(hyperparameters={"n_epochs": "auto", "batch_size": "auto", "q_level": "Q4_K"})
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["hyperparameters"] == {**DEFAULTS, "q_level": "q4_k"}


def test_openais_method_shape_is_accepted():
    serializer = job(method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 5}}})
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["hyperparameters"]["n_epochs"] == 5


@pytest.mark.parametrize(
    ("hyperparameters", "field"),
    [
        ({"n_epochs": 0}, "n_epochs"),
        ({"n_epochs": "many"}, "n_epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"learning_rate_multiplier": 2}, "learning_rate_multiplier"),
        ({"lora_dropout": 1}, "lora_dropout"),
        ({"training_split": 1.0}, "training_split"),
        ({"fine_tune_bits": 16}, "fine_tune_bits"),
        ({"q_level": "q4_k_m"}, "q_level"),
        ({"max_steps": 0}, "max_steps"),
        ({"warmup": 3}, "warmup"),
    ],
)
def test_a_bad_hyperparameter_is_named(hyperparameters, field):
    serializer = job(hyperparameters=hyperparameters)
    assert not serializer.is_valid()
    assert field in serializer.errors["hyperparameters"]


@pytest.mark.parametrize(
    "model", ["TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M", "fastembed:BAAI/bge-base-en-v1.5", "user:abc/x", "webgpu/x", "nonsense"]
)
def test_only_a_hugging_face_base_model_can_be_fine_tuned(model):
    serializer = job(model=model)
    assert not serializer.is_valid()
    assert "model" in serializer.errors


def test_the_readmes_table_documents_these_defaults():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("### Hyperparameters", 1)[1].split("\n\n###", 1)[0]
    documented = {}
    for row in re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, flags=re.M):
        key, cell = row[0], row[1].strip().strip("`")
        documented[key] = cell if key == "q_level" else float(cell)
    assert documented == DEFAULTS
    assert set(documented) == set(HyperparametersSerializer().fields)


@pytest.mark.parametrize("value", [[None, None], "x", 5])
def test_hyperparameters_that_are_not_an_object_are_named_not_a_500(value):
    serializer = job(hyperparameters=value)
    assert not serializer.is_valid()
    assert serializer.errors["hyperparameters"] == ["must be an object"]
    nested = job(method={"type": "supervised", "supervised": {"hyperparameters": value}})
    assert not nested.is_valid()
    assert "hyperparameters" in nested.errors["method"]["supervised"]
    wrong = job(method={"type": "supervised", "supervised": value})
    assert not wrong.is_valid()
    assert wrong.errors["method"]["supervised"] == ["must be an object"]
