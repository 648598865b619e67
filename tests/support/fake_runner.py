"""A stand-in runner for supervisor tests: stdlib only, speaks the runner contract, behaves on demand.

    python fake_runner.py --run-dir DIR [--steps N] [--pace S] [--on-sigterm checkpoint|ignore]
                          [--grandchild] [--partial] [--wait-for FILE] [--then ENDING]

It writes RUN_DIR/runner.pid at once, one metric record per step, and after the steps ends as
--then says. SIGTERM makes it log "stopping", checkpoint --stop-delay seconds later and exit 75 (a second
SIGTERM, or a SIGINT, aborts with exit 1); SIGUSR1 writes a checkpoint record and carries on.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ENDINGS = ("result", "hang", "user-error", "error-exit1", "exit1", "exit0", "sigkill")


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir: Path = args.run_dir
        self.telemetry = open(self.run_dir / "telemetry.jsonl", "a")  # noqa: SIM115 - open for the run
        self.step = 0
        self.terms = 0
        self.checkpoint_now = False
        self.stop_at: float | None = None

    def emit(self, kind: str, **fields: Any) -> None:
        self.telemetry.write(json.dumps({"kind": kind, "ts": time.time(), **fields}) + "\n")
        self.telemetry.flush()

    def on_term(self, signum: int, frame: object) -> None:
        self.terms += 1
        if self.terms > 1:
            os._exit(1)  # the contract's second SIGTERM: abort at once

    def on_int(self, signum: int, frame: object) -> None:
        os._exit(1)  # the contract's abort

    def on_usr1(self, signum: int, frame: object) -> None:
        self.checkpoint_now = True

    def boundary(self) -> None:
        """What the runner does between steps: honour checkpoint and stop requests."""
        if self.terms and self.stop_at is None:
            # Like a real runner finishing its optimizer step before it checkpoints.
            self.stop_at = time.monotonic() + self.args.stop_delay
            self.emit("log", level="info", message="stopping")
        if self.stop_at is not None and time.monotonic() < self.stop_at:
            return
        if self.checkpoint_now or self.terms:
            self.checkpoint_now = False
            self.emit("checkpoint", step=self.step, path=f"checkpoints/step-{self.step:06d}")
        if self.terms:
            self.emit("log", level="info", message="stopped on request")
            sys.exit(75)

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.boundary()
            time.sleep(min(0.01, max(0.0, end - time.monotonic())))


def spawn_grandchild(run_dir: Path) -> None:
    # It ignores SIGTERM and outlives its parent unless someone kills the whole process group.
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code])
    (run_dir / "grandchild.pid").write_text(str(child.pid))


def finish(runner: Runner, ending: str) -> None:
    if ending == "hang":
        while True:
            runner.sleep(1.0)
    if ending == "result":
        runner.emit("result", steps=runner.step, final_loss=1.0)
        sys.exit(0)
    if ending == "user-error":
        runner.emit("error", error_type="data_error", message="dataset line 3 is not JSON", details={"line": 3})
        sys.exit(3)
    if ending == "error-exit1":
        runner.emit("error", error_type="platform_error", message="out of memory", details={})
        sys.exit(1)
    if ending == "exit0":
        sys.exit(0)
    print("Traceback (most recent call last):\nRuntimeError: boom", file=sys.stderr, flush=True)
    if ending == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between steps")
    parser.add_argument("--on-sigterm", choices=("checkpoint", "ignore"), default="checkpoint")
    parser.add_argument("--stop-delay", type=float, default=0.0, help="seconds from SIGTERM to checkpoint")
    parser.add_argument("--slow-start", type=float, default=0.0, help="seconds before handling signals")
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--partial", action="store_true", help="write one record in two halves")
    parser.add_argument("--wait-for", type=Path, help="a trigger file to wait for before the ending")
    parser.add_argument("--log-lines", type=int, default=0, help="numbered lines to print to stdout")
    parser.add_argument("--then", choices=ENDINGS, default="result")
    args = parser.parse_args()
    runner = Runner(args)
    time.sleep(args.slow_start)  # like a runner still importing torch: SIGTERM's default applies
    signal.signal(signal.SIGUSR1, runner.on_usr1)
    signal.signal(signal.SIGINT, runner.on_int)
    signal.signal(signal.SIGTERM, runner.on_term if args.on_sigterm == "checkpoint" else signal.SIG_IGN)
    if args.grandchild:
        spawn_grandchild(args.run_dir)
    for i in range(args.log_lines):
        print(f"log line {i}", flush=True)
    (args.run_dir / "runner.pid").write_text(str(os.getpid()))
    runner.emit("phase", phase="training")
    if args.partial:
        runner.telemetry.write('{"kind": "log", "level": "info", "message": "half')
        runner.telemetry.flush()
        time.sleep(0.5)
        runner.telemetry.write(' and the other half"}\n')
        runner.telemetry.flush()
    for step in range(1, args.steps + 1):
        runner.sleep(args.pace)
        runner.step = step
        runner.emit("metric", step=step, total_steps=args.steps, loss=1.0 / step)
    while args.wait_for is not None and not args.wait_for.exists():
        runner.sleep(0.02)
    finish(runner, args.then)


if __name__ == "__main__":
    main()
