"""`batch_size` x accumulation is examples per optimizer step, as in HF Trainer; packing is a choice.

The recipe is set up in this process (model and data loaded, no step taken) to read its plan.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.support.runs import arithmetic_chat, write_jsonl, write_spec
from tuneyard.training.config import read_spec_file, resolve
from tuneyard.training.control import RunControl
from tuneyard.training.recipes.finetune import FinetuneRecipe
from tuneyard.training.telemetry import Telemetry

# peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` when it wraps a model here
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

EXAMPLES = 37


def planned(tmp_path: Path, model_cache: Path, **hyperparams: object) -> FinetuneRecipe:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(EXAMPLES))
    spec = write_spec(tmp_path, data, max_steps=None, epochs=2, **hyperparams)
    config = resolve(read_spec_file(spec), tmp_path, model_cache, {})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recipe = FinetuneRecipe(config, run_dir, Telemetry(run_dir / "telemetry.jsonl", echo=None), RunControl())
    recipe.setup(None)
    recipe.telemetry.close()
    return recipe


@pytest.mark.parametrize(("batch_size", "accumulation"), [(4, 1), (3, 2)])
def test_default_batching_takes_batch_size_times_accumulation_examples_a_step(
    tmp_path: Path, model_cache: Path, batch_size: int, accumulation: int
) -> None:
    recipe = planned(tmp_path, model_cache, batch_size=batch_size, gradient_accumulation_steps=accumulation)
    assert not recipe.hp.packing
    assert len(recipe.rows) == EXAMPLES
    assert recipe.plan.steps_per_epoch == math.ceil(EXAMPLES / (batch_size * accumulation))
    assert recipe.plan.total_steps == 2 * recipe.plan.steps_per_epoch
    # Each micro-batch is one sequence of its examples end to end: no pad in it.
    first = recipe.plan.step_batches(0, 0)[0]
    batch = recipe.collate([recipe.rows[i] for i in first], recipe.session.pad_token_id)
    assert batch["input_ids"].shape == (1, sum(len(recipe.rows[i]) for i in first))


def test_packing_fills_rows_and_takes_fewer_steps(tmp_path: Path, model_cache: Path) -> None:
    recipe = planned(tmp_path, model_cache, batch_size=4, packing=True, bf16="auto")
    assert len(recipe.rows) < EXAMPLES  # rows of 64 tokens hold several of these examples
    assert recipe.plan.steps_per_epoch == math.ceil(len(recipe.rows) / 4) < math.ceil(EXAMPLES / 4)
    # bf16: auto is this machine's measured verdict, recorded with its figures for spec.json
    probe = recipe.config.to_json()["resolved"]["bf16_probe"]
    assert probe["use_bf16"] is recipe.session.bf16 and probe["fp32_gflops"] > 0 and probe["reason"]
