"""How the supervisor judges an ending: a table from (request, exit, records) to a verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneyard.worker.logtail import tail_lines
from tuneyard.worker.outcome import (
    Ending,
    ExitStatus,
    Request,
    TelemetryRecord,
    Verdict,
    decide,
    error_from_log,
    error_type_for,
)

RESULT: TelemetryRecord = {"kind": "result", "final_loss": 1.0}
USER_ERR: TelemetryRecord = {"kind": "error", "error_type": "data_error", "message": "line 3 is not JSON"}
OOM: TelemetryRecord = {"kind": "error", "error_type": "out_of_memory", "message": "out of memory"}
SIGKILL = -9
SIGTERM = -15
SIGSEGV = -11


@pytest.mark.parametrize(
    ("request_", "code", "forced", "result", "error", "verdict"),
    [
        (Request.NONE, 0, False, RESULT, None, Verdict.COMPLETED),
        (Request.NONE, 0, False, None, None, Verdict.FAILED),  # exit 0 but no result: not done
        (Request.NONE, 3, False, None, USER_ERR, Verdict.USER_ERROR),
        (Request.NONE, 3, False, None, None, Verdict.USER_ERROR),
        (Request.NONE, 75, False, None, None, Verdict.STOPPED),  # stopped by someone else
        (Request.NONE, 1, False, None, None, Verdict.FAILED),
        (Request.NONE, 1, False, None, OOM, Verdict.FAILED),
        (Request.NONE, SIGKILL, False, None, None, Verdict.FAILED),
        (Request.NONE, SIGSEGV, False, None, None, Verdict.FAILED),
        (Request.STOP, 75, False, None, None, Verdict.STOPPED),
        (Request.STOP, SIGKILL, True, None, None, Verdict.STOPPED),  # outlived its grace
        (Request.STOP, 0, False, RESULT, None, Verdict.COMPLETED),  # finished before the stop landed
        (Request.STOP, SIGTERM, False, None, None, Verdict.STOPPED),  # stopped before its handlers were up
        (Request.STOP, 1, False, None, None, Verdict.FAILED),  # crashed while stopping
        (Request.NONE, SIGTERM, False, None, None, Verdict.FAILED),  # a SIGTERM we did not send
        (Request.STOP, 3, False, None, USER_ERR, Verdict.USER_ERROR),
        (Request.RELEASE, 75, False, None, None, Verdict.RELEASED),
        (Request.RELEASE, SIGKILL, True, None, None, Verdict.RELEASED),
        (Request.RELEASE, SIGTERM, False, None, None, Verdict.RELEASED),
        (Request.RELEASE, 0, False, RESULT, None, Verdict.COMPLETED),
        (Request.CANCEL, 75, False, None, None, Verdict.CANCELLED),
        (Request.CANCEL, SIGKILL, True, None, None, Verdict.CANCELLED),
        (Request.CANCEL, 0, False, RESULT, None, Verdict.CANCELLED),  # the user's cancel is final
        (Request.LOST_LEASE, SIGKILL, False, None, None, Verdict.LOST_LEASE),
        (Request.LOST_LEASE, 0, False, RESULT, None, Verdict.LOST_LEASE),  # not ours to report
    ],
)
def test_verdicts(
    request_: Request,
    code: int,
    forced: bool,
    result: TelemetryRecord | None,
    error: TelemetryRecord | None,
    verdict: Verdict,
) -> None:
    assert decide(Ending(request_, ExitStatus(code), forced, result, error))[0] is verdict


def test_the_runners_own_message_and_error_type_are_kept() -> None:
    ending = Ending(Request.NONE, ExitStatus(1), False, None, OOM)
    verdict, message = decide(ending)
    assert message == "out of memory"
    assert error_type_for(verdict, ending) == "out_of_memory"


def test_an_unexplained_death_names_the_signal_and_is_a_platform_error() -> None:
    ending = Ending(Request.NONE, ExitStatus(SIGKILL), False, None, None)
    verdict, message = decide(ending)
    assert message == "runner killed by SIGKILL without a verdict"
    assert error_type_for(verdict, ending) == "platform_error"


def test_a_lost_runner_is_a_crash_that_says_why_and_is_retried() -> None:
    ending = Ending(Request.NONE, ExitStatus.lost_runner("its Ray actor or node died: ActorDiedError"), False,
                    None, None)
    verdict, message = decide(ending)
    assert verdict is Verdict.FAILED  # retried by the queue, from the last checkpoint
    assert message == "runner was lost (its Ray actor or node died: ActorDiedError) without a verdict"
    assert error_type_for(verdict, ending) == "platform_error"


def test_user_error_without_a_record_is_still_a_user_error() -> None:
    ending = Ending(Request.NONE, ExitStatus(3), False, None, None)
    assert error_type_for(decide(ending)[0], ending) == "user_error"


@pytest.mark.parametrize("verdict", [Verdict.COMPLETED, Verdict.STOPPED, Verdict.CANCELLED, Verdict.RELEASED])
def test_endings_that_are_not_errors_have_no_error_type(verdict: Verdict) -> None:
    assert error_type_for(verdict, Ending(Request.NONE, ExitStatus(0), False, None, None)) is None


def test_exit_status_reads_codes_and_signals() -> None:
    assert (ExitStatus(3).exit_code, ExitStatus(3).signal_name) == (3, None)
    assert (ExitStatus(-9).exit_code, ExitStatus(-9).signal_name) == (None, "SIGKILL")
    assert ExitStatus(-11).describe() == "killed by SIGSEGV"
    assert ExitStatus(1).describe() == "exited 1"


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "runner.log"
    assert tail_lines(log, 50) == []
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    assert tail_lines(log, 50) == [f"line {i}" for i in range(150, 200)]


def test_log_tail_of_a_huge_log_reads_only_its_end_and_drops_the_cut_line(tmp_path: Path) -> None:
    log = tmp_path / "runner.log"
    log.write_bytes(b"x" * 200_000 + b"\n" + b"".join(b"tail %d\n" % i for i in range(3)))
    assert tail_lines(log, 50)[-3:] == ["tail 0", "tail 1", "tail 2"]
    assert all(len(line) < 70_000 for line in tail_lines(log, 50))


def test_a_runner_that_wrote_no_telemetry_is_explained_by_its_last_error_line() -> None:
    log = ["loading", "error: invalid job spec: (file): cannot read runs/j/spec.json: No such file or directory"]
    error = error_from_log(log)
    assert error is not None
    verdict, message = decide(Ending(Request.NONE, ExitStatus(3), False, None, error))
    assert verdict is Verdict.USER_ERROR
    assert message == "invalid job spec: (file): cannot read runs/j/spec.json: No such file or directory"
    assert error_type_for(verdict, Ending(Request.NONE, ExitStatus(3), False, None, error)) == "user_error"


def test_a_crash_before_telemetry_is_explained_by_the_tracebacks_exception_line() -> None:
    log = [
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "    import torch",
        "ModuleNotFoundError: No module named 'torch'",
    ]
    error = error_from_log(log)
    assert error is not None and error["message"] == "ModuleNotFoundError: No module named 'torch'"
    verdict, message = decide(Ending(Request.NONE, ExitStatus(1), False, None, error))
    assert (verdict, message) == (Verdict.FAILED, "ModuleNotFoundError: No module named 'torch'")


def test_a_log_without_last_words_leaves_the_exit_code_to_speak() -> None:
    assert error_from_log(["step 1/10 loss 2.0", "step 2/10 loss 1.9"]) is None
    assert error_from_log([]) is None
