"""/v1/templates: built-in job templates and an organization's own (partial job specs a submission names)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from tuneyard.api.deps import Caller, Context
from tuneyard.api.schemas.common import BODY_RESPONSES, ERROR_RESPONSES, ListOf
from tuneyard.services import templates
from tuneyard.services.templates import TemplateBody

router = APIRouter(prefix="/v1/templates", tags=["templates"], responses=ERROR_RESPONSES)


@router.get("", response_model=ListOf[dict[str, Any]])
def list_templates(context: Context, caller: Caller) -> ListOf[dict[str, Any]]:
    """Built-in templates (each saying whether its job type runs here), then your organization's."""
    return ListOf(data=templates.list_templates(context.db, caller.org_id))


@router.post("", status_code=status.HTTP_201_CREATED, responses=BODY_RESPONSES)
def create_template(body: TemplateBody, context: Context, caller: Caller) -> dict[str, Any]:
    """Save a partial job spec under a name; a submission gives it as `template` and overrides it."""
    return templates.save_template(context.db, caller.org_id, body)
