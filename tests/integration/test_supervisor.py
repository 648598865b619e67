"""The supervisor against real processes: tests/support/fake_runner.py and plain commands.

Graces are fractions of a second here; each test runs in well under two seconds.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.service import wait_until
from tuneyard.worker import (
    Launch,
    LocalExecutor,
    Outcome,
    RecordingReporter,
    Supervisor,
    SupervisorTimings,
    Verdict,
)

FAKE_RUNNER = Path(__file__).parents[1] / "support" / "fake_runner.py"
FAST = SupervisorTimings(stop_grace_seconds=2.0, cancel_grace_seconds=2.0, heartbeat_seconds=0.1, poll_seconds=0.02,
                        telemetry_seconds=0.02)


def fake(run_dir: Path, *args: str) -> list[str]:
    return [sys.executable, str(FAKE_RUNNER), "--run-dir", str(run_dir), *args]


def supervise(
    run_dir: Path,
    argv: list[str],
    timings: SupervisorTimings = FAST,
    offset: int = 0,
) -> tuple[Supervisor, RecordingReporter]:
    reporter = RecordingReporter()
    launch = Launch(job_id="job-test", argv=argv, run_dir=run_dir, env={})
    supervisor = Supervisor(
        launch, executor=LocalExecutor(), reporter=reporter, timings=timings, telemetry_offset=offset
    )
    return supervisor, reporter


def in_background(supervisor: Supervisor) -> Future[Outcome]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(supervisor.run)
    pool.shutdown(wait=False)
    return future


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie left to an init that does not reap counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # no child of ours by that pid, zombie or not


def runner_pid(run_dir: Path) -> int:
    """The pid the fake runner wrote at its start: the process the local executor started."""
    return int((run_dir / "runner.pid").read_text())


def training(reporter: RecordingReporter) -> None:
    """Wait until the fake runner has installed its signal handlers and started its steps."""
    reporter.wait_for(lambda r: "phase" in r.kinds())


def test_records_arrive_live_in_order_and_a_result_completes_the_job(tmp_path: Path) -> None:
    trigger = tmp_path / "go"
    supervisor, reporter = supervise(tmp_path, fake(tmp_path, "--steps", "3", "--wait-for", str(trigger)))
    future = in_background(supervisor)
    reporter.wait_for(lambda r: r.kinds().count("metric") == 3)
    pid = runner_pid(tmp_path)
    assert reporter.handle == f"local pid {pid}" and alive(pid)  # seen while the runner still runs
    trigger.touch()
    outcome = future.result(timeout=10)
    assert outcome.verdict is Verdict.COMPLETED
    assert reporter.kinds() == ["phase", "metric", "metric", "metric", "result"]
    assert [r["step"] for r in reporter.records if r["kind"] == "metric"] == [1, 2, 3]
    assert outcome.result == reporter.records[-1]
    assert (outcome.exit_code, outcome.error_type, outcome.log_tail) == (0, None, [])
    assert outcome.telemetry_offset == (tmp_path / "telemetry.jsonl").stat().st_size
    assert reporter.outcome == outcome
    assert_reaped(pid)


def test_stop_checkpoints_and_exits_75_and_the_grandchild_dies_too(tmp_path: Path) -> None:
    supervisor, reporter = supervise(tmp_path, fake(tmp_path, "--then", "hang", "--grandchild"))
    future = in_background(supervisor)
    training(reporter)
    pid, grandchild = runner_pid(tmp_path), int((tmp_path / "grandchild.pid").read_text())
    assert alive(grandchild)
    supervisor.request_stop()
    outcome = future.result(timeout=10)
    assert outcome.verdict is Verdict.STOPPED
    assert (outcome.exit_code, outcome.forced) == (75, False)
    assert outcome.last_checkpoint is not None and outcome.last_checkpoint["step"] == 3
    assert not alive(grandchild)  # it ignores SIGTERM: only the group kill can have done this
    assert_reaped(pid)


def test_a_runner_ignoring_stop_is_killed_after_the_stop_grace(tmp_path: Path) -> None:
    timings = SupervisorTimings(stop_grace_seconds=0.3, cancel_grace_seconds=5, heartbeat_seconds=5, poll_seconds=0.02,
                                telemetry_seconds=0.02)
    supervisor, reporter = supervise(tmp_path, fake(tmp_path, "--then", "hang", "--on-sigterm", "ignore"), timings)
    future = in_background(supervisor)
    training(reporter)
    asked = time.monotonic()
    supervisor.request_stop()
    outcome = future.result(timeout=10)
    assert 0.3 <= time.monotonic() - asked < 1.5
    assert outcome.verdict is Verdict.STOPPED
    assert (outcome.forced, outcome.signal_name) == (True, "SIGKILL")


def test_cancel_escalates_to_sigkill_within_the_cancel_grace(tmp_path: Path) -> None:
    timings = SupervisorTimings(stop_grace_seconds=30, cancel_grace_seconds=0.3, heartbeat_seconds=5, poll_seconds=0.02,
                                telemetry_seconds=0.02)
    argv = fake(tmp_path, "--then", "hang", "--on-sigterm", "ignore", "--grandchild")
    supervisor, reporter = supervise(tmp_path, argv, timings)
    future = in_background(supervisor)
    training(reporter)
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    asked = time.monotonic()
    supervisor.request_cancel()
    outcome = future.result(timeout=10)
    assert 0.3 <= time.monotonic() - asked < 1.5  # the cancel grace, not the 30 s stop grace
    assert outcome.verdict is Verdict.CANCELLED
    assert (outcome.forced, outcome.signal_name, outcome.error_type) == (True, "SIGKILL", None)
    assert not alive(grandchild)


def test_cancel_while_stopping_aborts_the_runner(tmp_path: Path) -> None:
    argv = fake(tmp_path, "--then", "hang", "--stop-delay", "30")
    supervisor, reporter = supervise(tmp_path, argv)
    future = in_background(supervisor)
    training(reporter)
    supervisor.request_stop()
    reporter.wait_for(lambda r: any(x.get("message") == "stopping" for x in r.records))
    supervisor.request_cancel()
    outcome = future.result(timeout=10)
    assert outcome.verdict is Verdict.CANCELLED
    assert (outcome.exit_code, outcome.forced) == (1, False)  # the fake's abort, not our SIGKILL
    assert outcome.last_checkpoint is None


def test_a_stop_before_the_runner_handles_signals_still_ends_stopped(tmp_path: Path) -> None:
    supervisor, reporter = supervise(tmp_path, fake(tmp_path, "--slow-start", "5", "--then", "hang"))
    future = in_background(supervisor)
    reporter.wait_for(lambda r: r.handle is not None)
    supervisor.request_stop()
    outcome = future.result(timeout=10)
    assert (outcome.verdict, outcome.signal_name, outcome.forced) == (Verdict.STOPPED, "SIGTERM", False)
    assert outcome.message == "stopped: runner killed by SIGTERM before it could checkpoint; last checkpoint kept"


def test_worker_shutdown_releases_the_job_with_its_checkpoint(tmp_path: Path) -> None:
    supervisor, reporter = supervise(tmp_path, fake(tmp_path, "--then", "hang"))
    future = in_background(supervisor)
    training(reporter)
    supervisor.request_release()
    outcome = future.result(timeout=10)
    assert outcome.verdict is Verdict.RELEASED
    assert outcome.last_checkpoint is not None
    assert outcome.error_type is None


def test_a_checkpoint_request_keeps_the_runner_training(tmp_path: Path) -> None:
    supervisor, reporter = supervise(tmp_path, fake(tmp_path, "--then", "hang"))
    future = in_background(supervisor)
    training(reporter)
    supervisor.request_checkpoint()
    reporter.wait_for(lambda r: "checkpoint" in r.kinds())
    assert alive(runner_pid(tmp_path))
    supervisor.request_stop()
    assert future.result(timeout=10).verdict is Verdict.STOPPED


def test_a_user_error_keeps_the_runners_own_words(tmp_path: Path) -> None:
    supervisor, _ = supervise(tmp_path, fake(tmp_path, "--then", "user-error"))
    outcome = supervisor.run()
    assert outcome.verdict is Verdict.USER_ERROR
    assert (outcome.exit_code, outcome.error_type) == (3, "data_error")
    assert outcome.message == "dataset line 3 is not JSON"
    assert outcome.details == {"line": 3, "exit_code": 3, "signal": None}


def test_a_runner_killed_without_a_verdict_gets_one_with_its_log_tail(tmp_path: Path) -> None:
    supervisor, reporter = supervise(tmp_path, fake(tmp_path, "--log-lines", "80", "--then", "sigkill"))
    outcome = supervisor.run()
    assert outcome.verdict is Verdict.FAILED
    assert (outcome.signal_name, outcome.exit_code, outcome.forced) == ("SIGKILL", None, False)
    assert outcome.error_type == "platform_error"
    assert outcome.message == "RuntimeError: boom"  # no verdict in its telemetry: its last words in runner.log
    assert outcome.details == {"exit_code": None, "signal": "SIGKILL"}
    assert len(outcome.log_tail) == 50
    assert outcome.log_tail[-1] == "RuntimeError: boom"
    assert reporter.kinds()[-1] == "metric"  # everything written before death was still relayed


def test_exit_1_with_an_error_record_is_a_failure_in_the_runners_words(tmp_path: Path) -> None:
    outcome = supervise(tmp_path, fake(tmp_path, "--then", "error-exit1"))[0].run()
    assert (outcome.verdict, outcome.exit_code, outcome.message) == (Verdict.FAILED, 1, "out of memory")


def test_exit_0_without_a_result_is_not_a_completion(tmp_path: Path) -> None:
    outcome = supervise(tmp_path, fake(tmp_path, "--then", "exit0"))[0].run()
    assert (outcome.verdict, outcome.message) == (Verdict.FAILED, "runner exited 0 without a result record")


def test_a_line_written_in_two_halves_arrives_once_and_whole(tmp_path: Path) -> None:
    supervisor, reporter = supervise(tmp_path, fake(tmp_path, "--partial", "--steps", "1"))
    assert supervisor.run().verdict is Verdict.COMPLETED
    logs = [r for r in reporter.records if r["kind"] == "log"]
    assert [r["message"] for r in logs] == ["half and the other half"]


def test_a_stale_heartbeat_kills_the_runner_at_once(tmp_path: Path) -> None:
    timings = SupervisorTimings(
        stop_grace_seconds=30, cancel_grace_seconds=30, heartbeat_seconds=0.1, poll_seconds=0.02, telemetry_seconds=0.02
    )
    argv = fake(tmp_path, "--then", "hang", "--on-sigterm", "ignore", "--grandchild")
    supervisor, reporter = supervise(tmp_path, argv, timings)
    future = in_background(supervisor)
    training(reporter)
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    reporter.wait_for(lambda r: r.heartbeats >= 1)
    reporter.lease_held = False
    lost = time.monotonic()
    outcome = future.result(timeout=10)
    assert time.monotonic() - lost < 1.0  # no grace: the job is someone else's
    assert outcome.verdict is Verdict.LOST_LEASE
    assert (outcome.signal_name, outcome.error_type) == ("SIGKILL", "lease_lost")
    assert not alive(grandchild)


def test_a_second_attempt_resumes_the_telemetry_without_duplicates(tmp_path: Path) -> None:
    first, first_reporter = supervise(tmp_path, fake(tmp_path, "--steps", "2", "--then", "hang"))
    future = in_background(first)
    first_reporter.wait_for(lambda r: r.kinds().count("metric") == 2)
    first.request_stop()
    stopped = future.result(timeout=10)
    second, second_reporter = supervise(tmp_path, fake(tmp_path, "--steps", "1"), offset=stopped.telemetry_offset)
    assert second.run().verdict is Verdict.COMPLETED
    assert first_reporter.kinds() == ["phase", "metric", "metric", "log", "checkpoint", "log"]
    assert second_reporter.kinds() == ["phase", "metric", "result"]


def test_the_runner_sees_only_the_environment_it_is_given(tmp_path: Path) -> None:
    # A plain command as the runner: `env` prints its environment into runner.log.
    reporter = RecordingReporter()
    launch = Launch(job_id="job-env", argv=["/usr/bin/env"], run_dir=tmp_path, env={"ONLY": "this"})
    outcome = Supervisor(launch, executor=LocalExecutor(), reporter=reporter, timings=FAST).run()
    assert outcome.verdict is Verdict.FAILED  # exit 0 without a result record
    assert (tmp_path / "runner.log").read_text() == "ONLY=this\n"
    assert outcome.log_tail == ["ONLY=this"]


def test_a_runner_that_cannot_start_fails_without_a_process(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    launch = Launch(job_id="job-missing", argv=[str(tmp_path / "no-such-runner")], run_dir=tmp_path)
    outcome = Supervisor(launch, executor=LocalExecutor(), reporter=reporter).run()
    assert (outcome.verdict, outcome.exit, reporter.handle) == (Verdict.FAILED, None, None)
    assert outcome.message.startswith("runner could not be started")
    assert reporter.outcome == outcome


def test_a_cancel_before_start_starts_nothing(tmp_path: Path) -> None:
    supervisor, reporter = supervise(tmp_path, fake(tmp_path))
    supervisor.request_cancel()
    outcome = supervisor.run()
    assert (outcome.verdict, outcome.exit, reporter.handle) == (Verdict.CANCELLED, None, None)
    assert not (tmp_path / "runner.pid").exists()


def test_signals_never_reach_a_reused_pid_after_the_runner_is_reaped(tmp_path: Path) -> None:
    process = LocalExecutor().start(Launch(job_id="job-reap", argv=["/bin/true"], run_dir=tmp_path))
    process.release()
    process.kill()  # must be a no-op now: the group id may belong to someone else
    process.stop()
    process.abort()
    process.checkpoint()
    assert process.exited() is not None


def test_the_local_handle_reads_the_run_folder_also_after_release(tmp_path: Path) -> None:
    argv = ["/bin/sh", "-c", 'echo \'{"kind": "phase"}\' > telemetry.jsonl; echo one; echo two']
    process = LocalExecutor().start(Launch(job_id="job-files", argv=argv, run_dir=tmp_path))
    wait_until(lambda: process.exited() is not None, timeout=5)
    assert process.release().exit_code == 0
    assert process.read_telemetry(0, 1024) == b'{"kind": "phase"}\n'
    assert process.read_telemetry(3, 4) == b'ind"'
    assert process.read_telemetry(1024, 10) is None  # shorter than the offset: the reader starts over
    assert process.log_tail(1) == ["two"]
    assert process.handle == f"local pid {process.pid}"
