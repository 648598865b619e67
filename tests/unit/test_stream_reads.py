"""Streams share a read of their job only when its snapshot is newer than their wake-up: it began after
it, or has not begun (api/stream_reads.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import pytest

from tuneyard.api.stream_reads import SharedBatch, StreamReads
from tuneyard.services.timeline import StreamCursor

HERE = ("org", "job", StreamCursor())


class GatedReads(StreamReads):
    """Reads that wait for the test to let them finish, each answering its own number as the revision."""

    def __init__(self) -> None:
        super().__init__(db=None, settings=None)  # type: ignore[arg-type]  # never read: _read_encoded is ours
        self.gates: list[threading.Event] = []

    def _read_encoded(self, *_args: Any) -> SharedBatch:
        gate = threading.Event()
        self.gates.append(gate)
        number = len(self.gates)
        assert gate.wait(10)
        return SharedBatch("running", [], None, number, more=False)


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


def test_streams_woken_by_one_change_share_its_read_and_later_ones_do_not() -> None:
    async def scenario() -> None:
        reads = GatedReads()
        woken_together = reads.mark()
        first = asyncio.ensure_future(reads.batch(*HERE, None, woken_together))
        second = asyncio.ensure_future(reads.batch(*HERE, None, woken_together))
        await until(lambda: len(reads.gates) == 1)
        # A stream woken by a change committed after the first read began may not take that read.
        woken_later = reads.mark()
        third = asyncio.ensure_future(reads.batch(*HERE, None, woken_later))
        # Another position (a stream that is behind) never shares one.
        behind = asyncio.ensure_future(reads.batch("org", "job", StreamCursor(log=3), None, woken_together))
        await until(lambda: len(reads.gates) == 3)
        first.cancel()  # its client left: the read it started still serves the one that joined it
        for gate in reads.gates:
            gate.set()
        assert (await second).revision == 1
        assert {(await third).revision, (await behind).revision} == {2, 3}
        assert reads.reads_started == 3
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(scenario())


def test_a_finished_read_is_not_joined() -> None:
    async def scenario() -> None:
        reads = GatedReads()
        mark = reads.mark()
        done = asyncio.ensure_future(reads.batch(*HERE, None, mark))
        await until(lambda: len(reads.gates) == 1)
        reads.gates[0].set()
        assert (await done).revision == 1
        late = asyncio.ensure_future(reads.batch(*HERE, None, mark))
        await until(lambda: len(reads.gates) == 2)
        reads.gates[1].set()
        assert (await late).revision == 2

    asyncio.run(scenario())


def test_a_read_still_waiting_for_a_thread_is_joined_by_streams_woken_after_it_was_asked_for() -> None:
    # Its snapshot will be taken when a thread begins it, after their wake-ups: a burst of newcomers shares it.
    async def scenario() -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1
        reads = GatedReads()
        elsewhere = asyncio.ensure_future(reads.batch("org", "job", StreamCursor(log=3), None, reads.mark()))
        await until(lambda: len(reads.gates) == 1)  # the one thread is taken
        first = asyncio.ensure_future(reads.batch(*HERE, None, reads.mark()))
        await asyncio.sleep(0.02)
        newcomers = [asyncio.ensure_future(reads.batch(*HERE, None, reads.mark())) for _ in range(5)]
        await asyncio.sleep(0.02)
        reads.gates[0].set()
        await until(lambda: len(reads.gates) == 2)
        reads.gates[1].set()
        assert {(await read).revision for read in (first, *newcomers)} == {2}
        assert (await elsewhere).revision == 1 and reads.reads_started == 2

    asyncio.run(scenario())
