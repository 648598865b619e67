"""The service benchmarks still run end to end, on tiny parameters, so they cannot rot unnoticed.

Their figures are not checked (a test on a shared machine cannot judge latency or overhead),
only that each benchmark produces them.
"""

from __future__ import annotations

import pytest

from benchmarks import api_load, distributed, supervision_overhead


def test_api_load_runs_and_prints_figures(capsys: pytest.CaptureFixture[str]) -> None:
    # Both modes on one training job (--mix), all clients starting at once (--ramp 0).
    result = api_load.main(["--clients", "5", "--mix", "2", "--duration", "2", "--ramp", "0", "--quiet", "1",
                            "--warm-steps", "1"])
    out = capsys.readouterr().out
    assert (result.pollers, result.followers) == (3, 2)
    assert result.requests > 0 and result.errors == 0, result.tally.first_error or result.follow.first_error
    assert all(result.tally.latencies[route] for route in api_load.ROUTES)
    assert result.tally.latencies[api_load.HISTORY]  # every poller read the history first
    # Each follower opened its stream and got items: at least the job's events so far (its backlog).
    follow = result.follow
    assert len(follow.connects) >= 2 and len(follow.first_items) >= 2
    assert len(follow.delivered) == 2 and min(follow.delivered) > 0
    assert sum(follow.delivered) == follow.backlog + len(follow.lags)
    assert "p99 ms" in out and "target polls' p99 < 50 ms" in out and "training during load >= 80%" in out
    assert "connect" in out and "an item delivered" in out and "ms a second of load" in out


def test_api_load_refuses_bad_options_naming_each(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        api_load.main(["--clients", "5", "--mix", "9", "--ramp", "-1"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "--mix must be between 0 and --clients (5)" in err and "--ramp must be 0 (all at once) or more" in err


def test_supervision_overhead_runs_and_prints_figures(capsys: pytest.CaptureFixture[str]) -> None:
    result = supervision_overhead.main(["--reps", "1", "--steps", "4", "--warmup", "1"])
    out = capsys.readouterr().out
    assert [r.mode for r in result.runs] == ["service", "bare"]
    assert all(r.times.steps >= 2 and r.times.mean_s > 0 for r in result.runs)
    assert "overhead (service vs bare" in out and "target < 2 %" in out


def test_distributed_runs_and_prints_figures(capsys: pytest.CaptureFixture[str]) -> None:
    # One process and two ranks (gloo), one short run each; the GPU pass is skipped: CI has none.
    figures = distributed.main(["--quick", "--no-gpu", "--quiet"])
    out = capsys.readouterr().out
    assert [(s.device, s.processes) for s in figures.tokens_per_s] == [("cpu", 1), ("cpu", 2)]
    assert all(len(rates) == 1 and rates[0] > 0 for rates in figures.tokens_per_s.values())
    assert "median tok/s" in out and out.count("load average") >= 3
