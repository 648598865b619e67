"""Recipes: what the runner runs for each job type, registered by the type's name.

A recipe reads top to bottom. `setup(resume_from)` loads what the job needs (the model through
`Session.load_model`, the data through `Session.load_data` where the type takes data) and restores
a checkpoint; `run()` works until done or asked to stop; `finish()` leaves the outputs the job
type declares in final/ and returns the result card. The runner builds the recipe for the job's
type and calls the three in that order.

`tuneyard.spec.jobtypes` marks the same types runnable; a test holds the two to the same names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from tuneyard.errors import UnsupportedError
from tuneyard.spec.registry import Registry
from tuneyard.training.config import RunConfig
from tuneyard.training.control import RunControl
from tuneyard.training.recipes.contract import ContractRecipe
from tuneyard.training.recipes.dpo import DpoRecipe
from tuneyard.training.recipes.evaluate import EvaluateRecipe
from tuneyard.training.recipes.finetune import FinetuneRecipe
from tuneyard.training.recipes.grow import GrowRecipe
from tuneyard.training.recipes.merge import MergeRecipe
from tuneyard.training.telemetry import Telemetry

Ending = Literal["completed", "stopped"]
"""How `run()` ended: done, or stopped on request with a checkpoint (exit 75, resumable)."""


class Recipe(Protocol):
    """One job in this process: built by the runner, which calls the three phases in order."""

    def setup(self, resume_from: Path | None) -> None:
        """Load what the job needs, and restore the checkpoint at `resume_from` if there is one."""

    def run(self) -> Ending:
        """Work until done ("completed") or asked to stop ("stopped", after a checkpoint)."""

    def finish(self) -> dict[str, Any]:
        """Leave the job's outputs in final/ and return its result card."""


RecipeFactory = Callable[[RunConfig, Path, Telemetry, RunControl], Recipe]
"""Builds a recipe from the resolved config, the run folder, the telemetry and the signal control."""


@dataclass(frozen=True)
class RecipeEntry:
    name: str
    """The job type it runs, as `tuneyard.spec.jobtypes` names it."""
    build: RecipeFactory


RECIPES: Registry[RecipeEntry] = Registry("recipe")

def _finetune(config: RunConfig, run_dir: Path, telemetry: Telemetry, control: RunControl) -> Recipe:
    """A finetune job trains toward its method's objective: DPO's on preference pairs, else next tokens."""
    recipe = DpoRecipe if config.method == "dpo" else FinetuneRecipe
    return recipe(config, run_dir, telemetry, control)


RECIPES.register(RecipeEntry("finetune", _finetune))
RECIPES.register(RecipeEntry("merge", MergeRecipe))
RECIPES.register(RecipeEntry("train", GrowRecipe))
RECIPES.register(RecipeEntry("contract", ContractRecipe))
RECIPES.register(RecipeEntry("evaluate", EvaluateRecipe))


def recipe_for(job_type: str) -> RecipeFactory:
    """The factory of `job_type`'s recipe; a user error where this runner has none."""
    if job_type not in RECIPES:
        raise UnsupportedError(f"job type {job_type!r} is not available in this runner yet")
    return RECIPES.get(job_type).build
