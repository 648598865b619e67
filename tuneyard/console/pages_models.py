"""A trained model's page: its facts, its exports, its evaluations beside its base, and a playground that
chats with it and its base."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tuneyard.api.deps import ID_SHAPE, Context
from tuneyard.console.auth import CurrentViewer
from tuneyard.console.views import page
from tuneyard.services import evaluations, exports, models
from tuneyard.store.errors import NotFound

router = APIRouter(include_in_schema=False)


@router.get("/models/{model_id}", response_class=HTMLResponse)
def model_page(request: Request, context: Context, viewer: CurrentViewer, model_id: str) -> HTMLResponse:
    org_id = viewer.principal.org_id
    try:
        model = models.get_model(context.db, org_id, model_id if ID_SHAPE.match(model_id) else "-")
    except NotFound:
        return page(request, "not_found.html", viewer, 404, what=f"model {model_id}")
    return page(request, "model_detail.html", viewer, model=model,
                exports=exports.list_exports(context.db, org_id, model.id),
                evaluations=evaluations.list_evaluations(context.db, context.settings, org_id, model.id))
