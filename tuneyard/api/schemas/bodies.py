"""Schemas of request bodies that routes read as mappings (see api/openapi.py's DOCUMENTED_BODIES)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from tuneyard.services.trajectories import MAX_BATCH, TrajectoryIn


def model_body_schema(model: type[BaseModel], ref_template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A pydantic model's validation schema in its aliases (the words a body uses), and its definitions."""
    generated = TypeAdapter(model).json_schema(by_alias=True, ref_template=ref_template, mode="validation")
    definitions: dict[str, Any] = generated.pop("$defs", {})
    definitions[model.__name__] = generated
    return {"$ref": ref_template.format(model=model.__name__)}, definitions


def trajectory_body_schema(ref_template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One trajectory, or a batch of them under `trajectories`."""
    one, definitions = model_body_schema(TrajectoryIn, ref_template)
    batch = {"type": "object", "required": ["trajectories"], "additionalProperties": False,
             "properties": {"trajectories": {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_BATCH}}}
    return {"anyOf": [one, batch]}, definitions
