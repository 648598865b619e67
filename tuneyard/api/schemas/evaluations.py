"""Bodies and views of evaluations (evaluate jobs of a trained model)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tuneyard.api.schemas.common import Request
from tuneyard.services.evaluations import Evaluation
from tuneyard.spec.text import Key, Name


class EvaluationCreate(Request):
    dataset: Name | None = Field(None, description=(
        "A dataset's id or name: every record of it is evaluated. Left out: the examples the model's "
        "training job held out (its datasets, eval_split and seed)."))
    max_examples: int = Field(50, ge=1, le=5000, description="Held-out examples evaluated at most.")
    samples: int = Field(3, ge=0, le=50, description="Sample generations shown beside the figures.")
    max_new_tokens: int = Field(64, ge=1, le=1024, description="Tokens generated per greedy answer at most.")
    name: Name | None = Field(None, description="A label for people.")
    idempotency_key: Key | None = Field(None, description="Retries with the same key return the same evaluation.")


class EvaluationPublic(BaseModel):
    id: str = Field(description="The evaluate job's id: its events, logs and status are the job's.")
    object: str = "evaluation"
    model_id: str
    compare_with: str | None = Field(description="The model compared with: the trained model's base.")
    status: str
    datasets: list[dict[str, Any]]
    created_at: datetime
    finished_at: datetime | None
    error: dict[str, Any] | None
    method: str | None = Field(description="Where `scores` came from: judge (an LLM judge) or reference.")
    scores: dict[str, Any] | None = Field(description=(
        "Document 003's coherence, consistency and helpfulness (0–1) of the trained model, and method."))
    base: dict[str, Any] | None = Field(description=(
        "The base model's loss, perplexity, token_accuracy, exact_match, rouge_l and scores."))
    trained: dict[str, Any] | None = Field(description="The trained model's, the same figures.")
    samples: list[dict[str, Any]] = Field(description="prompt, reference, base and trained answers.")
    examples: int | None = Field(description="Held-out examples measured.")

    @classmethod
    def of(cls, evaluation: Evaluation) -> EvaluationPublic:
        job, result = evaluation.job, evaluation.result or {}
        return cls(
            id=job.id, model_id=evaluation.model_id, compare_with=evaluation.compare_with, status=job.status.value,
            datasets=list(job.spec.get("datasets") or []), created_at=job.created_at, finished_at=job.finished_at,
            error=job.error, method=result.get("method"), scores=result.get("scores"), base=result.get("base"),
            trained=result.get("trained"), samples=list(result.get("samples") or []), examples=result.get("examples"),
        )  # fmt: skip
