"""Model operations on SmolLM2-135M-Instruct, each a real runner on the CPU (or the GPU there is):

* growth: a `train` job grown (depth ×DEPTH) against the same job not grown (factors 1), equal
  steps, data and schedule: function preservation, and the eval loss curve of each;
* contraction: `contract` jobs at ratios 0.25 and 0.5 with calibration text, each without and with
  `heal_steps`: parameters, ppl before → after and KL(source ‖ contracted) on held-out chats (the
  healing trains on the training chats only), seconds.

The data is benchmarks.sft_data's standard-library docstring chats. Prints figures; asserts nothing.
Each runner computes on --threads CPU threads (OMP_NUM_THREADS), 1 by default: on a shared, loaded
host two threads that meet at a barrier every layer lose their turns (see benchmarks/serving.py).

    .venv/bin/python -m benchmarks.model_ops [--steps 30] [--depth 1.5] [--examples 400] [--seq-len 128]
        [--heal-steps 30] [--held-out 64] [--batch-size 4] [--threads 1] [--ratios 0.25,0.5] [--healed-only]
        [--only growth|contraction]
        [--model tiny-llama]   (a smoke run on the built-in model instead of SmolLM2)

Figures on SmolLM2-135M-Instruct (its Q4_1 GGUF dequantized to fp32), CPU, 1 thread a runner, on the
2-core host loaded ~12-25 by five other engineers' test runs (seconds are that host's, not the work's):

* growth (--only growth --steps 10 --examples 60 --seq-len 64 --batch-size 2; 54 training chats,
  6 held out, lr 1e-4, one cosine cycle): depth x1.5 = 30 → 45 layers, 134,515,008 → 187,616,448
  parameters, function_preservation 0 (exactly: the new blocks' o_proj and down_proj are zero);
  eval loss at equal steps (step 0 is the source model):

      step           0       2       4       6       8      10
      grown     4.4851  3.3350  2.9094  2.7425  2.6175  2.5820   (2,703 s, 688 s of it loading the GGUF)
      not grown 4.4851  3.3855  2.9156  2.7592  2.6599  2.6285   (1,569 s, loading the GGUF included)

* contraction (--only contraction --examples 60 --held-out 8 --heal-steps 8, one process per ratio; the
  0.25 healed row from a rerun with --healed-only after the host's OOM killer took the first; activation importance
  on the 8 held-out chats, healing on the 60 training chats at the default heal_learning_rate 1e-3):

      ratio  heal_steps  params                      held-out ppl     KL(source ‖ contracted)  seconds
      0.25   0           134,515,008 → 114,608,448   18.42 → 23.17    0.448                    910
      0.25   8           134,515,008 → 114,608,448   18.42 → 173.26   3.24                     1,059
      0.5    0           134,515,008 →  94,701,888   18.42 → 39.52    1.33                     892
      0.5    8           134,515,008 →  94,701,888   18.42 → 152.24   3.07                     1,586

  Ratio 0.25 unhealed run from the GGUF itself (before the benchmark dequantized it once): the same
  figures, 1,741 s. Healing at 1e-3 (full weights, AdamW) made the pretrained model worse on held-out
  text, not better: that default suits tiny-llama's random weights, not a trained model's.

  Since then the default is the full fine-tuning rate of the model's size (`catalog.heal_learning_rate`,
  2e-5 for SmolLM2). The same 0.25 healed row at it (--healed-only --ratios 0.25, same flags):

      0.25   8           134,515,008 → 114,608,448   18.44 → 18.82    0.45                     195

  Healing now recovers most of what the contraction lost (23.17 unhealed → 18.82; the source 18.44).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.sft_data import docstring_chats, write_jsonl

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"


def smollm2() -> Path:
    """SmolLM2's GGUF dequantized once into a model folder: each runner loads the same fp32 weights its
    GGUF would give, without dequantizing it again (minutes a run on a loaded 2-core host)."""
    sys.path.insert(0, str(REPO / "scripts"))
    from fetch_smollm2 import fetch_smollm2

    gguf = Path(fetch_smollm2(CACHE / "smollm2"))
    folder = CACHE / "smollm2-dequantized"
    if not (folder / "config.json").is_file():
        from tuneyard.training.models import load_model, load_tokenizer, resolve_model_source

        source = resolve_model_source(str(gguf), CACHE / "models")
        tmp = folder.with_name(folder.name + ".partial")
        load_model(source).save_pretrained(tmp)
        load_tokenizer(source).save_pretrained(tmp)
        tmp.rename(folder)  # whole or not at all
    return folder


THREADS = {"OMP_NUM_THREADS": "1"}
"""The runners' environment's thread count; main() sets it from --threads."""


def run(spec: dict[str, Any], run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """(result, telemetry records, wall seconds) of one runner."""
    run_dir.mkdir(parents=True)
    spec_file = run_dir / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    started = time.monotonic()
    argv = [sys.executable, "-m", "tuneyard.training", str(spec_file), "--run-dir", str(run_dir),
            "--model-cache-dir", str(CACHE / "models")]
    with open(run_dir / "runner.log", "wb") as log:
        code = subprocess.run(argv, stdout=log, stderr=log, cwd=REPO, check=False,
                              env={**os.environ, **THREADS}).returncode
    seconds = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"runner exited {code}: {(run_dir / 'runner.log').read_text()[-2000:]}")
    records = [json.loads(line) for line in (run_dir / "telemetry.jsonl").read_text().splitlines() if line]
    return json.loads((run_dir / "result.json").read_text()), records, seconds


def growth(model: Path, data: Path, folder: Path, args: argparse.Namespace) -> None:
    knobs = {"lr": 1e-4, "seq_len": args.seq_len, "batch_size": args.batch_size, "bf16": False, "seed": 0,
             "cycles": 1, "steps_per_cycle": args.steps, "eval_steps": max(1, args.steps // 5), "eval_split": 0.1}
    curves = {}
    for label, factors in (("grown", {"depth_factor": args.depth}), ("not grown", {"depth_factor": 1.0})):
        spec = {"type": "train", "base_model": str(model), "datasets": [{"path": str(data)}],
                "growth": factors, "hyperparams": knobs}
        result, records, seconds = run(spec, folder / label.replace(" ", "-"))
        curves[label] = {r["step"]: r["eval_loss"] for r in records if r["kind"] == "eval"}
        print(f"{label:>9}: params {result['params_before']:,} → {result['params_after']:,}, "
              f"function_preservation {result['function_preservation']:.3g}, eval loss "
              f"{result['eval_loss_baseline']:.4f} → {result['eval_loss_final']:.4f}, {seconds:.0f} s")
    steps = sorted(set(curves["grown"]) & set(curves["not grown"]))
    print("eval loss by step (source model at step 0):")
    print("  step  " + "  ".join(f"{s:>7}" for s in steps))
    for label, curve in curves.items():
        print(f"  {label:>9} " + "  ".join(f"{curve[s]:7.4f}" for s in steps))


def contraction(model: Path, data: Path, held: Path, folder: Path, heals: list[int], ratios: list[float]) -> None:
    for ratio in ratios:
        for heal in heals:
            spec = {"type": "contract", "base_model": str(model), "contraction_ratio": ratio, "heal_steps": heal,
                    "datasets": [{"path": str(data)}, {"path": str(held), "split": "eval"}]}
            result, _, seconds = run(spec, folder / f"contract-{ratio}-heal-{heal}")
            print(f"ratio {ratio}, heal_steps {heal:>3}: params {result['params_before']:,} → "
                  f"{result['params_after']:,}, held-out ppl {result['ppl_baseline']:.2f} → {result['ppl_final']:.2f}, "
                  f"KL {result['function_preservation']:.3g}, importance {result['importance']}, {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--depth", type=float, default=1.5)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--model", default=None, help="A base model the runner takes; SmolLM2's GGUF by default.")
    parser.add_argument("--heal-steps", type=int, default=30, help="The healed contractions' heal_steps.")
    parser.add_argument("--held-out", type=int, default=64, help="Held-out chats the figures are taken on.")
    parser.add_argument("--batch-size", type=int, default=4, help="Rows per step of the growth runs.")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each runner (OMP_NUM_THREADS).")
    parser.add_argument("--healed-only", action="store_true", help="Only the contractions with heal_steps.")
    parser.add_argument("--ratios", default="0.25,0.5", help="The contraction ratios, comma-separated.")
    parser.add_argument("--only", choices=("growth", "contraction"), default=None)
    args = parser.parse_args()
    THREADS["OMP_NUM_THREADS"] = str(args.threads)
    model = Path(args.model) if args.model else smollm2()
    with tempfile.TemporaryDirectory(prefix="model-ops-") as tmp:
        folder = Path(tmp)
        train, held_out = docstring_chats(limit=args.examples)
        data = write_jsonl(folder / "chats.jsonl", train)
        held = write_jsonl(folder / "held-out.jsonl", held_out[: args.held_out])
        print(f"{model.name}, {len(train)} docstring chats ({len(held_out[: args.held_out])} held out), "
              f"seq_len {args.seq_len}")
        if args.only in (None, "growth"):
            growth(model, data, folder, args)
        if args.only in (None, "contraction"):
            heals = [args.heal_steps] if args.healed_only else [0, args.heal_steps]
            contraction(model, data, held, folder, heals, [float(r) for r in args.ratios.split(",")])


if __name__ == "__main__":
    main()
