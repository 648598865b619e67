"""The new-job form's hyperparameter fields, taken from the spec's own schema.

`tuneyard.spec.Hyperparams` documents each field once (default, bounds, description); the form
shows exactly that, so the console can never drift from what the API accepts.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from tuneyard.spec.hyperparams import Hyperparams

MAIN_FIELDS = ("epochs", "max_steps", "learning_rate", "batch_size", "gradient_accumulation_steps",
               "max_seq_length", "warmup_ratio", "lr_scheduler", "eval_split", "eval_steps", "save_steps",
               "lora_rank", "lora_alpha", "seed")
"""The ones people change; the rest keep their defaults (and are still accepted by the API)."""
LORA_ONLY = frozenset({"lora_rank", "lora_alpha"})


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    input: str  # number | select
    default: Any
    description: str
    step: str = "any"
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    integer: bool = False
    lora_only: bool = False


def form_fields() -> list[FormField]:
    return [_field(name, Hyperparams.model_fields[name]) for name in MAIN_FIELDS]


def _field(name: str, info: FieldInfo) -> FormField:
    kinds = _kinds(info.annotation)
    minimum = maximum = None
    for bound in info.metadata:
        if isinstance(bound, Ge | Gt):
            minimum = float(bound.ge if isinstance(bound, Ge) else bound.gt)  # type: ignore[arg-type]
        if isinstance(bound, Le | Lt):
            maximum = float(bound.le if isinstance(bound, Le) else bound.lt)  # type: ignore[arg-type]
    literal = next((k for k in kinds if typing.get_origin(k) is typing.Literal), None)
    integer = int in kinds
    return FormField(
        name=name, label=name.replace("_", " "), input="select" if literal is not None else "number",
        default=info.default, description=info.description or "", step="1" if integer else "any",
        minimum=minimum, maximum=maximum, choices=tuple(typing.get_args(literal)) if literal is not None else (),
        optional=type(None) in kinds, integer=integer, lora_only=name in LORA_ONLY,
    )


def _kinds(annotation: Any) -> tuple[Any, ...]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal or not args:
        return (annotation,)
    return args
