"""The supervisor's reports, written to the store: every write fenced by the job's attempt.

This is the glue between a runner's telemetry and what the API serves. A write refused as
stale means another attempt owns the job now: it surfaces as LeaseLost, and the supervisor
kills the runner at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from tuneyard.scheduler import heartbeat, release
from tuneyard.scheduler.retry import retry_or_fail
from tuneyard.store import outcomes
from tuneyard.store.engine import Database
from tuneyard.store.errors import InvalidTransition, StaleAttempt
from tuneyard.store.status import Event
from tuneyard.store.telemetry import LogIn, MetricIn, add_checkpoint, add_event, append_logs, record_metrics
from tuneyard.training import contract
from tuneyard.worker.outcome import LeaseLost, Outcome, TelemetryRecord, Verdict

log = logging.getLogger(__name__)

METRIC_VALUES = ("loss", "lr", "grad_norm", "tokens", "tokens_per_s", "memory_gb", "elapsed_s", "eta_s",
                 "total_steps")
EVAL_VALUES = ("eval_loss", "eval_ppl", "eval_tokens", "baseline", "eval_on")


@contextmanager
def _fenced(job_id: str) -> Iterator[None]:
    try:
        yield
    except StaleAttempt as exc:
        raise LeaseLost(f"job {job_id}: {exc}") from exc


def _ts(record: TelemetryRecord) -> datetime:
    ts = record.get("ts")
    return datetime.fromtimestamp(float(ts), UTC) if isinstance(ts, int | float) else datetime.now(UTC)


class StoreReporter:
    """One attempt's JobReporter. `controls` is the supervisor, told when a user asks to stop."""

    def __init__(self, db: Database, job_id: str, attempt: int, run_dir: Path, lease_seconds: float,
                 lineage: dict[str, Any]) -> None:
        self.db, self.job_id, self.attempt = db, job_id, attempt
        self.run_dir, self.lease_seconds, self.lineage = run_dir, lease_seconds, lineage
        self.on_stop_requested: Callable[[], None] = lambda: None
        self.on_cancel_requested: Callable[[], None] = lambda: None
        self._finalizing = False

    # ---- JobReporter -------------------------------------------------------------------

    def on_started(self, pid: int) -> None:
        log.info("job %s attempt %d: runner pid %d", self.job_id, self.attempt, pid)
        # A stop or cancel may have arrived while the runner started; the heartbeat relays it.
        with _fenced(self.job_id), contextlib.suppress(InvalidTransition):
            outcomes.mark_running(self.db, self.job_id, self.attempt)

    def on_record(self, record: TelemetryRecord) -> None:
        handler = self._HANDLERS.get(str(record.get("kind")))
        if handler is not None:
            with _fenced(self.job_id):
                handler(self, record)

    def heartbeat(self) -> bool:
        try:
            lease = heartbeat(self.db, self.job_id, self.attempt, self.lease_seconds)
        except StaleAttempt:
            return False
        if lease.cancel_requested:
            self.on_cancel_requested()
        elif lease.stop_requested:
            self.on_stop_requested()
        return True

    def on_finished(self, outcome: Outcome) -> None:
        log.info("job %s attempt %d: %s (%s)", self.job_id, self.attempt, outcome.verdict, outcome.message)
        try:
            self._record_outcome(outcome)
        except (StaleAttempt, InvalidTransition) as exc:
            log.warning("job %s attempt %d: outcome not recorded: %s", self.job_id, self.attempt, exc)

    # ---- telemetry records ---------------------------------------------------------------

    def _metric(self, record: TelemetryRecord) -> None:
        values = {k: record[k] for k in METRIC_VALUES if k in record}
        point = MetricIn(int(record["step"]), values, "train", record.get("epoch"), record.get("phase"), _ts(record))
        record_metrics(self.db, self.job_id, self.attempt, [point])

    def _eval(self, record: TelemetryRecord) -> None:
        values = {k: record[k] for k in EVAL_VALUES if k in record}
        point = MetricIn(int(record["step"]), values, "eval", None, "eval", _ts(record))
        record_metrics(self.db, self.job_id, self.attempt, [point])

    def _log(self, record: TelemetryRecord) -> None:
        line = LogIn(str(record.get("message", "")), str(record.get("level", "info")), _ts(record))
        append_logs(self.db, self.job_id, self.attempt, [line])

    def _phase(self, record: TelemetryRecord) -> None:
        phase = str(record.get("phase"))
        add_event(self.db, self.job_id, self.attempt, Event("phase", f"phase: {phase}", {"phase": phase}))
        if phase == "final_eval" and not self._finalizing:
            self._finalizing = True
            with contextlib.suppress(InvalidTransition):  # cancelling: the cancel wins
                outcomes.mark_finalizing(self.db, self.job_id, self.attempt)

    def _checkpoint(self, record: TelemetryRecord) -> None:
        metrics = {k: record[k] for k in ("loss", "tokens", "epoch") if record.get(k) is not None}
        add_checkpoint(self.db, self.job_id, self.attempt, int(record["step"]), str(record["path"]), metrics)

    _HANDLERS: ClassVar[dict[str, Callable[[StoreReporter, TelemetryRecord], None]]] = {
        contract.KIND_METRIC: _metric,
        contract.KIND_EVAL: _eval,
        contract.KIND_LOG: _log,
        contract.KIND_PHASE: _phase,
        contract.KIND_CHECKPOINT: _checkpoint,
    }

    # ---- the verdict ------------------------------------------------------------------------

    def _record_outcome(self, outcome: Outcome) -> None:
        verdict = outcome.verdict
        if verdict is Verdict.COMPLETED:
            self._complete(outcome)
        elif verdict is Verdict.STOPPED:
            self._stopped(outcome)
        elif verdict is Verdict.CANCELLED:
            outcomes.mark_cancelled(self.db, self.job_id, self.attempt)
        elif verdict is Verdict.RELEASED:
            release(self.db, self.job_id, self.attempt, outcome.message)
        elif verdict is Verdict.USER_ERROR:
            outcomes.fail(self.db, self.job_id, outcome.error_type or "user_error", outcome.message,
                          attempt=self.attempt, details=self._details(outcome))
        elif verdict is Verdict.FAILED:
            retry_or_fail(self.db, self.job_id, self.attempt, outcome.error_type or "platform_error",
                          outcome.message, self._details(outcome))
        # LOST_LEASE: another attempt owns the job; there is nothing of ours to record.

    def _complete(self, outcome: Outcome) -> None:
        if not self._finalizing:
            outcomes.mark_finalizing(self.db, self.job_id, self.attempt)
        result = {k: v for k, v in (outcome.result or {}).items() if k not in ("kind", "ts")}
        method = self.lineage.get("method", "lora")
        model = outcomes.NewTrainedModel(
            kind="adapter" if method in ("lora", "qlora") else "full",
            path=str(self.run_dir / contract.FINAL_DIR),
            base_model=str(self.lineage.get("base_model")),
            datasets=list(self.lineage.get("datasets", [])),
            meta={"method": method, "job_type": self.lineage.get("type")},
        )
        outcomes.complete(self.db, self.job_id, self.attempt, result, model)

    def _stopped(self, outcome: Outcome) -> None:
        step = (outcome.last_checkpoint or {}).get("step")
        try:
            outcomes.mark_stopped(self.db, self.job_id, self.attempt, step if isinstance(step, int) else None)
        except InvalidTransition:
            # Exit 75 that nobody asked for (someone signalled the runner directly): hand it back.
            release(self.db, self.job_id, self.attempt, "the runner stopped without a stop request")

    @staticmethod
    def _details(outcome: Outcome) -> dict[str, Any]:
        return {**outcome.details, **({"log_tail": outcome.log_tail} if outcome.log_tail else {})}

