"""/v1/models/{id}/evaluations: a trained model measured beside its base (evaluate jobs), and
/v1/evaluations/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response, status

from tuneyard.api.deps import Caller, Context, ModelId, checked_id
from tuneyard.api.errors import rate_limit_headers
from tuneyard.api.routes.jobs import KEY_SCHEMA
from tuneyard.api.schemas.common import BODY_RESPONSES, ERROR_RESPONSES, ListOf
from tuneyard.api.schemas.evaluations import EvaluationCreate, EvaluationPublic
from tuneyard.services import evaluations, jobs, models
from tuneyard.services.evaluations import EvaluationOptions
from tuneyard.services.submission import JobRequest

router = APIRouter(responses=ERROR_RESPONSES, tags=["models"])


def _evaluation_id(evaluation_id: str, _caller: Caller) -> str:  # the key is checked first
    return checked_id("evaluation", evaluation_id)


EvaluationId = Annotated[str, Depends(_evaluation_id)]


def _owned_model(model_id: ModelId, context: Context, caller: Caller) -> str:
    # Resolved before the body is validated: another organization's model is a 404 whatever was sent.
    models.get_model(context.db, caller.org_id, model_id)
    return model_id


OwnedModelId = Annotated[str, Depends(_owned_model)]


@router.post("/v1/models/{model_id}/evaluations", status_code=status.HTTP_201_CREATED,
             response_model=EvaluationPublic, responses={
                 200: {"model": EvaluationPublic, "description": "A retry with the same idempotency key."},
                 **BODY_RESPONSES})
def create_evaluation(
    model_id: OwnedModelId, body: EvaluationCreate, context: Context, caller: Caller, response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", json_schema_extra=KEY_SCHEMA)] = None,
) -> EvaluationPublic:
    """Queue an evaluation: the model and its base side by side on held-out text (loss, perplexity,
    token accuracy, exact match and ROUGE-L of greedy answers, coherence/consistency/helpfulness
    scores, sample answers). Poll it until `status` is completed or failed."""
    model = models.get_model(context.db, caller.org_id, model_id)
    options = EvaluationOptions(dataset=body.dataset, max_examples=body.max_examples, samples=body.samples,
                                max_new_tokens=body.max_new_tokens)
    spec = evaluations.evaluation_body(context.db, caller.org_id, model, options)
    request = JobRequest(spec=spec, name=body.name, idempotency_key=body.idempotency_key or idempotency_key)
    submitted = jobs.submit_job(context.db, context.settings, caller, request)
    if not submitted.created:
        response.status_code = status.HTTP_200_OK
    rate = submitted.rate
    response.headers.update(rate_limit_headers(rate.limit, rate.remaining, rate.reset_after_s))
    return EvaluationPublic.of(evaluations.get_evaluation(context.db, context.settings, caller.org_id,
                                                          submitted.job.id))


@router.get("/v1/models/{model_id}/evaluations", response_model=ListOf[EvaluationPublic])
def list_evaluations(model_id: ModelId, context: Context, caller: Caller) -> ListOf[EvaluationPublic]:
    """The model's evaluations, newest first, each with its figures once completed."""
    found = evaluations.list_evaluations(context.db, context.settings, caller.org_id, model_id)
    return ListOf(data=[EvaluationPublic.of(e) for e in found])


@router.get("/v1/models/{model_id}/evaluations/{evaluation_id}", response_model=EvaluationPublic)
def get_model_evaluation(model_id: ModelId, evaluation_id: EvaluationId, context: Context,
                         caller: Caller) -> EvaluationPublic:
    return EvaluationPublic.of(evaluations.get_evaluation(context.db, context.settings, caller.org_id,
                                                          evaluation_id, model_id))


@router.get("/v1/evaluations/{evaluation_id}", response_model=EvaluationPublic)
def get_evaluation(evaluation_id: EvaluationId, context: Context, caller: Caller) -> EvaluationPublic:
    return EvaluationPublic.of(evaluations.get_evaluation(context.db, context.settings, caller.org_id, evaluation_id))
