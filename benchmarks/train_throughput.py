"""Training throughput: tuneyard's engine against a plain HF Trainer + peft and TRL's SFTTrainer.

    .venv/bin/python benchmarks/train_throughput.py [--model tiny-llama|smollm2|both] [--quick]

For each model and dataset, the contenders run back to back, each in its own process (its own
peak RSS), on the same examples, hyperparameters and seed, one epoch of LoRA in fp32. Prints,
per contender: real (non-padding) tokens/s, the ratios to HF and TRL, MFU against the fp32 and
bf16 matmul peak measured in this run, peak RSS, and the held-out loss (one function for all,
on the same examples). Figures only; asserts nothing.

Datasets: "varied" (stdlib instruction → docstring chats, lengths from a line to a page) and
"chunks" (plain text rows of exactly max_seq_length tokens, where packing gains nothing).
Batches: HF and TRL take `batch_size` examples per step, padded to the longest; tuneyard packs
examples into rows of max_seq_length and takes as many rows per step as carry about the same
number of tokens, so the three take about as many optimizer steps over the same data.

MFU counts model FLOPs per real token (attention's sequence-length term left out): LoRA,
4·N_frozen + 6·N_lora (forward 2N; backward 2N for the activation gradients of every matmul,
plus 2·N_lora for the adapter's weight gradients); N counts the weights of linear layers,
lm_head included. (Full fine-tuning would be the usual 6·N.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
CONTENDERS = ("tuneyard", "hf", "trl")


@dataclass(frozen=True)
class Case:
    """One model on one dataset: how much data, and the hyperparameters every contender uses."""

    model: str
    dataset: str  # "varied" or "chunks"
    examples: int
    batch_size: int
    max_seq_length: int
    learning_rate: float
    eval_examples: int


def cases(model: str, quick: bool) -> list[Case]:
    """Sized so a full run of both models stays within ~15 minutes on two busy cores."""
    if model == "tiny-llama":
        n, chunks = (96, 32) if quick else (640, 160)
        return [Case(model, "varied", n, 8, 512, 1e-3, 32), Case(model, "chunks", chunks, 8, 256, 1e-3, 16)]
    n, chunks = (8, 4) if quick else (32, 8)
    return [Case(model, "varied", n, 4, 512, 5e-4, 8), Case(model, "chunks", chunks, 2, 256, 5e-4, 4)]


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
    rows = case.batch_size if case.dataset == "chunks" else round(case.batch_size * mean_tokens / case.max_seq_length)
    return {
        "model": case.model, "model_cache_dir": str(cache), "train_path": str(train_path),
        "eval_path": str(eval_path), "tuneyard_batch_size": max(1, rows),
        "hyperparams": {
            "batch_size": case.batch_size, "max_seq_length": case.max_seq_length,
            "learning_rate": case.learning_rate, "lora_rank": 16, "lora_alpha": 32, "seed": 0,
        },
        "mean_example_tokens": mean_tokens, "truncated": data.stats.truncated,
    }  # fmt: skip


def run_contender(name: str, shared: dict[str, Any], folder: Path) -> dict[str, Any]:
    work = folder / name
    work.mkdir()
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


def report(case: Case, shared: dict[str, Any], results: dict[str, dict[str, Any]], peaks: dict[str, float]) -> None:
    print(f"\n== {case.model} · {case.dataset} · {case.examples} examples "
          f"(mean {shared['mean_example_tokens']:.0f} tokens, {shared['truncated']} truncated) · "
          f"max_seq_length {case.max_seq_length} · HF/TRL batch {case.batch_size}, "
          f"tuneyard {shared['tuneyard_batch_size']} packed rows")  # fmt: skip
    print(f"{'contender':<10}{'steps':>6}{'tokens':>8}{'seconds':>9}{'tok/s':>9}{'vs HF':>7}{'vs TRL':>7}"
          f"{'MFU fp32':>9}{'MFU bf16':>9}{'RSS GB':>8}{'eval loss':>10}")  # fmt: skip
    for name, figures in results.items():
        if "error" in figures:
            print(f"{name:<10} failed: {figures['error']}")
            continue
        rate = figures["tokens"] / figures["seconds"]
        achieved = rate * flops_per_token(figures) / 1e9
        ratios = [_ratio(rate, results.get(other)) for other in ("hf", "trl")]
        print(f"{name:<10}{figures['steps']:>6}{figures['tokens']:>8}{figures['seconds']:>9.1f}{rate:>9.1f}"
              f"{ratios[0]:>7}{ratios[1]:>7}{achieved / peaks['float32']:>9.1%}{achieved / peaks['bfloat16']:>9.0%}"
              f"{figures['peak_rss_gb']:>8.2f}{figures['eval_loss']:>10.4f}")  # fmt: skip
    _targets(case, results)


def _ratio(rate: float, other: dict[str, Any] | None) -> str:
    if not other or "error" in other:
        return "-"
    return f"{rate / (other['tokens'] / other['seconds']):.2f}x"


def _targets(case: Case, results: dict[str, dict[str, Any]]) -> None:
    ours, hf = results.get("tuneyard"), results.get("hf")
    if not ours or not hf or "error" in ours or "error" in hf:
        return
    speedup = (ours["tokens"] / ours["seconds"]) / (hf["tokens"] / hf["seconds"])
    wanted = 1.5 if case.dataset == "varied" else 1.0
    gap = abs(ours["eval_loss"] - hf["eval_loss"]) / hf["eval_loss"]
    print(f"targets: speed {speedup:.2f}x HF (want ≥ {wanted}x): {'met' if speedup >= wanted else 'NOT met'}; "
          f"eval loss within {gap:.2%} of HF (want ≤ 2%): {'met' if gap <= 0.02 else 'NOT met'}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", choices=["tiny-llama", "smollm2", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="a ~2-minute smoke run (tiny-llama unless --model)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    parser.add_argument("--model-cache-dir", type=Path, default=REPO / ".cache" / "models")
    args = parser.parse_args(argv)
    model_keys = ["tiny-llama", "smollm2"] if args.model == "both" else [args.model]
    if args.quick and args.model == "both":
        model_keys = ["tiny-llama"]
    started = time.perf_counter()
    peaks = {name: matmul_peak(name, seconds=1.0 if name == "bfloat16" else 2.0) for name in ("float32", "bfloat16")}
    print(f"matmul peak (1024², {os.cpu_count()} cores, torch default threads): "
          f"fp32 {peaks['float32']:.1f} GFLOP/s, bf16 {peaks['bfloat16']:.1f} GFLOP/s; load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="tuneyard-bench-") as tmp:
        for key in model_keys:
            skipped = ensure_model(MODELS[key], args.model_cache_dir)
            if skipped:
                print(f"\n== {key}: skipped ({skipped})")
                continue
            for case in cases(MODELS[key], args.quick):
                folder = Path(tmp) / f"{key}-{case.dataset}"
                folder.mkdir()
                shared = prepare(case, args.model_cache_dir, folder)
                results = {name: run_contender(name, shared, folder) for name in args.contenders.split(",")}
                report(case, shared, results, peaks)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
