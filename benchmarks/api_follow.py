"""SSE followers for benchmarks/api_load.py: clients that keep a job's stream open instead of polling.

Each follower opens GET /v1/jobs/{id}/stream at its start time and reads it until the load ends; a
stream that ends before then is opened again from the last `id:` it sent (Last-Event-ID), as a
browser's EventSource would. A stream's head, and a follower's first item, are waited for up to
30 s even past the load's end, as a poller's requests are: one that joins at the last moment is
measured, not failed. What it records:

- connect: seconds from opening the connection to the response's head, its first byte (with
  `--ramp 0` every follower connects at once: "all joining in the same second");
- first item: seconds from opening to the first item (the job's history comes first);
- delivery lag of each item written after the follower joined: its arrival here (wall clock, taken
  when its last byte has been read) minus the item's own time, which for a metric point or a log
  line is its `ts`, the runner's telemetry record's `ts` as the supervisor stored it, and for an
  event its `created_at`, when the store wrote it. So the lag is the whole path of a live item (the
  runner's write, the supervisor's read of telemetry.jsonl once a second, `telemetry_seconds`, so
  about 0.5 s on average by itself; the store's commit; the stream's wake-up, read and send; this
  client's read), on one clock: all of it runs on this machine. Items written before the follower
  joined are its backlog, counted but not lagged: their age says only how late it joined;
- spread of each delivery of a live item: its arrival here minus the item's first arrival at any
  follower (0 for that first one): the part of the lag that is the server fanning one item out to
  every open stream, without the supervisor's once-a-second read in it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

from benchmarks.lean_http import EventStream, ResponseError
from benchmarks.service_bench import percentile, percentile_cells
from tuneyard.client_sse import StreamItem

RETRY_S = 0.5  # wait before opening a stream again after a failure, as EventSource's retry would
ANSWER_S = 30.0  # as long as a poller waits for an answer (api_load.get)


@dataclass
class FollowTally:
    """What the followers saw, all of them together; times in seconds."""

    connects: list[float] = field(default_factory=list)  # one per stream opened, to its head
    first_items: list[float] = field(default_factory=list)  # one per stream opened, to its first item
    lags: list[float] = field(default_factory=list)  # one per live item delivered
    arrivals: dict[tuple[str, int], list[float]] = field(default_factory=dict)  # live item -> arrival times
    delivered: list[int] = field(default_factory=list)  # items each follower got, backlog and live
    backlog: int = 0  # items written before their follower joined
    cuts: int = 0  # streams that ended before the load did (each resumed from its last id)
    errors: int = 0
    first_error: str | None = None

    def fail(self, why: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or why

    def spreads(self) -> list[float]:
        return [t - min(times) for times in self.arrivals.values() for t in times]

    def target_met(self, target_ms: float) -> bool:
        """Every follower connected, with no error, and both the connect p99 and the fan-out's spread
        p99 are under the target (the lag holds the supervisor's once-a-second read: no target of its own)."""
        spreads = self.spreads()
        return (bool(self.connects) and self.errors == 0 and percentile(self.connects, 99) * 1000 < target_ms
                and (not spreads or percentile(spreads, 99) * 1000 < target_ms))


@dataclass
class _Follower:
    joined: float  # wall clock when it first opened its stream
    until: float  # the end of the load, on the event loop's clock
    last_id: str | None = None
    delivered: int = 0
    awaiting: str = "head"  # what the stream being read waits for: its head, its first item, the load's end

    async def read(self, stream: EventStream, job_id: str, tally: FollowTally) -> bool:
        """One stream, from `last_id` until the server ends it, or the load does (TimeoutError). Its
        head, and a follower's first item (the job's history), are waited for up to ANSWER_S even past
        the load's end, as a poller's requests are. True when it ended with `end`: the job rests, so
        there is nothing to resume."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self.awaiting = "head"
        async with asyncio.timeout(ANSWER_S) as limit:
            await stream.open(f"/v1/jobs/{job_id}/stream", self.last_id)
            tally.connects.append(time.perf_counter() - started)
            self.awaiting = "first item"
            if self.delivered:  # resumed: its history is behind it
                self.awaiting = "load's end"
                limit.reschedule(max(self.until, loop.time()))
            first = True
            async for item in stream.items():
                if first:
                    tally.first_items.append(time.perf_counter() - started)
                    first, self.awaiting = False, "load's end"
                    limit.reschedule(max(self.until, loop.time()))
                self.last_id = item.id or self.last_id
                if item.event == "end":
                    tally.fail(f"the stream ended during the load: the job is {item.data.get('status')}")
                    return True
                self.delivered += 1
                self._count(item, time.time(), tally)
        return False

    def _count(self, item: StreamItem, arrived: float, tally: FollowTally) -> None:
        key, written = _identity(item)
        if written < self.joined:
            tally.backlog += 1
            return
        tally.lags.append(arrived - written)
        tally.arrivals.setdefault(key, []).append(arrived)


def _identity(item: StreamItem) -> tuple[tuple[str, int], float]:
    """Which item this is, the same at every follower, and when it was written (wall clock)."""
    data = item.data
    if item.event == "metric":
        return (f"metric {data['kind']}", int(data["step"])), datetime.fromisoformat(data["ts"]).timestamp()
    written = data["created_at"] if item.event == "event" else data["ts"]
    return (item.event, int(data["seq"])), datetime.fromisoformat(written).timestamp()


async def follow(base_url: str, headers: dict[str, str], job_id: str, deadline: float, start_after: float,
                 tally: FollowTally) -> None:
    """One follower, from `start_after` seconds on until `deadline` (perf_counter)."""
    await asyncio.sleep(start_after)
    loop = asyncio.get_running_loop()
    follower = _Follower(time.time(), loop.time() + deadline - time.perf_counter())
    while True:
        stream = EventStream(base_url, headers)
        try:
            rested = await follower.read(stream, job_id, tally)
        except TimeoutError:  # caught before OSError, of which it is one
            if follower.awaiting != "load's end":
                tally.fail(f"no {follower.awaiting} from the stream in {ANSWER_S:.0f} s")
            break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ResponseError) as exc:
            tally.fail(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(RETRY_S)
            rested = False
        finally:
            await stream.close()
        if rested or loop.time() >= follower.until:
            break
        tally.cuts += 1
    tally.delivered.append(follower.delivered)


def report(tally: FollowTally, duration_s: float, server_cpu_s: float, client_cpu_s: float) -> None:
    """The followers' table, in the poll table's columns: a row per figure, its count where the poll
    table has requests, and the count a second of load."""
    print(f"{'follow':<12}{'count':>8}{'errors':>8}{'per s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}")
    rows = [("connect", tally.connects, tally.errors), ("first item", tally.first_items, 0),
            ("lag", tally.lags, 0), ("spread", tally.spreads(), 0)]
    for name, values, errors in rows:
        if not values:
            print(f"{name:<12}{0:>8}{errors:>8}   none")
            continue
        print(f"{name:<12}{len(values):>8}{errors:>8}{len(values) / duration_s:>9.1f}" + percentile_cells(values))
    print("(connect: to the response's first byte; lag: an item's own time to its arrival, for items written "
          "after the follower joined; spread: its arrival minus its first arrival at any follower)")
    delivered = sorted(tally.delivered) or [0]
    total = sum(delivered)
    print(f"items a follower got: min {delivered[0]}, median {delivered[len(delivered) // 2]}, max {delivered[-1]} "
          f"({total - tally.backlog} live + {tally.backlog} backlog in all); "
          f"{tally.cuts} streams ended early and were resumed")
    print(f"server CPU {1000 * server_cpu_s / max(total, 1):.2f} ms an item delivered; "
          f"load generator CPU {1000 * client_cpu_s / max(total, 1):.2f} ms an item")
    if tally.first_error:
        print(f"first error: {tally.first_error}")
