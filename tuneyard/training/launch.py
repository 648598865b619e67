"""`python -m tuneyard.training.launch --nproc-per-node N RUNNER-ARGS...`: one run on N processes.

The ranks are started by torchrun (`torch.distributed.run`: `--standalone --nproc-per-node N
--module tuneyard.training RUNNER-ARGS`), run in this process rather than as the `torchrun` script, for
two things the script loses and the runner contract needs:

* **The verdict.** The script exits 1 whenever a rank exits non-zero, so a stop (75) or a user error
  (3) would read as a failure to be retried. Here the ranks' exit codes become this process's
  (`exit_code_of`).
* **The signals.** torchrun's agent answers SIGTERM by tearing the ranks down; the contract's SIGTERM
  means "checkpoint at the next step boundary", and SIGUSR1 (checkpoint and go on) would kill the agent.
  So torchrun is told to handle only SIGHUP and SIGQUIT, and this process passes SIGTERM, SIGINT and
  SIGUSR1 on to every rank: each rank's runner acts on its own, and the ranks agree at the next step
  boundary (training/recipes/finetune.py), so they stop at the same step.

torchrun starts each rank in a session of its own; a rank whose launcher dies (SIGKILLed with its
process group) ends itself (`--exit-with-parent`), and the local executor kills the launcher's
descendants with it (worker/executors/local.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from tuneyard.child_process import exit_now
from tuneyard.training import contract

FORWARDED_SIGNALS = (contract.SIGNAL_STOP, contract.SIGNAL_ABORT, contract.SIGNAL_CHECKPOINT)
AGENT_SIGNALS = "SIGHUP,SIGQUIT"
"""What torchrun's agent still answers by tearing the ranks down: hang-ups, not the contract's signals."""


def torchrun_args(processes: int, runner_args: list[str]) -> list[str]:
    """torchrun's command line for `processes` ranks of the runner on this node."""
    return ["--standalone", "--nproc-per-node", str(processes), "--signals-to-handle", AGENT_SIGNALS,
            "--module", "tuneyard.training", *runner_args]


def exit_code_of(codes: Mapping[int, int]) -> tuple[int, str | None]:
    """This launcher's exit code from the failed ranks' exit codes (negative: the signal that killed
    them), with a message where the run failed for a reason no rank could report.

    A user error is the same on every rank (each reads the same spec and data): 3. A stop is agreed
    by every rank at one step boundary: 75 when every rank that ended reported it. Ranks ended by the
    stop or abort signal this launcher passed on (before the runner's handlers were in place) are
    returned as that signal's death, as one process would have died. Anything else is a failure: 1,
    naming a rank killed by a signal (the likely cause: the others fail in their next collective after
    it) or else the lowest failed rank.
    """
    values = set(codes.values())
    if contract.EXIT_USER_ERROR in values:
        return contract.EXIT_USER_ERROR, None
    if values == {contract.EXIT_STOPPED}:
        return contract.EXIT_STOPPED, None
    if len(values) == 1 and -min(values) in (contract.SIGNAL_STOP, contract.SIGNAL_ABORT):
        return min(values), None
    rank = min(codes, key=lambda r: (codes[r] >= 0, r))
    return 1, f"rank {rank} of the distributed run {_describe(codes[rank])}; every rank was stopped"


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited {code}"


class _Forwarder:
    """Passes the contract's signals on to the ranks, the children of this process."""

    def install(self) -> None:
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, self._forward)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        import psutil

        ranks = psutil.Process().children()
        if not ranks and signum != contract.SIGNAL_CHECKPOINT:
            # No rank started yet: end as a runner does before its handlers are in place (nothing to
            # checkpoint yet, so a checkpoint request is moot).
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        for rank in ranks:
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended meanwhile
                rank.send_signal(signum)


def report_failure(run_dir: Path, message: str) -> None:
    """The attempt's verdict where no rank gave one: the last error record of the run's telemetry (every
    rank has ended, so this process is its only writer now) and a line in runner.log."""
    from tuneyard.training.telemetry import Telemetry

    telemetry = Telemetry(run_dir / contract.TELEMETRY_FILE)
    try:
        telemetry.emit(contract.KIND_ERROR, error_type="platform_error", message=message, details={})
        telemetry.log(f"failed: {message}", level="error")
    finally:
        telemetry.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneyard.training.launch", description=__doc__)
    parser.add_argument("--nproc-per-node", type=int, required=True, help="ranks to start on this node")
    parser.add_argument("--run-dir", type=Path, required=True, help="the runner's --run-dir")
    parser.add_argument("runner_args", nargs=argparse.REMAINDER, help="python -m tuneyard.training's arguments")
    args = parser.parse_args(argv)
    runner_args = [*args.runner_args, "--run-dir", str(args.run_dir)]
    if "--exit-with-parent" in runner_args:
        from tuneyard.child_process import exit_with_parent

        exit_with_parent()
    _Forwarder().install()
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        torchrun.run(torchrun.parse_args(torchrun_args(args.nproc_per_node, runner_args)))
    except ChildFailedError as exc:
        code, message = exit_code_of({rank: failure.exitcode for rank, failure in exc.failures.items()})
        if message is not None:
            print(message, file=sys.stderr, flush=True)
            report_failure(args.run_dir, message)
        if code < 0:  # die as the ranks died, so the supervisor reads the same ending as from one process
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        return code
    return 0


if __name__ == "__main__":
    exit_now(main())
