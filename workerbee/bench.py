"""`python -m workerbee.bench [MODEL]`: how fast this machine serves a model, without a coordinator.

Loads the model the way the worker does (default: the packaged Gemma 3 270M),
runs a few plain completions and prints load time and tokens per second. Like
the original's `--test_model`, for operators sizing a machine; tests never time.
"""

import argparse
import tempfile
import time
from pathlib import Path

from .catalog import PACKAGED_MODEL, Places, default_hf_cache, install_packaged_model
from .config import default_models_dir
from .inference import Engine, LlamaSettings

PROMPTS = [
    "The history of the honey bee begins",
    "Once upon a time, in a small village,",
    "The three most important things about GPUs are",
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m workerbee.bench")
    parser.add_argument("model", nargs="?", default=PACKAGED_MODEL)
    parser.add_argument("--models-dir", default=str(default_models_dir()))
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--ctx-size", type=int, default=2048)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="workerbee-bench-") as scratch:
        places = Places(Path(args.models_dir), default_hf_cache())
        if args.model == PACKAGED_MODEL:
            places = Places(Path(scratch), places.hf_cache)
            install_packaged_model(places)
        for threads in args.threads:
            measure(places, args, threads)


def measure(places: Places, args: argparse.Namespace, threads: int) -> None:
    engine = Engine(places=places, settings=LlamaSettings(ctx_size=args.ctx_size, threads=threads))
    started = time.monotonic()
    engine.run("/v1/completions", {"model": args.model, "prompt": "Hi", "max_tokens": 1})
    load = time.monotonic() - started
    tokens, seconds = 0, 0.0
    for prompt in PROMPTS:
        started = time.monotonic()
        reply = engine.run("/v1/completions", {"model": args.model, "prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0.7, "seed": 1})
        seconds += time.monotonic() - started
        tokens += reply["usage"]["completion_tokens"]
    print(f"{args.model} threads={threads}: load+first {load:.2f}s, {tokens} tokens in {seconds:.2f}s = {tokens / seconds:.1f} tok/s")
    engine.unload()


if __name__ == "__main__":
    main()
