"""Following a job live over its SSE stream: a progress bar, or its log lines.

On a terminal the progress is a rich bar redrawn in place; piped, it is one plain line per
second at most (and always the last step), so logs and tests see it too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from tuneyard.cli.common import EXIT_API, EXIT_INTERRUPTED, EXIT_STOPPED, duration, stderr, stdout, when
from tuneyard.client import StreamItem, StreamUnavailable, TuneyardClient
from tuneyard.problems import error_detail_lines

RECONNECTS = 30
PLAIN_EVERY_S = 1.0


class ProgressView:
    """Train metrics as a bar (terminal) or lines (pipe); events as lines above it."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job_id = job["id"]
        self.total = (job.get("progress") or {}).get("total_steps")
        self.live = stdout.is_terminal
        self._last_plain = 0.0
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("ETA {task.fields[eta]}"), console=stdout, transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressView:
        if self.live:
            self._bar.start()
            self._task = self._bar.add_task(self.job_id, total=self.total, loss="-", tps="-", eta="-:--")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self._bar.stop()

    def feed(self, item: StreamItem) -> None:
        if item.event == "metric" and isinstance(item.data, dict):
            self._metric(item.data)
        elif item.event == "event" and isinstance(item.data, dict):
            stdout.print(f"· {item.data.get('message', item.data.get('type'))}", markup=False, style="dim")

    def _metric(self, point: dict[str, Any]) -> None:
        values = point.get("values") or {}
        if point.get("kind") == "eval":
            loss = values.get("eval_loss")
            stdout.print(f"· eval at step {point['step']}: loss {_num(loss)}", markup=False, style="dim")
            return
        self.total = values.get("total_steps") or self.total
        step = int(point["step"])
        loss, tps, eta = _num(values.get("loss")), _rate(values.get("tokens_per_s")), duration(values.get("eta_s"))
        if self._task is not None:
            self._bar.update(self._task, completed=step, total=self.total, loss=loss, tps=tps, eta=eta)
            return
        now = time.monotonic()
        if now - self._last_plain >= PLAIN_EVERY_S or step == self.total:
            self._last_plain = now
            stdout.print(f"step {step}/{self.total or '?'}  loss {loss}  {tps} tok/s  ETA {eta}", markup=False)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _rate(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


@contextlib.contextmanager
def ctrl_c_noticed() -> Iterator[threading.Event]:
    """Ctrl-C raises KeyboardInterrupt as usual, and is also remembered: set even where the process
    started with SIGINT ignored (inherited), or where a library swallowed the KeyboardInterrupt, so a
    follower still leaves at its next item. Twice in full test runs a `--follow` went on after its
    Ctrl-C; this makes the exit not depend on where the signal lands."""
    noticed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield noticed
        return

    def interrupted(_signum: int, _frame: object) -> None:
        noticed.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield noticed
    finally:
        signal.signal(signal.SIGINT, previous)


def follow_job(client: TuneyardClient, job_id: str, *, quiet: bool = False) -> tuple[int, dict[str, Any]]:
    """Follow until the job rests; its exit code (0, 75, 1, or 130 on Ctrl-C) and final state."""
    job = client.get_job(job_id)
    try:
        try:
            with ctrl_c_noticed() as ctrl_c, ProgressView(job) as view:
                for item in client.stream(job_id, reconnects=RECONNECTS):
                    if ctrl_c.is_set():
                        raise KeyboardInterrupt
                    if not quiet:
                        view.feed(item)
        except (StreamUnavailable, httpx.TransportError) as unavailable:
            # Only where the stream cannot be read at all (a proxy that buffers or cuts it): the
            # outcome still comes, from reading the job every second, without the live figures.
            stderr.print(f"no live stream ({unavailable}); waiting for job {job_id} to end", markup=False,
                         soft_wrap=True)
            client.wait(job_id, stream=False)
    except KeyboardInterrupt:
        stderr.print(f"stopped following; job {job_id} keeps running "
                     f"(`tuneyard jobs get {job_id} --follow` to watch it again)", markup=False, soft_wrap=True)
        return EXIT_INTERRUPTED, job
    job = client.get_job(job_id)
    return outcome_code(job), job


def outcome_code(job: dict[str, Any]) -> int:
    status = job["status"]
    if status == "completed":
        return 0
    return EXIT_STOPPED if status == "stopped" else EXIT_API


def outcome_lines(job: dict[str, Any]) -> list[str]:
    """What became of the job and what to do next."""
    job_id, status = job["id"], job["status"]
    if status == "completed":
        return [f"job {job_id} completed: model {job.get('output_model_id')}",
                f"download it with `tuneyard jobs download {job_id}`"]
    if status == "stopped":
        return [f"job {job_id} stopped at checkpoint step {job.get('last_checkpoint_step')}",
                f"resume it with `tuneyard jobs resume {job_id}`"]
    error = job.get("error") or {}
    reason = error.get("message") or "no reason recorded"
    kind = f" ({error['error_type']})" if error.get("error_type") else ""
    problems = [f"  {line}" for line in error_detail_lines(error.get("details"))]
    return [f"job {job_id} {status}{kind}: {reason}", *problems]


def print_log(line: dict[str, Any]) -> None:
    level = str(line.get("level", "info"))
    style = "red" if level in ("error", "critical") else "yellow" if level == "warning" else None
    stdout.print(f"{when(line.get('ts'))} {level:<7} {line.get('message', '')}", markup=False, style=style,
                 soft_wrap=True)


def follow_logs(client: TuneyardClient, job_id: str, tail: int | None) -> int:
    """Print the last `tail` lines (all when None), then new ones live until the job rests."""
    seen = 0
    for line in client.logs(job_id, tail=tail):
        print_log(line)
        seen = max(seen, int(line["seq"]))
    try:
        for item in client.stream(job_id, reconnects=RECONNECTS):
            # The stream replays from the start; lines already printed (or skipped by --tail) are dropped.
            if item.event == "log" and isinstance(item.data, dict) and int(item.data["seq"]) > seen:
                print_log(item.data)
                seen = int(item.data["seq"])
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0
