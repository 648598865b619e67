"""The new-job form's hyperparameter fields, taken from the spec's own schema.

`tuneyard.spec.Hyperparams` and each method's params model (`tuneyard.spec.methods`) document
each field once (default, bounds, description); the form shows exactly that, so the console can
never drift from what the API accepts. A method's own fields show only while it is chosen.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from tuneyard.spec.methods import METHODS, methods_with

MAIN_FIELDS = ("epochs", "max_steps", "learning_rate", "batch_size", "gradient_accumulation_steps",
               "max_seq_length", "warmup_ratio", "lr_scheduler", "eval_split", "eval_steps", "save_steps",
               "lora_rank", "lora_alpha", "seed")
"""The ones people change; the rest keep their defaults (and are still accepted by the API)."""


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
    methods: tuple[str, ...] = ()
    """The methods that take it; empty when every method does."""


def form_fields() -> list[FormField]:
    every = {name: info for entry in METHODS for name, info in entry.hyperparams.model_fields.items()}
    return [schema_field(name, every[name]) for name in MAIN_FIELDS if name in every]


def schema_field(name: str, info: FieldInfo) -> FormField:
    """The form field a pydantic field documents: its input, default, bounds and description."""
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
        name=name, label=name.rsplit(".", 1)[-1].replace("_", " "),
        input="select" if literal is not None else ("number" if _numeric(kinds) else "text"),
        default=info.default, description=info.description or "", step="1" if integer else "any",
        minimum=minimum, maximum=maximum, choices=tuple(typing.get_args(literal)) if literal is not None else (),
        optional=type(None) in kinds, integer=integer, methods=_taken_by(name),
    )


def _taken_by(name: str) -> tuple[str, ...]:
    methods = methods_with(name)
    return () if len(methods) == len(METHODS) else methods


def _numeric(kinds: tuple[Any, ...]) -> bool:
    return any(k in (int, float) for k in kinds)


def _kinds(annotation: Any) -> tuple[Any, ...]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal or not args:
        return (annotation,)
    return args
