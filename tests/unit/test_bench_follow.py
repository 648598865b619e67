"""api_load's followers read SSE as a browser would: items split across chunks, keep-alive comments
skipped, and a stream the server ends early resumed from the last id it sent.

Against a scripted HTTP server on a real socket: a real `serve` never ends a stream of a running job
early, so this is the one place the resume path runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

from benchmarks.api_follow import FollowTally, follow

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _event(seq: int, written: datetime) -> bytes:
    data = {"seq": seq, "type": "note", "message": "", "data": {}, "created_at": written.isoformat()}
    return f"event: event\ndata: {json.dumps(data)}\nid: {seq}.0.-1.-1\n\n".encode()


def _chunk(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n"


def test_a_follower_resumes_a_cut_stream_from_its_last_id() -> None:
    asked: list[str | None] = []  # each request's Last-Event-ID

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        resume = [line.split(": ", 1)[1] for line in head.split("\r\n") if line.startswith("Last-Event-ID")]
        asked.append(resume[0] if resume else None)
        now = datetime.now(UTC)
        if len(asked) == 1:  # the history (an item written long ago), a live item split in two, then the end
            live = _event(2, now + timedelta(milliseconds=50))
            writer.write(HEAD + _chunk(_event(1, now - timedelta(hours=1))) + _chunk(b": ping\n\n")
                         + _chunk(live[:20]))
            await asyncio.sleep(0.1)
            writer.write(_chunk(live[20:]) + b"0\r\n\r\n")
        else:
            writer.write(HEAD + _chunk(_event(3, now)))
        await writer.drain()
        await reader.read()  # until the follower hangs up
        writer.close()
        await writer.wait_closed()

    async def scenario() -> FollowTally:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tally = FollowTally()
        async with server:
            await follow(f"http://127.0.0.1:{port}", {}, "job", time.perf_counter() + 0.5, 0.0, tally)
        return tally

    tally = asyncio.run(scenario())
    assert asked == [None, "2.0.-1.-1"]  # resumed after the last item, not from the start
    assert tally.errors == 0, tally.first_error
    assert (tally.cuts, tally.delivered, tally.backlog) == (1, [3], 1)
    assert len(tally.connects) == len(tally.first_items) == 2
    assert len(tally.lags) == 2 and all(-0.1 < lag < 0.5 for lag in tally.lags)
    assert sorted(tally.arrivals) == [("event", 2), ("event", 3)]
