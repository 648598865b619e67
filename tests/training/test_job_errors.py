"""What a user is told when a job fails: the runner's own words, down to the field or line.

Real worker, real runner subprocess, real SQLite. Each job is queued as the service would queue
it, run to its end, then read back the way users read it: the API's job view and the CLI's lines.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.runs import EXACT_HYPERPARAMS, arithmetic_chat, step_losses, wait_for, write_jsonl
from tests.support.worker_jobs import run_job_once
from tuneyard.cli.follow import outcome_lines
from tuneyard.cli.jobs import show_job
from tuneyard.settings import Settings
from tuneyard.store import Database


def config_for(data: Path, base_model: str = "tiny-llama", **hyperparams: Any) -> dict[str, Any]:
    return {"type": "finetune", "base_model": base_model, "datasets": [{"path": str(data), "format": "auto"}],
            "method": "lora", "hyperparams": {**EXACT_HYPERPARAMS, **hyperparams}}


def what_the_cli_says(job: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    show_job(job)
    return capsys.readouterr().out + "\n".join(outcome_lines(job))


def test_a_bad_spec_field_is_named(db: Database, settings: Settings, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", arithmetic_chat(16))
    job = run_job_once(db, settings, config_for(data, learning_rat=0.1), max_retries=0)
    error = job["error"]
    assert job["status"] == "failed" and error["error_type"] == "user_error"
    assert error["message"] == "invalid job spec: hyperparams.learning_rat: unknown field"
    assert error["details"]["problems"] == [{"field": "hyperparams.learning_rat", "message": "unknown field"}]
    said = what_the_cli_says(job, capsys)
    assert "user_error: invalid job spec: hyperparams.learning_rat: unknown field" in said
    assert "  hyperparams.learning_rat: unknown field" in said


def test_bad_data_lines_are_listed_by_number(db: Database, settings: Settings, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.dumps(r) for r in arithmetic_chat(3)]
    lines.insert(1, "{not json")
    lines.append(json.dumps({"messages": [{"role": "user", "content": "no answer"}]}))
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    job = run_job_once(db, settings, config_for(data), max_retries=0)
    error = job["error"]
    assert job["status"] == "failed" and error["error_type"] == "user_error"
    assert error["message"].startswith(f"datasets: 2 invalid line(s) in the data; first, {data} line 2: invalid JSON")
    assert [e["line"] for e in error["details"]["errors"]] == [2, 5]
    said = what_the_cli_says(job, capsys)
    assert f"  {data} line 2: invalid JSON" in said and f"  {data} line 5: " in said


def test_an_unloadable_model_is_named(db: Database, settings: Settings, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", arithmetic_chat(16))
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    job = run_job_once(db, settings, config_for(data, base_model=str(broken)), max_retries=0)
    error = job["error"]
    assert job["status"] == "failed" and error["error_type"] == "user_error"
    assert error["message"].startswith(f"base_model: base model {str(broken)!r}: cannot load its tokenizer")
    assert f"failed (user_error): base_model: base model {str(broken)!r}" in what_the_cli_says(job, capsys)


def test_a_crash_inside_the_runner_says_what_raised(db: Database, settings: Settings, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", arithmetic_chat(16))

    def block_checkpoints(run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints").write_text("a file where the checkpoint folder goes")

    job = run_job_once(db, settings, config_for(data, save_steps=2), before=block_checkpoints, max_retries=0)
    error = job["error"]
    assert job["status"] == "failed" and error["error_type"] == "platform_error"
    assert error["message"].split(":")[0] in ("FileExistsError", "NotADirectoryError")
    assert any("Traceback" in line or "File " in line for line in error["details"]["traceback"])
    assert error["message"] in what_the_cli_says(job, capsys)


def test_a_runner_killed_from_outside_is_reported_with_its_last_log_lines(
    db: Database, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", arithmetic_chat(64))

    def kill_once_training(run_dir: Path) -> None:
        wait_for(lambda: len(step_losses(run_dir)) >= 2, timeout=120)
        runner = next(p for p in psutil.Process().children(recursive=True) if "tuneyard.training" in p.cmdline())
        os.killpg(runner.pid, signal.SIGKILL)

    job = run_job_once(db, settings, config_for(data, max_steps=400), during=kill_once_training, max_retries=0)
    error = job["error"]
    assert job["status"] == "failed" and error["error_type"] == "platform_error"
    assert error["message"] == "runner killed by SIGKILL without a verdict; gave up after 0 retries"
    assert error["details"]["signal"] == "SIGKILL"
    assert any(line.startswith("step ") for line in error["details"]["log_tail"])
    assert "failed (platform_error): runner killed by SIGKILL without a verdict" in what_the_cli_says(job, capsys)
