"""Dependencies: the app's context, the caller behind the bearer key, and a job loaded for them.

Roles are decided here and nowhere else: `Caller` is any valid key of an organization (a member
does jobs and data), `AdminCaller` is an admin key (keys, base-model registration, quotas,
/metrics); a member key on an admin route is a 403 FORBIDDEN. A route takes one of the two, and
tests/integration/test_api_roles.py holds every operation of the OpenAPI document to its role.

`OwnedJob` and `JobRead` load a job and authorize it once: every route about one job takes one of
them, so none can forget the check, and another organization's job is a plain 404. Each does the
key check, the job load (those two in one statement: `tenancy.principal_and_job`) and (for `JobRead`)
the route's own query in one read transaction on one trip to the thread pool: under a hundred
pollers the hand-offs between the event loop and the threads, not the queries, were most of a
request's cost, which is also why every dependency before that trip is async. `JobRead` is solved
from the path's id and the bearer scheme alone (the app's context read off the request, and its
settings carried for the route): FastAPI's solving of each dependency costs a poll more than its body.
`ListRead` does the same for a page of jobs (`GET /v1/jobs`): key, validator and page in one trip.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from tuneyard.api import conditional
from tuneyard.api.conditional import Conditional
from tuneyard.api.schemas.common import ErrorEnvelope
from tuneyard.api.stream_reads import StreamReads
from tuneyard.services import jobs as job_lists
from tuneyard.services.admin import ADMIN_KEY_FILE
from tuneyard.services.errors import Forbidden, Unauthorized
from tuneyard.settings import Settings
from tuneyard.spec.text import ID_PATTERN
from tuneyard.store import jobs, tenancy
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.jobs import JobQuery
from tuneyard.store.tables import Job
from tuneyard.store.tenancy import Principal

T = TypeVar("T")


@dataclass(frozen=True)
class AppContext:
    db: Database
    settings: Settings
    stream_poll_seconds: float = 30.0
    """How often an open stream reads its job with no notice of a change: a safety net (api/app.py)."""
    stream_reads: StreamReads = field(init=False, repr=False, compare=False)
    """The reads this process's streams share (api/stream_reads.py)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "stream_reads", StreamReads(self.db, self.settings))


async def get_context(request: Request) -> AppContext:
    # async because it never blocks: FastAPI runs a sync dependency on the threadpool, and that
    # hand-off (two cross-thread wake-ups) costs more than this lookup, on every request.
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer ty_...`")


async def _credentials(context: Context,
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                       ) -> HTTPAuthorizationCredentials | None:
    """The request's key; in single-user mode (`auth: none`, loopback only: Settings) a request
    without one acts as the local admin, whose key `serve` keeps in DATA_DIR/admin.key."""
    # async, as get_context: a sync dependency costs every request a hand-off to the threadpool and
    # back, and only single-user mode's read of the key file needs a thread.
    return await _or_local_admin(context, credentials)


async def _or_local_admin(context: AppContext, credentials: HTTPAuthorizationCredentials | None
                          ) -> HTTPAuthorizationCredentials | None:
    if credentials is not None or context.settings.auth != "none":
        return credentials
    key = await anyio.to_thread.run_sync(_admin_key, context.settings)
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)


def _admin_key(settings: Settings) -> str:
    try:
        return (settings.data_dir / ADMIN_KEY_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        raise Unauthorized("single-user mode, but the data folder has no admin.key: run `tuneyard serve` "
                           "on it once, or send a key") from None


def _bearer_key(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthorized()
    return credentials.credentials


def _principal(session: Session, key: str) -> Principal:
    principal = tenancy.principal_for(session, key)
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    return principal


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_credentials)]


def get_caller(context: Context, credentials: Bearer) -> Principal:
    key = _bearer_key(credentials)
    with context.db.read() as session:
        return _principal(session, key)


Caller = Annotated[Principal, Depends(get_caller)]


def get_admin(caller: Caller) -> Principal:
    if not caller.is_admin:
        raise Forbidden()
    return caller


AdminCaller = Annotated[Principal, Depends(get_admin)]
"""An admin key of its organization; the route's decorator also takes `responses=ADMIN_RESPONSES`."""

ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorEnvelope, "description": "FORBIDDEN: the key is a member key; this needs an admin key"},
}


# Every id we hand out (and every built-in model name) has this shape. Anything else names nothing,
# so it is a 404 before it reaches the database (PostgreSQL refuses NUL bytes in text, say).
ID_SHAPE = re.compile(ID_PATTERN)


def checked_id(kind: str, value: str) -> str:
    if not ID_SHAPE.match(value):
        raise NotFound(kind, value[:64].encode("unicode_escape").decode())
    return value


def _dataset_id(dataset_id: str, _caller: Caller) -> str:  # the key is checked first
    return checked_id("dataset", dataset_id)


def _file_id(file_id: str, _caller: Caller) -> str:  # the key is checked first
    return checked_id("file", file_id)


def _model_id(model_id: str, _caller: Caller) -> str:  # the key is checked first
    return checked_id("model", model_id)


DatasetId = Annotated[str, Depends(_dataset_id)]
FileId = Annotated[str, Depends(_file_id)]
ModelId = Annotated[str, Depends(_model_id)]


JobFinder = Callable[[Session, str, str], Job]
"""How a route finds the organization's job by an id that is not native: (session, org_id, job_id) → the
job, NotFound for none (or another organization's)."""


def _by_id_or_uuid(session: Session, org_id: str, job_id: str) -> Job:
    # A UUID (store.jobs.owned_job takes either), else a 404 with the id's reason.
    return jobs.owned_job(session, org_id, checked_id("job", job_id))


def _owned_job(session: Session, key: str, job_id: str, find: JobFinder = _by_id_or_uuid) -> Job:
    # The key is judged first (no id is judged for a stranger), in the same statement as the job's load.
    principal, job = tenancy.principal_and_job(session, key, job_id if ID_SHAPE.match(job_id) else None)
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    if job is not None:
        return job
    return find(session, principal.org_id, job_id)


def get_owned_job(job_id: str, context: Context, credentials: Bearer) -> Job:
    key = _bearer_key(credentials)
    with context.db.read() as session:
        return _owned_job(session, key, job_id)


OwnedJob = Annotated[Job, Depends(get_owned_job)]


@dataclass(frozen=True)
class JobReader:
    """A read about one of the caller's jobs: `await read(query)` runs `query(session, job)` after the
    key check and the job load, in the same transaction and the same worker thread.

    `await read.unless_unchanged(query)` is the same read made conditional (`api/conditional.py`):
    when the request's `If-None-Match` names the answer's ETag, `query` is not run at all."""

    db: Database
    settings: Settings
    key: str
    job_id: str
    representation: str = ""
    """What the answer depends on beside the job's row: the request's path and query."""
    if_none_match: str | None = None
    find: JobFinder = _by_id_or_uuid
    """How a job that is not found by its native id is looked for (a dialect's own ids: `finding`)."""

    def finding(self, find: JobFinder) -> JobReader:
        """The same read, finding a job not named by its native id with `find` (Archetype's ftj- ids)."""
        return replace(self, find=find)

    async def __call__(self, query: Callable[[Session, Job], T]) -> T:
        return await anyio.to_thread.run_sync(self._read, query)

    def _read(self, query: Callable[[Session, Job], T]) -> T:
        with self.db.read() as session:
            return query(session, _owned_job(session, self.key, self.job_id, self.find))

    async def unless_unchanged(self, query: Callable[[Session, Job], T],
                               varies: Callable[[Session, Job], str] | None = None) -> Conditional[T]:
        """`varies(session, job)`, when given, names what else the answer depends on (read before
        deciding, so it must be cheap: never the telemetry tables)."""
        return await anyio.to_thread.run_sync(self._read_unless_unchanged, query, varies)

    def _read_unless_unchanged(self, query: Callable[[Session, Job], T],
                               varies: Callable[[Session, Job], str] | None) -> Conditional[T]:
        with self.db.read() as session:
            job = _owned_job(session, self.key, self.job_id, self.find)
            also = varies(session, job) if varies is not None else ""
            etag = conditional.job_etag(job.revision, job.id, f"{self.representation}\0{also}")
            if conditional.matches(self.if_none_match, etag):
                return Conditional(etag, unchanged=True)
            return Conditional(etag, query(session, job))


async def get_job_reader(job_id: str, request: Request,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> JobReader:
    # What every poll runs: FastAPI solves only the path's id and the bearer scheme (which documents the
    # route's security); the context is read off the app here rather than as two more dependencies, and
    # the representation from the scope rather than a parsed URL. That solving was a quarter of a poll's
    # event-loop CPU.
    context: AppContext = request.app.state.context
    key = _bearer_key(await _or_local_admin(context, credentials))
    scope = request.scope
    return JobReader(context.db, context.settings, key, job_id,
                     f"{scope['path']}?{scope['query_string'].decode('latin-1')}", request.headers.get("if-none-match"))


JobRead = Annotated[JobReader, Depends(get_job_reader)]


@dataclass(frozen=True)
class ListReader:
    """A conditional read of a page of the caller's jobs (`conditional.listing`) made as `JobReader`
    makes a job's: the key check, the page's validator and, only when the client lacks the answer, the
    page itself, in one read transaction on one trip to the thread pool."""

    db: Database
    settings: Settings
    key: str
    request: Request

    async def unless_unchanged(self, query_of: Callable[[Principal], JobQuery],
                               render: Callable[[Session, JobQuery], T]) -> Conditional[T]:
        """`query_of(caller)` names the page (raising, after the key check, for a request that names
        none); `render(session, query)` runs only when `If-None-Match` does not name its ETag."""
        return await anyio.to_thread.run_sync(self._read, query_of, render)

    def _read(self, query_of: Callable[[Principal], JobQuery], render: Callable[[Session, JobQuery], T]
              ) -> Conditional[T]:
        with self.db.read() as session:
            query = query_of(_principal(session, self.key))
            state = job_lists.list_state_in(session, self.settings, query)
            return conditional.listing(self.request, query.org_id, state, lambda: render(session, query))


async def get_list_reader(request: Request,
                          credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                          ) -> ListReader:
    # As get_job_reader: only the bearer scheme is solved by FastAPI, the rest read off the request.
    context: AppContext = request.app.state.context
    return ListReader(context.db, context.settings, _bearer_key(await _or_local_admin(context, credentials)), request)


ListRead = Annotated[ListReader, Depends(get_list_reader)]
