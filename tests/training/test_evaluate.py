"""evaluate: a trained tiny-llama LoRA and its base, measured side by side on the held-out split."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.judge_standin import judge_standin
from tests.support.runs import REPO, arithmetic_chat, run_runner, runner_argv, telemetry, write_jsonl, write_spec

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

SEED, EVAL_SPLIT = 7, 0.25


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> tuple[Path, Path]:
    """(the trained adapter, its data): a LoRA on arithmetic chats, with a quarter held out."""
    folder = tmp_path_factory.mktemp("trained")
    data = write_jsonl(folder / "train.jsonl", arithmetic_chat(48))
    spec = write_spec(folder, data, max_steps=30, learning_rate=5.0e-3, eval_split=EVAL_SPLIT, seed=SEED)
    run_dir = folder / "run"
    assert run_runner(spec, run_dir, model_cache) == 0, (run_dir / "runner.log").read_text()[-3000:]
    return run_dir / "final", data


def evaluate_spec(folder: Path, model: Path, data: Path, **fields: Any) -> Path:
    spec = {"type": "evaluate", "base_model": str(model), "compare_with": "tiny-llama",
            "datasets": [{"path": str(data)}], "eval_split": EVAL_SPLIT, "seed": SEED, "max_examples": 8,
            "samples": 2, "max_seq_length": 64, "generation": {"max_new_tokens": 12}, **fields}
    path = folder / "evaluate.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def run_with_env(spec: Path, run_dir: Path, cache: Path, **env: str) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "runner.log", "ab") as log:
        return subprocess.run(runner_argv(spec, run_dir, cache), stdout=log, stderr=log, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO), **env}).returncode


def test_evaluation_measures_base_and_trained_on_the_held_out_split(
    tmp_path: Path, model_cache: Path, trained: tuple[Path, Path]
) -> None:
    model, data = trained
    run_dir = tmp_path / "run"
    assert run_runner(evaluate_spec(tmp_path, model, data), run_dir, model_cache) == 0, \
        (run_dir / "runner.log").read_text()[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    # 48 records, a quarter held out by the training job's seed: 12, of which max_examples
    assert result["examples"] == 8 and result["generated"] == 8 and result["method"] == "reference"
    base, tuned = result["base"], result["trained"]
    for figures in (base, tuned):
        for name in ("loss", "perplexity", "token_accuracy"):
            assert math.isfinite(figures[name]), (name, figures)
        assert figures["perplexity"] == pytest.approx(math.exp(figures["loss"]))
        assert 0.0 <= figures["token_accuracy"] <= 1.0 and figures["eval_tokens"] > 0
        assert 0.0 <= figures["exact_match"] <= 1.0 and 0.0 <= figures["rouge_l"] <= 1.0
        assert set(figures["scores"]) == {"coherence", "consistency", "helpfulness"}
        assert all(0.0 <= v <= 1.0 for v in figures["scores"].values()), figures["scores"]
        assert figures["scores"]["helpfulness"] == pytest.approx(figures["rouge_l"], abs=1e-4)
    assert tuned["loss"] < base["loss"], "training on this data must lower its held-out loss"
    assert tuned["token_accuracy"] > base["token_accuracy"]
    assert result["scores"] == {**tuned["scores"], "method": "reference"}
    assert len(result["samples"]) == 2
    sample = result["samples"][0]
    assert set(sample) == {"source", "prompt", "reference", "base", "trained"}
    assert "plus" in sample["prompt"] and "plus" in sample["reference"]
    phases = [r["phase"] for r in telemetry(run_dir) if r["kind"] == "phase"]
    assert phases == ["loading_data", *(["loading_model", "evaluating", "generating"] * 2), "scoring", "done"]
    evals = [r for r in telemetry(run_dir) if r["kind"] == "eval"]
    assert [e["baseline"] for e in evals] == [True, False]


def test_the_held_out_examples_are_the_ones_training_held_out(tmp_path: Path, trained: tuple[Path, Path]) -> None:
    from tuneyard.spec.job import DatasetRef
    from tuneyard.training.data import split_eval
    from tuneyard.training.heldout import held_out_records

    _, data = trained
    records = held_out_records([DatasetRef(path=str(data))], EVAL_SPLIT, SEED, limit=100)
    lines = list(range(1, 49))
    _, held = split_eval(lines, EVAL_SPLIT, SEED)
    assert [r.line for r in records] == held and len(held) == 12


def test_judge_scores_come_from_the_endpoint_with_the_key_from_the_environment(
    tmp_path: Path, model_cache: Path, trained: tuple[Path, Path]
) -> None:
    model, data = trained
    run_dir = tmp_path / "run"
    with judge_standin('Grades: {"coherence": 8, "consistency": 6, "helpfulness": 5}') as judge:
        spec = evaluate_spec(tmp_path, model, data, max_examples=3,
                             judge={"base_url": judge.base_url, "model": "grader-1"})
        assert run_with_env(spec, run_dir, model_cache, TUNEYARD_JUDGE_API_KEY="sk-judge") == 0, \
            (run_dir / "runner.log").read_text()[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["method"] == "judge"
    assert result["scores"] == {"coherence": 0.8, "consistency": 0.6, "helpfulness": 0.5, "method": "judge"}
    assert result["base"]["scores"] == {"coherence": 0.8, "consistency": 0.6, "helpfulness": 0.5}
    assert result["judge"]["answers"] == {"base": {"graded": 3, "unparsed": 0}, "trained": {"graded": 3, "unparsed": 0}}
    assert len(judge.requests) == 6  # three answers of each model
    first = judge.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["authorization"] == "Bearer sk-judge"
    assert first["body"]["model"] == "grader-1" and first["body"]["messages"][0]["role"] == "system"
    assert "plus" in first["body"]["messages"][1]["content"]
    assert "sk-judge" not in (run_dir / "spec.json").read_text()


def test_a_judge_that_grades_nothing_fails_the_job_as_a_platform_error(
    tmp_path: Path, model_cache: Path, trained: tuple[Path, Path]
) -> None:
    model, data = trained
    run_dir = tmp_path / "run"
    with judge_standin("I would rather not say.") as judge:
        spec = evaluate_spec(tmp_path, model, data, max_examples=2, judge={"base_url": judge.base_url, "model": "g"})
        assert run_runner(spec, run_dir, model_cache) == 1
    error = next(r for r in telemetry(run_dir) if r["kind"] == "error")
    assert error["error_type"] == "platform_error" and "no readable grade" in error["message"]
    assert not (run_dir / "result.json").exists()


def test_no_held_out_example_is_a_user_error_naming_datasets(tmp_path: Path, model_cache: Path,
                                                             trained: tuple[Path, Path]) -> None:
    model, _ = trained
    one = write_jsonl(tmp_path / "one.jsonl", arithmetic_chat(1))
    run_dir = tmp_path / "run"
    assert run_runner(evaluate_spec(tmp_path, model, one), run_dir, model_cache) == 3
    error = next(r for r in telemetry(run_dir) if r["kind"] == "error")
    assert error["error_type"] == "user_error" and error["details"]["field"] == "datasets"


@pytest.mark.slow
@pytest.mark.timeout(2400)  # two 135M models on two shared cores: training, then two evaluation passes
def test_smollm2_trained_against_its_base_on_held_out_chats(tmp_path: Path, model_cache: Path) -> None:
    """SmolLM2-135M-Instruct from its GGUF, a few LoRA steps on arithmetic chats, then evaluated beside its
    base on the quarter held out; the figures are printed (-s) for the record."""
    from tests.support.models import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(48))
    spec = write_spec(tmp_path, data, max_steps=8, batch_size=4, max_seq_length=96, learning_rate=2.0e-3,
                      eval_split=EVAL_SPLIT, seed=SEED, lora_rank=8, lora_alpha=16)
    spec.write_text(spec.read_text().replace("base_model: tiny-llama", f"base_model: {gguf}"))
    train_dir = tmp_path / "train"
    assert run_runner(spec, train_dir, model_cache, timeout=1800) == 0, (train_dir / "runner.log").read_text()[-3000:]
    run_dir = tmp_path / "evaluate"
    evaluation = evaluate_spec(tmp_path, train_dir / "final", data, compare_with=str(gguf), max_examples=12,
                               samples=3, max_seq_length=96, generation={"max_new_tokens": 16})
    assert run_runner(evaluation, run_dir, model_cache, timeout=1800) == 0, (run_dir / "runner.log").read_text()[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    base, tuned = result["base"], result["trained"]
    print(json.dumps({k: result[k] for k in ("examples", "method", "base", "trained", "samples")}, indent=1))
    assert result["examples"] == 12
    assert tuned["loss"] < base["loss"] and tuned["token_accuracy"] > base["token_accuracy"]
    # the answers are "a plus b is c." sentences: training on them brings the greedy answers nearer
    assert tuned["rouge_l"] > base["rouge_l"], (base, tuned)
