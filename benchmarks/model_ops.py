"""Model operations on SmolLM2-135M-Instruct, each a real runner on the CPU (or the GPU there is):

* growth: a `train` job grown (depth ×DEPTH) against the same job not grown (factors 1), equal
  steps, data and schedule: function preservation, and the eval loss curve of each;
* contraction: `contract` jobs at ratios 0.25 and 0.5 with calibration text, each without and with
  `heal_steps`: parameters, ppl before → after and KL(source ‖ contracted) on held-out chats (the
  healing trains on the training chats only), seconds.

The data is benchmarks.sft_data's standard-library docstring chats. Prints figures; asserts nothing.

    .venv/bin/python -m benchmarks.model_ops [--steps 30] [--depth 1.5] [--examples 400] [--seq-len 128]
        [--heal-steps 30] [--only growth|contraction]
        [--model tiny-llama]   (a smoke run on the built-in model instead of SmolLM2)
"""

from __future__ import annotations

import argparse
import json
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
    sys.path.insert(0, str(REPO / "scripts"))
    from fetch_smollm2 import fetch_smollm2  # type: ignore[import-not-found]

    return Path(fetch_smollm2(CACHE / "smollm2"))


def run(spec: dict[str, Any], run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """(result, telemetry records, wall seconds) of one runner."""
    run_dir.mkdir(parents=True)
    spec_file = run_dir / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    started = time.monotonic()
    argv = [sys.executable, "-m", "tuneyard.training", str(spec_file), "--run-dir", str(run_dir),
            "--model-cache-dir", str(CACHE / "models")]
    with open(run_dir / "runner.log", "wb") as log:
        code = subprocess.run(argv, stdout=log, stderr=log, cwd=REPO, check=False).returncode
    seconds = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"runner exited {code}: {(run_dir / 'runner.log').read_text()[-2000:]}")
    records = [json.loads(line) for line in (run_dir / "telemetry.jsonl").read_text().splitlines() if line]
    return json.loads((run_dir / "result.json").read_text()), records, seconds


def growth(model: Path, data: Path, folder: Path, args: argparse.Namespace) -> None:
    knobs = {"lr": 1e-4, "seq_len": args.seq_len, "batch_size": 4, "bf16": False, "seed": 0, "cycles": 1,
             "steps_per_cycle": args.steps, "eval_steps": max(1, args.steps // 5), "eval_split": 0.1}
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


def contraction(model: Path, data: Path, held: Path, folder: Path, heal_steps: int) -> None:
    for ratio in (0.25, 0.5):
        for heal in (0, heal_steps):
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
    parser.add_argument("--only", choices=("growth", "contraction"), default=None)
    args = parser.parse_args()
    model = Path(args.model) if args.model else smollm2()
    with tempfile.TemporaryDirectory(prefix="model-ops-") as tmp:
        folder = Path(tmp)
        train, held_out = docstring_chats(limit=args.examples)
        data = write_jsonl(folder / "chats.jsonl", train)
        held = write_jsonl(folder / "held-out.jsonl", held_out[:64])
        print(f"{model.name}, {len(train)} docstring chats ({len(held_out[:64])} held out), seq_len {args.seq_len}")
        if args.only in (None, "growth"):
            growth(model, data, folder, args)
        if args.only in (None, "contraction"):
            contraction(model, data, held, folder, args.heal_steps)


if __name__ == "__main__":
    main()
