"""Every hyperparameter has an upper bound, so no request can ask for unbounded work (issue 17, F10)."""

from __future__ import annotations

from typing import Any

import pytest
from annotated_types import Le, Lt, MaxLen

from tuneyard.errors import SpecError
from tuneyard.spec import METHODS
from tuneyard.spec.hyperparams import MAX_STEPS
from tuneyard.spec.methods import MODULE_NAME_MAX, TARGET_MODULES_MAX
from tuneyard.spec.parse import parse_spec

UNBOUNDED_BY_NATURE = {"lora_target_modules"}  # a str | list, bounded by its own validator below


def _upper_bound(metadata: list[Any]) -> float | None:
    for item in metadata:
        if isinstance(item, Le):
            return float(item.le)  # type: ignore[arg-type]
        if isinstance(item, Lt):
            return float(item.lt)  # type: ignore[arg-type]
        if isinstance(item, MaxLen):
            return float(item.max_length)
    return None


@pytest.mark.parametrize("method", METHODS.names())
def test_every_numeric_hyperparameter_of_every_method_has_an_upper_bound(method: str) -> None:
    model = METHODS.get(method).hyperparams
    unbounded = []
    for name, info in model.model_fields.items():
        numeric = any(t in str(info.annotation) for t in ("int", "float"))
        if numeric and name not in UNBOUNDED_BY_NATURE and _upper_bound(info.metadata) is None:
            unbounded.append(name)
    assert unbounded == []


def _spec(**hyperparams: Any) -> dict[str, Any]:
    return {"type": "finetune", "base_model": "tiny-llama", "datasets": [{"name": "d"}], "hyperparams": hyperparams}


@pytest.mark.parametrize(("field", "value"), [
    ("max_steps", 10**12), ("max_steps", 2**63), ("save_steps", MAX_STEPS + 1), ("eval_steps", MAX_STEPS + 1),
    ("save_total_limit", 10**6), ("max_grad_norm", 1e12), ("lora_alpha", 1e9), ("lora_rank", 10**6),
    ("batch_size", 10**9), ("epochs", 10**9), ("seed", 2**64),
    ("lora_target_modules", ["q_proj"] * (TARGET_MODULES_MAX + 1)),
    ("lora_target_modules", "x" * (MODULE_NAME_MAX + 1)),
])
def test_a_value_past_its_bound_is_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec(_spec(**{field: value}))
    assert [p["field"] for p in refused.value.problems] == [f"hyperparams.{field}"]


def test_values_at_the_bounds_are_accepted() -> None:
    spec = parse_spec(_spec(max_steps=MAX_STEPS, save_steps=MAX_STEPS, lora_target_modules=["q_proj", "v_proj"]))
    assert spec.hyperparams.max_steps == MAX_STEPS  # type: ignore[attr-defined]
