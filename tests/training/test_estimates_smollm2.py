"""The memory estimate held to real runs of SmolLM2-135M-Instruct (its GGUF, dequantized to fp32): LoRA and
full, two batch x sequence-length settings each, the estimated peak within ±20 % of what the runner
measured (peak RSS growth from just before the model loads, `tuneyard.training.footprint`).

Slow tier, and sized to stay within minutes on two quiet cores: short packed rows, three steps a run,
two chats held out (7 to 10 minutes a run on a loaded host before the GGUF's dequantized copy was kept
in the model cache, `training/models/dequantized.py`; 5 minutes for all four since, on a loaded host).

Time is held in tests/training/test_time_estimates_smollm2.py, with the paired design of
tests/training/test_time_estimates.py: leave-one-out across these settings (each run predicted from
the FLOP/s of the same method at the other setting) missed by -60 % and +210 %, as SmolLM2 on CPU
reaches 2.5x the FLOP/s at 128 tokens a micro-batch that it does at 32, and the runs, minutes apart,
met different loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.models import smollm2_gguf_path
from tests.support.runs import arithmetic_chat, run_runner, write_jsonl, write_spec
from tuneyard.services.estimates import MEMORY_BAND

pytestmark = [pytest.mark.slow]

SETTINGS = [("lora", 1, 32), ("full", 1, 32), ("lora", 2, 64), ("full", 2, 64)]
STEPS = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> dict[tuple[str, int, int], dict[str, Any]]:
    gguf = smollm2_gguf_path()
    # 48 short chats fill three steps' packed rows; two held out keep the runner's evaluations short
    data = write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", arithmetic_chat(48))
    results = {}
    for method, batch, seq in SETTINGS:
        folder = tmp_path_factory.mktemp(f"{method}-{batch}-{seq}")
        spec = write_spec(folder, data, method=method, max_steps=STEPS, batch_size=batch, max_seq_length=seq,
                          packing=True, eval_split=0.05, learning_rate=1e-4)
        spec.write_text(spec.read_text().replace("base_model: tiny-llama", f"base_model: {gguf}"))
        code = run_runner(spec, folder / "run", model_cache, timeout=1200)
        assert code == 0, (folder / "run" / "runner.log").read_text()[-3000:]
        result = json.loads((folder / "run" / "result.json").read_text())
        results[(method, batch, seq)] = result
    return results


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("setting", SETTINGS)
def test_the_peak_is_within_a_fifth_of_the_measured_one(
    runs: dict[tuple[str, int, int], dict[str, Any]], setting: tuple[str, int, int]
) -> None:
    memory = runs[setting]["memory"]
    estimated, measured = memory["estimated_peak_bytes"], memory["measured_peak_bytes"]
    print(f"SmolLM2 {setting}: memory estimate {estimated / 2**20:.0f} MiB, measured {measured / 2**20:.0f} MiB "
          f"({memory['error_pct']:+.1f} %)")
    assert abs(estimated - measured) <= MEMORY_BAND * measured, memory
