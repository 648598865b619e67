"""Service health and figures: /v1/stats for a user (native API), /healthz and /metrics for operators.

The operators' two are the server's own, in no dialect: `operator_router`, mounted by the app.
/metrics is service-wide, so it takes an admin key (a Prometheus scraper sends it as
`Authorization: Bearer`); it names no organization unless `metrics_org_labels` is on.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from tuneyard.api.deps import ADMIN_RESPONSES, AdminCaller, Caller, Context
from tuneyard.api.schemas.common import ERROR_RESPONSES, ErrorEnvelope
from tuneyard.api.schemas.resources import StatsPublic
from tuneyard.services import stats
from tuneyard.services.errors import ServiceUnavailable
from tuneyard.store.observability import ping

router = APIRouter(responses=ERROR_RESPONSES)
operator_router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/stats", response_model=StatsPublic, tags=["stats"])
def get_stats(context: Context, caller: Caller) -> StatsPublic:
    """Your jobs by status, the queue depth, model and dataset counts, workers alive, and how the memory
    estimates held against your finished jobs."""
    return StatsPublic.of(stats.org_stats(context.db, context.settings, caller.org_id),
                          stats.memory_estimate_accuracy(context.db, caller.org_id))


@operator_router.get("/healthz", tags=["health"], responses={
    503: {"model": ErrorEnvelope, "description": "SERVICE_UNAVAILABLE: the database does not answer"}})
def healthz(context: Context) -> dict[str, str]:
    """200 when the database answers; 503 otherwise."""
    try:
        ping(context.db)
    except Exception as exc:  # any driver error means the same thing here: not ready
        raise ServiceUnavailable(f"the database does not answer: {type(exc).__name__}") from exc
    return {"status": "ok", "database": context.db.dialect}


@operator_router.get("/metrics", response_class=PlainTextResponse, tags=["health"], responses=ADMIN_RESPONSES)
def metrics(context: Context, _admin: AdminCaller) -> PlainTextResponse:
    """Prometheus text (admin key): queue depth, jobs by status, workers alive, claim latency, job
    durations; jobs by organization too when TUNEYARD_METRICS_ORG_LABELS is on."""
    body = stats.prometheus_text(context.db, context.settings)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")
