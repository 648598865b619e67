"""What torch.compile costs and saves on the engine's own steps (the figures behind `compile: auto`).

    .venv/bin/python -m benchmarks.compile_cost [--model tiny-llama] [--methods lora,full]
        [--precisions fp32,bf16] [--dynamic auto,true,false] [--steps 12]

For each method, precision and way of handling shapes, one process loads the model through the
engine (FinetuneRecipe.setup: the varied-length chats of train_throughput, padding-free lines of
batch 8, per-example attention) and compiles what the engine compiles (the decoder the loss reads,
training/compilation.py). Then it times:

* compile: the first compiled forward + backward, minus an eager one of the same batch;
* steady: eager and compiled forward + backward of the SAME micro-batches, interleaved
  (E C E C ...), so a busy moment of this shared host hits both alike; median tokens/s of each,
  wall and process CPU time (the host is shared: CPU time is the steadier figure);
* recompiles: frames Dynamo compiled after the first step (each new line length costs one where
  shapes are static), graph breaks, and the compile seconds they add.

Each measurement runs in a process of its own, twice: with a new Inductor cache ("cold", what the
first job on a machine pays) and again with the cache the first one filled ("warm", a later job).

`dynamic`: auto = torch's default (static first, dynamic after the first shape change), true =
symbolic shapes from the start, false = a compile per distinct length (up to Dynamo's limit,
then eager).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == REPO / "benchmarks":
    sys.path[0] = str(REPO)  # benchmarks/queue.py would shadow the standard library's queue

import torch  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402

from benchmarks.sft_data import docstring_chats, write_jsonl  # noqa: E402
from benchmarks.train_throughput import MODELS, ensure_model  # noqa: E402


@contextlib.contextmanager
def clock(into: dict[str, float]) -> Iterator[None]:
    """Wall and CPU seconds (this process, all its threads) of the block."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into["wall"], into["cpu"] = time.perf_counter() - wall, time.process_time() - cpu


def setup(model: str, method: str, bf16: bool, examples: int, cache: Path, work: Path) -> Any:
    from tuneyard.training.config import resolve
    from tuneyard.training.control import RunControl
    from tuneyard.training.recipes.finetune import FinetuneRecipe
    from tuneyard.training.telemetry import Telemetry

    train, _ = docstring_chats()
    random.Random(0).shuffle(train)
    data = write_jsonl(work / "train.jsonl", train[:examples])
    hp: dict[str, Any] = {"batch_size": 8, "max_seq_length": 512, "learning_rate": 1e-3, "seed": 0, "bf16": bf16,
                          "compile": False}
    raw = {"type": "finetune", "base_model": model, "method": method, "datasets": [{"path": str(data)}],
           "hyperparams": hp}
    config = resolve(raw, work, cache, {})
    recipe = FinetuneRecipe(config, work / "run", Telemetry(work / "telemetry.jsonl", echo=None), RunControl())
    recipe.setup(None)
    return recipe


def fwd_bwd(recipe: Any, rows: list[Any]) -> int:
    """One micro-batch's forward and backward as the recipe runs it; its tokens."""
    batch = recipe.collate(rows, recipe.session.pad_token_id)
    with recipe.session.attention_scope():
        loss_sum, tokens = recipe.session.loss_sum(batch)
        (loss_sum / max(tokens, 1)).backward()
    recipe.optimizer.zero_grad(set_to_none=True)
    return int(batch["input_ids"].numel())


def frames() -> int:
    return int(counters["frames"]["ok"])


def measure(args: argparse.Namespace, method: str, precision: str, dynamic: str) -> dict[str, Any]:
    from tuneyard.training import compilation

    with tempfile.TemporaryDirectory(prefix="tuneyard-compile-") as tmp:
        recipe = setup(MODELS[args.model], method, precision == "bf16", args.examples, args.model_cache_dir,
                       Path(tmp))
        session = recipe.session
        batches = [[recipe.rows[i] for i in idx]
                   for step in range(args.steps) for idx in recipe.plan.step_batches(0, step)]
        eager_first: dict[str, float] = {}
        with clock(eager_first):
            fwd_bwd(recipe, batches[0])
        torch._dynamo.reset()
        counters.clear()
        compiled = compilation.compile_forward(session, {"auto": None, "true": True, "false": False}[dynamic])
        first: dict[str, float] = {}
        with clock(first):
            fwd_bwd(recipe, batches[0])
        first_frames = frames()
        runs: dict[str, Timed] = {"eager": [], "compiled": []}
        recompile_s: list[float] = []
        for rows in batches[1:]:
            for name, use in (("eager", None), ("compiled", compiled)):
                session.compiled = use
                seen, took = frames(), {}
                with clock(took):
                    tokens = fwd_bwd(recipe, rows)
                if name == "compiled" and frames() > seen:
                    recompile_s.append(took["wall"])  # a step that compiled again: not a steady one
                    continue
                runs[name].append((tokens, took["wall"], took["cpu"]))
        return summary(method, precision, dynamic, eager_first, first, first_frames, runs, recompile_s)


Timed = list[tuple[int, float, float]]  # (tokens, wall s, CPU s) of each steady micro-batch


def summary(method: str, precision: str, dynamic: str, eager_first: dict[str, float], first: dict[str, float],
            first_frames: int, runs: dict[str, Timed], recompile_s: list[float]) -> dict[str, Any]:
    def rates(name: str, slot: int) -> float:
        return statistics.median(run[0] / run[slot] for run in runs[name]) if runs[name] else 0.0

    out = {
        "method": method, "precision": precision, "dynamic": dynamic,
        "compile_s": round(first["wall"] - eager_first["wall"], 2),
        "compile_cpu_s": round(first["cpu"] - eager_first["cpu"], 2),
        "frames_first_step": first_frames, "recompiles": frames() - first_frames,
        "recompile_s": round(sum(recompile_s), 2), "graph_breaks": sum(counters["graph_break"].values()),
        "steady_steps": len(runs["compiled"]),
        "eager_tok_s": round(rates("eager", 1), 1), "compiled_tok_s": round(rates("compiled", 1), 1),
        "eager_tok_cpu_s": round(rates("eager", 2), 1), "compiled_tok_cpu_s": round(rates("compiled", 2), 1),
    }  # fmt: skip
    out["speedup_wall"] = round(out["compiled_tok_s"] / max(out["eager_tok_s"], 1e-9), 3)
    out["speedup_cpu"] = round(out["compiled_tok_cpu_s"] / max(out["eager_tok_cpu_s"], 1e-9), 3)
    return out


def measure_in_child(
    args: argparse.Namespace, method: str, precision: str, dynamic: str, cache: Path
) -> dict[str, Any]:
    """One measurement in a fresh process whose Inductor cache is `cache`: in one process, the second
    compile would find the first one's kernels in memory and time nothing a new job pays."""
    argv = [sys.executable, "-m", "benchmarks.compile_cost", "--one", f"{method},{precision},{dynamic}",
            "--steps", str(args.steps), "--examples", str(args.examples), "--model", args.model,
            "--model-cache-dir", str(args.model_cache_dir)]
    # OpenMP's idle threads sleep, as in the runner (tuneyard/child_process.py): spinning ones on a
    # shared host made eager steps 3x slower in CPU time and would be measured instead of the compile
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "PYTHONWARNINGS": "ignore",
           "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"method": method, "precision": precision, "dynamic": dynamic,
                "error": " | ".join(done.stderr.strip().splitlines()[-3:])[-400:]}
    row: dict[str, Any] = json.loads(lines[-1])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny-llama")
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--dynamic", default="true", help="comma-separated subset of auto,true,false")
    parser.add_argument("--steps", type=int, default=12, help="steps of micro-batches timed (8 examples)")
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--model-cache-dir", type=Path, default=REPO / ".cache" / "models")
    parser.add_argument("--json", type=Path, default=None, help="also write every row here")
    parser.add_argument("--caches", default="cold,warm", help="cold (a new Inductor cache), then warm (the same)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # METHOD,PRECISION,DYNAMIC in this process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args, *args.one.split(","))))
        return 0
    skipped = ensure_model(MODELS[args.model], args.model_cache_dir)
    if skipped:
        print(f"{args.model}: skipped ({skipped})")
        return 0
    print(f"load average at start: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tuneyard-inductor-") as tmp:
        for method in args.methods.split(","):
            for precision in args.precisions.split(","):
                for dynamic in args.dynamic.split(","):
                    cache = Path(tmp) / f"{method}-{precision}-{dynamic}"
                    for state in args.caches.split(","):  # a new Inductor cache, then the same one again
                        row = {**measure_in_child(args, method, precision, dynamic, cache), "cache": state}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    print(f"load average at the end: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
