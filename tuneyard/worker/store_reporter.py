"""The supervisor's reports, written to the store: every write fenced by the job's attempt.

This is the glue between a runner's telemetry and what the API serves. A write refused as
stale means another attempt owns the job now: it surfaces as LeaseLost, and the supervisor
kills the runner at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneyard.planning.cost import Prices, priced
from tuneyard.scheduler import heartbeat
from tuneyard.spec.jobtypes import model_output
from tuneyard.store import lifecycle
from tuneyard.store.engine import Database
from tuneyard.store.errors import InvalidTransition, StaleAttempt
from tuneyard.store.status import Event, JobStatus
from tuneyard.store.telemetry import CheckpointIn, LogIn, MetricIn, TelemetryItem, record_backlog, record_telemetry
from tuneyard.training import contract
from tuneyard.worker.outcome import LeaseLost, Outcome, TelemetryRecord, Verdict

log = logging.getLogger(__name__)

NOT_BILLED = Prices()


@contextmanager
def _fenced(job_id: str) -> Iterator[None]:
    try:
        yield
    except StaleAttempt as exc:
        raise LeaseLost(f"job {job_id}: {exc}") from exc


def _is_final_eval(record: TelemetryRecord) -> bool:
    return record.get("kind") == contract.KIND_PHASE and record.get("phase") == "final_eval"


def _ts(record: TelemetryRecord) -> datetime:
    ts = record.get("ts")
    return datetime.fromtimestamp(float(ts), UTC) if isinstance(ts, int | float) else datetime.now(UTC)


class StoreReporter:
    """One attempt's JobReporter. `controls` is the supervisor, told when a user asks to stop."""

    def __init__(self, db: Database, job_id: str, attempt: int, run_dir: Path, lease_seconds: float,
                 lineage: dict[str, Any], prices: Prices = NOT_BILLED, device: str = "cpu") -> None:
        """`prices` and `device` (what the worker trains on) price the result (`planning.cost.priced`)."""
        self.db, self.job_id, self.attempt = db, job_id, attempt
        self.run_dir, self.lease_seconds, self.lineage = run_dir, lease_seconds, lineage
        self.prices, self.device = prices, device
        self.on_stop_requested: Callable[[], None] = lambda: None
        self.on_cancel_requested: Callable[[], None] = lambda: None
        self._finalizing = False

    # ---- JobReporter -------------------------------------------------------------------

    def on_started(self, handle: str) -> None:
        log.info("job %s attempt %d: runner %s", self.job_id, self.attempt, handle)
        # A stop or cancel may have arrived while the runner started; the heartbeat relays it.
        with _fenced(self.job_id), contextlib.suppress(InvalidTransition):
            lifecycle.start(self.db, self.job_id, self.attempt)

    def on_records(self, records: Sequence[TelemetryRecord], offset: int) -> None:
        items = [item for record in records for item in self._items_or_warning(record)]
        with _fenced(self.job_id):
            record_telemetry(self.db, self.job_id, self.attempt, items, offset=offset)
            if not self._finalizing and any(_is_final_eval(r) for r in records):
                self._finalize_early()

    def _finalize_early(self) -> None:
        """The runner reached its final evaluation. The records are stored by now, so a failure here
        must not fail the batch (the supervisor would offer it again): `_complete` finalizes instead."""
        try:
            lifecycle.finalize(self.db, self.job_id, self.attempt)
        except InvalidTransition:
            pass  # cancelling: the cancel wins
        except StaleAttempt:
            raise
        except Exception as exc:
            log.warning("job %s attempt %d: finalize deferred to the end: %r", self.job_id, self.attempt, exc)
            return
        self._finalizing = True

    def on_backlog(self, records: Sequence[TelemetryRecord], offset: int, written_by: int | None) -> None:
        """Store what an earlier attempt's runner wrote and the store never saw, marked as `written_by`'s,
        with `offset` (where this attempt's runner will begin). Called once, before the runner starts."""
        items = [item for record in records for item in self._items_or_warning(record)]
        with _fenced(self.job_id):
            record_backlog(self.db, self.job_id, self.attempt, items, offset=offset, written_by=written_by)
        if records:
            log.info("job %s attempt %d: stored %d telemetry records of attempt %s that its worker left unstored",
                     self.job_id, self.attempt, len(records), written_by)

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

    def _items_or_warning(self, record: TelemetryRecord) -> list[TelemetryItem]:
        """A record that does not convert is reported in the job's log, and the rest still stored."""
        try:
            return self._items(record)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("job %s: telemetry record not stored (%r): %s", self.job_id, exc, str(record)[:200])
            return [LogIn(f"telemetry record not stored ({exc!r}): {str(record)[:200]}", "warning")]

    @staticmethod
    def _items(record: TelemetryRecord) -> list[TelemetryItem]:
        """What one record stores: a metric point, a log line, an event or a checkpoint (or nothing)."""
        kind = record.get("kind")
        if kind == contract.KIND_METRIC:
            values = {k: record[k] for k in contract.METRIC_VALUES if k in record}
            return [MetricIn(int(record["step"]), values, "train", record.get("epoch"), record.get("phase"),
                             _ts(record))]
        if kind == contract.KIND_EVAL:
            values = {k: record[k] for k in contract.EVAL_VALUES if k in record}
            return [MetricIn(int(record["step"]), values, "eval", None, "eval", _ts(record))]
        if kind == contract.KIND_LOG:
            return [LogIn(str(record.get("message", "")), str(record.get("level", "info")), _ts(record))]
        if kind == contract.KIND_PHASE:
            phase = str(record.get("phase"))
            return [Event("phase", f"phase: {phase}", {"phase": phase})]
        if kind == contract.KIND_CHECKPOINT:
            metrics = {k: record[k] for k in ("loss", "tokens", "epoch") if record.get(k) is not None}
            pruned = tuple(int(step) for step in record.get("pruned") or ())
            return [CheckpointIn(int(record["step"]), str(record["path"]), metrics, pruned)]
        return []  # result and error records: the verdict reads them when the runner has exited

    # ---- the verdict ------------------------------------------------------------------------

    def _record_outcome(self, outcome: Outcome) -> None:
        verdict = outcome.verdict
        if verdict is Verdict.COMPLETED:
            self._complete(outcome)
        elif verdict is Verdict.STOPPED:
            self._stopped(outcome)
        elif verdict is Verdict.CANCELLED:
            lifecycle.finish_cancel(self.db, self.job_id, self.attempt)
        elif verdict is Verdict.RELEASED:
            self._released(outcome)
        elif verdict is Verdict.USER_ERROR:
            lifecycle.fail(self.db, self.job_id, outcome.error_type or "user_error", outcome.message,
                          attempt=self.attempt, details=self._details(outcome))
        elif verdict is Verdict.FAILED:
            lifecycle.retry_or_fail(self.db, self.job_id, self.attempt, outcome.error_type or "platform_error",
                          outcome.message, self._details(outcome))
        # LOST_LEASE: another attempt owns the job; there is nothing of ours to record.

    def _complete(self, outcome: Outcome) -> None:
        if not self._finalizing:
            lifecycle.finalize(self.db, self.job_id, self.attempt)
        result = {k: v for k, v in (outcome.result or {}).items() if k not in ("kind", "ts")}
        # Every result is priced here, at the service's prices, whatever the runner put there.
        result = priced(result, self.prices, self.device)
        lifecycle.complete(self.db, self.job_id, self.attempt, result, self._trained_model())

    def _trained_model(self) -> lifecycle.NewTrainedModel | None:
        """The model at final/ that the job's type declares among its outputs; None where it declares
        none (an evaluation is the result itself, stored with the job)."""
        method = self.lineage.get("method", "lora")
        kind = model_output(str(self.lineage.get("type", "finetune")), method)
        if kind is None:
            return None
        return lifecycle.NewTrainedModel(
            kind=kind,
            path=str(self.run_dir / contract.FINAL_DIR),
            base_model=str(self.lineage.get("base_model")),
            datasets=list(self.lineage.get("datasets", [])),
            meta={"method": method, "job_type": self.lineage.get("type")},
        )

    def _stopped(self, outcome: Outcome) -> None:
        step = (outcome.last_checkpoint or {}).get("step")
        try:
            lifecycle.finish_stop(self.db, self.job_id, self.attempt, step if isinstance(step, int) else None)
        except InvalidTransition:
            # Exit 75 that nobody asked for (someone signalled the runner directly): hand it back.
            lifecycle.release(self.db, self.job_id, self.attempt, "the runner stopped without a stop request")

    def _released(self, outcome: Outcome) -> None:
        try:
            lifecycle.release(self.db, self.job_id, self.attempt, outcome.message)
        except InvalidTransition as refused:
            # A user's stop or cancel landed before a heartbeat relayed it. The runner has
            # checkpointed and left, which is what they asked for: record that, not a hand-back.
            if refused.current == JobStatus.CANCELLING:
                lifecycle.finish_cancel(self.db, self.job_id, self.attempt)
            elif refused.current == JobStatus.STOPPING:
                self._stopped(outcome)
            else:
                raise

    @staticmethod
    def _details(outcome: Outcome) -> dict[str, Any]:
        return {**outcome.details, **({"log_tail": outcome.log_tail} if outcome.log_tail else {})}

