"""SIGKILL at any moment, even mid-checkpoint, never leaves a run that cannot resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import torch

from tests.support.runs import (
    arithmetic_chat,
    final_tensors,
    run_runner,
    start_runner,
    step_losses,
    wait_for,
    write_jsonl,
    write_spec,
)
from tuneyard.training.checkpoint import complete_checkpoints


def _kill_group(pid: int) -> None:
    os.killpg(pid, signal.SIGKILL)


def _wait_for_step(proc: subprocess.Popen[bytes], run_dir: Path, step: int) -> None:
    wait_for(lambda: proc.poll() is not None or max(step_losses(run_dir), default=0) >= step, interval=0.01)


def _tmp_checkpoint_exists(run_dir: Path) -> bool:
    root = run_dir / "checkpoints"
    return root.is_dir() and any(p.name.startswith(".tmp-") for p in root.iterdir())


def test_sigkill_mid_checkpoint_and_at_random_moments(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(24))
    # A checkpoint every step, so a good share of the run's time is spent writing them.
    spec = write_spec(tmp_path, data, method="full", save_steps=1, save_total_limit=2, max_steps=20)
    straight = tmp_path / "straight"
    assert run_runner(spec, straight, model_cache) == 0
    # Each checkpoint record names the older folders deleted to keep it: the service unlists those.
    records = [json.loads(line) for line in (straight / "telemetry.jsonl").read_text().splitlines()]
    saved = {r["step"] for r in records if r["kind"] == "checkpoint"}
    pruned = {step for r in records if r["kind"] == "checkpoint" for step in r["pruned"]}
    on_disk = [step for step, _ in complete_checkpoints(straight)]
    assert sorted(saved - pruned) == on_disk and len(on_disk) == 2, (saved, pruned, on_disk)

    crashed = tmp_path / "crashed"
    rng = random.Random(1234)
    kills = 0
    # First kill: inside a checkpoint write (its temporary folder is on disk).
    proc = start_runner(spec, crashed, model_cache)
    wait_for(lambda: proc.poll() is not None or _tmp_checkpoint_exists(crashed), interval=0.001)
    assert proc.poll() is None, "the runner finished before a checkpoint write could be caught"
    _kill_group(proc.pid)
    proc.wait()
    kills += 1
    # Then kills at random moments until the run completes: a random step to reach, then a
    # random fraction of a step, so the kills land anywhere in the loop whatever the machine's speed.
    while True:
        proc = start_runner(spec, crashed, model_cache, resume="latest")
        done = max(step_losses(crashed), default=0)
        target = rng.randint(done + 1, max(done + 1, 19))
        _wait_for_step(proc, crashed, target)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break
        _kill_group(proc.pid)
        proc.wait()
        kills += 1
        assert kills < 30, "the run never finished"
    assert proc.returncode == 0, (crashed / "runner.log").read_text()[-3000:]
    assert kills >= 3
    assert step_losses(crashed) == step_losses(straight)
    expected, actual = final_tensors(straight), final_tensors(crashed)
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name
    leftovers = [p.name for p in (crashed / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []
