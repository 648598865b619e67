"""SIGUSR1 checkpoints and keeps training; a second SIGTERM or a SIGINT aborts at once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.runs import arithmetic_chat, start_runner, step_losses, telemetry, wait_for, write_jsonl, write_spec


def _spec(tmp_path: Path) -> Path:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(24))
    # No scheduled checkpoints before the end: any mid-run checkpoint is the one we asked for.
    return write_spec(tmp_path, data, max_steps=200, save_steps=10_000, method="full")


def test_sigusr1_checkpoints_and_keeps_training(tmp_path: Path, model_cache: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start_runner(_spec(tmp_path), run_dir, model_cache)
    wait_for(lambda: proc.poll() is not None or max(step_losses(run_dir), default=0) >= 3)
    os.kill(proc.pid, signal.SIGUSR1)
    wait_for(lambda: proc.poll() is not None or any(r["kind"] == "checkpoint" for r in telemetry(run_dir)))
    [requested] = [r for r in telemetry(run_dir) if r["kind"] == "checkpoint"]
    assert 3 <= requested["step"] < 200
    assert (run_dir / requested["path"] / "manifest.json").exists()
    # Still training afterwards.
    wait_for(lambda: proc.poll() is not None or max(step_losses(run_dir)) >= requested["step"] + 3)
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_second_sigterm_aborts_without_waiting_for_the_checkpoint(tmp_path: Path, model_cache: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start_runner(_spec(tmp_path), run_dir, model_cache)
    wait_for(lambda: proc.poll() is not None or max(step_losses(run_dir), default=0) >= 2)
    os.kill(proc.pid, signal.SIGTERM)
    # Apart, so that Python sees two signals, not one (pending signals of a kind coalesce), yet
    # well within the time the graceful stop needs (finish the step, fsync a checkpoint, exit).
    time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    logs = [r["message"] for r in telemetry(run_dir) if r["kind"] == "log"]
    assert any("aborted by SIGTERM" in m for m in logs)


def test_sigint_aborts(tmp_path: Path, model_cache: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start_runner(_spec(tmp_path), run_dir, model_cache)
    wait_for(lambda: proc.poll() is not None or max(step_losses(run_dir), default=0) >= 2)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 128 + signal.SIGINT
    assert not (run_dir / "final").exists()
