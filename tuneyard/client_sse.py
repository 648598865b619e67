"""The client's side of a job's SSE stream: the wire format to items, and a deadline kept while
reading it (keep-alive comments count as reads, so a quiet stream still notices the deadline)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

PAST_EVERY_ITEM = "999999999.999999999.999999999.999999999"
"""A stream position after any item a job will have: a stream resumed from it sends only its `end`
(what `TuneyardClient.wait` needs, without the job's history)."""


class StreamUnavailable(Exception):
    """The job's stream cannot be read here: the answer was not SSE, or it kept closing before its end."""


@dataclass(frozen=True)
class StreamItem:
    """One SSE item: `event` is event, metric, log or end; `id` resumes the stream after it."""

    event: str
    id: str | None
    data: Any


def read_timeout(deadline: float | None) -> float | None:
    """How long one read may wait for bytes: until the deadline (monotonic), or for ever."""
    return None if deadline is None else max(0.001, deadline - time.monotonic())


def sse_items(response: Any, deadline: float | None = None) -> Iterator[StreamItem]:
    """The items of an open stream's response (httpx's); StreamUnavailable when it is not SSE,
    TimeoutError once `deadline` passes."""
    kind = response.headers.get("content-type", "")
    if not kind.startswith("text/event-stream"):
        raise StreamUnavailable(f"the stream answered {kind or 'no content type'}, not text/event-stream")
    try:
        yield from parse_sse(_until(response.iter_lines(), deadline))
    except httpx.ReadTimeout:
        if deadline is None:
            raise
        # A read waits at most until the deadline (`read_timeout`): nothing came before it.
        raise TimeoutError("the job had not rested by the deadline") from None


def _until(lines: Iterator[str], deadline: float | None) -> Iterator[str]:
    for line in lines:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the job had not rested by the deadline")
        yield line


def parse_sse(lines: Iterator[str]) -> Iterator[StreamItem]:
    """SSE wire format to items; comments (keep-alive pings) are skipped."""
    event, item_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield StreamItem(event, item_id, json.loads("\n".join(data)))
            event, item_id, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "id":
            item_id = value
        elif name == "data":
            data.append(value)
