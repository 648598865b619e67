"""Job types, registered by name: each one's spec model and what it needs and makes.

Pure data. The runner holds a recipe for each type marked `runnable` (a test holds the two to
the same names); a type that is declared but not runnable yet is refused at submission, never
queued to fail in a runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tuneyard.spec.job import (
    ContractSpec,
    EvaluateSpec,
    FinetuneSpec,
    JobSpecBase,
    MergeSpec,
    TrainingJobSpec,
    TrainSpec,
)
from tuneyard.spec.methods import METHODS
from tuneyard.spec.registry import Registry

ModelInput = Literal["base_model", "trained_model"]
Output = Literal["adapter", "full", "gguf", "evaluation", "none"]
"""What a job leaves: an adapter, full weights, a GGUF file, an evaluation, or nothing."""


@dataclass(frozen=True)
class JobTypeEntry:
    name: str
    description: str
    spec: type[JobSpecBase]
    """The type's parameters: its spec model."""
    needs_data: bool
    """Whether it needs at least one training dataset."""
    input: ModelInput
    outputs: tuple[Output, ...]
    """For a type that takes a method, the model it leaves is the method's output (adapter or full)."""
    phases: tuple[str, ...]
    """The phases its runner announces in the telemetry, in order."""
    runnable: bool = False
    """Whether the runner has a recipe for it yet."""

    @property
    def takes_method(self) -> bool:
        return issubclass(self.spec, TrainingJobSpec)


JOB_TYPES: Registry[JobTypeEntry] = Registry("job type")

_TRAINING_PHASES = ("loading_model", "loading_data", "baseline_eval", "training", "final_eval", "saving", "done")

JOB_TYPES.register(JobTypeEntry(
    name="finetune", spec=FinetuneSpec, needs_data=True, input="base_model",
    outputs=("adapter", "full", "evaluation"), phases=_TRAINING_PHASES, runnable=True,
    description="Fine-tune a model on data with a method (LoRA, full, ...).",
))
JOB_TYPES.register(JobTypeEntry(
    name="train", spec=TrainSpec, needs_data=True, input="base_model",
    outputs=("full", "evaluation"), runnable=True,
    phases=("loading_model", "loading_data", "baseline_eval", "growing", *_TRAINING_PHASES[3:]),
    description="Grow the model (new blocks start as the identity), then train it.",
))
JOB_TYPES.register(JobTypeEntry(
    name="contract", spec=ContractSpec, needs_data=False, input="base_model",
    outputs=("full", "evaluation"),
    phases=("loading_model", "loading_data", "pruning", "healing", "final_eval", "saving", "done"),
    runnable=True, description="Prune the model's MLP width (structured: the matrices get smaller).",
))
JOB_TYPES.register(JobTypeEntry(
    name="merge", spec=MergeSpec, needs_data=False, input="trained_model",
    outputs=("full",), phases=("loading_model", "merging", "saving", "done"), runnable=True,
    description="Fold a trained LoRA adapter into its base model.",
))

JOB_TYPES.register(JobTypeEntry(
    name="evaluate", spec=EvaluateSpec, needs_data=False, input="trained_model", outputs=("evaluation",),
    # each model in turn (the one compared with, then the trained one) is loaded, measured and generates
    phases=("loading_data", "loading_model", "evaluating", "generating", "scoring", "done"), runnable=True,
    description="Measure a trained model beside its base on held-out text (loss, accuracy, ROUGE-L, scores).",
))

MODEL_OUTPUTS: tuple[Output, ...] = ("adapter", "full", "gguf")
"""The outputs that are a model: a completed job registers one as a trained model."""


def model_output(job_type: str, method: str | None) -> str | None:
    """The kind of model a completed job leaves: its method's output, or the type's own; None for a
    type that declares no model among its outputs (an evaluation only, or nothing)."""
    entry = JOB_TYPES.get(job_type)
    declared = [o for o in entry.outputs if o in MODEL_OUTPUTS]
    if not declared:
        return None
    if entry.takes_method and method is not None:
        return METHODS.get(method).output
    return declared[0]
