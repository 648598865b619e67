"""The service benchmarks still run end to end, on tiny parameters, so they cannot rot unnoticed.

Their figures are not checked (a test on a shared machine cannot judge latency or overhead),
only that each benchmark produces them.
"""

from __future__ import annotations

import pytest

from benchmarks import api_load, supervision_overhead


def test_api_load_runs_and_prints_figures(capsys: pytest.CaptureFixture[str]) -> None:
    result = api_load.main(["--clients", "5", "--duration", "2", "--ramp", "0.5", "--quiet", "1", "--warm-steps", "1"])
    out = capsys.readouterr().out
    assert result.requests > 0 and result.errors == 0, result.tally.first_error
    assert all(result.tally.latencies[route] for route in api_load.ROUTES)
    assert result.tally.latencies[api_load.HISTORY]  # every client read the history first
    assert "p99 ms" in out and "target p99 < 100 ms" in out


def test_supervision_overhead_runs_and_prints_figures(capsys: pytest.CaptureFixture[str]) -> None:
    result = supervision_overhead.main(["--reps", "1", "--steps", "4", "--warmup", "1"])
    out = capsys.readouterr().out
    assert [r.mode for r in result.runs] == ["service", "bare"]
    assert all(r.times.steps >= 2 and r.times.mean_s > 0 for r in result.runs)
    assert "overhead (service vs bare" in out and "target < 2 %" in out
