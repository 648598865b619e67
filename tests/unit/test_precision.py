"""bf16: auto is decided by measuring this device, once per machine, and says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tuneyard.training import attention_precision, precision


@pytest.fixture(autouse=True)
def small_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "SIZE", 128)  # the decision logic, not this machine's speed


def test_the_verdict_is_measured_once_and_cached_per_machine(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    state = torch.get_rng_state()
    first = precision.decide_bf16(cpu, tmp_path)
    assert torch.equal(torch.get_rng_state(), state), "the probe must not move the run's random streams"
    assert not first.cached and first.fp32_gflops > 0 and first.bf16_gflops > 0
    assert first.relative_error < precision.MAX_RELATIVE_ERROR and first.reason
    assert first.device == precision.device_identity(cpu) and first.torch_version == torch.__version__
    [saved] = (tmp_path / "probes").glob("bf16-*.json")
    again = precision.decide_bf16(cpu, tmp_path)
    assert again.cached and again.record() == {**first.record(), "cached": True}

    saved.write_text("{not json")  # a broken cache is measured again, never trusted or fatal
    remeasured = precision.decide_bf16(cpu, tmp_path)
    assert not remeasured.cached and json.loads(saved.read_text())["device"] == first.device


@pytest.mark.parametrize(
    ("fp32", "bf16", "error", "on"),
    [(300.0, 1200.0, 3e-3, True), (300.0, 330.0, 3e-3, False), (13.5, 0.3, 3e-3, False),
     (300.0, 1200.0, 5e-2, False), (300.0, 1200.0, float("nan"), False)],
)  # fmt: skip
def test_bf16_only_where_clearly_faster_and_sound(fp32: float, bf16: float, error: float, on: bool) -> None:
    verdict, reason = precision.verdict_of(fp32, bf16, error)
    assert verdict is on and reason


def test_the_attention_verdict_is_measured_once_cached_and_leaves_the_streams(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention_precision, "TOKENS", 32)
    cpu = torch.device("cpu")
    state = torch.get_rng_state()
    first = attention_precision.decide_attention_precision(cpu, tmp_path)
    assert torch.equal(torch.get_rng_state(), state), "the probe must not move the run's random streams"
    assert not first.cached and first.bf16_ms > 0 and first.fp32_ms > 0
    assert first.fp32 is (first.fp32_ms <= first.bf16_ms) and "ms" in first.reason
    assert first.device == precision.device_identity(cpu)
    [saved] = (tmp_path / "probes").glob("attention-*.json")
    again = attention_precision.decide_attention_precision(cpu, tmp_path)
    assert again.cached and again.record() == {**first.record(), "cached": True}
    saved.write_text('{"fp32": true}')  # a file another version wrote: measured again, never fatal
    assert not attention_precision.decide_attention_precision(cpu, tmp_path).cached
