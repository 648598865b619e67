"""/v1/estimate (what a job would need, take and cost) and /v1/recommend (what to set), before a job is queued."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from tuneyard.api.deps import Caller, Context
from tuneyard.api.routes.jobs import JobBody
from tuneyard.api.schemas.common import BODY_RESPONSES, ERROR_RESPONSES
from tuneyard.api.schemas.job_create import job_request
from tuneyard.services import estimates, recommendations
from tuneyard.services.recommendations import RecommendRequest

router = APIRouter(tags=["planning"], responses=ERROR_RESPONSES)


@router.post("/v1/estimate", responses=BODY_RESPONSES)
def estimate_job(
    body: JobBody, context: Context, caller: Caller,
    device: Annotated[Literal["cpu", "cuda"] | None, Query(
        description="The device kind to estimate for; by default the one the newest finished job ran on.")] = None,
) -> dict[str, Any]:
    """Peak memory by component, time and cost of the job this body would submit, from the base model's
    config.json and the workers' measured throughput. Checked as a submission is (422 with every
    problem); nothing is queued or stored."""
    return estimates.estimate_job(context.db, context.settings, caller.org_id, job_request(body), device)


@router.post("/v1/recommend", responses=BODY_RESPONSES)
def recommend(body: RecommendRequest, context: Context, caller: Caller) -> dict[str, Any]:
    """Recommended settings and a window for each, from a base model and a dataset (or their sizes:
    `params`, `dataset_tokens`, `dataset_bytes`), with notes saying why. Fusion's /training/recommend."""
    return recommendations.recommend_for(context.db, context.settings, caller.org_id, body)
