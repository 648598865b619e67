"""The merge recipe: a trained LoRA adapter folded into its base, as full weights in final/.

setup() loads the adapter on its base (fp32, CPU: the merge must not round the update); run()
folds it in and checks the merged model's logits against the adapter's on probe sequences
(`tuneyard.training.ops.merge`); finish() saves the merged model in the standard layout, loadable
with plain transformers, and returns the result card with the measured max |Δlogit|.
A merge takes seconds and keeps no checkpoint: stopped before it is done, it starts over.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers.utils import logging as hf_logging

from tuneyard.errors import UserError
from tuneyard.spec.job import MergeSpec
from tuneyard.training import artifacts, contract, model_card
from tuneyard.training.config import RunConfig
from tuneyard.training.control import RunControl
from tuneyard.training.model_card import CardInputs, read_lineage
from tuneyard.training.models import ModelSource, load_tokenizer, resolve_model_source
from tuneyard.training.models.loading import load_adapter
from tuneyard.training.ops import merge
from tuneyard.training.telemetry import Telemetry
from tuneyard.training.versions import library_versions

if TYPE_CHECKING:  # only for annotations: the package imports this module to register it
    from tuneyard.training.recipes import Ending


class MergeRecipe:
    """Folds one LoRA adapter into its base in this process."""

    def __init__(self, config: RunConfig, run_dir: Path, telemetry: Telemetry, control: RunControl) -> None:
        self.config = config
        self.run_dir = run_dir
        self.telemetry = telemetry
        self.control = control
        self._started = time.monotonic()
        self.max_logit_delta = float("nan")

    def setup(self, resume_from: Path | None) -> None:
        hf_logging.disable_progress_bar()
        self.telemetry.phase("loading_model")
        adapter = self.config.spec.base_model
        self.source = self._adapter_source(adapter)
        if self.source.kind != "peft_adapter" or self.source.base is None:
            raise UserError(f"base_model: {adapter!r} is {self.source.kind.replace('_', ' ')} weights, not a LoRA "
                            "adapter; merge folds a LoRA adapter into its base", field="base_model")
        self.tokenizer = load_tokenizer(self.source)
        self.adapted = load_adapter(self.source)
        self.config.decisions.update(device="cpu", dtype="float32", model_source=self.source.to_dict(),
                                     versions=library_versions())
        self.telemetry.log(f"adapter {adapter} on base {self.source.base.requested}, merging on cpu in float32")

    def _adapter_source(self, adapter: str) -> ModelSource:
        """The adapter and its base: the base its config names, or the spec's `adapter_base` (a
        trained adapter names a registered base by the service's id, which only the service resolves)."""
        spec = self.config.spec
        given = spec.adapter_base if isinstance(spec, MergeSpec) else None
        folder = Path(adapter)
        if given is None or not (folder / model_card.ADAPTER_CONFIG_FILE).is_file():
            return resolve_model_source(adapter, self.config.model_cache_dir)
        base = resolve_model_source(given, self.config.model_cache_dir)
        return ModelSource(requested=adapter, kind="peft_adapter", path=folder.resolve(), base=base)

    def run(self) -> Ending:
        if self.control.stop_requested:
            return "stopped"
        self.telemetry.phase("merging")
        self.merged, self.max_logit_delta = merge.fold(self.adapted, merge.probe_ids(self.tokenizer))
        self.telemetry.log(f"merged: max |Δlogit| {self.max_logit_delta:.3g} against the adapter on its base "
                           f"(bound {merge.MAX_LOGIT_DELTA:g})")
        merge.check_delta(self.max_logit_delta, self.config.spec.base_model)
        return "completed"

    def finish(self) -> dict[str, Any]:
        result = self._result()
        self.telemetry.phase("saving")
        self._save(self.run_dir / contract.FINAL_DIR, result)
        return result

    def _result(self) -> dict[str, Any]:
        assert self.source.base is not None  # setup refused anything else
        return {
            "max_logit_delta": self.max_logit_delta,
            "logit_delta_bound": merge.MAX_LOGIT_DELTA,
            "probe_sequences": len(merge.PROBE_TEXTS),
            "adapter": self.source.requested,
            "base": self.source.base.requested,
            "params_total": sum(p.numel() for p in self.merged.parameters()),
            "compute_seconds": round(time.monotonic() - self._started, 3),
            "device": "cpu",
        }

    def _save(self, target: Path, result: dict[str, Any]) -> None:
        spec = self.config.to_json()
        card = CardInputs(spec=spec, source=self.source, result=result, data_files=[], data_counts={},
                          lineage=read_lineage(self.run_dir), versions=library_versions())
        manifest = {"kind": "final", "method": "full", "spec": model_card.portable_spec(card),
                    "versions": card.versions}
        with artifacts.atomic_folder(target, manifest) as tmp:
            self.merged.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            (tmp / model_card.CARD_FILE).write_text(model_card.render_card(card, adapter=False), encoding="utf-8")
