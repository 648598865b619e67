"""A run stopped by SIGTERM and resumed ends bit for bit where the uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.runs import (
    arithmetic_chat,
    final_tensors,
    run_runner,
    start_runner,
    step_losses,
    stop_after_step,
    telemetry,
    write_jsonl,
    write_spec,
)

# (method, gradient accumulation, examples, packing): 24 examples in rows of 64 tokens pack into a
# handful of rows, so 12 steps cross several epoch boundaries; unpacked, 40 examples at 4 x 2 a step
# and 24 at 4 x 2 make epochs of 5 and 3 steps.
CASES = [
    pytest.param("lora", 1, 24, True, id="lora-packed-epochs"),
    pytest.param("lora", 2, 40, False, id="lora-accumulation"),
    pytest.param("full", 2, 24, False, id="full-accumulation-epochs"),
]


@pytest.mark.parametrize(("method", "accumulation", "examples", "packing"), CASES)
def test_sigterm_then_resume_is_bitwise_equal(
    tmp_path: Path, model_cache: Path, method: str, accumulation: int, examples: int, packing: bool
) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_chat(examples))
    spec = write_spec(tmp_path, data, method=method, gradient_accumulation_steps=accumulation, packing=packing)

    straight = tmp_path / "straight"
    assert run_runner(spec, straight, model_cache) == 0

    interrupted = tmp_path / "interrupted"
    proc = start_runner(spec, interrupted, model_cache)
    assert stop_after_step(proc, interrupted, 5) == 75
    stopped_at = max(step_losses(interrupted))
    assert 5 <= stopped_at < 12, "the stop must land mid-run for this test to mean anything"
    assert (interrupted / "checkpoints" / f"step-{stopped_at:06d}" / "manifest.json").exists()
    assert not (interrupted / "final").exists()

    assert run_runner(spec, interrupted, model_cache, resume="latest") == 0

    epochs_crossed = {r["epoch"] for r in telemetry(straight) if r["kind"] == "checkpoint"}
    assert len(epochs_crossed) > 1, "the run should cross an epoch boundary"
    assert step_losses(interrupted) == step_losses(straight)
    expected, actual = final_tensors(straight), final_tensors(interrupted)
    assert expected.keys() == actual.keys() and expected
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name
