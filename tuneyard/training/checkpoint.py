"""Checkpoints: everything needed to continue a run as if it had never stopped.

`checkpoints/step-NNNNNN/` holds the trainable weights (the adapter alone for LoRA, in the
standard peft / transformers layout so a checkpoint can serve as a base model), the
optimizer and scheduler, every RNG, the data position, the resolved spec and library
versions. Folders are sealed by `artifacts.atomic_folder`; only sealed ones count.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuneyard.errors import CheckpointError
from tuneyard.training import artifacts, contract
from tuneyard.training.versions import library_versions

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng.pt"
SPEC_FILE = "spec.json"
WEIGHTS_DIR = "model"


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint, restored on resume."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch the next micro-batch belongs to
    batch_index: int = 0  # next micro-batch within that epoch's order
    micro_step: int = 0  # micro-batches accumulated toward the next step (0 at step boundaries)
    tokens_seen: int = 0  # real (non-padding) tokens trained on
    train_seconds: float = 0.0  # time inside the training loop, over every attempt
    compute_seconds: float = 0.0  # whole runner time, over every attempt
    baseline_eval: dict[str, float] | None = None
    last_loss: float | None = None
    losses: list[float] = field(default_factory=list)  # per optimizer step, for the result card


def checkpoints_root(run_dir: Path) -> Path:
    return run_dir / contract.CHECKPOINTS_DIR


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Sealed checkpoints, oldest first. Incomplete folders are skipped, never trusted."""
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = contract.CHECKPOINT_NAME.match(child.name)
        if match and child.is_dir() and artifacts.verify_folder(child, hashing=False):
            found.append((int(match.group(1)), child))
    return sorted(found)


def clean_incomplete(run_dir: Path) -> list[Path]:
    """Remove temporaries and step folders without a valid manifest (left by a crash)."""
    root = checkpoints_root(run_dir)
    removed = artifacts.remove_stale_temporaries(root)
    complete = {path for _, path in complete_checkpoints(run_dir)}
    if root.is_dir():
        for child in root.iterdir():
            if contract.CHECKPOINT_NAME.match(child.name) and child not in complete:
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def prune(run_dir: Path, keep: int) -> list[tuple[int, Path]]:
    """Keep the newest `keep` complete checkpoints; the newest is never deleted. Returns the deleted."""
    complete = complete_checkpoints(run_dir)
    steps = set(contract.pruned_steps([step for step, _ in complete], keep))
    doomed = [(step, path) for step, path in complete if step in steps]
    for _, path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def save(
    run_dir: Path,
    state: TrainState,
    save_weights: Callable[[Path], None],
    optimizer_state: dict[str, Any],
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng_state: dict[str, Any],
    resolved_spec: dict[str, Any],
) -> Path:
    """Write one sealed checkpoint for `state.step`; return its folder."""
    target = checkpoints_root(run_dir) / contract.checkpoint_dir_name(state.step)
    manifest = {"kind": "checkpoint", "step": state.step, "versions": library_versions()}
    with artifacts.atomic_folder(target, manifest) as tmp:
        save_weights(tmp / WEIGHTS_DIR)
        torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
        torch.save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
        torch.save(rng_state, tmp / RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")
        (tmp / SPEC_FILE).write_text(json.dumps(resolved_spec, indent=2), encoding="utf-8")
    return target


def locate(run_dir: Path, which: str) -> Path | None:
    """Resolve `latest`, `step-N` or a path to a sealed checkpoint folder.

    `latest` with no checkpoint yet is None (start from the beginning); a named one that
    is missing or incomplete is a CheckpointError.
    """
    if which == "latest":
        complete = complete_checkpoints(run_dir)
        return complete[-1][1] if complete else None
    if which.startswith("step-") and which[5:].isdigit():
        path = checkpoints_root(run_dir) / contract.checkpoint_dir_name(int(which[5:]))
    else:
        path = Path(which)
    if not artifacts.verify_folder(path):
        raise CheckpointError(f"no complete checkpoint at {which!r}", checkpoint=which)
    return path


def load_state(folder: Path) -> TrainState:
    data = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    return TrainState(**data)


def load_torch(folder: Path, name: str) -> Any:
    # weights_only=False: RNG states hold numpy arrays and Python tuples; these files are
    # ours, written by this runner into this run folder, never user uploads.
    return torch.load(folder / name, map_location="cpu", weights_only=False)
