"""A job naming a `wandb_project` reports to W&B: the real runner trains tiny-llama with wandb in
offline mode (no network here), and the run's .wandb file holds each training step's loss as
telemetry.jsonl has it, the evaluations and the result; where wandb cannot be imported, the job's
log says so and the run trains as without a project."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import wandb_files
from tests.support.runs import REPO, arithmetic_chat, runner_argv, telemetry, write_jsonl, write_spec

pytest.importorskip("wandb", reason="wandb is not installed (pip install -e '.[wandb]')")


def run(spec: Path, run_dir: Path, cache: Path, **env: str) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "lineage.json").write_text(json.dumps({"job_id": "job_wandbtest0001", "job_name": "adds",
                                                      "base_model": "tiny-llama"}))
    environ = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true", **env}
    with open(run_dir / "runner.log", "ab") as log:
        return subprocess.run(runner_argv(spec, run_dir, cache), stdout=log, stderr=log, env=environ,
                              timeout=600).returncode


def with_project(tmp_path: Path, project: str) -> Path:
    data = write_jsonl(tmp_path / "chats.jsonl", arithmetic_chat(24))
    spec_path = write_spec(tmp_path, data, max_steps=6, eval_split=0.25, eval_steps=3)
    spec = yaml.safe_load(spec_path.read_text())
    spec_path.write_text(yaml.safe_dump({**spec, "wandb_project": project}))
    return spec_path


def test_the_runs_figures_land_in_the_offline_wandb_run(tmp_path: Path, model_cache: Path) -> None:
    run_dir = tmp_path / "run"
    assert run(with_project(tmp_path, "tuneyard-tests"), run_dir, model_cache, WANDB_MODE="offline") == 0
    files = list((run_dir / "wandb").glob("offline-run-*/run-job_wandbtest0001.wandb"))
    assert len(files) == 1, sorted(p.name for p in run_dir.rglob("*"))
    info = wandb_files.run_info(files[0])
    assert (info.project, info.display_name, info.run_id) == ("tuneyard-tests", "adds", "job_wandbtest0001")

    records = telemetry(run_dir)
    losses = {r["step"]: r["loss"] for r in records if r["kind"] == "metric"}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    rows = wandb_files.history(files[0])
    logged = {row["_step"]: row["train/loss"] for row in rows if "train/loss" in row}
    assert logged == pytest.approx(losses, rel=1e-6)
    evals = {r["step"]: r["eval_loss"] for r in records if r["kind"] == "eval" and r.get("eval_on") == "eval"}
    assert evals and {row["_step"]: row["eval/loss"] for row in rows if "eval/loss" in row} == pytest.approx(evals)
    result = next(r for r in records if r["kind"] == "result")
    summary = wandb_files.summary(files[0])
    assert summary["result/steps"] == result["steps"] == 6
    assert json.loads((run_dir / "spec.json").read_text())["wandb_project"] == "tuneyard-tests"


def test_without_wandb_the_log_says_so_and_training_goes_on(tmp_path: Path, model_cache: Path) -> None:
    # What a host without wandb looks like to the runner: the import fails.
    hidden = tmp_path / "no-wandb" / "wandb"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named wandb')\n")
    run_dir = tmp_path / "run"
    pythonpath = f"{tmp_path / 'no-wandb'}{os.pathsep}{REPO}"
    assert run(with_project(tmp_path, "nowhere"), run_dir, model_cache, PYTHONPATH=pythonpath) == 0
    warnings = [r["message"] for r in telemetry(run_dir) if r["kind"] == "log" and r.get("level") == "warning"]
    assert any("wandb_project 'nowhere': wandb is not installed" in m for m in warnings), warnings
    assert not (run_dir / "wandb").exists()
    assert any(r["kind"] == "result" for r in telemetry(run_dir))
