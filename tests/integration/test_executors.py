"""Executors by name: the setting picks one from the registry, and the supervisor drives any of them
through the handle alone.

`StdoutExecutor` is a second executor that exists only here: its runner is a plain shell command
whose telemetry is its stdout and whose log is its stderr, both kept outside the run folder, so
what the supervisor reports can only have come through the handle.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tuneyard.errors import SettingsError
from tuneyard.settings import Settings
from tuneyard.store import Database
from tuneyard.worker import (
    ExecutorRegistry,
    ExitStatus,
    Launch,
    LocalExecutor,
    RecordingReporter,
    Supervisor,
    SupervisorTimings,
    Verdict,
    make_executor,
    shipped_executors,
)
from tuneyard.worker.logtail import tail_lines
from tuneyard.worker.pool import WorkerPool
from tuneyard.worker.telemetry import read_file_range

FAST = SupervisorTimings(stop_grace_seconds=2.0, cancel_grace_seconds=2.0, heartbeat_seconds=0.1, poll_seconds=0.02,
                        telemetry_seconds=0.02)


class StdoutProcess:
    def __init__(self, popen: subprocess.Popen[bytes], streams: Path) -> None:
        self._popen = popen
        self._streams = streams

    @property
    def handle(self) -> str:
        return f"stdout-runner {self._popen.pid}"

    def exited(self) -> ExitStatus | None:
        code = self._popen.poll()
        return None if code is None else ExitStatus(code)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def abort(self) -> None:
        self._signal(signal.SIGINT)

    def checkpoint(self) -> None:
        self._signal(signal.SIGUSR1)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def read_telemetry(self, offset: int, limit: int) -> bytes | None:
        return read_file_range(self._streams / "stdout", offset, limit)

    def log_tail(self, lines: int) -> list[str]:
        return tail_lines(self._streams / "stderr", lines)

    def release(self) -> ExitStatus:
        self.kill()
        return ExitStatus(self._popen.wait())

    def _signal(self, sig: signal.Signals) -> None:
        if self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, sig)


class StdoutExecutor:
    """Runs the launch's argv with stdout and stderr captured under `streams`, not the run folder."""

    def __init__(self, streams: Path) -> None:
        self.streams = streams

    def start(self, launch: Launch) -> StdoutProcess:
        self.streams.mkdir(parents=True, exist_ok=True)
        with open(self.streams / "stdout", "wb") as out, open(self.streams / "stderr", "wb") as err:
            popen = subprocess.Popen(list(launch.argv), cwd=launch.run_dir, env=dict(launch.env),
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        return StdoutProcess(popen, self.streams)


def with_stdout_executor(streams: Path) -> ExecutorRegistry:
    registry = shipped_executors()
    registry.register("stdout", lambda settings: StdoutExecutor(streams))
    return registry


def run_shell(tmp_path: Path, script: str) -> tuple[RecordingReporter, Verdict, str, list[str]]:
    """Run `script` as the runner on the executor the setting names; (reporter, verdict, message, tail)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    executor = make_executor(Settings(data_dir=tmp_path, executor="stdout"), with_stdout_executor(tmp_path / "io"))
    assert isinstance(executor, StdoutExecutor)
    reporter = RecordingReporter()
    launch = Launch(job_id="job-stdout", argv=["/bin/sh", "-c", script], run_dir=run_dir)
    outcome = Supervisor(launch, executor=executor, reporter=reporter, timings=FAST).run()
    assert list(run_dir.iterdir()) == []  # the supervisor wrote and read nothing there
    return reporter, outcome.verdict, outcome.message, outcome.log_tail


def test_a_second_executor_registered_by_name_is_the_one_the_setting_picks(tmp_path: Path) -> None:
    script = """
echo '{"kind": "metric", "step": 1, "loss": 2.5}'
echo 'loading the model' >&2
echo '{"kind": "result", "steps": 1}'
"""
    reporter, verdict, message, tail = run_shell(tmp_path, script)
    assert (verdict, message, tail) == (Verdict.COMPLETED, "completed", [])
    assert [(r["kind"], r.get("step")) for r in reporter.records] == [("metric", 1), ("result", None)]
    assert reporter.handle is not None and reporter.handle.startswith("stdout-runner ")


def test_an_unexplained_ending_on_another_executor_is_told_from_its_log_tail(tmp_path: Path) -> None:
    script = """
echo '{"kind": "phase", "phase": "loading_model"}'
echo 'error: the base model needs a GPU' >&2
exit 3
"""
    reporter, verdict, message, tail = run_shell(tmp_path, script)
    assert (verdict, message) == (Verdict.USER_ERROR, "the base model needs a GPU")
    assert tail == ["error: the base model needs a GPU"]
    assert reporter.kinds() == ["phase"]


def test_the_local_executor_is_the_default_and_a_name_is_registered_once(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).executor == "local"
    assert isinstance(make_executor(Settings(data_dir=tmp_path)), LocalExecutor)
    assert Settings.from_env({"TUNEYARD_EXECUTOR": "stdout"}).executor == "stdout"
    registry = with_stdout_executor(tmp_path)
    assert registry.names() == ["local", "ray", "stdout"]
    with pytest.raises(ValueError, match="'stdout' is already registered"):
        registry.register("stdout", lambda settings: StdoutExecutor(tmp_path))


def test_an_unknown_executor_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        make_executor(Settings(data_dir=tmp_path, executor="slurm"))
    assert refused.value.variable == "TUNEYARD_EXECUTOR"
    assert str(refused.value) == "TUNEYARD_EXECUTOR: 'slurm' is not a registered executor (registered: local, ray)"


def test_a_worker_pool_builds_its_executor_from_the_settings(db: Database, settings: Settings) -> None:
    pool = WorkerPool(db, settings, {}, 2)
    first, second = (worker.executor for worker in pool.workers)
    assert isinstance(first, LocalExecutor) and first is second  # one executor, shared
    with pytest.raises(SettingsError, match="TUNEYARD_EXECUTOR"):
        WorkerPool(db, Settings(data_dir=settings.data_dir, executor="slurm"), {}, 1)
