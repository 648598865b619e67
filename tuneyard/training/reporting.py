"""Where a run's figures go besides telemetry.jsonl: a sink every telemetry record passes through.

The null sink is the default; a job that names a `wandb_project` gets a W&B run when `wandb` is
importable where it trains. W&B is configured as its users configure it, by the operator's WANDB_*
variables (the worker passes them on: `worker/command.py`); WANDB_MODE=offline keeps the run in
RUN_DIR/wandb/ with no network. Reporting never fails a run: a sink that cannot start or that breaks
is replaced by the null sink, with a warning in the job's log.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tuneyard.training import contract

Record = dict[str, Any]
Warn = Callable[[str], None]
_NOT_FIGURES = {"kind", "ts", "step"}


class Sink(Protocol):
    def record(self, record: Record) -> None:
        """One telemetry record, as written to telemetry.jsonl."""

    def close(self) -> None:
        """The run is over (finished, stopped or failed)."""


class NullSink:
    def record(self, record: Record) -> None:
        pass

    def close(self) -> None:
        pass


class WandbSink:
    """Training points as `train/<figure>` and evaluations as `eval/<figure>` (`eval_loss` → `eval/loss`)
    at their step; the result's figures in the run's summary as `result/<figure>`."""

    def __init__(self, run: Any) -> None:
        self._run = run

    def record(self, record: Record) -> None:
        kind = record.get("kind")
        if kind == contract.KIND_METRIC and isinstance(record.get("step"), int):
            self._run.log({f"train/{k}": v for k, v in _figures(record).items()}, step=record["step"])
        elif kind == contract.KIND_EVAL and isinstance(record.get("step"), int):
            on = record.get("eval_on") or "eval"
            prefix = "eval" if on == "eval" else f"eval_on_{on}"  # the held-out rows, else what it fell back on
            figures = {f"{prefix}/{k.removeprefix('eval_')}": v for k, v in _figures(record).items()}
            self._run.log(figures, step=record["step"])
        elif kind == contract.KIND_RESULT:
            self._run.summary.update({f"result/{k}": v for k, v in _figures(record).items()})

    def close(self) -> None:
        self._run.finish()


def open_sink(project: str | None, run_dir: Path, lineage: dict[str, Any], config: dict[str, Any],
              warn: Warn) -> Sink:
    """The sink a run with this `wandb_project` reports to (the null one without a project)."""
    if not project:
        return NullSink()
    try:
        import wandb
    except ImportError:
        warn(f"wandb_project {project!r}: wandb is not installed where this job trains, so its figures go to no "
             "W&B project")
        return NullSink()
    job_id = lineage.get("job_id")
    try:
        # The job's id as the run's: every attempt of the job (a retry, a resume) reports to one run.
        run = wandb.init(project=project, dir=str(run_dir), name=lineage.get("job_name") or job_id,
                         id=job_id, resume="allow" if job_id else None, config=config)
    except Exception as exc:  # no key, no network in online mode, a bad setting: train without it
        warn(f"wandb_project {project!r}: W&B did not start ({type(exc).__name__}: {exc}); training without it")
        return NullSink()
    return WandbSink(run)


def _figures(record: Record) -> dict[str, float]:
    return {k: v for k, v in record.items()
            if k not in _NOT_FIGURES and isinstance(v, int | float) and not isinstance(v, bool)}
