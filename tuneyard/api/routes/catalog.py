"""/v1/base-models (what jobs start from) and /v1/models (what completed jobs made)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from tuneyard.api.deps import ADMIN_RESPONSES, AdminCaller, Caller, Context, ModelId
from tuneyard.api.schemas.common import BODY_RESPONSES, ERROR_RESPONSES, ListOf
from tuneyard.api.schemas.resources import (
    BaseModelCreate,
    BaseModelPublic,
    ServableBaseModelPublic,
    TrainedModelPublic,
)
from tuneyard.services import base_models, models, serving

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/base-models", response_model=ListOf[BaseModelPublic], tags=["base models"])
def list_base_models(context: Context, caller: Caller) -> ListOf[BaseModelPublic]:
    """Built-in models first (`tiny-llama` always), then the ones your organization registered."""
    found = base_models.list_base_models(context.db, caller.org_id)
    return ListOf(data=[BaseModelPublic.of(m) for m in found])


@router.get("/v1/base-models/{model_id}", response_model=BaseModelPublic, tags=["base models"])
def get_base_model(model_id: ModelId, context: Context, caller: Caller) -> BaseModelPublic:
    return BaseModelPublic.of(base_models.get_base_model(context.db, caller.org_id, model_id))


@router.post("/v1/base-models", status_code=status.HTTP_201_CREATED, response_model=BaseModelPublic,
             tags=["base models"], responses={**BODY_RESPONSES, **ADMIN_RESPONSES})
def register_base_model(body: BaseModelCreate, context: Context, caller: AdminCaller) -> BaseModelPublic:
    """Register a local folder or .gguf file under a configured model root, or a hub id (admin key)."""
    request = base_models.BaseModelRegistration(body.source, body.kind, body.name, body.description)
    return BaseModelPublic.of(base_models.register_base_model(context.db, context.settings, caller.org_id, request))


@router.get("/v1/models", response_model=ListOf[TrainedModelPublic | ServableBaseModelPublic], tags=["models"])
def list_models(context: Context, caller: Caller) -> ListOf[TrainedModelPublic | ServableBaseModelPublic]:
    """Every model a chat completion may name, in OpenAI's list shape (`object`, `data`, each with
    `id`, `object`, `created`, `owned_by`): trained models first, newest first, with their lineage and
    whether they are activated; then the base models (`kind: base`), which answer by their id."""
    active = {a.model_id: a for a in serving.list_activations(context.db, caller.org_id)}
    trained: list[TrainedModelPublic | ServableBaseModelPublic] = [
        TrainedModelPublic.of(m, active.get(m.id)) for m in models.list_models(context.db, caller.org_id)]
    bases = [ServableBaseModelPublic.of(b, caller.org_id)
             for b in base_models.list_base_models(context.db, caller.org_id)]
    return ListOf(data=trained + bases)


@router.get("/v1/models/{model_id}", response_model=TrainedModelPublic, tags=["models"])
def get_model(model_id: ModelId, context: Context, caller: Caller) -> TrainedModelPublic:
    return TrainedModelPublic.of(models.get_model(context.db, caller.org_id, model_id),
                                 serving.get_activation(context.db, caller.org_id, model_id))


@router.delete("/v1/models/{model_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               tags=["models"])
def delete_model(model_id: ModelId, context: Context, caller: Caller) -> Response:
    """Forget the model and delete its weights."""
    models.delete_model(context.db, context.settings, caller.org_id, model_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
