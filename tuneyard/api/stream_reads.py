"""One read of a job's timeline for every open stream that wants the same part of it.

A change to a job wakes each of its open streams (`store/changes.py`), and each would read the job
and what follows its position: with a hundred viewers of one training job (a team's dashboards, the
console in several tabs, `--follow`s), every metric point cost a hundred reads of the same rows and a
hundred JSON encodings of the same items. Streams that are caught up all stand at the same position,
so the first of them to ask starts the read and the others, woken by the same change, join it: one
read and one encoding per change and position, however many streams wait there.

Joining is correct only if the read saw every change the joining stream was woken for. Its wake-up
takes a `mark()` as it reaches the event loop (`Wakeup`), after the commit that caused it, and the
stream joins only a read whose snapshot is newer than that mark: one whose thread has not yet begun
it, or began it after the mark (it takes its own mark, from the same counter, just before it opens
its transaction). A stream that reads unwoken (its first read, after it began watching; the
safety-net poll) marks the moment it reads. A stream that finds no such read (a change came
meanwhile, or it is the first) starts its own, which the next ones join. So a burst of newcomers (a
hundred dashboards opened at once) shares the reads still waiting for a thread: the busier the
server, the more of them share.

Reads are shared only within one event loop (one API process) and for one organization and
position, so a stream receives exactly what its own read would have returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import weakref
from dataclasses import dataclass

import anyio
from fastapi.sse import format_sse_event

from tuneyard.services import timeline
from tuneyard.services.path_display import PathDisplay
from tuneyard.settings import Settings
from tuneyard.store.engine import Database

Position = tuple[str, str, timeline.StreamCursor]
"""Whose stream (organization, job) and from where."""


@dataclass(frozen=True)
class SentItem:
    cursor: timeline.StreamCursor  # the position just after the item
    frame: bytes  # the SSE event as sent


@dataclass(frozen=True)
class SharedBatch:
    """A `timeline.StreamBatch` with its items encoded once, for every stream that waited for it."""

    status: str | None
    items: list[SentItem]
    shown: PathDisplay | None
    revision: int | None
    more: bool


@dataclass
class _Read:
    result: asyncio.Future[SharedBatch] | None = None
    snapshot: int | None = None
    """The mark its thread took just before opening its transaction; None until then."""

    def newer_than(self, mark: int) -> bool:
        # Read once: the thread may set it meanwhile, and either value seen is a true answer.
        snapshot = self.snapshot
        return snapshot is None or snapshot > mark


class StreamReads:
    """The reads in flight or just done, by position; one per API process (it lives in the app's context)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self.reads_started = 0  # every read this process made for its streams (tests count them)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopReads] = weakref.WeakKeyDictionary()
        self._marks = itertools.count(1)  # next() is atomic under the GIL: marks from any thread are ordered

    def mark(self) -> int:
        """A stream's mark, taken when its wake-up reaches the loop (or it reads unwoken): it will join
        only reads whose snapshot is newer."""
        return next(self._marks)

    async def batch(self, org_id: str, job_id: str, cursor: timeline.StreamCursor, shown: PathDisplay | None,
                    mark: int) -> SharedBatch:
        """The job's status and what follows `cursor`, from a read started after `mark`: this stream's own,
        or one it joins. `shown` is how this stream's job shows paths, if an earlier batch said."""
        here = self._here()
        position = (org_id, job_id, cursor)
        read = here.reads.get(position)
        if read is None or read.result is None or not read.newer_than(mark):
            self.reads_started += 1
            read = _Read()
            read.result = asyncio.ensure_future(self._read(read, position, shown))
            here.reads[position] = read
            read.result.add_done_callback(functools.partial(here.forget, position, read))
        # Shielded: a stream whose client left must not cancel the read others wait for.
        return await asyncio.shield(read.result)

    async def _read(self, read: _Read, position: Position, shown: PathDisplay | None) -> SharedBatch:
        org_id, job_id, cursor = position
        return await anyio.to_thread.run_sync(self._begin, read, org_id, job_id, cursor, shown)

    def _begin(self, read: _Read, org_id: str, job_id: str, cursor: timeline.StreamCursor,
               shown: PathDisplay | None) -> SharedBatch:
        read.snapshot = self.mark()  # before the transaction opens: its snapshot is newer than this
        return self._read_encoded(org_id, job_id, cursor, shown)

    def _read_encoded(self, org_id: str, job_id: str, cursor: timeline.StreamCursor,
                      shown: PathDisplay | None) -> SharedBatch:
        with self.db.read() as session:
            batch = timeline.stream_batch(session, self.settings, org_id, job_id, cursor, shown)
        items = [SentItem(item.cursor, encode(item.kind, item.cursor, item.data)) for item in batch.items]
        return SharedBatch(batch.status, items, batch.shown, batch.revision, batch.more)

    def _here(self) -> _LoopReads:
        loop = asyncio.get_running_loop()
        here = self._loops.get(loop)
        if here is None:
            here = self._loops[loop] = _LoopReads()
        return here


class _LoopReads:
    def __init__(self) -> None:
        self.reads: dict[Position, _Read] = {}

    def forget(self, position: Position, read: _Read, _done: object = None) -> None:
        # Once done, a read is joined no more: a stream that asks later was woken by a later change,
        # or is a newcomer, and reads for itself (and the others of its wave join that one).
        if self.reads.get(position) is read:
            del self.reads[position]


def encode(kind: str, cursor: timeline.StreamCursor, data: object) -> bytes:
    return format_sse_event(event=kind, id=cursor.encode(), data_str=json.dumps(data, separators=(",", ":")))


class Wakeup:
    """A stream's wake-up: set from any thread (a writer's, right after its commit; the follower's) and
    awaited on the stream's loop, with the mark its next read must be newer than. A wake-up naming a
    revision the stream has already read is dropped: the SQLite follower tells every commit's
    revisions, this process's own included, which woke the stream already."""

    def __init__(self, reads: StreamReads) -> None:
        self._reads = reads
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._read: int | None = None
        self._woken_at: int | None = None

    def set(self, revision: int | None = None) -> None:
        read = self._read
        if revision is not None and read is not None and revision <= read:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the stream and its reader are gone
            self._loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        # On the loop, after the commit that woke it: a read whose snapshot is taken from now on has seen it.
        self._woken_at = self._reads.mark()
        self._event.set()

    def take(self) -> int:
        """Clear the wake-up before a read (a change committed from now on sets it again) and return the
        mark that read must be newer than."""
        mark = self._woken_at if self._woken_at is not None else self._reads.mark()
        self._woken_at = None
        self._event.clear()
        return mark

    def read(self, revision: int | None) -> None:
        """The stream has read the job at `revision`."""
        self._read = revision

    async def wait(self, timeout: float) -> bool:
        """Until set (True), or `timeout` seconds (False)."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        return self._event.is_set()
