"""Do the recommended settings train at least as well as the defaults, for the same compute? (issue 13)

The data is the bar's kind: varied-length chat (stdlib instruction → docstring chats, from a line to a
page; `benchmarks/sft_data.py`). The recommendation comes from the service itself (`POST /v1/recommend`'s
`recommend_for`, on a dataset uploaded to a throwaway SQLite service, so seq_len is its length
percentile as a user would get it). Two real runner processes then train the same base model:

- "recommended": its learning rate, epochs, seq_len, batch size x accumulation and LoRA rank;
- "defaults": a job that sets nothing, as the runner resolves it (the method's and the size tier's
  defaults), for as many optimizer steps as give it the FLOPs the recommended run trains with (its
  epochs over the chats as tokenized and truncated at its seq_len, each token at the service's count
  for its rank and length): the same compute (both runs' FLOPs are printed to show it). Matching
  tokens alone, as this did first, gave the defaults' rank 16 about 5 % more FLOPs than rank 8.

The two runs train at the same time, so a loaded host slows both alike.

Both final models are then scored by one function on the same held-out chats (examples of modules
the training set does not have), at one sequence length, so the figure is the models', not the runs'
own evaluations at their own truncations.

Figures (tiny-llama, LoRA, the loaded 2-core host, 2026-12-03). Recommended: lr 1e-3, 3 epochs,
seq_len 256, 4 x 1 examples a step (small data: at least 200 updates, `planning.recommend`), rank 8;
defaults: lr 1e-3, seq_len 256, 8 x 1, rank 16, for the same FLOPs. Held-out loss, recommended vs defaults:

    chats  seed  recommended                      defaults                         difference
    400    0     300 steps, 902 GFLOPs, 7.0360    141 steps, 905 GFLOPs, 7.0764    -0.040
    400    1     300 steps, 902 GFLOPs, 7.0333    141 steps, 901 GFLOPs, 7.0840    -0.051
    64     0      48 steps, 135 GFLOPs, 7.3465     23 steps, 138 GFLOPs, 7.3850    -0.039
    64     1      48 steps, 135 GFLOPs, 7.3290     23 steps, 137 GFLOPs, 7.3829    -0.054

Before, the recommendation took 16 examples a step (8 x 2): on 64 chats 12 steps against the
defaults' 24 at the same tokens, held-out 7.3897 against 7.3776, 0.012 worse; an untrained 1M model
on a few hundred chats is decided by its number of updates (both barely moved from ~7.6).

    .venv/bin/python benchmarks/recommend_quality.py                       # tiny-llama, LoRA
    .venv/bin/python benchmarks/recommend_quality.py --model smollm2 --examples 96 --held-out 24
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Run as a script, sys.path[0] is benchmarks/, where queue.py would shadow the standard
# library's queue (torch imports it): put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == REPO / "benchmarks":
    sys.path[0] = str(REPO)

import yaml  # noqa: E402

from benchmarks.sft_data import docstring_chats, write_jsonl  # noqa: E402

MODELS = {"tiny-llama": "tiny-llama", "smollm2": "smollm2-135m-instruct"}
EVAL_SEQ = 1024
"""Tokens each held-out chat is scored over, for both models (tiny-llama's context)."""
FIXED = {"bf16": False, "seed": 0, "eval_split": 0.0, "save_total_limit": 1}
"""What both runs share and neither setting decides: the precision, the seed, no held-out split of their own."""


def recommendation(model_id: str, train: Path, method: str, folder: Path) -> dict[str, Any]:
    """What POST /v1/recommend answers for `train` uploaded as a dataset to a throwaway service."""
    from tuneyard.services import datasets, files
    from tuneyard.services.recommendations import RecommendRequest, recommend_for
    from tuneyard.settings import Settings
    from tuneyard.store import Database, make_engine, migrate, tenancy

    settings = Settings(data_dir=folder / "service", max_upload_bytes=1 << 30)
    settings.data_dir.mkdir(parents=True)
    db = Database(make_engine(settings))
    migrate(db.engine)
    org = tenancy.create_org(db, "bench").id
    with train.open("rb") as stream:
        file = files.upload_file(db, settings, org, train.name, stream)
    dataset = datasets.dataset_of_file(db, org, file.id, "chat")
    answer = recommend_for(db, settings, org, RecommendRequest(base_model=model_id, dataset=dataset.id, method=method))
    db.dispose()
    return answer


def resolved_defaults(base: dict[str, Any], folder: Path, cache: Path) -> dict[str, Any]:
    """The hyperparameters a job that sets none of the knobs gets, as the runner resolves them."""
    from tuneyard.training.config import resolve
    from tuneyard.training.models import builtin_defaults

    raw = {**base, "hyperparams": dict(FIXED)}  # the seed resolves nothing else
    config = resolve(raw, folder, cache, builtin_defaults(base["base_model"], base["method"]))
    return config.hyperparams.model_dump()


def start(spec: dict[str, Any], run_dir: Path, cache: Path) -> subprocess.Popen[bytes]:
    """A runner process for `spec`, its log in the run folder."""
    run_dir.mkdir(parents=True)
    (run_dir / "job.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    argv = [sys.executable, "-m", "tuneyard.training", str(run_dir / "job.yaml"), "--run-dir", str(run_dir),
            "--model-cache-dir", str(cache)]
    with open(run_dir / "runner.log", "wb") as log:  # the child keeps its own copy of the handle
        return subprocess.Popen(argv, stdout=log, stderr=log, cwd=REPO)


def finish(proc: subprocess.Popen[bytes], run_dir: Path) -> dict[str, Any]:
    """The result card of a runner started by `start`, once it has exited."""
    if proc.wait() != 0:
        raise SystemExit(f"runner exited {proc.returncode}: {(run_dir / 'runner.log').read_text()[-2000:]}")
    result: dict[str, Any] = json.loads((run_dir / "result.json").read_text())
    return result


def mean_example_tokens(model_id: str, train: Path, cache: Path, max_seq_length: int) -> float:
    """Tokens per training example as the runner tokenizes them, truncated at `max_seq_length`."""
    from tuneyard.training.data import DataSource, prepare_data
    from tuneyard.training.models import load_tokenizer, resolve_model_source

    tokenizer = load_tokenizer(resolve_model_source(model_id, cache))
    stats = prepare_data([DataSource(train)], tokenizer, max_seq_length=max_seq_length).stats
    return stats.tokens / max(stats.examples, 1)


def flops_per_token(model_id: str, method: str, hyperparams: dict[str, Any], example_tokens: float) -> float:
    """Training FLOPs a token costs under `hyperparams`, as the service counts them (`planning.compute`)."""
    from tuneyard.planning.compute import flops_per_token as per_token
    from tuneyard.planning.memory import TrainingSetup
    from tuneyard.planning.shape import BUILTIN_CONFIGS, ModelShape

    setup = TrainingSetup.from_hyperparams(method, hyperparams, bf16=False, example_tokens=example_tokens)
    return per_token(ModelShape.from_config(BUILTIN_CONFIGS[model_id]), setup)


def held_out_loss(final: Path, model_id: str, held: Path, cache: Path) -> float:
    """Mean cross-entropy per answer token over the held-out chats, each alone, at EVAL_SEQ tokens."""
    import torch

    from benchmarks.throughput_contenders import heldout_loss
    from tuneyard.training.data import DataSource, prepare_data
    from tuneyard.training.models import load_model, load_tokenizer, resolve_model_source

    tokenizer = load_tokenizer(resolve_model_source(model_id, cache))
    # read as a training source (prepare_data wants one), tokenized as the runner tokenizes
    examples = prepare_data([DataSource(held)], tokenizer, max_seq_length=EVAL_SEQ).train
    model = load_model(resolve_model_source(str(final), cache))
    with torch.no_grad():
        return heldout_loss(model, [{"input_ids": e.input_ids, "labels": e.labels} for e in examples])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny-llama")
    parser.add_argument("--method", choices=["lora", "full"], default="lora")
    parser.add_argument("--examples", type=int, default=400, help="Training chats (a random subset, seed 0).")
    parser.add_argument("--held-out", type=int, default=48, help="Held-out chats the losses are taken on.")
    parser.add_argument("--seed", type=int, default=0, help="Both runs' seed (their adapters' initialization, "
                        "their data order).")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "models")
    args = parser.parse_args()
    fixed = {**FIXED, "seed": args.seed}
    model_id = MODELS[args.model]
    train_all, held_all = docstring_chats()
    random.Random(0).shuffle(train_all)  # from every module, not the first few
    with tempfile.TemporaryDirectory(prefix="recommend-quality-") as tmp:
        folder = Path(tmp)
        train = write_jsonl(folder / "train.jsonl", train_all[: args.examples])
        held = write_jsonl(folder / "held-out.jsonl", held_all[: args.held_out])
        advice = recommendation(model_id, train, args.method, folder)
        rec = advice["recommended"]
        knobs = {k: rec[k] for k in ("learning_rate", "epochs", "max_seq_length", "batch_size",
                                     "gradient_accumulation_steps", "lora_rank") if k in rec}
        print(f"{args.model} {args.method}, {args.examples} training chats, {args.held_out} held out")
        print("recommended:", knobs, "|", "; ".join(advice["notes"]))
        base = {"type": "finetune", "base_model": model_id, "method": args.method,
                "datasets": [{"path": str(train)}]}
        defaults = resolved_defaults(base, folder, args.cache)
        rec_example = mean_example_tokens(model_id, train, args.cache, knobs["max_seq_length"])
        def_example = mean_example_tokens(model_id, train, args.cache, defaults["max_seq_length"])
        # the same FLOPs, not only the same tokens: the two settings' ranks and lengths cost a token differently
        budget = knobs["epochs"] * args.examples * rec_example * flops_per_token(
            model_id, args.method, {**defaults, **knobs}, rec_example)
        per_step = (defaults["batch_size"] * defaults["gradient_accumulation_steps"] * def_example
                    * flops_per_token(model_id, args.method, defaults, def_example))
        steps = max(1, math.ceil(budget / per_step))
        print("defaults:", {k: defaults.get(k) for k in knobs},
              f"| {steps} steps for the same ~{budget / 1e9:.0f} GFLOPs")
        specs = {"recommended": {**base, "hyperparams": {**knobs, **fixed}},
                 "defaults": {**base, "hyperparams": {**fixed, "max_steps": steps}}}
        runs = {name: start(spec, folder / name, args.cache) for name, spec in specs.items()}
        results = {name: finish(proc, folder / name) for name, proc in runs.items()}
        recommended, default = results["recommended"], results["defaults"]

        print(f"{'run':<12} {'steps':>6} {'tokens':>8} {'GFLOPs':>8} {'held-out loss':>14}")
        for name, result in (("recommended", recommended), ("defaults", default)):
            loss = held_out_loss(folder / name / "final", model_id, held, args.cache)
            print(f"{name:<12} {result['steps']:>6} {result['tokens_processed']:>8} "
                  f"{result['compute']['train_flops'] / 1e9:>8.1f} {loss:>14.4f}")


if __name__ == "__main__":
    main()
