"""The native API: tuneyard's own words under /v1, and the first dialect.

Its routes live in tuneyard.api.routes, one module per resource; its errors are the envelope
{"error": {code, message, details}}; its status names are the state machine's own.
"""

from __future__ import annotations

from fastapi import APIRouter

from tuneyard.api.dialects import statuses
from tuneyard.api.dialects.base import Dialect
from tuneyard.api.errors import render_envelope
from tuneyard.api.routes import (
    catalog,
    data,
    evaluations,
    exports,
    inference,
    job_outputs,
    job_timeline,
    jobs,
    keys,
    planning,
    system,
)
from tuneyard.api.routes import templates as template_routes
from tuneyard.api.routes import trajectories as trajectory_routes

NAME = "native"
PREFIX = "/v1"
UPLOAD_PATHS = ("/v1/files",)


def dialect() -> Dialect:
    router = APIRouter()
    # The polled reads (a job, its timeline) first: FastAPI tries a request's path on every route before
    # the one that takes it, two or three times over, and that was a quarter of a poll's event-loop CPU.
    # No route of the modules they now precede is one their templates would take instead.
    for module in (jobs, job_timeline, catalog, exports, evaluations, inference, data, job_outputs, keys, planning,
                   system, trajectory_routes, template_routes):
        router.include_router(module.router)
    return Dialect(name=NAME, prefixes=(PREFIX,), router=router, render_error=render_envelope,
                   status_names=statuses.NATIVE, upload_paths=UPLOAD_PATHS)
