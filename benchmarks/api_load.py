"""API latency under load: CLIENTS pollers or SSE followers against a real `tuneyard serve` while a job trains.

A poller first reads everything so far (GET …/metrics and …/logs from the start: timed, reported
as "history", and kept out of the target, which is about polling), then loops over
GET /v1/jobs/{id}, GET …/metrics?since_step=<last step seen> and
GET …/logs?since=<last seq seen>, on its own keep-alive connection (benchmarks/lean_http.py, so the
generator takes little of the CPU it shares with the server), for DURATION seconds, waiting
THINK seconds between rounds: 1 s by default, as `TuneyardClient.wait` and `jobs get --follow` poll
where no stream can be read.
With `--followers`, each client instead keeps the job's SSE stream (GET …/stream) open for the whole
load, as the console, `wait()` and `jobs get --follow` do (benchmarks/api_follow.py: connect time,
each item's delivery lag and fan-out spread, items delivered); `--mix N` makes N of the clients
followers and the rest pollers, both modes on one training job.
Clients join at random moments over the first RAMP seconds (10 by default), as independent users
would, not in one burst; `--ramp 0` starts them all at once: "all 100 joining in the same second".
THINK 0 hammers the server as hard as the pollers can: a throughput figure.
Training tokens/s is read from the run's telemetry over a quiet window before the load, the load
itself, and a quiet window after, so the cost of serving on the training is visible too; so is the
serve process's CPU in the quiet window before and during the load. Prints figures; asserts nothing.

    .venv/bin/python -m benchmarks.api_load [--clients 100] [--duration 30] [--think 1] [--ramp 10]
        [--followers | --mix N] [--database-url URL | --postgres] [--conditional] [--py-spy FILE]

The cases of issue 18, each also with `--postgres`:

    .venv/bin/python -m benchmarks.api_load --duration 30                         # 100 pollers
    .venv/bin/python -m benchmarks.api_load --duration 30 --ramp 0                # all joining at once
    .venv/bin/python -m benchmarks.api_load --duration 30 --followers             # 100 SSE followers
    .venv/bin/python -m benchmarks.api_load --duration 30 --followers --ramp 0    # all joining at once

With TUNEYARD_API_PROCESSES=N in the environment, `serve` runs the API in N processes of its own
(`serve --api-processes`); the server's CPU is then theirs and serve's together.

The load generator shares the machine (2 cores here) with the server and the training, so the
latencies it sees include its own scheduling delays: they are an upper bound on the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks import api_follow
from benchmarks.api_follow import FollowTally
from benchmarks.lean_http import Connection, ResponseError
from benchmarks.service_bench import (
    Served,
    job_spec,
    load_average,
    make_dataset,
    percentile,
    percentile_cells,
    tokens_per_s,
    train_steps,
)
from benchmarks.sft_data import docstring_chats, write_jsonl

# Issue 18's targets, each judged on its own line of the report.
TARGET_P99_MS = 50.0
"""Polls' p99; followers' connect and spread p99."""
TARGET_CPU_MS = 0.5
"""Server CPU a poll answered (history reads included); with followers, a stream item delivered."""
TARGET_TRAINING_SHARE = 0.8
"""Training's tokens/s during the load over its tokens/s in the quiet window before it."""
SAVE_STEPS = 2000
CHAT_COPIES = 6  # 1760 stdlib docstring chats, six times over
ROUTES = ("job", "metrics", "logs")  # polled: the target is about these
HISTORY = "history"  # each client's first two reads: every metric point and log line so far


@dataclass
class Tally:
    """Latencies (seconds) of the answered requests and the count of failed ones, per route."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in (*ROUTES, HISTORY)})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*ROUTES, HISTORY), 0))
    first_error: str | None = None
    not_modified: int = 0  # answered 304 (with --conditional)

    def fail(self, route: str, why: str) -> None:
        self.errors[route] += 1
        self.first_error = self.first_error or f"{route}: {why}"


@dataclass(frozen=True)
class LoadResult:
    clients: int
    followers: int  # of the clients: those that followed the stream; the others polled
    duration_s: float
    tally: Tally  # the pollers'
    follow: FollowTally
    tokens_per_s: dict[str, tuple[float, int] | None]  # window -> (tokens/s, steps) in that window
    server_cpu_s: float  # CPU serve and its API processes used during the load (its runner not counted)
    server_cpu_quiet_s: float  # the same over the quiet window before the load: what training alone costs it
    quiet_s: float
    client_cpu_s: float  # CPU this load generator used

    @property
    def pollers(self) -> int:
        return self.clients - self.followers

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.tally.latencies.values()) + sum(self.tally.errors.values())

    @property
    def errors(self) -> int:
        """Of pollers and followers both."""
        return sum(self.tally.errors.values()) + self.follow.errors

    def all_latencies(self) -> list[float]:
        """Of the polling requests (not the history reads)."""
        return [x for route in ROUTES for x in self.tally.latencies[route]]

    def server_cpu_ms_per_answer(self) -> float:
        """Server CPU over everything it answered: poll answers and stream items delivered."""
        answered = sum(len(v) for v in self.tally.latencies.values()) + sum(self.follow.delivered)
        return 1000 * self.server_cpu_s / max(answered, 1)

    def training_share(self) -> float | None:
        before, during = self.tokens_per_s.get("before load"), self.tokens_per_s.get("during load")
        return during[0] / before[0] if before and during and before[0] > 0 else None

    def verdicts(self) -> list[tuple[str, bool]]:
        """Each of the issue's targets: its words and whether this run met it."""
        found: list[tuple[str, bool]] = []
        if self.pollers:
            everything = self.all_latencies()
            found.append((f"polls' p99 < {TARGET_P99_MS:.0f} ms with 0 errors",
                          bool(everything) and sum(self.tally.errors.values()) == 0
                          and percentile(everything, 99) * 1000 < TARGET_P99_MS))
        if self.followers:
            found.append((f"followers' connect and spread p99 < {TARGET_P99_MS:.0f} ms with 0 errors",
                          self.follow.target_met(TARGET_P99_MS)))
        found.append((f"server CPU < {TARGET_CPU_MS} ms an answer ({self.server_cpu_ms_per_answer():.2f})",
                      self.server_cpu_ms_per_answer() < TARGET_CPU_MS))
        share = self.training_share()
        shown = "unknown" if share is None else f"{share:.0%}"
        found.append((f"training during load >= {TARGET_TRAINING_SHARE:.0%} of before ({shown})",
                      share is not None and share >= TARGET_TRAINING_SHARE))
        return found

    @property
    def target_met(self) -> bool:
        return all(met for _, met in self.verdicts())


async def poll(http: Connection, job_id: str, deadline: float, think: float, start_after: float,
               tally: Tally, etags: dict[str, str] | None) -> None:
    """One client: all metrics and logs so far, then job status, metrics and logs from where it left
    off, every THINK seconds until the deadline; with `etags` (a dict), each request sends back the
    ETag its URL last answered, as a browser's cache would."""
    position = {"metrics": -1, "logs": 0}
    await asyncio.sleep(start_after)
    for route in ("metrics", "logs"):  # what a dashboard does first; timed apart, it is not polling
        await get(http, job_id, route, position, tally, HISTORY, etags)
    while time.perf_counter() < deadline:
        for route in ROUTES:
            await get(http, job_id, route, position, tally, route, etags)
        if think > 0:
            await asyncio.sleep(think)


async def get(http: Connection, job_id: str, route: str, position: dict[str, int], tally: Tally,
              tally_as: str, etags: dict[str, str] | None = None) -> None:
    """One request; its latency goes to `tally_as`, and what it returned moves `position` on."""
    url, params = {
        "job": (f"/v1/jobs/{job_id}", {}),
        "metrics": (f"/v1/jobs/{job_id}/metrics", {"since_step": position["metrics"]}),
        "logs": (f"/v1/jobs/{job_id}/logs", {"since": position["logs"]}),
    }[route]
    key = f"{url}?{params}"
    started = time.perf_counter()
    try:
        status, body, etag = await asyncio.wait_for(http.get(url, params, (etags or {}).get(key)), timeout=30.0)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ResponseError) as exc:
        tally.fail(tally_as, f"{type(exc).__name__}: {exc}")
        return
    took = time.perf_counter() - started
    if status == 304:  # unchanged since this URL's last answer: nothing moves
        tally.latencies[tally_as].append(took)
        tally.not_modified += 1
        return
    if status != 200:
        tally.fail(tally_as, f"HTTP {status}: {body[:200]!r}")
        return
    tally.latencies[tally_as].append(took)
    if etags is not None and etag:
        etags[key] = etag
    if route != "job":
        key = "step" if route == "metrics" else "seq"
        position[route] = max([position[route], *(int(item[key]) for item in json.loads(body)["data"])])


async def hammer(base_url: str, api_key: str, job_id: str, clients: int, duration: float, think: float,
                 ramp: float, conditional: bool = False, followers: int = 0) -> tuple[Tally, FollowTally]:
    """CLIENTS clients for DURATION seconds, FOLLOWERS of them following the stream and the others
    polling, each joining at a random moment in the first RAMP seconds (all at once with 0)."""
    tally, follow_tally = Tally(), FollowTally()
    headers = {"Authorization": f"Bearer {api_key}"}
    # One connection per client, as 100 separate dashboards or CLIs would have.
    connections = [Connection(base_url, headers) for _ in range(clients - followers)]
    try:
        deadline = time.perf_counter() + duration
        starts = random.Random(0).uniform
        await asyncio.gather(
            *(poll(c, job_id, deadline, think, starts(0, ramp), tally, {} if conditional else None)
              for c in connections),
            *(api_follow.follow(base_url, headers, job_id, deadline, starts(0, ramp), follow_tally)
              for _ in range(followers)),
        )
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return tally, follow_tally


@contextmanager
def py_spy(pid: int, seconds: float, out: Path | None) -> Iterator[None]:
    """Sample the server with py-spy during the load, when asked and installed (`pip install py-spy`)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if out is None or not Path(exe).exists():
        if out is not None:
            print("py-spy not found: no profile")
        yield
        return
    fmt = "speedscope" if out.suffix == ".json" else "raw" if out.suffix == ".txt" else "flamegraph"
    proc = subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(int(seconds) + 1), "-o", str(out),
                             "-f", fmt, "--nonblocking", "--threads"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(f"server profile ({fmt}): {out}")


def wait_for_steps(run_dir: Path, steps: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while len(train_steps(run_dir)) < steps:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the job made fewer than {steps} steps in {timeout} s")
        time.sleep(0.5)


def run(clients: int = 100, duration: float = 30.0, think: float = 1.0, quiet: float = 15.0,
        database_url: str | None = None, profile: Path | None = None, warm_steps: int = 3,
        ramp: float = 10.0, conditional: bool = False, followers: int = 0) -> LoadResult:
    """Start a service, train a long job on it, measure a quiet window, the load, a quiet window."""
    with tempfile.TemporaryDirectory(prefix="tuneyard-api-load-") as tmp:
        served = Served(Path(tmp) / "data", database_url)
        served.start()
        try:
            with served.client() as client:
                chats, _ = docstring_chats()
                data = write_jsonl(Path(tmp) / "chats.jsonl", chats * CHAT_COPIES)
                dataset = make_dataset(client, data)
                # Epochs of ~2600 steps, checkpointed every SAVE_STEPS (about once a minute here) as a
                # real job would be, not at the end of a tiny epoch every few seconds. It outlives
                # the windows and is cancelled.
                job = client.create_job(job_spec(dataset, epochs=10, save_steps=SAVE_STEPS))
                run_dir = served.data_dir / "runs" / job["id"]
                wait_for_steps(run_dir, warm_steps)  # past model loading and the first, slowest steps
                windows: dict[str, tuple[float, float]] = {}
                assert served.proc is not None
                server = psutil.Process(served.proc.pid)
                t0, quiet_before = time.time(), _cpu(server)
                time.sleep(quiet)
                windows["before load"] = (t0, time.time())
                t1 = time.time()
                server_before, client_before = _cpu(server), time.process_time()
                server_quiet = server_before - quiet_before
                with py_spy(served.proc.pid, duration, profile):
                    tally, follow_tally = asyncio.run(hammer(served.url, served.api_key(), job["id"], clients,
                                                             duration, think, ramp, conditional, followers))
                server_cpu, client_cpu = _cpu(server) - server_before, time.process_time() - client_before
                windows["during load"] = (t1, time.time())
                t2 = time.time()
                time.sleep(quiet)
                windows["after load"] = (t2, time.time())
                records = train_steps(run_dir)
                rates = {name: tokens_per_s(records, a, b) for name, (a, b) in windows.items()}
                client.cancel_job(job["id"])
        finally:
            served.stop()
    return LoadResult(clients, followers, duration, tally, follow_tally, rates, server_cpu, server_quiet, quiet,
                      client_cpu)


def _cpu(proc: psutil.Process) -> float:
    """CPU of the serve process and of its API processes (TUNEYARD_API_PROCESSES=N), never its runners."""
    api = [child for child in proc.children() if "tuneyard.api.child" in child.cmdline()]
    return sum(float(times.user + times.system) for times in (p.cpu_times() for p in (proc, *api)))


def report(result: LoadResult, label: str) -> None:
    modes = [f"{n} {what}" for n, what in ((result.pollers, "polling"), (result.followers, "following")) if n]
    print(f"\n{label}: {result.clients} clients ({', '.join(modes)}) for {result.duration_s:.0f} s · {load_average()}")
    cpu = result.server_cpu_s
    print(f"server CPU {cpu:.1f} s = {1000 * cpu / result.duration_s:.0f} ms a second of load "
          f"({1000 * result.server_cpu_quiet_s / result.quiet_s:.0f} ms a second before it, training alone); "
          f"load generator CPU {result.client_cpu_s:.1f} s" + ("; both modes in one run: each share below "
                                                                 "counts all of it" if len(modes) > 1 else ""))
    if result.pollers:
        report_polls(result)
    if result.followers:
        api_follow.report(result.follow, result.duration_s, cpu, result.client_cpu_s)
    for window, rate in result.tokens_per_s.items():
        shown = f"{rate[0]:.0f} tokens/s over {rate[1]} steps" if rate else "too few steps to say"
        print(f"training {window:<12} {shown}")
    for words, met in result.verdicts():
        print(f"target {words}: {'met' if met else 'NOT met'}")


def report_polls(result: LoadResult) -> None:
    tally = result.tally
    print(f"{'route':<10}{'requests':>10}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}")
    rows = [(r, tally.latencies[r], tally.errors[r]) for r in ROUTES]
    rows.append(("all", result.all_latencies(), sum(tally.errors[r] for r in ROUTES)))
    rows.append((HISTORY, tally.latencies[HISTORY], tally.errors[HISTORY]))
    for route, lat, errors in rows:
        if not lat:
            print(f"{route:<10}{errors:>10}{errors:>8}   no answered requests")
            continue
        print(f"{route:<10}{len(lat) + errors:>10}{errors:>8}{len(lat) / result.duration_s:>9.0f}"
              + percentile_cells(lat))
    print(f"({HISTORY}: each client's first reads of all metrics and logs so far, not in 'all' or the target)")
    answered = max(sum(len(v) for v in tally.latencies.values()), 1)
    print(f"server CPU {1000 * result.server_cpu_s / answered:.2f} ms a request; "
          f"load generator CPU {1000 * result.client_cpu_s / answered:.2f} ms a request")
    if tally.not_modified:
        print(f"{tally.not_modified} of the answers were 304 Not Modified (--conditional)")
    if tally.first_error:
        print(f"first error: {tally.first_error}")


def main(argv: list[str] | None = None) -> LoadResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--think", type=float, default=1.0, help="seconds each poller waits between rounds")
    parser.add_argument("--ramp", type=float, default=10.0,
                        help="clients join at random over this many seconds (10); 0: all at once")
    parser.add_argument("--quiet", type=float, default=15.0, help="seconds of training without load, before and after")
    parser.add_argument("--warm-steps", type=int, default=3, help="training steps to wait for before measuring")
    parser.add_argument("--database-url", default=None, help="a database of its own (default: SQLite in a temp dir)")
    parser.add_argument("--postgres", action="store_true", help="a fresh schema on the local PostgreSQL")
    parser.add_argument("--conditional", action="store_true",
                        help="pollers send back each URL's last ETag (If-None-Match), as a browser's cache would")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--followers", action="store_true",
                      help="every client follows the job's SSE stream for the whole load instead of polling")
    mode.add_argument("--mix", type=int, default=0, metavar="N",
                      help="N of the clients follow the stream, the others poll: both modes on one training job")
    parser.add_argument("--py-spy", type=Path, default=None, help="profile the server into this file (.svg/.json/.txt)")
    args = parser.parse_args(argv)
    _check(parser, args)
    followers = args.clients if args.followers else args.mix
    with ExitStack() as stack:
        url = args.database_url
        if args.postgres:
            from benchmarks.queue import DEFAULT_PG_URL, fresh_postgres

            url = stack.enter_context(fresh_postgres(os.environ.get("TUNEYARD_TEST_PG_URL", DEFAULT_PG_URL)))
        result = run(args.clients, args.duration, args.think, args.quiet, url, args.py_spy, args.warm_steps,
                     args.ramp, args.conditional, followers)
    report(result, "PostgreSQL" if url and url.startswith("postgres") else "SQLite")
    return result


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every bad value at once, each naming its option (parser.error exits with status 2)."""
    problems = [f"{name} {why}" for name, bad, why in (
        ("--clients", args.clients < 1, "must be at least 1"),
        ("--duration", args.duration <= 0, "must be more than 0 seconds"),
        ("--quiet", args.quiet <= 0, "must be more than 0 seconds (the training's quiet speed is read over it)"),
        ("--ramp", args.ramp < 0, "must be 0 (all at once) or more"),
        ("--think", args.think < 0, "must be 0 or more"),
        ("--mix", not 0 <= args.mix <= args.clients, f"must be between 0 and --clients ({args.clients})"),
    ) if bad]
    if problems:
        parser.error("; ".join(problems))


if __name__ == "__main__":
    main()
