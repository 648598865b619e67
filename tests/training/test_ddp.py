"""Data-parallel training on CPU (gloo): 2 ranks launched by torchrun against 1 process at the same
global batch, stopped and resumed, and with a rank killed. Both sides run one thread a rank, so the
comparison is of the sharding, not of thread counts (docs/engine.md)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import torch

from tests.support.runs import (
    REPO,
    arithmetic_chat,
    final_tensors,
    launcher_argv,
    run_runner,
    start_runner,
    step_losses,
    stop_after_step,
    telemetry,
    wait_for,
    write_jsonl,
    write_spec,
)
from tuneyard.worker.executors import Launch
from tuneyard.worker.executors.local import LocalExecutor

STEPS = 4
"""Few steps: each rank loads the model and data, and CI has two cores."""


def _tree(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.iterdir()}


@pytest.mark.parametrize(("batch_size", "accumulation", "examples"), [
    pytest.param(4, 1, 20, id="ranks-split-each-micro-batch"),
    pytest.param(3, 2, 21, id="accumulation-uneven-shards"),
])
def test_two_ranks_train_the_one_process_run(tmp_path: Path, model_cache: Path, batch_size: int,
                                             accumulation: int, examples: int) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(examples))
    hyper = {"batch_size": batch_size, "gradient_accumulation_steps": accumulation, "max_steps": STEPS}
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert run_runner(write_spec(tmp_path, data, **hyper), single, model_cache, threads=1) == 0
    assert run_runner(write_spec(tmp_path, data, processes=2, **hyper), ddp, model_cache, processes=2,
                      threads=1) == 0, (ddp / "runner.log").read_text()

    expected, actual = step_losses(single), step_losses(ddp)
    assert sorted(actual) == list(range(1, STEPS + 1))
    for step, loss in expected.items():
        assert actual[step] == pytest.approx(loss, rel=1e-5), step
    weights, trained = final_tensors(single), final_tensors(ddp)
    assert weights.keys() == trained.keys() and weights
    for name, tensor in weights.items():
        assert torch.allclose(trained[name], tensor, rtol=0, atol=1e-6), name

    # One telemetry stream, as one process writes it: each step once, the tokens of the whole step.
    metrics = [r for r in telemetry(ddp) if r["kind"] == "metric"]
    assert [r["step"] for r in metrics] == list(range(1, STEPS + 1))
    assert [r["tokens"] for r in metrics] == [r["tokens"] for r in telemetry(single) if r["kind"] == "metric"]
    assert len([r for r in telemetry(ddp) if r["kind"] == "result"]) == 1
    assert _tree(ddp) == _tree(single)
    assert {p.name for p in (ddp / "final").iterdir()} == {p.name for p in (single / "final").iterdir()}


def test_two_ranks_stopped_by_sigterm_and_resumed_end_bitwise_equal(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(24))
    spec = write_spec(tmp_path, data, processes=2, batch_size=2, gradient_accumulation_steps=2, max_steps=6,
                      save_steps=2)
    straight = tmp_path / "straight"
    assert run_runner(spec, straight, model_cache, processes=2, threads=1) == 0

    interrupted = tmp_path / "interrupted"
    proc = start_runner(spec, interrupted, model_cache, processes=2, threads=1)
    # To the launcher alone, as the local executor signals it: it passes the stop on to every rank.
    assert stop_after_step(proc, interrupted, 3) == 75, (interrupted / "runner.log").read_text()
    stopped_at = max(step_losses(interrupted))
    assert 3 <= stopped_at < 6, "the stop must land mid-run, after a checkpoint, for this test to mean anything"
    assert (interrupted / "checkpoints" / "step-000002" / "manifest.json").exists()
    assert (interrupted / "checkpoints" / f"step-{stopped_at:06d}" / "manifest.json").exists()
    assert not (interrupted / "final").exists()

    assert run_runner(spec, interrupted, model_cache, resume="latest", processes=2, threads=1) == 0
    assert step_losses(interrupted) == step_losses(straight)
    expected, actual = final_tensors(straight), final_tensors(interrupted)
    assert expected.keys() == actual.keys() and expected
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name


def test_a_killed_rank_fails_the_attempt_promptly_naming_it(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(24))
    spec = write_spec(tmp_path, data, processes=2, max_steps=200, save_steps=1000)
    run_dir = tmp_path / "run"
    proc = start_runner(spec, run_dir, model_cache, processes=2, threads=1)
    try:
        wait_for(lambda: proc.poll() is not None or max(step_losses(run_dir), default=0) >= 1)
        ranks = psutil.Process(proc.pid).children()
        assert len(ranks) == 2, ranks
        victim = max(ranks, key=lambda p: p.environ()["RANK"])  # rank 1: rank 0 writes the telemetry
        killed = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        code = proc.wait(timeout=120)
        waited = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 1, (run_dir / "runner.log").read_text()
    assert waited < 60, f"the surviving rank took {waited:.0f} s to give up"
    error = [r for r in telemetry(run_dir) if r["kind"] == "error"][-1]
    assert error["message"].startswith("rank 1 of the distributed run was killed by SIGKILL"), error
    assert not [p for p in ranks if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_a_spec_for_two_ranks_launched_as_one_is_a_user_error(tmp_path: Path, model_cache: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(8))
    run_dir = tmp_path / "run"
    assert run_runner(write_spec(tmp_path, data, processes=2), run_dir, model_cache) == 3
    error = [r for r in telemetry(run_dir) if r["kind"] == "error"][-1]
    assert error["details"]["field"] == "distributed.num_processes", error
    assert "python -m tuneyard.training.launch --nproc-per-node 2" in error["message"]


def test_the_local_executor_kills_every_rank_with_the_runner(tmp_path: Path, model_cache: Path) -> None:
    """torchrun starts each rank in a session of its own, where the executor's group kill cannot reach."""
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(24))
    run_dir = tmp_path / "run"
    argv = launcher_argv(write_spec(tmp_path, data, processes=2, max_steps=200), run_dir, model_cache, 2)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = LocalExecutor().start(Launch("job-ddp", argv, run_dir, env))
    try:
        wait_for(lambda: process.exited() is not None or max(step_losses(run_dir), default=0) >= 1)
        ranks = psutil.Process(process.pid).children()
        assert len(ranks) == 2 and all(os.getpgid(r.pid) != process.pid for r in ranks)
    finally:
        ended = process.release()
    assert ended.returncode == -signal.SIGKILL
    assert not [r for r in ranks if r.is_running() and r.status() != psutil.STATUS_ZOMBIE]


def test_two_ranks_on_a_cold_model_cache_build_a_whole_base_model(tmp_path: Path) -> None:
    # transformers' save_pretrained writes no config or weights on a rank other than 0 once the process
    # group exists: a rank 1 that built tiny-llama itself published a folder without them, which failed
    # this run and every later one on the cache. With bf16 auto the ranks leave the probe's barrier
    # together and race to build, as a fresh service's first data-parallel job does (on the README's
    # example data rank 1 won that race every time here; on other data, not always).
    spec = write_spec(tmp_path, REPO / "examples" / "tiny-chat.jsonl", processes=2, max_steps=1, bf16="auto")
    cache = tmp_path / "cold-cache"
    assert run_runner(spec, tmp_path / "run", cache, processes=2, threads=1) == 0, (
        tmp_path / "run" / "runner.log").read_text()
    built = {p.name for p in (cache / "tiny-llama-v2").iterdir()}
    assert {"config.json", "model.safetensors", "tuneyard-build.json"} <= built, built
