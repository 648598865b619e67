"""The train recipe: grow the model so that it computes the same function, then train it.

It is the finetune recipe with full weights, on a model grown between loading and the first
step: setup() loads and measures the source model (its eval loss is `ppl_baseline`), grows it
(`tuneyard.training.ops.growth`), measures `function_preservation` = the mean per-token
KL(source ‖ grown) over the eval batches, and only then builds the optimizer and the schedule (a
cosine restarted each cycle). The growth is deterministic (copies, zeros, a seeded generator), so a
resumed run grows the source the same way and restores the checkpoint's weights over it.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch

from tuneyard.spec.job import TrainSpec
from tuneyard.training.config import RunConfig
from tuneyard.training.control import RunControl
from tuneyard.training.data import collate
from tuneyard.training.evaluation import next_token_kl
from tuneyard.training.ops import growth
from tuneyard.training.optim import build_optimizer
from tuneyard.training.recipes.finetune import FinetuneRecipe
from tuneyard.training.rng import derive_seed
from tuneyard.training.telemetry import Telemetry

DEFAULT_GROWTH = 1.5
"""With neither `growth` nor `target_params`: grow depth to about 1.5× the source's parameters."""


class GrowRecipe(FinetuneRecipe):
    """Grows and trains one `train` job in this process."""

    def __init__(self, config: RunConfig, run_dir: Path, telemetry: Telemetry, control: RunControl) -> None:
        assert isinstance(config.spec, TrainSpec)  # the recipes registry runs this recipe for train jobs only
        self.spec: TrainSpec = config.spec
        config.hyperparams = self.spec.hyperparams.training_hyperparams()
        super().__init__(config, run_dir, telemetry, control)

    def setup(self, resume_from: Path | None) -> None:
        super().setup(None)  # the source model and the data; its optimizer is rebuilt once grown
        model = self.session.model
        self.params_before = _params(model)
        if resume_from is None:
            self.telemetry.phase("baseline_eval")
            self.state.baseline_eval = self._evaluate(baseline=True)  # the source model's, before growth
        self.telemetry.phase("growing")
        source = copy.deepcopy(model).eval()
        self.growth_plan = self._plan(model)
        generator = torch.Generator().manual_seed(derive_seed(self.hp.seed, "growth"))
        new = growth.grow(model, self.growth_plan, generator)
        self.function_preservation = self._kl_to(source)
        del source
        self._train_only(new)
        self.telemetry.log(
            f"grown to {self.growth_plan.layers} layers, MLP width {self.growth_plan.intermediate_size}: "
            f"{self.params_before} → {_params(model)} parameters, function preservation "
            f"(mean KL source‖grown per token) {self.function_preservation:.3g}"
        )
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(model, self.hp)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._cycle_multiplier())
        if resume_from is not None:
            self._restore(resume_from)

    def _plan(self, model: Any) -> growth.GrowthPlan:
        if self.spec.growth is not None:
            return growth.plan_growth(model.config, self.spec.growth.depth_factor, self.spec.growth.width_factor)
        target = self.spec.target_params or round(DEFAULT_GROWTH * self.params_before)
        return growth.depth_for_target(model, target)

    def _train_only(self, new: growth.NewParameters) -> None:
        """train_scope "new": only the new blocks and the widened MLP projections train (a tensor
        cannot be partly frozen, so a widened projection trains whole)."""
        if self.spec.hyperparams.train_scope == "all":
            return
        keep = {id(p) for p in new.parameters}
        for param in self.session.model.parameters():
            param.requires_grad_(id(param) in keep)

    def _kl_to(self, source: Any) -> float:
        """`evaluation.next_token_kl` over the eval batches (a sample of the training rows where
        there is no eval split)."""
        rows = self.eval_rows or self.rows[:32]
        batches = (collate(rows[i : i + self.hp.batch_size], self.session.pad_token_id)
                   for i in range(0, len(rows), self.hp.batch_size))
        return next_token_kl(source, self.session.model, batches, self.session.device)

    def _cycle_multiplier(self) -> Any:
        """A cosine from the peak lr to zero over each cycle, restarted every cycle."""
        per_cycle = self.spec.hyperparams.steps_per_cycle or self.plan.steps_per_epoch

        def multiplier(step: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * (step % per_cycle) / per_cycle))

        return multiplier

    def _result(self, final_eval: dict[str, float]) -> dict[str, Any]:
        result = super()._result(final_eval)
        after = _params(self.session.model)
        compute = result["compute_seconds"]
        on_gpu = self.session.device.type == "cuda"
        return {
            **result,
            "params_before": self.params_before,
            "params_after": after,
            "params_delta": after - self.params_before,
            "layers": self.growth_plan.layers,
            "intermediate_size": self.growth_plan.intermediate_size,
            "function_preservation": self.function_preservation,
            **({"gpu_seconds": compute} if on_gpu else {}),
            "cost_usd": round(compute / 3600.0 * self.spec.price_per_device_hour, 6),
            "output_name": self.spec.hyperparams.output_name,
            "train_scope": self.spec.hyperparams.train_scope,
        }


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
