"""The evaluate recipe: a trained model and the model it came from, measured side by side on
held-out text.

setup() reads the held-out examples (`tuneyard.training.heldout`) and the trained model's
tokenizer, which encodes the text for both models, so both are measured on the same tokens.
run() takes each model in turn (the one compared with, then the trained one; only one is in
memory at a time): loss, perplexity and token accuracy on the examples (teacher-forced, loss
tokens only, as training counts them), then greedy answers to the prompts, scored against the
references by exact match and ROUGE-L (`tuneyard.training.text_scores`). finish() adds the scores
of document 003 (coherence, consistency, helpfulness, each 0–1) and sample generations.

Scores come from the judge in the spec when there is one (`tuneyard.training.judge`,
method "judge"); otherwise from reference-based measures (method "reference"):
- coherence: the geometric-mean probability the model gave its own greedy answer's tokens,
  exp(mean log p): high where it answers fluently and surely, low where it stumbles;
- consistency: ROUGE-L between the greedy answer and one answer sampled at the spec's
  temperature (seeded): a model that says the same thing when asked again is consistent;
- helpfulness: ROUGE-L between the greedy answer and the reference answer.
An evaluation takes minutes and keeps no checkpoint: stopped, it starts over.
"""

from __future__ import annotations

import gc
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers.utils import logging as hf_logging

from tuneyard.errors import UserError
from tuneyard.spec.job import EvaluateSpec
from tuneyard.training import contract, judge
from tuneyard.training.config import RunConfig
from tuneyard.training.control import RunControl
from tuneyard.training.data import build_rows, collate
from tuneyard.training.device import pick_device
from tuneyard.training.generation import Answer, generate_answers
from tuneyard.training.heldout import HeldOut, encode_held_out, held_out_records
from tuneyard.training.models import ModelSource, load_model, load_tokenizer, resolve_model_source
from tuneyard.training.telemetry import Telemetry
from tuneyard.training.text_scores import exact_match, rouge_l

if TYPE_CHECKING:  # only for annotations: the package imports this module to register it
    from tuneyard.training.recipes import Ending

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
"""Chat templates' end-of-turn markers: an answer stops at one as at the tokenizer's EOS."""

ROLES = ("base", "trained")


class EvaluateRecipe:
    """Evaluates one trained model against the model it was trained from, in this process."""

    def __init__(self, config: RunConfig, run_dir: Path, telemetry: Telemetry, control: RunControl) -> None:
        assert isinstance(config.spec, EvaluateSpec)  # the recipes registry runs this recipe for evaluate jobs only
        self.spec: EvaluateSpec = config.spec
        self.config = config
        self.run_dir = run_dir
        self.telemetry = telemetry
        self.control = control
        self.device = pick_device(config.device)
        self.figures: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, list[Answer]] = {}
        self._started = time.monotonic()

    def setup(self, resume_from: Path | None) -> None:
        hf_logging.disable_progress_bar()
        self.telemetry.phase("loading_data")
        spec = self.spec
        records = held_out_records(self.config.datasets, spec.eval_split, spec.seed, spec.max_examples)
        cache = self.config.model_cache_dir
        trained = resolve_model_source(spec.base_model, cache)
        self.sources = {"base": self._compared_with(trained), "trained": trained}
        self.tokenizer = load_tokenizer(self.sources["trained"])
        self.heldout: HeldOut = encode_held_out(records, self.tokenizer, spec.max_seq_length,
                                                spec.generation.max_new_tokens)
        self.config.decisions.update(device=str(self.device), dtype="float32",
                                     model_sources={k: s.to_dict() for k, s in self.sources.items()})
        self.telemetry.log(f"evaluating on {len(self.heldout.examples)} held-out examples "
                           f"({len(self.heldout.prompts)} with a reference answer) on {self.device}")

    def _compared_with(self, trained: ModelSource) -> ModelSource:
        if self.spec.compare_with is not None:
            return resolve_model_source(self.spec.compare_with, self.config.model_cache_dir)
        if trained.base is None:
            raise UserError(f"compare_with: {self.spec.base_model!r} holds full weights, which name no base "
                            "model to compare with; give compare_with", field="compare_with")
        return trained.base

    def run(self) -> Ending:
        for role in ROLES:
            if self.control.stop_requested:
                return "stopped"
            self.figures[role] = self._measure(role, self.sources[role])
        return "completed"

    def finish(self) -> dict[str, Any]:
        self.telemetry.phase("scoring")
        method = "judge" if self.spec.judge is not None else "reference"
        graded: dict[str, dict[str, int]] = {}
        for role in ROLES:
            if self.spec.judge is None:
                self.figures[role]["scores"] = self._reference(role)
                continue
            grades = self._judged(role)
            self.figures[role]["scores"] = grades.scores
            graded[role] = {"graded": grades.graded, "unparsed": grades.unparsed}
        trained = self.figures["trained"]
        return {
            "method": method,
            "scores": {**trained["scores"], "method": method},
            "base": self.figures["base"],
            "trained": trained,
            "examples": len(self.heldout.examples),
            "generated": len(self.heldout.prompts),
            "files": self.heldout.files,
            "samples": self._samples(),
            "judge": None if self.spec.judge is None else {
                "model": self.spec.judge.model, "base_url": self.spec.judge.base_url, "answers": graded},
            "max_new_tokens": self.spec.generation.max_new_tokens,
            "compute_seconds": round(time.monotonic() - self._started, 3),
            "device": str(self.device),
        }

    def _measure(self, role: str, source: ModelSource) -> dict[str, Any]:
        self.telemetry.phase("loading_model")
        model: Any = load_model(source)
        model = model.to(self.device).eval()
        try:
            self.telemetry.phase("evaluating")
            loss, accuracy, tokens = self._teacher_forced(model)
            self.telemetry.emit(contract.KIND_EVAL, step=0, baseline=role == "base", eval_on="eval",
                                eval_loss=loss, eval_ppl=_perplexity(loss), eval_tokens=tokens)
            self.telemetry.phase("generating")
            self.answers[role] = self._generate(model, None)
            if self.spec.judge is None:  # consistency's second answer; a judge grades consistency itself
                self.answers[f"{role}_sampled"] = self._generate(model, self.spec.generation.temperature)
        finally:
            del model
            gc.collect()
        texts = self._texts(role)
        references = [p.reference for p in self.heldout.prompts]
        pairs = list(zip(texts, references, strict=True))
        figures = {
            "loss": loss, "perplexity": _perplexity(loss), "token_accuracy": accuracy, "eval_tokens": tokens,
            "exact_match": _mean([float(exact_match(a, r)) for a, r in pairs]),
            "rouge_l": _mean([rouge_l(a, r) for a, r in pairs]),
        }  # fmt: skip
        self.telemetry.log(f"{role} model {source.requested}: loss {loss:.4f}, token accuracy {accuracy:.3f}, "
                           f"exact match {figures['exact_match']}, ROUGE-L {figures['rouge_l']}")
        return figures

    @torch.no_grad()
    def _teacher_forced(self, model: Any) -> tuple[float, float, int]:
        """(mean loss per loss token, share of loss tokens predicted exactly, loss tokens)."""
        rows = build_rows(self.heldout.examples, self.spec.max_seq_length, False)
        loss_sum, correct, count = 0.0, 0, 0
        for start in range(0, len(rows), self.spec.batch_size):
            batch = collate(rows[start : start + self.spec.batch_size], self._pad_id)
            inputs = {k: v.to(self.device) for k, v in batch.items() if k != "labels"}
            logits = model(**inputs, use_cache=False).logits[:, :-1].float()
            targets = batch["labels"][:, 1:].to(self.device)
            keep = targets != -100
            loss_sum += torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum").item()
            correct += int((logits[keep].argmax(-1) == targets[keep]).sum())
            count += int(keep.sum())
        if not count:
            raise UserError("datasets: no held-out example has a token to measure (all lost to truncation); "
                            "raise max_seq_length", field="datasets")
        return loss_sum / count, correct / count, count

    def _generate(self, model: Any, temperature: float | None) -> list[Answer]:
        generation = self.spec.generation
        return generate_answers(
            model, [p.ids for p in self.heldout.prompts], pad_id=self._pad_id, stop_ids=self._stop_ids,
            max_new_tokens=generation.max_new_tokens, batch_size=self.spec.batch_size, device=self.device,
            temperature=temperature, seed=generation.seed,
        )  # fmt: skip

    def _texts(self, key: str) -> list[str]:
        return [str(self.tokenizer.decode(a.ids, skip_special_tokens=True)).strip() for a in self.answers[key]]

    def _reference(self, role: str) -> dict[str, float | None]:
        greedy, sampled = self._texts(role), self._texts(f"{role}_sampled")
        return {
            "coherence": _rounded(_mean([math.exp(a.mean_logprob) for a in self.answers[role]])),
            "consistency": _rounded(_mean([rouge_l(a, b) for a, b in zip(greedy, sampled, strict=True)])),
            "helpfulness": _rounded(self.figures[role]["rouge_l"]),
        }

    def _judged(self, role: str) -> judge.Graded:
        assert self.spec.judge is not None
        items = [(p.shown, p.reference, a) for p, a in zip(self.heldout.prompts, self._texts(role), strict=True)]
        return judge.grade_answers(self.spec.judge, os.environ.get(contract.JUDGE_KEY_VARIABLE), items)

    def _samples(self) -> list[dict[str, str]]:
        base, trained = self._texts("base"), self._texts("trained")
        return [{"source": p.source, "prompt": p.shown, "reference": p.reference, "base": b, "trained": t}
                for p, b, t in list(zip(self.heldout.prompts, base, trained, strict=True))[: self.spec.samples]]

    @property
    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    @property
    def _stop_ids(self) -> set[int]:
        stops = {self.tokenizer.eos_token_id} - {None}
        vocab = self.tokenizer.get_vocab()
        return stops | {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab}


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _mean(values: list[float]) -> float | None:
    """The mean; None (JSON null, which every store takes, unlike NaN) when nothing was measured."""
    return sum(values) / len(values) if values else None
