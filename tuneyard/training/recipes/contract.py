"""The contract recipe: the model pruned to fewer MLP channels in every layer, measured, saved.

setup() loads the model and, when the job names datasets, the calibration text; run() scores the
channels (activation-based on that text, else weight magnitude: `tuneyard.training.ops.contraction`)
and prunes; finish() measures perplexity before and after and KL(source ‖ contracted) on the
calibration text, and saves full weights in the standard layout. No data, no perplexity: those
figures are null with the reason. A contraction takes seconds and keeps no checkpoint.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tuneyard.spec.job import ContractSpec
from tuneyard.training import contract
from tuneyard.training.config import RunConfig
from tuneyard.training.control import RunControl
from tuneyard.training.data import build_rows, collate
from tuneyard.training.evaluation import evaluate
from tuneyard.training.model_card import CardInputs, read_lineage
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
        examples = (self.data.eval or self.data.train) if self.data else []
        self.rows = build_rows(examples, hp.max_seq_length, False)[:CALIBRATION_ROWS]
        growth.check_growable(self.session.model.config)

    def run(self) -> Ending:
        if self.control.stop_requested:
            return "stopped"
        model = self.session.model
        model.eval()
        self.params_before = _params(model)
        self.layers = model.config.num_hidden_layers
        self.baseline = self._perplexity() if self.rows else None
        source = copy.deepcopy(model) if self.rows else None
        self.telemetry.phase("pruning")
        self.importance = contraction.ACTIVATION if self.rows else contraction.WEIGHT_MAGNITUDE
        scores = (contraction.activation_importance(model, self._batches(), self._forward) if self.rows
                  else contraction.weight_importance(model))
        self.keep = contraction.kept_channels(model.config, self.spec.contraction_ratio)
        contraction.contract_mlp(model, self.keep, scores)
        self.function_preservation = self._kl_to(source) if source is not None else None
        self.telemetry.log(f"contracted every layer's MLP to {self.keep} channels by {self.importance} importance: "
                           f"{self.params_before} → {_params(model)} parameters")
        return "completed"

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
        no_text = "no calibration text: give datasets to measure it"
        return {
            "params_before": self.params_before,
            "params_after": after,
            "params_delta": after - self.params_before,
            "contraction_ratio": self.spec.contraction_ratio,
            "intermediate_size": self.keep,
            "layers_contracted": self.layers,
            "importance": self.importance,
            "ppl_baseline": self.baseline["eval_ppl"] if self.baseline else None,
            "ppl_final": final["eval_ppl"] if final else None,
            "function_preservation": self.function_preservation,
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

    @torch.no_grad()
    def _kl_to(self, source: Any) -> float:
        """Mean per-token KL(source ‖ contracted) over the calibration tokens that carry loss."""
        total, count = 0.0, 0
        for batch in self._batches():
            inputs = {k: v.to(self.session.device) for k, v in batch.items() if k != "labels"}
            kl, n = growth.mean_token_kl(source(**inputs, use_cache=False).logits, self._forward(batch),
                                         batch["labels"].to(self.session.device) != -100)
            total, count = total + kl, count + n
        return total / count if count else float("nan")


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
