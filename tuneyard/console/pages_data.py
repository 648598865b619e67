"""Dataset pages (upload, validation verdicts, stats, a loss-marked preview) and the models page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tuneyard.api.deps import ID_SHAPE, Context
from tuneyard.console.auth import CurrentViewer
from tuneyard.console.preview import preview_row
from tuneyard.console.views import page
from tuneyard.services import base_models, datasets, files, models
from tuneyard.store.errors import NotFound

router = APIRouter(include_in_schema=False)

PREVIEW_ROWS = 5


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, context: Context, viewer: CurrentViewer) -> HTMLResponse:
    found = datasets.list_datasets(context.db, viewer.principal.org_id)
    return page(request, "datasets.html", viewer, datasets=found)


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(request: Request, context: Context, viewer: CurrentViewer, dataset_id: str) -> HTMLResponse:
    org_id = viewer.principal.org_id
    try:
        dataset = datasets.get_dataset(context.db, org_id, dataset_id if ID_SHAPE.match(dataset_id) else "-")
    except NotFound:
        return page(request, "not_found.html", viewer, 404, what=f"dataset {dataset_id}")
    names = [_file_name(context, org_id, file_id) for file_id in dataset.file_ids]
    preview = []
    if dataset.status == "ready":
        rows = datasets.preview_dataset(context.db, org_id, dataset.id, PREVIEW_ROWS)
        preview = [preview_row(r["example"], r["line"], r["file_index"], dataset.format) for r in rows]
    return page(request, "dataset_detail.html", viewer, dataset=dataset, file_names=names, preview=preview)


def _file_name(context: Context, org_id: str, file_id: str) -> str:
    try:
        return files.get_file(context.db, org_id, file_id).filename
    except NotFound:
        return file_id


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, context: Context, viewer: CurrentViewer) -> HTMLResponse:
    org_id = viewer.principal.org_id
    return page(request, "models.html", viewer, base_models=base_models.list_base_models(context.db, org_id),
                trained=models.list_models(context.db, org_id))
