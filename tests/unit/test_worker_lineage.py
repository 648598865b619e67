"""lineage.json from a job whose spec is a vendor's body: the engine's type and method, never the
vendor's words, and a card and a trained model made from it without a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tuneyard.store.tables import Job
from tuneyard.training.model_card import CardInputs, render_card
from tuneyard.training.models.source import ModelSource
from tuneyard.worker.lineage import job_lineage
from tuneyard.worker.store_reporter import StoreReporter


def job(spec: Any, config: dict[str, Any], type_: str = "finetune") -> Job:
    return Job(id="job_1", name="n", project_id=None, type=type_, spec=spec, config=config)


NATIVE = {"type": "finetune", "base_model": "tiny-llama", "method": "full", "datasets": [{"id": "ds_1"}]}
VENDOR_BODIES: list[tuple[Any, dict[str, Any], str, str, str | None, list[Any]]] = [
    # OpenAI-shaped: the method an object, the model and the files under other names
    ({"model": "tiny-llama", "training_file": "file-1", "method": {"type": "supervised", "supervised": {}}},
     {"type": "finetune", "base_model": "tiny-llama", "method": "lora", "datasets": [{"path": "/d/1.jsonl"}]},
     "finetune", "lora", "tiny-llama", []),
    # Archetype-shaped: everything under config, datasets that are not refs
    ({"name": "x", "config": {"model": "model_1", "datasets": [{"name": "d", "file_ids": ["f"]}]}},
     {"type": "finetune", "base_model": "/srv/runs/job_0/final", "method": "full", "datasets": []},
     "finetune", "full", None, []),
    # Fusion-shaped contraction: no base_model, hyperparams of its own; datasets as bare strings
    ({"type": "contract", "hyperparams": {"source_model_id": "u"}, "datasets": ["ds_1", 3]},
     {"type": "contract", "base_model": "tiny-llama", "datasets": []}, "contract", "lora", "tiny-llama", []),
    # not even a mapping
    (["a", "list"], {"type": "merge", "base_model": "/srv/adapter"}, "merge", "lora", None, []),
]


def test_a_native_spec_is_recorded_as_asked() -> None:
    lineage = job_lineage(job(NATIVE, {**NATIVE, "base_model": "tiny-llama"}))
    assert lineage == {"job_id": "job_1", "job_name": "n", "project_id": None, "base_model": "tiny-llama",
                       "method": "full", "type": "finetune", "datasets": [{"id": "ds_1"}]}


@pytest.mark.parametrize(("spec", "config", "type_", "method", "base", "datasets"), VENDOR_BODIES,
                         ids=["openai", "archetype", "fusion", "list"])
def test_a_vendor_body_gives_the_engines_words(
    tmp_path: Path, spec: Any, config: dict[str, Any], type_: str, method: str, base: str | None,
    datasets: list[Any],
) -> None:
    lineage = job_lineage(job(spec, config, type_))
    assert (lineage["type"], lineage["method"], lineage["base_model"], lineage["datasets"]) == \
        (type_, method, base, datasets)
    # what the lineage feeds: the model card's lineage section, and the trained model's registration
    source = ModelSource(requested="tiny-llama", kind="builtin", path=tmp_path, builtin_id="tiny-llama")
    card = render_card(CardInputs(spec=config, source=source, result={}, data_files=[], data_counts={},
                                  lineage=lineage), adapter=False)
    assert "## Lineage" in card and "`job_1`" in card
    reporter = StoreReporter(None, "job_1", 1, tmp_path, 60, lineage)  # type: ignore[arg-type]
    model = reporter._trained_model()
    assert model is not None and model.kind == ("adapter" if method == "lora" and type_ == "finetune" else "full")
