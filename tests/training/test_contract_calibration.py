"""A contraction's calibration text decides its pruning and is what its figures are measured on:
`calibration_dataset` (every record of it), or, as the service resolves it for a trained model with
no text named, the held-out split of that model's own training data (`calibration`, origin lineage).
Each is checked against a run given exactly those records another way: the same perplexities, the
same KL and bit-identical pruned weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.support.runs import arithmetic_chat, final_tensors, run_runner, write_jsonl
from tests.training.test_dpo import preference_pairs
from tuneyard.training.data import split_eval


def contract(folder: Path, model_cache: Path, **fields: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The result and the pruned weights of a contraction of tiny-llama at ratio 0.5."""
    folder.mkdir(exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump({"type": "contract", "base_model": "tiny-llama", **fields}), encoding="utf-8")
    run_dir = folder / "run"
    assert run_runner(spec, run_dir, model_cache) == 0, (run_dir / "runner.log").read_text()[-3000:]
    return json.loads((run_dir / "result.json").read_text()), final_tensors(run_dir)


def same_contraction(a: tuple[dict[str, Any], dict[str, torch.Tensor]],
                     b: tuple[dict[str, Any], dict[str, torch.Tensor]]) -> None:
    (first, first_weights), (second, second_weights) = a, b
    assert first["importance"] == second["importance"] == "activation"
    for figure in ("calibration_examples", "ppl_baseline", "ppl_final", "function_preservation", "params_after"):
        assert first[figure] == second[figure], figure
    assert first_weights.keys() == second_weights.keys()
    assert all(torch.equal(first_weights[k], second_weights[k]) for k in first_weights)


def test_calibration_dataset_decides_the_pruning_beside_training_datasets(tmp_path: Path, model_cache: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(24))
    (tmp_path / "given").mkdir()
    held = write_jsonl(tmp_path / "given" / "calibration.jsonl", arithmetic_chat(10, offset=100))
    # a path relative to the spec's folder, as a user writes one
    given = contract(tmp_path / "given", model_cache, datasets=[{"path": str(train)}],
                     calibration_dataset={"path": "calibration.jsonl"})
    as_eval_rows = contract(tmp_path / "as-eval", model_cache,
                            datasets=[{"path": str(train)}, {"path": str(held), "split": "eval"}])
    assert (given[0]["calibration"], as_eval_rows[0]["calibration"]) == ("calibration_dataset", "datasets")
    assert given[0]["calibration_examples"] == 10  # not the 24 training chats beside it
    same_contraction(given, as_eval_rows)


def test_lineage_calibration_is_what_the_source_models_training_held_out(tmp_path: Path, model_cache: Path) -> None:
    records = arithmetic_chat(32)
    train = write_jsonl(tmp_path / "trained-on.jsonl", records)
    _, held = split_eval(records, 0.25, 5)  # as the source model's training (eval_split 0.25, seed 5) held it out
    lineage = {"origin": "lineage", "source_id": "model_0123456789abcdef", "eval_split": 0.25, "seed": 5,
               "datasets": [{"path": str(train)}]}
    from_lineage = contract(tmp_path / "lineage", model_cache, calibration=lineage)
    assert from_lineage[0]["calibration"] == "lineage"
    assert from_lineage[0]["calibration_source"] == "model_0123456789abcdef"
    assert from_lineage[0]["calibration_examples"] == len(held) == 8
    reference = contract(tmp_path / "reference", model_cache,
                         calibration_dataset={"path": str(write_jsonl(tmp_path / "held.jsonl", held))})
    same_contraction(from_lineage, reference)


def test_calibration_text_that_is_not_text_is_refused_naming_its_field(tmp_path: Path, model_cache: Path) -> None:
    from tuneyard.errors import SpecError, UserError
    from tuneyard.spec.parse import parse_spec
    from tuneyard.training.calibration_text import calibration_text
    from tuneyard.training.config import resolve
    from tuneyard.training.models import load_tokenizer, resolve_model_source

    pairs = write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(6))
    tokenizer = load_tokenizer(resolve_model_source("tiny-llama", model_cache))
    lineage = {"origin": "lineage", "source_id": "model_0123456789abcdef", "eval_split": 0.5,
               "datasets": [{"path": str(pairs)}]}
    for fields, field in (({"calibration": lineage}, "base_model"), ({"calibration_dataset": {"path": str(pairs)}},
                                                                      "calibration_dataset")):
        spec = resolve({"type": "contract", "base_model": "tiny-llama", **fields}, tmp_path, model_cache, {}).spec
        with pytest.raises(UserError) as refused:
            calibration_text(spec, None, tokenizer, 256, 64)  # type: ignore[arg-type]
        assert refused.value.details["field"] == field and "preference pairs" in str(refused.value)

    with pytest.raises(SpecError) as missing:  # the runner reads files; ids are the service's to resolve
        resolve({"type": "contract", "base_model": "tiny-llama", "calibration_dataset": {"id": "ds_1"}},
                tmp_path, model_cache, {})
    assert [p["field"] for p in missing.value.problems] == ["calibration_dataset"]
    with pytest.raises(SpecError) as absent:
        resolve({"type": "contract", "base_model": "tiny-llama", "calibration": {**lineage, "datasets": [
            {"path": "nowhere.jsonl"}]}}, tmp_path, model_cache, {})
    assert [p["field"] for p in absent.value.problems] == ["calibration.datasets.0.path"]
    with pytest.raises(SpecError) as healing:  # healing trains on the datasets, never the calibration text
        parse_spec({"type": "contract", "base_model": "tiny-llama", "heal_steps": 3,
                    "calibration_dataset": {"path": str(pairs)}})
    assert [p["field"] for p in healing.value.problems] == ["heal_steps"]
