"""Recommend settings for a base model and a dataset (Fusion's /training/recommend, served as /v1/recommend).

Either names (a base model and a dataset of the organization, as a job would name them) or raw figures
(`params`, `dataset_tokens` or `dataset_bytes`), never needing both; a named dataset's files are read
for the token lengths of its examples, so seq_len comes from their distribution, not from the mean.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneyard.errors import SpecError
from tuneyard.planning.recommend import CHARS_PER_TOKEN, DataFigures, recommend
from tuneyard.planning.shape import ModelShape
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.estimates import model_config
from tuneyard.services.model_inputs import Problems, resolve_base_model
from tuneyard.settings import Settings
from tuneyard.spec.text import Reference
from tuneyard.store import datasets as datasets_store
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.training.data.validation import scan_file
from tuneyard.training.models import catalog

TURN_MARKUP_TOKENS = 4
"""Tokens a chat template adds around each turn (ChatML's <|im_start|>role\\n … <|im_end|>\\n)."""
MAX_LENGTHS_READ = 100_000
"""Examples whose lengths are read for the percentiles; a bigger dataset is sampled by its first ones."""


class RecommendRequest(BaseModel):
    """A base model (or its size) and a dataset (or its size)."""

    model_config = ConfigDict(extra="forbid")

    base_model: Reference | None = Field(None, description="A base model id, as a job names it.")
    dataset: Reference | None = Field(None, description="A dataset id or name of your organization.")
    params: int | None = Field(None, ge=1, le=10**13, description="The model's parameters, instead of base_model.")
    dataset_tokens: int | None = Field(None, ge=1, le=10**13, description="The dataset's tokens, instead of dataset.")
    dataset_bytes: int | None = Field(None, ge=1, le=10**15, description="The dataset's size in bytes, instead.")
    method: Literal["lora", "qlora", "full"] = Field("lora", description="The method to recommend for.")


def recommend_for(db: Database, settings: Settings, org_id: str, request: RecommendRequest) -> dict[str, Any]:
    """model_params, dataset_tokens_est, recommended, windows, notes, disclaimer; InvalidRequest
    naming each field that is missing or names nothing."""
    problems: Problems = []
    params, context = _model_figures(db, settings, org_id, request, problems)
    data = _data_figures(db, org_id, request, problems)
    if problems or params is None or data is None:
        raise InvalidRequest(problems)
    batch_size = int(catalog.size_defaults(params, request.method).get("batch_size", 4))
    advice = recommend(params, data, request.method, context, batch_size)
    return {"model_params": params, "dataset_tokens_est": data.tokens, "method": request.method, **advice}


def _model_figures(
    db: Database, settings: Settings, org_id: str, request: RecommendRequest, problems: Problems
) -> tuple[int | None, int]:
    """(parameters, context length) of the named model, or the raw count with a 2048 context."""
    if request.base_model is None:
        if request.params is None:
            problems.append({"field": "base_model", "message": "give a base model, or its size as params"})
        return request.params, 2048
    try:
        model = resolve_base_model(db, settings, org_id, request.base_model)
    except NotFound:
        problems.append({"field": "base_model", "message": f"no base model {request.base_model!r}"})
        return None, 2048
    entry = catalog.get_builtin(model.runner_source)
    if entry is not None:
        return entry.parameters, entry.context_length
    try:
        config = model_config(model.runner_source)
        shape = ModelShape.from_config(config)
    except (InvalidRequest, SpecError):
        if request.params is None:
            problems.append({"field": "base_model", "message": "its size is not known here: give params too"})
        return request.params, 2048
    context = config.get("max_position_embeddings")
    return shape.params, context if isinstance(context, int) and context > 0 else 2048


def _data_figures(db: Database, org_id: str, request: RecommendRequest, problems: Problems) -> DataFigures | None:
    if request.dataset is None:
        if request.dataset_tokens is not None:
            return DataFigures(request.dataset_tokens)
        if request.dataset_bytes is not None:
            return DataFigures(max(1, request.dataset_bytes // CHARS_PER_TOKEN))
        problems.append({"field": "dataset",
                         "message": "give a dataset, or its size as dataset_tokens or dataset_bytes"})
        return None
    try:
        dataset = _find_dataset(db, org_id, request.dataset)
    except NotFound:
        problems.append({"field": "dataset", "message": f"no dataset {request.dataset!r}"})
        return None
    if dataset.status != "ready":
        problems.append({"field": "dataset", "message": f"dataset {dataset.id} is {dataset.status}, not ready"})
        return None
    lengths: list[int] = []
    for file_id in dataset.file_ids:
        scan = scan_file(datasets_store.get_file(db, org_id, file_id).path, dataset.format)
        for record in scan.records[: MAX_LENGTHS_READ - len(lengths)]:
            chars = sum(len(turn.content) for turn in record.turns)
            lengths.append(chars // CHARS_PER_TOKEN + TURN_MARKUP_TOKENS * len(record.turns))
    tokens = sum(lengths) if lengths else (dataset.tokens_est or 1)
    return DataFigures(max(1, tokens), dataset.examples, tuple(lengths))


def _find_dataset(db: Database, org_id: str, ref: str) -> Any:
    try:
        return datasets_store.get_dataset(db, org_id, ref)
    except NotFound:
        return datasets_store.get_dataset_by_name(db, org_id, ref)
