"""Model names and their sizes. Pure: no Django.

Accepted forms (reference §17): `hf-user/hf-repo[:filter]` (GGUF), `fastembed:<hf-id>`,
`user:<fine-tuned name>`, a direct `https://….gguf` URL, `webgpu/<mlc-model>` for
browser workers, and the original's alias names (§17.2).

The size is the original's `msize`: roughly the gigabytes the weights take, i.e.
billions of parameters times a factor for the quantisation. Unlike the original
(§8.1, which kept only the last digit: 13B→3, 70B→0) the whole number is read,
`M` suffixes count (270M is 0.27) and f16/f32 are recognised.
"""

import functools
import re
from dataclasses import dataclass
from typing import Literal

WorkerKind = Literal["cli", "web", "any"]

# Size when a name says nothing about its parameter count (the original's default).
DEFAULT_PARAMS_B = 13.0
FASTEMBED_SIZE = 1.0
IMAGE_SIZE = 25.0

# Bytes-per-parameter-ish factors of the original, extended to float formats.
_QUANT_FACTORS = {"2": 0.4, "3": 0.5, "4": 0.6, "5": 0.7, "6": 0.8, "8": 1.0}
_FLOAT_FACTORS = {"f16": 2.0, "fp16": 2.0, "bf16": 2.0, "f32": 4.0, "fp32": 4.0}

_PARAMS = re.compile(r"(?<![a-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")
_QUANT = re.compile(r"(?<![a-z0-9])i?q(\d)(?:[_.\-]|$)")
_FLOAT = re.compile(r"(?<![a-z0-9])(bf16|fp16|f16|fp32|f32)(?![a-z0-9])")

_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}"
_HF_NAME = re.compile(rf"^{_PART}/{_PART}(:[A-Za-z0-9_.\-]{{1,64}})?$")
_FASTEMBED = re.compile(rf"^fastembed:{_PART}(/{_PART})?$")
_USER = re.compile(r"^user:[A-Za-z0-9_.:/\-]{1,256}$")
_WEBGPU = re.compile(rf"^webgpu/{_PART}$")
_URL = re.compile(r"^https://[A-Za-z0-9.\-]+(:\d+)?/[^\s?#]*\.gguf(\?[^\s#]*)?$")

# The original's alias map (§17.2), anchored at the start and case-insensitive;
# the typo "17b" of the original is corrected to 7b.
ALIASES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"^vicuna.*\b7b\b.*\bq4", re.I),
        "TheBloke/vicuna-7B-v1.5-GGUF:Q4_K_M",
        "webgpu/vicuna-v1-7b-q4f32_0",
    ),
    (
        re.compile(r"^llama-2.*\b13b\b.*\bq4", re.I),
        "TheBloke/Llama-2-13B-chat-GGUF:Q4_K_M",
        "webgpu/Llama-2-13b-chat-hf-q4f32_1",
    ),
    (
        re.compile(r"^llama-2.*\b7b\b.*\bq4", re.I),
        "TheBloke/Llama-2-7B-Chat-GGUF:Q4_K_M",
        "webgpu/Llama-2-7b-chat-hf-q4f32_1",
    ),
)


class InvalidModelName(ValueError):
    """The model name is not one of the accepted forms."""


@dataclass(frozen=True)
class ModelName:
    name: str
    kind: Literal["hf", "fastembed", "user", "url", "webgpu", "alias"]
    size: float
    worker_kind: WorkerKind
    cli_name: str  # what a command-line worker is sent
    web_name: str  # what a browser worker is sent

    def for_worker(self, *, is_web: bool) -> str:
        return self.web_name if is_web else self.cli_name


def model_size(name: str) -> float:
    """Approximate gigabytes of weights for a model name (the original's msize)."""
    lower = name.lower()
    if lower.startswith("fastembed"):
        return FASTEMBED_SIZE
    repo, _, filt = lower.partition(":")
    match = _PARAMS.search(repo) or _PARAMS.search(filt)
    if match:
        experts, number, unit = match.groups()
        params = float(number) * (int(experts) if experts else 1)
        params = params / 1000 if unit == "m" else params
    else:
        params = DEFAULT_PARAMS_B
    return round(params * _quant_factor(filt, repo), 4)


def _quant_factor(*texts: str) -> float:
    for text in texts:
        if m := _FLOAT.search(text):
            return _FLOAT_FACTORS[m.group(1)]
        if m := _QUANT.search(text):
            return _QUANT_FACTORS.get(m.group(1), 2.0)
    return 1.0


def parse_model(name: str) -> ModelName:
    """Classify and size a model name, or raise InvalidModelName."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidModelName("model must be a non-empty string")
    return _parse(name.strip())


# Names parsed per process, most recent kept: every request parses its model
# twice (validation, routing), and a handful of names make most of the traffic.
# A name that fails is not kept (lru_cache does not keep exceptions).
PARSED_NAMES = 4096


@functools.lru_cache(maxsize=PARSED_NAMES)
def _parse(name: str) -> ModelName:
    for pattern, cli_name, web_name in ALIASES:
        if pattern.match(name):
            return ModelName(name, "alias", model_size(cli_name), "any", cli_name, web_name)
    if _WEBGPU.match(name):
        return ModelName(name, "webgpu", model_size(name), "web", name, name)
    if _FASTEMBED.match(name):
        return ModelName(name, "fastembed", FASTEMBED_SIZE, "cli", name, name)
    if _USER.match(name):
        return ModelName(name, "user", model_size(name[5:]), "cli", name, name)
    if _URL.match(name):
        return ModelName(name, "url", model_size(name.rsplit("/", 1)[-1]), "cli", name, name)
    if _HF_NAME.match(name):
        return ModelName(name, "hf", model_size(name), "cli", name, name)
    raise InvalidModelName(
        f"'{name}' is not a model name Queenbee can route: use 'hf-user/hf-repo:filter' "
        "(a GGUF repository on Hugging Face and a file filter), 'fastembed:<model>', "
        "'user:<fine-tuned model>' or an https URL of a .gguf file"
    )
