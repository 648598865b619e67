"""Trajectory pages: the list with its filters and a dataset build (with a preview count), one
trajectory's calls as a chat, and auto-training's settings with when it fired and what it made."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tuneyard.api.deps import ID_SHAPE, Context
from tuneyard.console.auth import CurrentViewer
from tuneyard.console.views import page
from tuneyard.services import auto_training, trajectories
from tuneyard.store.errors import NotFound

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50


@router.get("/trajectories", response_class=HTMLResponse)
def trajectories_page(
    request: Request, context: Context, viewer: CurrentViewer,
    task: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    source: Annotated[str | None, Query(max_length=255)] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> HTMLResponse:
    chosen = status if status in trajectories.STATUSES else None
    found = trajectories.list_page(context.db, viewer.principal.org_id, limit=PAGE_SIZE, offset=offset,
                                   task=task or None, status=chosen, source=source or None)
    return page(request, "trajectories.html", viewer, page=found, items=[trajectories.summary(t) for t in found.items],
                filters={"task": task or "", "status": chosen or "", "source": source or ""},
                statuses=trajectories.STATUSES, offset=offset, page_size=PAGE_SIZE)


@router.get("/trajectories/{trajectory_id}", response_class=HTMLResponse)
def trajectory_page(request: Request, context: Context, viewer: CurrentViewer, trajectory_id: str) -> HTMLResponse:
    try:
        row = trajectories.get(context.db, viewer.principal.org_id,
                               trajectory_id if ID_SHAPE.match(trajectory_id) else "-")
    except NotFound:
        return page(request, "not_found.html", viewer, 404, what=f"trajectory {trajectory_id}")
    return page(request, "trajectory_detail.html", viewer, trajectory=trajectories.detail(row))


@router.get("/auto-training", response_class=HTMLResponse)
def auto_training_page(request: Request, context: Context, viewer: CurrentViewer) -> HTMLResponse:
    org_id = viewer.principal.org_id
    return page(request, "auto_training.html", viewer, config=auto_training.get_config(context.db, org_id),
                runs=auto_training.history(context.db, org_id))
