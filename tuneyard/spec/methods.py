"""Training methods, registered by name: their parameters, what they output, what they need.

Pure data, no torch: the API checks a request against these, and the runner's implementations
(`tuneyard.training.methods`) are held to exactly these names by a test. A method's own
parameters live in its params model; a spec carries them flat in `hyperparams`, beside the
method-independent `Hyperparams`, validated by the two models joined (`MethodEntry.hyperparams`).
"""

from __future__ import annotations

import ctypes.util
import functools
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from tuneyard.spec.hyperparams import HYPERPARAM_NAMES, Hyperparams
from tuneyard.spec.registry import Registry

ModelOutput = Literal["adapter", "full"]
"""What a method trains: an adapter beside the frozen base, or every weight (the stored model kind)."""

Requirement = Literal["cuda", "bitsandbytes"]

MODULE_NAME_MAX = 256
"""The longest module name (a dotted path in the model) a spec may name."""
TARGET_MODULES_MAX = 1024
"""The most module names a spec may list."""


class MethodParams(BaseModel):
    """A method's own parameters; a method without any uses this as it is."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraParams(MethodParams):
    """LoRA's adapter shape (used by `lora` and `qlora`)."""

    lora_rank: int = Field(16, ge=1, le=4096, description="Rank r of the LoRA update.")
    # A scale alpha / r past 65536 / 1 multiplies the update out of any useful range.
    lora_alpha: float = Field(32, gt=0, le=65536, description="LoRA scale numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    # A model has a few dozen kinds of linear module; a list of thousands, or names of pages, is no target.
    lora_target_modules: str | list[str] = Field(
        "all-linear",
        description="'all-linear', or module names to adapt: each adapts every linear or embedding module whose "
        "full name is that name or ends with '.' and that name (peft's rule), and must match at least one.",
    )

    @field_validator("lora_target_modules")
    @classmethod
    def _targets_not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one module name, or 'all-linear'")
        if isinstance(value, str) and value != "all-linear":
            return [value]
        return value

    @field_validator("lora_target_modules")
    @classmethod
    def _targets_bounded(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if len(names) > TARGET_MODULES_MAX:
            raise ValueError(f"list at most {TARGET_MODULES_MAX} module names")
        if any(len(name) > MODULE_NAME_MAX for name in names):
            raise ValueError(f"a module name has at most {MODULE_NAME_MAX} characters")
        return value


class DpoParams(LoraParams):
    """DPO (Rafailov et al. 2023) trains a LoRA adapter on preference pairs; the frozen base with the
    adapter switched off is the reference policy, so no second copy of the model is held."""

    # OpenAI's DPO `beta`; 0.1 is the paper's and TRL's default. Past ~10 the sigmoid saturates
    # on the first step and the loss stops teaching anything.
    beta: float = Field(0.1, gt=0, le=10.0, description="DPO's beta: how far the policy may move from the "
                        "reference (smaller lets it move further).")


@dataclass(frozen=True)
class MethodEntry:
    """One training method as the spec knows it."""

    name: str
    description: str
    output: ModelOutput
    params: type[MethodParams] = MethodParams
    defaults: dict[str, Any] = field(default_factory=dict)
    """Hyperparameter defaults of the method, under the base model's and the user's."""
    requires: tuple[Requirement, ...] = ()
    """Kernels it cannot run without; `unavailable` says which are missing."""

    @property
    def hyperparams(self) -> type[Hyperparams]:
        """`Hyperparams` joined with this method's params: what a spec's `hyperparams` is."""
        return _joined(self.params)

    def unavailable(self, device: str | None = None) -> list[str]:
        """Why this method cannot run here ([] when it can). `device` is the runner's torch device
        type; without one (the API, which imports no torch) a CUDA driver library is looked for."""
        problems = []
        if "cuda" in self.requires:
            if device is not None and not device.startswith("cuda"):
                problems.append(f"the device is {device!r}, and its kernels need a CUDA GPU")
            elif device is None and not _cuda_driver():
                problems.append("this host has no CUDA GPU driver, and its kernels need one")
        if "bitsandbytes" in self.requires and importlib.util.find_spec("bitsandbytes") is None:
            problems.append("the bitsandbytes package is not installed")
        return problems


@functools.cache
def _joined(params: type[MethodParams]) -> type[Hyperparams]:
    if params is MethodParams:
        return Hyperparams
    # params first in the bases, so the shared fields come first in the joined model
    bases: Any = (params, Hyperparams)
    name = f"{params.__name__.removesuffix('Params')}Hyperparams"
    return cast("type[Hyperparams]", create_model(name, __base__=bases))


@functools.cache
def _cuda_driver() -> bool:
    return ctypes.util.find_library("cuda") is not None


METHODS: Registry[MethodEntry] = Registry("method")

METHODS.register(MethodEntry(
    name="lora", params=LoraParams, output="adapter",
    description="LoRA: a small low-rank adapter trained beside the frozen base weights.",
))
METHODS.register(MethodEntry(
    name="full", output="full",
    # every weight moves, so it wants a learning rate about ten times smaller than LoRA's
    defaults={"learning_rate": 2.0e-5},
    description="Full fine-tuning: every weight of the model is trained.",
))
METHODS.register(MethodEntry(
    name="qlora", params=LoraParams, output="adapter", requires=("cuda", "bitsandbytes"),
    description="QLoRA: a LoRA adapter trained beside a base quantized to 4 bits (CUDA and bitsandbytes only).",
))

METHODS.register(MethodEntry(
    name="dpo", params=DpoParams, output="adapter",
    description="DPO: a LoRA adapter trained on preference pairs (preferred vs non-preferred answer) "
                "against the frozen base as reference.",
))

P = TypeVar("P", bound=MethodParams)


def params_of(hp: Hyperparams, params: type[P]) -> P:
    """A method's params out of a spec's resolved hyperparams."""
    if isinstance(hp, params):
        return hp
    return params.model_validate({name: getattr(hp, name) for name in params.model_fields if hasattr(hp, name)})


def all_hyperparam_names() -> frozenset[str]:
    """Every name a spec's `hyperparams` may hold, under one method or another."""
    return HYPERPARAM_NAMES.union(*(entry.params.model_fields for entry in METHODS))


def methods_with(name: str) -> tuple[str, ...]:
    """The methods whose hyperparams include `name` (all of them for a shared one)."""
    return tuple(entry.name for entry in METHODS if name in entry.hyperparams.model_fields)
