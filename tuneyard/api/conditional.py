"""Conditional reads of a job: a weak ETag from the job's revision, and 304 while the client has it.

A job's `revision` (tuneyard.store.changes) is bumped by every write that changes what a read of the
job, its metrics or its logs shows, so the revision, the job and the request's path and query name
one answer: the ETag is that revision plus a digest of the rest (and of the server's version, so an
upgrade that renders differently never answers 304 to what an older one sent). A poller that sends
the ETag back in `If-None-Match` gets `304 Not Modified`, decided from the job's row alone, without
the telemetry tables being read or anything rendered. The key check and the job's load come first, as
for any read: another organization's job is a 404 whatever the client sends, never a 304.

A list of jobs is conditional the same way (`listing`): its page is named by its jobs' ids and revisions
in order and whether more follow, read by the list's own query with only those columns
(`store.jobs.JobQuery`, `services.jobs.list_state`), with the request, the caller's organization and
the server's version; a 304 reads no job's row beyond those columns and renders nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Generic, TypeVar

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from tuneyard import __version__

T = TypeVar("T")

CACHE_CONTROL = "private, no-cache"
"""Caches may keep the answer (it is one caller's) but must ask again each time: it changes as the job runs."""


def job_etag(revision: int, job_id: str, representation: str) -> str:
    """The weak ETag of one answer about a job at `revision`; `representation` names the answer
    (the request's path and query, and anything else it depends on beside the job's row)."""
    digest = blake2b(f"{__version__}\0{job_id}\0{representation}".encode(), digest_size=8).hexdigest()
    return f'W/"{revision}-{digest}"'


def list_etag(org_id: str, representation: str, state: str) -> str:
    """The weak ETag of a list's answer: `state` names its jobs as `services.jobs.list_state` reads them."""
    digest = blake2b(f"{__version__}\0{org_id}\0{representation}\0{state}".encode(), digest_size=16).hexdigest()
    return f'W/"l-{digest}"'


def requested(request: Request) -> str:
    """The request's path and query: what names one answer among a route's."""
    return f"{request.scope['path']}?{request.scope['query_string'].decode('latin-1')}"


def listing(request: Request, org_id: str, state: str, render: Callable[[], T]) -> Conditional[T]:
    """A list's answer unless the client has it: `render()` runs only when `If-None-Match` does not
    name the ETag of `state`. Read `state` before what `render` reads, so that a change between the two
    makes the answer newer than its tag (the next poll reads it again), never older."""
    etag = list_etag(org_id, requested(request), state)
    if matches(request.headers.get("if-none-match"), etag):
        return Conditional(etag, unchanged=True)
    return Conditional(etag, render())


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names `etag`, by the weak comparison a GET uses (RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    wanted = _opaque(etag)
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or _opaque(candidate) == wanted:
            return True
    return False


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


@dataclass(frozen=True)
class Conditional(Generic[T]):
    """A conditional read's outcome: the answer's ETag, and its value unless the client has it."""

    etag: str
    value: T | None = None
    unchanged: bool = False

    def response(self, render: Callable[[T], Response]) -> Response:
        """304 without a body when unchanged, else `render(value)`; both carry the ETag."""
        headers = {"ETag": self.etag, "Cache-Control": CACHE_CONTROL}
        if self.unchanged:
            return Response(status_code=304, headers=headers)
        assert self.value is not None
        answer = render(self.value)
        answer.headers.update(headers)
        return answer


def json_answer(content: object) -> Response:
    """A dialect's plain JSON answer, as FastAPI would render the route's return value."""
    return JSONResponse(content)
