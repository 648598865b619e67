"""Polls of a job answered beside the app, from answers it gave before: the lean path of the hot reads.

A hundred clients polling a training job ask the same few questions every second: the job
(`GET /v1/jobs/{id}`), its metric points since the last step they saw (`…/metrics?since_step=N`) and its
log lines since the last one (`…/logs?since=N`). Through the app each poll cost about 2.5 ms of server
CPU, most of it routing, dependency solving, an ORM session and rendering, the same for every client.

These answers are conditional (`api/conditional.py`): an answer's ETag names the job's revision, its
id and the request's path and query, and the app answers 304 to a client that sends it back, on the
promise that the same ETag means the same answer. `HotReads` keeps that promise across clients: it
keeps the app's 200 answers to these three routes by their ETag, and for each poll it reads only what
decides the ETag (one statement on a plain connection: the key is live, the job is its organization's,
the job's revision and status, `store.tenancy.job_revision_inline`), then answers 304 when the client names
that ETag, the kept answer when it has one, and otherwise lets the app answer (and keeps that answer).

The job's SSE stream (`…/stream`) is opened here too once the same read has authorized it: the
route's own answer (`job_timeline.event_stream`) without FastAPI's routing and dependency solving,
which was most of what a hundred followers opening at once waited for.

Everything it cannot decide the app's way goes to the app untouched: another method or path, a request
without a bearer key (single-user mode; the console's cookie has become one by then), a database the
read cannot be made on the event loop for (SQLite in memory), with a body, a key or job the read does not
find (the app says 401 or 404, or finds a job by another id), a queued job (its answer also depends on
the live workers: `services.jobs.waiting_reason`), a stream's `Last-Event-ID` the route refuses, an
answer that is not a 200 with an ETag (errors, 422s) and a database error (the app renders it in its
words).

Only the console's cookie → bearer layer is outside it, and what it keeps is the answer as the layers
inside it sent it: a middleware added later that shapes answers per request (CORS, compression) must go
outside it too, or a kept answer would carry one client's shaping to the next.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneyard.api import conditional
from tuneyard.api.deps import AppContext
from tuneyard.api.routes import job_timeline
from tuneyard.services import timeline
from tuneyard.store import tenancy
from tuneyard.store.engine import Database
from tuneyard.store.inline_reads import InlineReadBusy
from tuneyard.store.status import JobStatus

HOT_PATH = re.compile(r"/v1/jobs/(?P<job_id>[^/]+)(?P<part>/metrics|/logs|/stream)?")
"""The polled routes of the native dialect (the job, its metric points, its log lines) and its stream."""
STREAM = "/stream"
CAPACITY_BYTES = 32 * 1024 * 1024
"""The kept answers' bodies together; the least recently answered go first."""
LARGEST_KEPT_BYTES = 4 * 1024 * 1024
"""A bigger answer (a first read of a long run's metrics) is not kept: few clients share one."""
NOT_MODIFIED_HEADERS = (b"etag", b"cache-control")
"""What the app's 304 carries (`conditional.Conditional.response`), in its order."""


@dataclass(frozen=True)
class HotRequest:
    """A poll this path may answer: its key, its job's native id, and what names its answer."""

    key: str
    job_id: str
    part: str
    """"" for the job itself (whose answer depends on the live workers while queued), else the route's."""
    representation: str
    """As `deps.JobReader` names it: path and query, and nothing else (`varies` is empty for these)."""
    if_none_match: str | None
    last_event_id: str | None


@dataclass(frozen=True)
class KeptAnswer:
    org_id: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


class AnswerCache:
    """The app's answers by ETag, bounded in bytes, least recently used first out. Used from the event
    loop only, so it needs no lock."""

    def __init__(self, capacity_bytes: int = CAPACITY_BYTES) -> None:
        self.capacity_bytes = capacity_bytes
        self._answers: OrderedDict[str, KeptAnswer] = OrderedDict()
        self._bytes = 0

    def get(self, etag: str) -> KeptAnswer | None:
        answer = self._answers.get(etag)
        if answer is not None:
            self._answers.move_to_end(etag)
        return answer

    def put(self, etag: str, answer: KeptAnswer) -> None:
        if len(answer.body) > min(LARGEST_KEPT_BYTES, self.capacity_bytes) or etag in self._answers:
            return
        self._answers[etag] = answer
        self._bytes += len(answer.body)
        while self._bytes > self.capacity_bytes:
            _, oldest = self._answers.popitem(last=False)
            self._bytes -= len(oldest.body)

    def __len__(self) -> int:
        return len(self._answers)


@dataclass
class Coming:
    """An answer the app is rendering now, for the polls that want the same one meanwhile."""

    answered: anyio.Event = field(default_factory=anyio.Event)
    answer: KeptAnswer | None = None


class HotReads:
    """ASGI middleware, outermost: answers the polls it can decide as the app would (module docstring)."""

    def __init__(self, app: ASGIApp, context: AppContext, *, capacity_bytes: int = CAPACITY_BYTES) -> None:
        self.app = app
        self.context = context
        self.db: Database = context.db
        self.answers = AnswerCache(capacity_bytes)
        self._coming: dict[str, Coming] = {}
        """By ETag, the answers the app is rendering: a change makes every poller miss at once, and under
        load they all went to the app while its first answer was still being rendered, which loaded
        the server more and made more of them miss (a quarter of the polls by the end of 20 s)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = hot_request(scope) if self.db.inline.available else None
        if request is None:
            await self.app(scope, receive, send)
            return
        try:  # on the loop, never blocking it (store/inline_reads.py)
            found = await tenancy.job_revision_inline(self.db, request.key, request.job_id)
        except InlineReadBusy:
            found = None  # the app reads again (waiting where it must) and says what went wrong in its words
        if found is None or (request.part == "" and found.status == JobStatus.QUEUED.value):
            await self.app(scope, receive, send)
            return
        if request.part == STREAM:
            # What the route answers once its dependencies are solved, without their solving: a hundred
            # followers opening at once waited ~0.1 s for their first byte, most of it FastAPI's.
            cursor = timeline.StreamCursor.decode(request.last_event_id)
            await job_timeline.event_stream(self.context, found.org_id, request.job_id, cursor)(scope, receive, send)
            return
        etag = conditional.job_etag(found.revision, request.job_id, request.representation)
        if conditional.matches(request.if_none_match, etag):
            headers = list(zip(NOT_MODIFIED_HEADERS, (etag.encode("latin-1"), conditional.CACHE_CONTROL.encode()),
                               strict=True))
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        kept, waited = self.answers.get(etag), False
        if kept is None and (coming := self._coming.get(etag)) is not None:
            await coming.answered.wait()  # another poll of the same answer is with the app now
            kept, waited = coming.answer, True
        if kept is not None and kept.org_id == found.org_id:
            await send({"type": "http.response.start", "status": 200, "headers": kept.headers})
            await send({"type": "http.response.body", "body": kept.body})
            return
        if waited:  # the app's answer was not one to keep (or had a newer tag): it answers this one too
            await self.app(scope, receive, send)
            return
        coming = self._coming[etag] = Coming()
        try:
            await self.app(scope, receive, self._keeping(send, found.org_id))
        finally:
            del self._coming[etag]
            coming.answer = self.answers.get(etag)  # None when the app's tag was newer, or not kept
            coming.answered.set()

    def _keeping(self, send: Send, org_id: str) -> Send:
        """`send`, keeping a 200 answer that carries an ETag once its whole body has passed."""
        start: Message | None = None
        parts: list[bytes] = []
        size = 0

        async def keeping(message: Message) -> None:
            nonlocal start, size
            if message["type"] == "http.response.start":
                start = message if message["status"] == 200 else None
            elif message["type"] == "http.response.body" and start is not None:
                body = message.get("body", b"")
                size += len(body)
                if size > LARGEST_KEPT_BYTES:
                    start, parts[:] = None, []
                else:
                    parts.append(body)
                    if not message.get("more_body", False):
                        self._keep(start, b"".join(parts), org_id)
            await send(message)

        return keeping

    def _keep(self, start: Message, body: bytes, org_id: str) -> None:
        headers: list[tuple[bytes, bytes]] = list(start.get("headers", []))
        etag = next((value for name, value in headers if name.lower() == b"etag"), None)
        if etag is not None:
            self.answers.put(etag.decode("latin-1"), KeptAnswer(org_id, headers, body))


def hot_request(scope: Scope) -> HotRequest | None:
    """The poll `scope` is, when this path may answer it; None for everything the app must see."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    matched = HOT_PATH.fullmatch(scope["path"])
    if matched is None:
        return None
    authorization = if_none_match = last_event_id = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = authorization if authorization is not None else value.decode("latin-1")
        elif name == b"if-none-match":
            if_none_match = if_none_match if if_none_match is not None else value.decode("latin-1")
        elif name == b"last-event-id":
            last_event_id = last_event_id if last_event_id is not None else value.decode("latin-1")
        elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return None  # a GET with a body: the app's limits and timeouts decide what becomes of it
    if authorization is None:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()  # as FastAPI's HTTPBearer reads it
    if scheme.lower() != "bearer" or not key:
        return None
    part = matched["part"] or ""
    if part == STREAM and last_event_id is not None and not job_timeline.stream_position(last_event_id):
        return None  # the app's 422 names the header
    return HotRequest(key, matched["job_id"], part, f"{scope['path']}?{scope['query_string'].decode('latin-1')}\0",
                      if_none_match, last_event_id)
