"""The supervisor's loop against an in-memory process: which requests, when, and what survives.

The fake process keeps its telemetry and log in memory: the supervisor reaches both only through
the handle, never through the run folder."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tuneyard.worker import (
    ExitStatus,
    Launch,
    LeaseLost,
    Outcome,
    RecordingReporter,
    Supervisor,
    SupervisorTimings,
    TelemetryRecord,
    Verdict,
)

TIMINGS = SupervisorTimings(stop_grace_seconds=5, cancel_grace_seconds=5, heartbeat_seconds=0.02, poll_seconds=0.005,
                           telemetry_seconds=0.005)


class FakeProcess:
    """A runner that ends only when told to, or when killed."""

    handle = "fake runner 4242"

    def __init__(self) -> None:
        self.asks: list[str] = []
        """The requests it received, in order: "stop", "abort", "checkpoint"."""
        self.kills = 0
        self.telemetry = b""
        self.log: list[str] = []
        self.polls = 0
        self.released = False
        self._status: ExitStatus | None = None
        self._lock = threading.Condition()  # notified at every poll: the supervisor's loop went round

    def finish(self, returncode: int) -> None:
        with self._lock:
            self._status = self._status or ExitStatus(returncode)

    def exited(self) -> ExitStatus | None:
        with self._lock:
            self.polls += 1
            self._lock.notify_all()
            return self._status

    def settle(self, rounds: int = 2, timeout: float = 5.0) -> None:
        """Block until the supervisor's loop has gone round fully since this call, so whatever was
        asked of it before has been acted on: the loop may be past acting when called, and the poll
        after the next one shows that the next round acted. TimeoutError after `timeout` s."""
        with self._lock:
            target = self.polls + rounds
            if not self._lock.wait_for(lambda: self.polls >= target, timeout):
                raise TimeoutError(f"the supervisor polled {self.polls} times, not {target}, in {timeout}s")

    def stop(self) -> None:
        self.asks.append("stop")

    def abort(self) -> None:
        self.asks.append("abort")

    def checkpoint(self) -> None:
        self.asks.append("checkpoint")

    def kill(self) -> None:
        self.kills += 1
        self.finish(-signal.SIGKILL)

    def emit(self, *records: TelemetryRecord) -> None:
        """Append to the telemetry stream, as a runner writes it."""
        with self._lock:
            self.telemetry += "".join(json.dumps(r) + "\n" for r in records).encode()

    def read_telemetry(self, offset: int, limit: int) -> bytes | None:
        with self._lock:
            return None if offset > len(self.telemetry) else self.telemetry[offset:offset + limit]

    def log_tail(self, lines: int) -> list[str]:
        return self.log[-lines:]

    def release(self) -> ExitStatus:
        self.kill()
        self.released = True
        assert self._status is not None
        return self._status


class FakeExecutor:
    def __init__(self) -> None:
        self.process = FakeProcess()

    def start(self, launch: Launch) -> FakeProcess:
        return self.process


class ExplodingReporter(RecordingReporter):
    """Fails the way a reporter backed by a database can: on some calls, with some exception."""

    def __init__(self, on_record: BaseException | None = None, heartbeat: BaseException | None = None) -> None:
        super().__init__()
        self.record_error = on_record
        self.heartbeat_error = heartbeat

    def on_records(self, records: Sequence[TelemetryRecord], offset: int) -> None:
        super().on_records(records, offset)
        if self.record_error is not None:
            raise self.record_error

    def heartbeat(self) -> bool:
        super().heartbeat()
        if self.heartbeat_error is not None:
            raise self.heartbeat_error
        return True


def start(
    tmp_path: Path, reporter: RecordingReporter | None = None
) -> tuple[Supervisor, FakeProcess, RecordingReporter, Future[Outcome]]:
    executor = FakeExecutor()
    reporter = reporter or RecordingReporter()
    launch = Launch(job_id="job-unit", argv=["runner"], run_dir=tmp_path)
    supervisor = Supervisor(launch, executor=executor, reporter=reporter, timings=TIMINGS)
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(supervisor.run)
    pool.shutdown(wait=False)
    reporter.wait_for(lambda r: r.handle is not None)
    return supervisor, executor.process, reporter, future


def test_a_stop_after_a_release_asks_nothing_more(tmp_path: Path) -> None:
    supervisor, process, _, future = start(tmp_path)
    supervisor.request_release()
    process.settle()
    supervisor.request_stop()  # the user's stop wins over the shutdown, without aborting the runner
    process.settle()
    process.finish(75)
    assert future.result(timeout=5).verdict is Verdict.STOPPED
    assert process.asks == ["stop"]


def test_a_cancel_after_a_stop_aborts_the_stopping_runner(tmp_path: Path) -> None:
    supervisor, process, _, future = start(tmp_path)
    supervisor.request_stop()
    process.settle()
    supervisor.request_cancel()
    process.settle()
    supervisor.request_stop()  # weaker than the cancel already in force: ignored
    process.settle()
    process.finish(1)
    assert future.result(timeout=5).verdict is Verdict.CANCELLED
    assert process.asks == ["stop", "abort"]


def test_a_checkpoint_request_asks_for_a_checkpoint_and_kills_nothing(tmp_path: Path) -> None:
    supervisor, process, _, future = start(tmp_path)
    supervisor.request_checkpoint()
    process.settle()
    assert (process.asks, process.kills) == (["checkpoint"], 0)
    process.finish(1)
    future.result(timeout=5)


def test_a_failing_reporter_does_not_stop_supervision(tmp_path: Path) -> None:
    reporter = ExplodingReporter(on_record=RuntimeError("database is down"), heartbeat=RuntimeError("down"))
    _, process, _, future = start(tmp_path, reporter)
    process.emit({"kind": "metric", "step": 1}, {"kind": "result"})
    reporter.wait_for(lambda r: len(r.records) >= 2 and r.heartbeats >= 2)
    process.finish(0)
    assert future.result(timeout=5).verdict is Verdict.COMPLETED
    assert process.kills == 1  # only release()'s sweep of the finished group


def test_a_batch_the_reporter_failed_to_store_is_offered_again_with_the_next_one(tmp_path: Path) -> None:
    # The offset stored with a batch must never cover a record that was not stored with it.
    reporter = ExplodingReporter(on_record=RuntimeError("database is down"))
    _, process, _, future = start(tmp_path, reporter)
    process.emit({"kind": "metric", "step": 1})
    reporter.wait_for(lambda r: r.batches >= 1)
    reporter.record_error = None
    first = len(process.telemetry)
    process.emit({"kind": "metric", "step": 2})
    reporter.wait_for(lambda r: r.offset == len(process.telemetry))
    process.finish(0)
    future.result(timeout=5)
    offered = [r["step"] for r in reporter.records]
    assert offered[-2:] == [1, 2] and set(offered[:-2]) == {1}  # failed tries, then the one that held
    assert first < reporter.offset


def test_a_write_refused_for_a_stale_attempt_kills_the_runner_and_silences_the_rest(tmp_path: Path) -> None:
    reporter = ExplodingReporter(on_record=LeaseLost())
    _, process, _, future = start(tmp_path, reporter)
    process.emit({"kind": "metric", "step": 1}, {"kind": "metric", "step": 2})
    outcome = future.result(timeout=5)
    assert outcome.verdict is Verdict.LOST_LEASE
    assert [r["step"] for r in reporter.records] == [1, 2]  # one read, offered as one batch
    assert reporter.batches == 1  # and nothing more was offered after the refusal
    assert process.asks == []  # no grace, no stop: killed at once


def test_the_loop_sleeps_between_polls(tmp_path: Path) -> None:
    executor = FakeExecutor()
    timings = SupervisorTimings(heartbeat_seconds=60, poll_seconds=0.05, telemetry_seconds=0.05)
    launch = Launch(job_id="job-idle", argv=["runner"], run_dir=tmp_path)
    supervisor = Supervisor(launch, executor=executor, timings=timings)
    threading.Timer(0.5, executor.process.finish, args=(0,)).start()
    supervisor.run()
    assert executor.process.polls <= 15  # ~10 polls in 0.5 s at 50 ms, not thousands


def test_telemetry_is_read_at_its_own_pace_and_all_of_it_once_the_runner_exits(tmp_path: Path) -> None:
    executor = FakeExecutor()
    timings = SupervisorTimings(heartbeat_seconds=60, poll_seconds=0.005, telemetry_seconds=60)
    reporter = RecordingReporter()
    launch = Launch(job_id="job-slow-reads", argv=["runner"], run_dir=tmp_path)
    supervisor = Supervisor(launch, executor=executor, reporter=reporter, timings=timings)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(supervisor.run)
        try:
            reporter.wait_for(lambda r: r.handle is not None)
            executor.process.emit({"kind": "metric", "step": 1}, {"kind": "metric", "step": 2})
            executor.process.settle(rounds=20)  # many rounds, none of them a minute after the start
            before_exit = list(reporter.records)
        finally:
            executor.process.finish(0)
        future.result(timeout=5)
    assert before_exit == []  # the loop went round many times, but the first read is a minute away
    assert [r["step"] for r in reporter.records] == [1, 2] and reporter.batches == 1


def test_a_reporter_that_fails_to_hear_the_end_still_gets_an_outcome_back(tmp_path: Path) -> None:
    class DeafReporter(RecordingReporter):
        def on_finished(self, outcome: Outcome) -> None:
            raise RuntimeError("database is down")

    _, process, _, future = start(tmp_path, DeafReporter())
    process.finish(3)
    assert future.result(timeout=5).verdict is Verdict.USER_ERROR


def test_the_runner_is_released_even_when_the_supervising_thread_is_interrupted(tmp_path: Path) -> None:
    class Interrupting(RecordingReporter):
        def on_started(self, handle: str) -> None:
            raise KeyboardInterrupt

    executor = FakeExecutor()
    launch = Launch(job_id="job-interrupted", argv=["runner"], run_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        Supervisor(launch, executor=executor, reporter=Interrupting(), timings=TIMINGS).run()
    assert executor.process.released
    assert executor.process.exited() == ExitStatus(-signal.SIGKILL)


def test_an_ending_the_runner_did_not_explain_is_judged_from_the_log_tail_of_its_handle(tmp_path: Path) -> None:
    _, process, reporter, future = start(tmp_path)
    assert reporter.handle == "fake runner 4242"  # the executor's name for it, passed on as is
    process.log = [f"line {i}" for i in range(80)]
    process.log += ["Traceback (most recent call last):", '  File "train.py", line 1', "RuntimeError: boom"]
    process.finish(1)
    outcome = future.result(timeout=5)
    assert (outcome.verdict, outcome.message) == (Verdict.FAILED, "RuntimeError: boom")
    assert outcome.log_tail == process.log[-50:]
    assert not (tmp_path / "runner.log").exists()  # nothing came from the run folder


def test_a_completed_runner_needs_no_log_tail(tmp_path: Path) -> None:
    _, process, _, future = start(tmp_path)
    process.log = ["error: this line must not explain a completion"]
    process.emit({"kind": "result", "steps": 1})
    process.finish(0)
    outcome = future.result(timeout=5)
    assert (outcome.verdict, outcome.log_tail, outcome.result) == (
        Verdict.COMPLETED, [], {"kind": "result", "steps": 1})
    assert outcome.telemetry_offset == len(process.telemetry)
