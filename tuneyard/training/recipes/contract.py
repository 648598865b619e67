"""The contract recipe: the model pruned to fewer MLP channels in every layer, healed, measured, saved.

setup() loads the model, the datasets when the job names some, and the calibration text
(`tuneyard.training.calibration_text`: calibration_dataset, the datasets, or the held-out split of
the source model's own training data); run() scores the channels (activation-based on that text,
else weight magnitude: `tuneyard.training.ops.contraction`), prunes, and with `heal_steps`
fine-tunes the contracted model briefly on the datasets' training rows; finish() measures
perplexity before and after and KL(source ‖ contracted) on the calibration text, and saves full
weights in the standard layout. No calibration text, no perplexity: those figures are null with the
reason. A contraction takes seconds and keeps no checkpoint.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tuneyard.errors import SpecError
from tuneyard.spec.job import ORIGIN_BASE_MODEL, ORIGIN_USER, ContractSpec
from tuneyard.training import contract
from tuneyard.training.calibration_text import calibration_text
from tuneyard.training.config import RunConfig
from tuneyard.training.control import RunControl
from tuneyard.training.data import build_rows, collate
from tuneyard.training.evaluation import evaluate, next_token_kl
from tuneyard.training.model_card import CardInputs, read_lineage
from tuneyard.training.models import catalog
from tuneyard.training.ops import contraction, growth
from tuneyard.training.session import Session
from tuneyard.training.telemetry import Telemetry
from tuneyard.training.versions import library_versions

if TYPE_CHECKING:  # only for annotations: the package imports this module to register it
    from tuneyard.training.recipes import Ending

CALIBRATION_ROWS = 64
"""Rows of calibration text scored and measured: enough for stable channel means, seconds on CPU."""


class ContractRecipe:
    """Contracts one model in this process."""

    def __init__(self, config: RunConfig, run_dir: Path, telemetry: Telemetry, control: RunControl) -> None:
        assert isinstance(config.spec, ContractSpec)  # the recipes registry runs this recipe for contract jobs only
        self.spec: ContractSpec = config.spec
        self.config = config
        self.run_dir = run_dir
        self.telemetry = telemetry
        self.control = control
        self._started = time.monotonic()

    def setup(self, resume_from: Path | None) -> None:
        self.session = Session.load_model(self.config, self.telemetry)
        self.data = self.session.load_data(self.config, self.telemetry) if self.config.datasets else None
        hp = self.config.hyperparams
        self.calibration = calibration_text(self.spec, self.data, self.session.tokenizer, hp.max_seq_length,
                                            CALIBRATION_ROWS)
        examples = self.calibration.examples if self.calibration else []
        self.rows = build_rows(examples, hp.max_seq_length, False)[:CALIBRATION_ROWS]
        if self.calibration:
            self.telemetry.log(f"calibration text: {len(self.rows)} examples of the {self.calibration.origin}"
                               + (f" ({self.calibration.source_id})" if self.calibration.source_id else ""))
        # healing trains on the datasets' training rows; the figures are taken on the calibration text
        self.heal_rows = build_rows(self.data.train, hp.max_seq_length, False) if self.data else []
        if self.spec.heal_steps and not self.heal_rows:
            raise SpecError([{"field": "heal_steps",
                              "message": "healing trains on the datasets' training rows and they hold none"}])
        growth.check_growable(self.session.model.config)
        self.heal_learning_rate = self._resolved_heal_learning_rate()

    def _resolved_heal_learning_rate(self) -> float:
        """The spec's healing rate, else the full fine-tuning rate of the source model's size
        (`catalog.heal_learning_rate`), written into the resolved spec with its origin."""
        if self.spec.heal_learning_rate is not None:
            self.config.origins.setdefault("heal_learning_rate", ORIGIN_USER)
            return self.spec.heal_learning_rate
        parameters = _params(self.session.model)
        rate = catalog.heal_learning_rate(parameters)
        self.spec = self.spec.model_copy(update={"heal_learning_rate": rate})
        self.config.spec = self.spec
        self.config.origins["heal_learning_rate"] = ORIGIN_BASE_MODEL
        if self.spec.heal_steps:
            self.telemetry.log(f"heal_learning_rate {rate:g}: the full fine-tuning rate of a model of "
                               f"{parameters:,} parameters")
        return rate

    def run(self) -> Ending:
        if self.control.stop_requested:
            return "stopped"
        model = self.session.model
        model.eval()
        self.params_before = _params(model)
        self.baseline = self._perplexity() if self.rows else None
        source = copy.deepcopy(model) if self.rows else None
        self.telemetry.phase("pruning")
        self.removed_layers = self._remove_layers(model) if self.spec.remove_layers else []
        self.importance = contraction.ACTIVATION if self.rows else contraction.WEIGHT_MAGNITUDE
        scores = (contraction.activation_importance(model, self._batches(), self._forward) if self.rows
                  else contraction.weight_importance(model))
        self.keep = contraction.kept_channels(model.config, self.spec.contraction_ratio)
        contraction.contract_mlp(model, self.keep, scores)
        self.telemetry.log(f"contracted every layer's MLP to {self.keep} channels by {self.importance} importance: "
                           f"{self.params_before} → {_params(model)} parameters")
        self.heal_losses = self._heal() if self.spec.heal_steps else []
        self.function_preservation = self._kl_to(source) if source is not None else None
        return "completed"

    def _remove_layers(self, model: Any) -> list[int]:
        layers, count = model.config.num_hidden_layers, self.spec.remove_layers
        if count > layers - 2:
            raise SpecError([{"field": "remove_layers", "message": (
                f"the model has {layers} layers and the first and the last stay: at most {max(layers - 2, 0)}")}])
        influence = contraction.layer_influence(model, self._batches(), self._forward) if self.rows else None
        drop = contraction.layers_to_drop(layers, count, influence)
        contraction.remove_layers(model, drop)
        how = "by block influence on the calibration text" if influence else "the last before the final layer"
        self.telemetry.log(f"removed layers {drop} of {layers} ({how})")
        return drop

    def _heal(self) -> list[float]:
        """heal_steps of full fine-tuning on the training rows, batch_size rows a step in order, round
        and round; each step's loss reported as a training metric (phase `healing`)."""
        self.telemetry.phase("healing")
        model, steps, size = self.session.model, self.spec.heal_steps, self.config.hyperparams.batch_size
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.heal_learning_rate)
        batches = [self.heal_rows[i : i + size] for i in range(0, len(self.heal_rows), size)]
        losses = []
        model.train()
        try:
            for step in range(1, steps + 1):
                rows = batches[(step - 1) % len(batches)]
                batch = collate(rows, self.session.pad_token_id)
                loss_sum, tokens = self.session.loss_sum({k: v.to(self.session.device) for k, v in batch.items()})
                loss = loss_sum / max(tokens, 1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                self.telemetry.emit(contract.KIND_METRIC, step=step, total_steps=steps, phase="healing",
                                    loss=losses[-1], lr=self.heal_learning_rate)
        finally:
            model.eval()
            optimizer.zero_grad(set_to_none=True)
        self.telemetry.log(f"healed {steps} steps: loss {losses[0]:.4f} → {losses[-1]:.4f}")
        return losses

    def finish(self) -> dict[str, Any]:
        self.telemetry.phase("final_eval")
        result = self._result(self._perplexity() if self.rows else None)
        self.telemetry.phase("saving")
        card = CardInputs(
            spec=self.config.to_json(), source=self.session.source, result=result,
            data_files=self.data.stats.files if self.data else [], data_counts={},
            lineage=read_lineage(self.run_dir), versions=library_versions(),
        )  # fmt: skip
        self.session.save_final(self.run_dir / contract.FINAL_DIR, card)
        return result

    def _result(self, final: dict[str, float] | None) -> dict[str, Any]:
        after = _params(self.session.model)
        no_text = ("no calibration text: give calibration_dataset (or datasets) to measure it; base_model is not "
                   "a trained model whose training held text out")
        return {
            "params_before": self.params_before,
            "params_after": after,
            "params_delta": after - self.params_before,
            "contraction_ratio": self.spec.contraction_ratio,
            "intermediate_size": self.keep,
            "layers_contracted": self.session.model.config.num_hidden_layers,
            "layers_removed": self.removed_layers,
            "importance": self.importance,
            "calibration": self.calibration.origin if self.calibration else None,
            "calibration_source": self.calibration.source_id if self.calibration else None,
            "calibration_examples": len(self.rows),
            "ppl_baseline": self.baseline["eval_ppl"] if self.baseline else None,
            "ppl_final": final["eval_ppl"] if final else None,
            "function_preservation": self.function_preservation,
            "heal_steps": self.spec.heal_steps,
            "heal_learning_rate": self.heal_learning_rate if self.spec.heal_steps else None,
            "heal_loss_first": self.heal_losses[0] if self.heal_losses else None,
            "heal_loss_final": self.heal_losses[-1] if self.heal_losses else None,
            **({} if self.rows else {"ppl_reason": no_text, "function_preservation_reason": no_text}),
            "tokens_processed": sum(len(row.input_ids) for row in self.rows),
            "compute_seconds": round(time.monotonic() - self._started, 3),
            "device": str(self.session.device),
        }

    def _batches(self) -> list[dict[str, torch.Tensor]]:
        size = self.config.hyperparams.batch_size
        return [collate(self.rows[i : i + size], self.session.pad_token_id) for i in range(0, len(self.rows), size)]

    def _forward(self, batch: dict[str, torch.Tensor]) -> Any:
        inputs = {k: v.to(self.session.device) for k, v in batch.items() if k != "labels"}
        return self.session.model(**inputs, use_cache=False).logits

    def _perplexity(self) -> dict[str, float]:
        loss, tokens = evaluate(self.session, self.rows, self.config.hyperparams.batch_size)
        figures = {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0)), "eval_tokens": tokens}
        self.telemetry.emit(contract.KIND_EVAL, step=0, baseline=not hasattr(self, "keep"), eval_on="eval",
                            **figures)
        return figures

    def _kl_to(self, source: Any) -> float:
        """`evaluation.next_token_kl` over the calibration batches."""
        return next_token_kl(source, self.session.model, self._batches(), self.session.device)


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
