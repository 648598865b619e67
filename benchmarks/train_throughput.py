"""Training throughput: tuneyard's engine against a plain HF Trainer (+ peft), fp32 and bf16, and TRL.

    .venv/bin/python benchmarks/train_throughput.py [--model tiny-llama|smollm2|both] [--repeats N]
        [--contenders tuneyard,hf,tuneyard-bf16,hf-bf16[,trl][,tuneyard-compile[,tuneyard-compile-bf16]]] [--quick]
        [--methods lora,full] [--datasets varied,chunks]

For each model, dataset and method (LoRA, full), every contender trains one epoch over the same
examples with the same hyperparameters, batch size (examples per optimizer step, so the same steps)
and seed, each in its own process (its own peak RSS). Contenders run interleaved and repeated
(A B C D, A B C D, ...) so a busy moment of the machine hits them alike; the load average is
printed before and after each round. Per contender: the median of real (non-padding) tokens/s
and its spread (min..max), steps, MFU against the matmul peak of the precision it trained in
(measured in this run), peak RSS, held-out loss (one function for all, same examples). A verdict
on a target is printed only when the spread decides it: met when even the slowest of ours against
the fastest of theirs meets it, not met when even our fastest against their slowest misses it,
otherwise "unresolved". `--quick` is a smoke run (one round, seconds a contender), never a figure.

`tuneyard-compile` is the engine with `compile: true` (training/compilation.py), interleaved with the
rest like any contender. Its tok/s is steady: its first step, which holds the compile, is left out,
and what that step took beyond its tokens at the steady rate is printed apart as its compile seconds,
with its tok/s over the whole run beside it. Its verdict is against eager tuneyard of its precision.

Datasets: "varied" (stdlib instruction → docstring chats, lengths from a line to a page) and
"chunks" (plain text rows of exactly max_seq_length tokens, where padding-free batching gains
nothing). tuneyard batches padding-free (its default); HF and TRL pad each batch to its longest.

MFU counts model FLOPs per real token (attention's sequence-length term left out):
4·N_frozen + 6·N_trainable (forward 2N; backward 2N for the activation gradients of every matmul,
plus 2N for the weight gradients of what trains); N counts the weights of linear layers, lm_head
included: LoRA 4·N_base + 6·N_lora, full fine-tuning 6·N.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Run as a script, sys.path[0] is benchmarks/, where queue.py would shadow the standard
# library's queue (torch imports it): put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == REPO / "benchmarks":
    sys.path[0] = str(REPO)

from benchmarks.sft_data import docstring_chats, text_chunks, write_jsonl  # noqa: E402

MODELS = {"tiny-llama": "tiny-llama", "smollm2": "smollm2-135m-instruct"}
CONTENDERS = ("tuneyard", "hf", "tuneyard-bf16", "hf-bf16")  # "trl", "tuneyard-compile" (and -bf16) on request


@dataclass(frozen=True)
class Case:
    """One model on one dataset: how much data, and the hyperparameters every contender uses."""

    model: str
    dataset: str  # "varied" or "chunks"
    method: str  # "lora" or "full"
    examples: int
    batch_size: int
    max_seq_length: int
    learning_rate: float
    eval_examples: int
    epochs: int = 1
    """More than one where the data runs out first: the stdlib's docstrings make ~500 chunks of 256
    tokens, ~7 s of tuneyard's training on a quiet host, too short to resolve 10 %."""


def cases(model: str, quick: bool) -> list[Case]:
    """Sized so each contender trains ≥ 30 s on two busy cores (seconds with --quick)."""
    if model == "tiny-llama":
        n, chunks, epochs = (96, 32, 1) if quick else (1280, 480, 4)
        return [Case(model, "varied", "lora", n, 8, 512, 1e-3, 32), Case(model, "varied", "full", n, 8, 512, 5e-4, 32),
                Case(model, "chunks", "lora", chunks, 8, 256, 1e-3, 16, epochs)]  # fmt: skip
    n, chunks = (8, 4) if quick else (48, 16)
    return [Case(model, "varied", "lora", n, 4, 512, 5e-4, 8), Case(model, "chunks", "lora", chunks, 2, 256, 5e-4, 4)]


def matmul_peak(dtype_name: str, size: int = 1024, seconds: float = 2.0) -> float:
    """Best GFLOP/s of a size² matmul in this process, with torch's default threads."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: oneDNN/MKL pick their kernels on the first call
    best, deadline = 0.0, time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
        if time.perf_counter() > deadline:
            return best


def ensure_model(model_id: str, cache: Path) -> str | None:
    """None when the model is there (fetched if need be), else why it is skipped."""
    if model_id != MODELS["smollm2"]:
        return None
    sys.path.insert(0, str(REPO / "scripts"))
    import fetch_smollm2

    try:
        fetch_smollm2.fetch_smollm2(cache / model_id)
    except fetch_smollm2.FetchError as exc:
        return f"SmolLM2 GGUF unavailable: {exc}"
    return None


def prepare(case: Case, cache: Path, folder: Path) -> dict[str, Any]:
    """Write the case's train JSONL and its pre-tokenized eval examples; return the shared config."""
    from tuneyard.training.data import DataSource, prepare_data
    from tuneyard.training.models import load_tokenizer, resolve_model_source

    tokenizer = load_tokenizer(resolve_model_source(case.model, cache))
    if case.dataset == "varied":
        train, held = docstring_chats()
        random.Random(0).shuffle(train)  # a subset from every module, not the first few
        train, held = train[: case.examples], held[: case.eval_examples]
    else:
        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        train, held = text_chunks(count, case.max_seq_length, case.examples, case.eval_examples)
    train_path = write_jsonl(folder / "train.jsonl", train)
    data = prepare_data(
        [DataSource(train_path), DataSource(write_jsonl(folder / "eval.jsonl", held), split="eval")],
        tokenizer, max_seq_length=case.max_seq_length,
    )  # fmt: skip
    eval_path = folder / "eval-tokens.json"
    eval_path.write_text(json.dumps([{"input_ids": e.input_ids, "labels": e.labels} for e in data.eval]))
    mean_tokens = data.stats.tokens / max(data.stats.examples, 1)
    return {
        "model": case.model, "method": case.method, "model_cache_dir": str(cache), "train_path": str(train_path),
        "eval_path": str(eval_path),
        "hyperparams": {
            "batch_size": case.batch_size, "max_seq_length": case.max_seq_length,
            "learning_rate": case.learning_rate, "lora_rank": 16, "lora_alpha": 32, "seed": 0,
            "epochs": case.epochs,
        },
        "mean_example_tokens": mean_tokens, "truncated": data.stats.truncated,
    }  # fmt: skip


def run_contender(name: str, shared: dict[str, Any], folder: Path) -> dict[str, Any]:
    work = folder / name
    work.mkdir(parents=True)
    cfg = {**shared, "contender": name, "work_dir": str(work), "out": str(work / "figures.json")}
    (work / "config.json").write_text(json.dumps(cfg))
    argv = [sys.executable, "-m", "benchmarks.throughput_contenders", str(work / "config.json")]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        return {"error": f"exit {done.returncode}: {tail[-400:]}"}
    figures: dict[str, Any] = json.loads((work / "figures.json").read_text())
    return figures


def flops_per_token(figures: dict[str, Any]) -> float:
    return 4.0 * figures["frozen_params"] + 6.0 * figures["trainable_params"]


def rate(figures: dict[str, Any]) -> float:
    """Real tokens/s; a compiled contender's steady rate, its first step (the compile) left out."""
    if not figures.get("compiled"):
        return float(figures["tokens"] / figures["seconds"])
    return float((figures["tokens"] - figures["first_step_tokens"]) /
                 max(figures["seconds"] - figures["first_step_seconds"], 1e-9))


def compile_seconds(figures: dict[str, Any]) -> float:
    """What the compiled contender's first step took beyond its tokens at the steady rate."""
    return float(figures["first_step_seconds"] - figures["first_step_tokens"] / rate(figures))


def report(case: Case, shared: dict[str, Any], runs: dict[str, list[dict[str, Any]]], peaks: dict[str, float]) -> None:
    print(f"\n== {case.model} · {case.dataset} · {case.method} · {case.examples} examples × {case.epochs} epoch(s) "
          f"(mean {shared['mean_example_tokens']:.0f} tokens, {shared['truncated']} truncated) · "
          f"max_seq_length {case.max_seq_length} · batch {case.batch_size} examples · "
          f"{max((len(r) for r in runs.values()), default=0)} round(s)")  # fmt: skip
    print(f"{'contender':<15}{'steps':>6}{'tokens':>8}{'seconds':>9}{'tok/s':>9}{'spread':>16}{'MFU':>7}"
          f"{'RSS GB':>8}{'eval loss':>10}")  # fmt: skip
    for name, figures in runs.items():
        good = [f for f in figures if "error" not in f]
        if not good:
            print(f"{name:<15} failed: {figures[0]['error'] if figures else 'not run'}")
            continue
        rates = [rate(f) for f in good]
        median = statistics.median(rates)
        first = good[0]
        peak = peaks["bfloat16" if name.endswith("-bf16") else "float32"]
        mfu = median * flops_per_token(first) / 1e9 / peak
        spread = f"{min(rates):.0f}..{max(rates):.0f}" if len(rates) > 1 else "-"
        print(f"{name:<15}{first['steps']:>6}{first['tokens']:>8}{statistics.median(f['seconds'] for f in good):>9.1f}"
              f"{median:>9.1f}{spread:>16}{mfu:>7.1%}{max(f['peak_rss_gb'] for f in good):>8.2f}"
              f"{statistics.median(f['eval_loss'] for f in good):>10.4f}")  # fmt: skip
    for name, figures in runs.items():
        good = [f for f in figures if "error" not in f and f.get("compiled")]
        if good:
            whole = statistics.median(f["tokens"] / f["seconds"] for f in good)
            compiles = [compile_seconds(f) for f in good]
            print(f"{name}: compile {statistics.median(compiles):.1f} s (first step beyond the steady rate; "
                  f"spread {min(compiles):.1f}..{max(compiles):.1f}); tok/s above is steady, "
                  f"{whole:.1f} over the whole run with the compile")
    target = 1.5 if case.dataset == "varied" else 1.0
    pairs = (("tuneyard", "hf", target), ("tuneyard-bf16", "hf-bf16", target),
             ("tuneyard-compile", "tuneyard", 1.0), ("tuneyard-compile-bf16", "tuneyard-bf16", 1.0))
    for ours, theirs, wanted in pairs:
        _verdict(ours, theirs, wanted, runs)


def _verdict(ours: str, theirs: str, wanted: float, runs: dict[str, list[dict[str, Any]]]) -> None:
    """Speed (at least `wanted` x theirs) and held-out loss against the targets, decided only where
    the spread allows. Compiled against eager: steady rates, the compile apart."""
    mine = [rate(f) for f in runs.get(ours, []) if "error" not in f]
    other = [rate(f) for f in runs.get(theirs, []) if "error" not in f]
    if not mine or not other:
        return
    median = statistics.median(mine) / statistics.median(other)
    worst, best = min(mine) / max(other), max(mine) / min(other)
    if len(mine) < 2 or len(other) < 2:
        speed = "no verdict from one round"
    elif worst >= wanted:
        speed = "met"
    elif best < wanted:
        speed = "NOT met"
    else:
        speed = f"unresolved: the spread allows {worst:.2f}x..{best:.2f}x"
    loss_ours = statistics.median(f["eval_loss"] for f in runs[ours] if "error" not in f)
    loss_theirs = statistics.median(f["eval_loss"] for f in runs[theirs] if "error" not in f)
    gap = (loss_ours - loss_theirs) / loss_theirs
    print(f"{ours} vs {theirs}: speed {median:.2f}x (want ≥ {wanted}x): {speed}; held-out loss "
          f"{gap:+.2%} (want ≤ +2%): {'met' if gap <= 0.02 else 'NOT met'}")  # fmt: skip


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", choices=["tiny-llama", "smollm2", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round, tiny-llama unless --model")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of every contender (default 3; 1 quick)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    parser.add_argument("--methods", default="lora,full", help="comma-separated subset of lora,full")
    parser.add_argument("--datasets", default="varied,chunks", help="comma-separated subset of varied,chunks")
    parser.add_argument("--examples", type=int, default=None, help="training examples of every case (default: sized)")
    parser.add_argument("--model-cache-dir", type=Path, default=REPO / ".cache" / "models")
    args = parser.parse_args(argv)
    model_keys = ["tiny-llama", "smollm2"] if args.model == "both" else [args.model]
    if args.quick and args.model == "both":
        model_keys = ["tiny-llama"]
    repeats = args.repeats or (1 if args.quick else 3)
    contenders = args.contenders.split(",")
    started = time.perf_counter()
    print(f"load average (1/5/15 min) at start: {load()}")
    peaks = {name: matmul_peak(name, seconds=1.0 if name == "bfloat16" else 2.0) for name in ("float32", "bfloat16")}
    print(f"matmul peak (1024², {os.cpu_count()} cores, torch default threads): "
          f"fp32 {peaks['float32']:.1f} GFLOP/s, bf16 {peaks['bfloat16']:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory(prefix="tuneyard-bench-") as tmp:
        for key in model_keys:
            skipped = ensure_model(MODELS[key], args.model_cache_dir)
            if skipped:
                print(f"\n== {key}: skipped ({skipped})")
                continue
            for case in cases(MODELS[key], args.quick):
                if case.method not in args.methods.split(",") or case.dataset not in args.datasets.split(","):
                    continue
                if args.examples:
                    case = dataclasses.replace(case, examples=args.examples)
                folder = Path(tmp) / f"{key}-{case.dataset}-{case.method}"
                folder.mkdir()
                shared = prepare(case, args.model_cache_dir, folder)
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
                for round_ in range(repeats):
                    before = load()
                    for name in contenders:
                        runs[name].append(run_contender(name, shared, folder / f"round-{round_}"))
                    print(f"   {case.dataset}/{case.method} round {round_ + 1}/{repeats}: load {before} → {load()}")
                report(case, shared, runs, peaks)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
