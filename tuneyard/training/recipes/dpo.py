"""The DPO recipe: the finetune recipe's loop, checkpoints and outputs, with preference pairs as its
data and DPO's loss as its objective (Rafailov et al. 2023).

    loss = -log sigmoid(beta * ((log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))))

The reference policy is the starting model: the base with the LoRA adapter switched off. Its
log-probs of every pair are computed once in setup, before a checkpoint is restored, so neither a
second copy of the model nor a second forward pass per step is needed, and a resumed run sees the
same numbers (evaluation draws no random numbers). `batch_size` counts pairs, as TRL's does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from tuneyard.spec.methods import DpoParams, params_of
from tuneyard.training import contract
from tuneyard.training.data import DataSource, collate
from tuneyard.training.data.packing import Row
from tuneyard.training.data.preference import Pair, PreparedPairs, prepare_pairs
from tuneyard.training.loss import DpoTerms, dpo_terms, sequence_logps
from tuneyard.training.optim import build_optimizer, build_scheduler
from tuneyard.training.plan import TrainingPlan
from tuneyard.training.recipes.finetune import FinetuneRecipe
from tuneyard.training.rng import PURPOSE_TRAINING, derive_seed, seed_everything
from tuneyard.training.session import Session

EVAL_SAMPLE = 32
"""Pairs evaluated when the job has no evaluation split (its first training pairs)."""


class DpoRecipe(FinetuneRecipe):
    """Trains a finetune job whose method is `dpo`."""

    COMPILES_FORWARD = False  # its log-probs come from the model's own forward, not Session.loss_sum

    # Pairs stand where the finetune recipe has rows of examples: its plan, loop, log lines and model
    # card read only their number and the data's stats, which pairs have too.
    rows: list[Pair]  # type: ignore[assignment]
    data: PreparedPairs  # type: ignore[assignment]

    def setup(self, resume_from: Path | None) -> None:
        self.session = Session.load_model(self.config, self.telemetry)
        self.beta = params_of(self.hp, DpoParams).beta
        self.telemetry.phase("loading_data")
        self.data = prepare_pairs(
            [DataSource(Path(d.path or ""), d.format, d.split) for d in self.config.datasets],
            self.session.tokenizer, max_seq_length=self.hp.max_seq_length, eval_split=self.hp.eval_split,
            seed=self.hp.seed, log=self.telemetry.log,
        )  # fmt: skip
        self.rows = self.data.train  # one pair a "row": the plan, and the log, count pairs
        self.eval_pairs = self.data.eval or self.data.train[:EVAL_SAMPLE]
        self.reference = {id(p): r for p, r in zip(self.rows + self.eval_pairs, self._reference(), strict=True)}
        self.plan = TrainingPlan(
            len(self.rows), self.hp.batch_size, self.hp.gradient_accumulation_steps,
            self.hp.epochs, self.hp.max_steps, self.hp.seed,
        )  # fmt: skip
        self.trainable = [p for p in self.session.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.session.model, self.hp)
        self.scheduler = build_scheduler(self.optimizer, self.hp, self.plan.total_steps)
        self._figures: dict[str, float] = {}
        seed_everything(derive_seed(self.hp.seed, PURPOSE_TRAINING))
        if resume_from is not None:
            self._restore(resume_from)
        self._decide_compile()

    @torch.no_grad()
    def _reference(self) -> list[torch.Tensor]:
        """(preferred, rejected) log-probs under the reference policy, per pair of train then eval."""
        model, pairs = self.session.model, self.rows + self.eval_pairs
        was_training = model.training
        model.eval()
        try:
            with model.disable_adapter():
                return [
                    logps for start in range(0, len(pairs), self.hp.batch_size)
                    for logps in self._logps(pairs[start : start + self.hp.batch_size])
                ]  # fmt: skip
        finally:
            model.train(was_training)

    def _logps(self, pairs: list[Pair]) -> torch.Tensor:
        """(pairs, 2) sequence log-probs under the current model: [:, 0] preferred, [:, 1] rejected.

        Both answers of every pair in one padded forward pass (each row alone: the log-prob of an
        answer is a per-row sum, which joined rows would have to be cut apart for)."""
        rows = [_row(example) for pair in pairs for example in (pair.preferred, pair.rejected)]
        batch = collate(rows, self.session.pad_token_id)
        inputs = {k: v.to(self.session.device) for k, v in batch.items() if k != "labels"}
        with self.session.autocast():
            logits = self.session.model(**inputs, use_cache=False).logits
        return sequence_logps(logits, batch["labels"].to(self.session.device)).view(len(pairs), 2)

    def _terms(self, pairs: list[Pair], policy: torch.Tensor) -> DpoTerms:
        reference = torch.stack([self.reference[id(p)] for p in pairs]).to(policy.device)
        return dpo_terms(policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1], self.beta)

    # ---- one optimizer step ------------------------------------------------------------------

    def _step(self) -> None:
        started = time.perf_counter()
        positions = self.plan.step_batches(self.state.epoch, self.state.batch_index)
        count = sum(len(idx) for idx in positions)
        total_loss, correct, margin = 0.0, 0, 0.0
        for idx in positions:
            pairs = [self.rows[i] for i in idx]
            terms = self._terms(pairs, self._logps(pairs))
            (terms.losses.sum() / count).backward()  # the step's loss is the mean over all its pairs
            total_loss += float(terms.losses.detach().double().sum())
            correct += terms.correct
            margin += float(terms.margins.double().sum())
        grad_norm = self._clip_and_step()
        self._figures = {"preference_accuracy": correct / count, "reward_margin": margin / count}
        tokens = sum(len(e.input_ids) for idx in positions for i in idx
                     for e in (self.rows[i].preferred, self.rows[i].rejected))
        self._advance(total_loss / count, grad_norm, tokens, time.perf_counter() - started)

    def _objective_figures(self) -> dict[str, float]:
        return self._figures

    # ---- evaluation and the result -----------------------------------------------------------

    @torch.no_grad()
    def _evaluate(self, baseline: bool) -> dict[str, float]:
        """DPO's figures over the evaluated pairs, and the preferred answers' token loss (so eval_ppl
        says whether the policy still writes what it prefers, not only how it ranks)."""
        model, pairs = self.session.model, self.eval_pairs
        was_training = model.training
        model.eval()
        loss = correct = margin = nll = tokens = 0.0
        try:
            for start in range(0, len(pairs), self.hp.batch_size):
                chunk = pairs[start : start + self.hp.batch_size]
                policy = self._logps(chunk)
                terms = self._terms(chunk, policy)
                loss += float(terms.losses.double().sum())
                correct += terms.correct
                margin += float(terms.margins.double().sum())
                nll -= float(policy[:, 0].double().sum())
                tokens += sum(p.preferred.loss_tokens for p in chunk)
        finally:
            model.train(was_training)
        eval_loss = nll / max(tokens, 1)
        figures = {
            "eval_loss": eval_loss, "eval_ppl": float(torch.tensor(min(eval_loss, 50.0)).exp()),
            "eval_tokens": int(tokens), "dpo_loss": loss / len(pairs),
            "preference_accuracy": correct / len(pairs), "reward_margin": margin / len(pairs),
        }  # fmt: skip
        on = "eval" if self.data.eval else "train_sample"
        self.telemetry.emit(contract.KIND_EVAL, step=self.state.step, baseline=baseline, eval_on=on, **figures)
        return figures

    def _result(self, final_eval: dict[str, float]) -> dict[str, Any]:
        baseline = self.state.baseline_eval or final_eval
        return {
            **super()._result(final_eval),
            "beta": self.beta,
            "dpo_loss_baseline": baseline["dpo_loss"],
            "dpo_loss_final": final_eval["dpo_loss"],
            "preference_accuracy_baseline": baseline["preference_accuracy"],
            "preference_accuracy_final": final_eval["preference_accuracy"],
            "reward_margin_final": final_eval["reward_margin"],
            "preference_eval_on": "eval" if self.data.eval else "train_sample",
        }


def _row(example: Any) -> Row:
    row = Row()
    row.add(example)
    return row
