"""Dependencies: the app's context, the caller behind the bearer key, and a job loaded for them.

`OwnedJob` loads a job and authorizes it once: every route about one job takes it, so none can
forget the check, and another organization's job is a plain 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tuneyard.services import jobs
from tuneyard.services.errors import Unauthorized
from tuneyard.settings import Settings
from tuneyard.store import tenancy
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.tables import Job
from tuneyard.store.tenancy import Principal


@dataclass(frozen=True)
class AppContext:
    db: Database
    settings: Settings
    stream_poll_seconds: float = 0.5


async def get_context(request: Request) -> AppContext:
    # async because it never blocks: FastAPI runs a sync dependency on the threadpool, and that
    # hand-off (two cross-thread wake-ups) costs more than this lookup, on every request.
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer ty_...`")


def get_caller(
    context: Context, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized()
    principal = tenancy.authenticate(context.db, credentials.credentials)
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    return principal


Caller = Annotated[Principal, Depends(get_caller)]


# Every id we hand out (and every built-in model name) has this shape. Anything else names nothing,
# so it is a 404 before it reaches the database (PostgreSQL refuses NUL bytes in text, say).
ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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


def get_owned_job(job_id: str, context: Context, caller: Caller) -> Job:
    return jobs.get_job(context.db, caller.org_id, checked_id("job", job_id))


OwnedJob = Annotated[Job, Depends(get_owned_job)]
