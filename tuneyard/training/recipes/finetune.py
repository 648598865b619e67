"""The fine-tuning recipe: setup() → run() → finish(), read top to bottom.

One optimizer step is a fixed set of micro-batches computed from (seed, epoch, position),
so a run resumed from a checkpoint takes exactly the steps the uninterrupted run takes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tuneyard.errors import PlatformError
from tuneyard.planning.memory import LINE_ROWS
from tuneyard.training import checkpoint, compilation, contract
from tuneyard.training.checkpoint import TrainState
from tuneyard.training.config import RunConfig
from tuneyard.training.control import RunControl
from tuneyard.training.data import build_rows, collate_for
from tuneyard.training.distributed import Parallel, SingleProcess, parallel_for
from tuneyard.training.evaluation import evaluate
from tuneyard.training.model_card import CardInputs, read_lineage
from tuneyard.training.optim import build_optimizer, build_scheduler
from tuneyard.training.plan import TrainingPlan
from tuneyard.training.rng import (
    capture_rng_state,
    derive_seed,
    rank_rng_state,
    ranks_rng_state,
    restore_rng_state,
    seed_everything,
    training_purpose,
)
from tuneyard.training.session import Session
from tuneyard.training.telemetry import Telemetry, console_line
from tuneyard.training.versions import library_versions

if TYPE_CHECKING:  # only for annotations: the package imports this module to register it
    from tuneyard.training.recipes import Ending


class FinetuneRecipe:
    """Trains one finetune job in this process. The runner builds it, calls the three phases, exits."""

    COMPILES_FORWARD = True
    """Whether the recipe's loss runs through Session.loss_sum, the forward `compile` compiles."""

    def __init__(self, config: RunConfig, run_dir: Path, telemetry: Telemetry, control: RunControl) -> None:
        self.config = config
        self.hp = config.hyperparams
        self.run_dir = run_dir
        self.telemetry = telemetry
        self.control = control
        self.state = TrainState()
        self._process_start = time.monotonic()
        self._prior_compute = 0.0
        self._last_saved_step = -1
        self.ranks = config.ranks
        self.parallel: Parallel = SingleProcess()
        """The other ranks of a data-parallel run: none here, until setup() wraps the model."""
        self._compiled_steps = 0

    # ---- setup -------------------------------------------------------------------------

    def setup(self, resume_from: Path | None) -> None:
        self.session = Session.load_model(self.config, self.telemetry)
        self.data = self.session.load_data(self.config, self.telemetry)
        # Without packing a row is one example; with it, rows are filled with several. Where the
        # model attends one example at a time, a micro-batch's rows are joined into one line with
        # no padding; otherwise single examples go end to end in lines of at most LINE_ROWS x
        # max_seq_length tokens and packed rows side by side (training/data/collate.collate_for).
        self.rows = build_rows(self.data.train, self.hp.max_seq_length, self.hp.packing)
        line_tokens = None if self.session.per_example else LINE_ROWS * self.hp.max_seq_length
        self.collate = collate_for(self.hp.packing, line_tokens)
        self.row_loss_tokens = [_loss_tokens(row) for row in self.rows]  # counted once, not every step
        self.eval_rows = build_rows(self.data.eval, self.hp.max_seq_length, self.hp.packing)
        self.plan = TrainingPlan(
            len(self.rows), self.hp.batch_size, self.hp.gradient_accumulation_steps,
            self.hp.epochs, self.hp.max_steps, self.hp.seed,
        )  # fmt: skip
        # Dropout draws from the global streams step after step: they start from the seed here (each
        # rank its own stream), or where the checkpoint left them.
        seed_everything(derive_seed(self.hp.seed, training_purpose(self.ranks)))
        if resume_from is not None:  # into the whole model, which fsdp then shards
            self._restore_weights(resume_from)
        self.parallel = parallel_for(self.session, self.ranks, self.config.strategy)
        # Over the parameters as wrapped: fsdp's shards are new parameter objects.
        model = self.session.model
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(model, self.hp)
        self.scheduler = build_scheduler(self.optimizer, self.hp, self.plan.total_steps)
        if resume_from is not None:
            self._restore_progress(resume_from)
        if len(set(self.parallel.gather(self.session.bf16))) > 1:  # the probe's verdict was not shared
            raise PlatformError("the ranks chose different precisions (bf16: auto); set hyperparams.bf16")
        self._decide_compile()

    def _decide_compile(self) -> None:
        """Whether training compiles its forward (training/compilation.py), recorded in spec.json.
        Weighed on the whole plan's FLOPs, not what is left, so a resumed run decides as it did."""
        session, flops, layers = self.session, None, None
        # Data-parallel, the loss runs through DDP's wrapper or FSDP's hooks, not the compiled forward
        # (not measured there yet).
        applies = self.COMPILES_FORWARD and self.ranks.world_size == 1
        if self.ranks.world_size > 1 and self.hp.compile is True:
            raise compilation.CompileFailed("hyperparams.compile: true, but a data-parallel run (distributed."
                                            "num_processes > 1) trains eagerly; set compile: auto or false",
                                            field="hyperparams.compile")
        if applies and self.hp.compile == "auto":
            epoch_tokens = sum(len(row.input_ids) for row in self.rows)
            tokens = epoch_tokens * self.plan.total_steps / max(self.plan.steps_per_epoch, 1)
            flops, layers = compilation.planned_flops(session.model, self.config.method, self.hp.model_dump(),
                                                      session.bf16, tokens, epoch_tokens / max(len(self.rows), 1))
        self.compile = compilation.decide(
            self.hp.compile, session.device, applies=applies,
            gradient_checkpointing=self.hp.gradient_checkpointing, planned_flops=flops, layers=layers,
        )  # fmt: skip
        self.config.decisions.update(compile=self.compile.use, compile_decision=self.compile.record())
        if self.hp.compile == "auto":
            self.telemetry.log(f"compile auto: {'on' if self.compile.use else 'off'} ({self.compile.reason})")

    def _restore(self, folder: Path) -> None:
        """The run as the checkpoint at `folder` left it, into a model trained in one process (DPO's,
        grow's); setup() restores the weights before the model is wrapped and the rest after."""
        self._restore_weights(folder)
        self._restore_progress(folder)

    def _restore_weights(self, folder: Path) -> None:
        self.session.method.restore(self.session.model, folder / checkpoint.WEIGHTS_DIR)

    def _restore_progress(self, folder: Path) -> None:
        """All but the weights: the optimizer (through the parallel, which may hold its shard), the
        scheduler, the RNG streams and the position."""
        self.parallel.load_optimizer_state(self.optimizer, checkpoint.load_torch(folder, checkpoint.OPTIMIZER_FILE))
        self.scheduler.load_state_dict(checkpoint.load_torch(folder, checkpoint.SCHEDULER_FILE))
        restore_rng_state(rank_rng_state(checkpoint.load_torch(folder, checkpoint.RNG_FILE), self.ranks))
        self.state = checkpoint.load_state(folder)
        self._prior_compute = self.state.compute_seconds
        self._last_saved_step = self.state.step
        self.telemetry.log(f"resumed from {folder.name}: step {self.state.step}/{self.plan.total_steps}, "
                           f"epoch {self.state.epoch}, batch {self.state.batch_index}")

    # ---- run ---------------------------------------------------------------------------

    def run(self) -> Ending:
        """Run optimizer steps until done ("completed") or asked to stop ("stopped")."""
        if self._stop_agreed():
            return self._stop()
        if self.state.baseline_eval is None and self._evaluates_here():
            self.telemetry.phase("baseline_eval")
            self.state.baseline_eval = self._evaluate(baseline=True)
        self.telemetry.phase("training")
        if self.compile.use and self.session.compiled is None:
            compilation.compile_forward(self.session)  # lazily: the first step compiles
        self.telemetry.log(f"training {self.plan.total_steps} steps: {len(self.rows)} rows, "
                           f"{self.plan.steps_per_epoch} steps per epoch" + self._ranks_note())
        while self.state.step < self.plan.total_steps:
            if self._stop_agreed():
                return self._stop()
            self._step()
            self._maybe_evaluate()
            self._maybe_checkpoint()
        # A stop that lands during the last step is moot: the run is complete.
        return "completed"

    def _stop_agreed(self) -> bool:
        """Whether to stop now: asked on any rank (each got its own SIGTERM, at its own moment), so
        every rank stops at the same step boundary and none waits for the others in a collective."""
        return self.parallel.any_of(self.control.stop_requested)[0]

    def _ranks_note(self) -> str:
        if not self.ranks.distributed:
            return ""
        return f", data-parallel on {self.ranks.world_size} processes"

    def _stop(self) -> Ending:
        if self._last_saved_step != self.state.step and self.state.step > 0:
            self.save_checkpoint()
        self.telemetry.log(f"stopped at step {self.state.step}; resumable")
        return "stopped"

    def _step(self) -> None:
        if self.session.compiled is None:
            return self._train_step()
        rng = capture_rng_state()  # a step retried eagerly draws what it drew before
        started = time.perf_counter()
        try:
            self._train_step()
        except compilation.COMPILE_ERRORS as exc:
            self._compile_failed(exc, rng)
            self._train_step()
            return
        if not self._compiled_steps:  # its time and ETA in the telemetry hold the compile: say so once
            self.telemetry.log(f"compiled: step {self.state.step} took {time.perf_counter() - started:.1f} s "
                               f"with the compile")
        self._compiled_steps += 1

    def _compile_failed(self, exc: BaseException, rng: dict[str, Any]) -> None:
        """`compile: true` fails the job; `auto` goes on eagerly from this step, which starts again."""
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if self.compile.setting == "true":
            raise compilation.CompileFailed(f"hyperparams.compile: true, and torch.compile failed on this machine "
                                            f"({type(exc).__name__}: {cause}); set compile: auto or false",
                                            field="hyperparams.compile") from exc
        self.telemetry.log(f"compile auto: torch.compile failed ({type(exc).__name__}: {cause}); "
                           f"training on eagerly from step {self.state.step + 1}", level="warning")
        compilation.run_eager(self.session)
        self.optimizer.zero_grad(set_to_none=True)
        restore_rng_state(rng)

    def _train_step(self) -> None:
        """One optimizer step over the plan's examples of it (the global batch, whatever the ranks).

        Each rank computes its shard of the step's rows in micro-batches of batch_size, each loss
        divided by the loss tokens of the whole step, and the gradients are summed across ranks at the
        rank's last micro-batch: the step's gradient is the one-process step's, up to summation order.
        """
        started = time.perf_counter()
        rows = [i for idx in self.plan.step_batches(self.state.epoch, self.state.batch_index) for i in idx]
        loss_tokens = max(sum(self.row_loss_tokens[i] for i in rows), 1)
        mine = self.ranks.shard(rows)
        # A rank left without rows (a last step shorter than the world) still joins the gradient sum,
        # with one row that counts for nothing.
        batches = _chunks(mine or rows[:1], self.hp.batch_size)
        total_loss = torch.zeros((), dtype=torch.float64)
        for k, batch in enumerate(batches):
            total_loss += self._micro_step([self.rows[i] for i in batch], loss_tokens,
                                           sync=k == len(batches) - 1, counted=bool(mine))
        total_loss = self.parallel.total(total_loss)
        grad_norm = self._clip_and_step()
        tokens = sum(len(self.rows[i].input_ids) for i in rows)  # every rank's: the step's
        self._advance(total_loss.item() / loss_tokens, grad_norm, tokens, time.perf_counter() - started)

    def _micro_step(self, rows: list[Any], step_loss_tokens: int, sync: bool = True,
                    counted: bool = True) -> torch.Tensor:
        # The backward may recompute the forward (attention_scope), and under DDP it is where this
        # rank's gradients meet the others' (sync_gradients).
        with self.session.attention_scope(), self.parallel.sync_gradients(sync):
            loss_sum = self.parallel.loss_sum(self.collate(rows, self.session.pad_token_id))
            if not counted:
                (loss_sum * 0.0).backward()
                return torch.zeros((), dtype=torch.float64)
            (loss_sum / step_loss_tokens).backward()
        return loss_sum.detach().double()

    def _clip_and_step(self) -> float:
        max_norm = self.hp.max_grad_norm if self.hp.max_grad_norm is not None else math.inf
        grad_norm = self.parallel.clip_gradients(self.trainable, max_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _advance(self, loss: float, grad_norm: float, tokens: int, seconds: float) -> None:
        state = self.state
        lr = float(self.scheduler.get_last_lr()[0])
        state.step += 1
        state.epoch, state.batch_index = self.plan.advance(state.epoch, state.batch_index)
        state.tokens_seen += tokens
        state.train_seconds += seconds
        state.last_loss = loss
        state.losses.append(loss)
        self._report(loss, lr, grad_norm, tokens / max(seconds, 1e-9), seconds)

    def _report(self, loss: float, lr: float, grad_norm: float, tokens_per_s: float, seconds: float) -> None:
        if not self.ranks.primary:
            return
        state, total = self.state, self.plan.total_steps
        self.telemetry.emit(
            contract.KIND_METRIC, step=state.step, total_steps=total,
            epoch=round(state.step / max(self.plan.steps_per_epoch, 1), 4), phase="train",
            loss=loss, lr=lr, grad_norm=grad_norm, tokens=state.tokens_seen,
            tokens_per_s=round(tokens_per_s, 1), memory_gb=round(self.session.memory_gb(), 3),
            elapsed_s=round(state.train_seconds, 3), eta_s=round(seconds * (total - state.step), 1),
            **self._objective_figures(),
        )  # fmt: skip
        every = max(1, total // 50)
        if state.step % every == 0 or state.step in (1, total):
            self.telemetry.log(console_line(state.step, total, loss, lr, tokens_per_s))

    def _objective_figures(self) -> dict[str, float]:
        """Figures of the step beyond the loss that the recipe's objective reports (DPO's); none here."""
        return {}

    def _evaluates_here(self) -> bool:
        """Rank 0 evaluates whole weights while the others go on; sharded ones need every rank."""
        return self.ranks.primary or self.parallel.every_rank_forwards

    def _maybe_evaluate(self) -> None:
        if not self._evaluates_here():
            return
        if self.hp.eval_steps and self.state.step % self.hp.eval_steps == 0 and self.state.step < self.plan.total_steps:
            self._evaluate(baseline=False)

    def _maybe_checkpoint(self) -> None:
        step = self.state.step
        due = (
            (self.hp.save_steps is not None and step % self.hp.save_steps == 0)
            or (self.state.batch_index == 0 and self.state.epoch > 0)  # an epoch just ended
            or step == self.plan.total_steps
            or self.parallel.any_of(self.control.take_checkpoint_request())[0]  # asked of any rank
        )
        if due and self._last_saved_step != step:
            self.save_checkpoint()

    # ---- checkpoints and evaluation -------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Every rank's RNG streams gathered (and sharded weights and optimizer state), the rest (the
        same on every rank) and the writing left to rank 0; the others wait until it is sealed, so
        none exits before the checkpoint exists."""
        self.state.compute_seconds = self._prior_compute + (time.monotonic() - self._process_start)
        rng = ranks_rng_state(self.parallel.gather(capture_rng_state()))
        weights, optimizer = self.parallel.full_weights(), self.parallel.optimizer_state(self.optimizer)
        target = checkpoint.checkpoints_root(self.run_dir) / contract.checkpoint_dir_name(self.state.step)
        self._last_saved_step = self.state.step
        if not self.ranks.primary:
            self.parallel.barrier()
            return target
        folder = checkpoint.save(
            self.run_dir, self.state, lambda folder: self.session.save_weights(folder, weights), optimizer,
            self.scheduler, rng, self.config.to_json(),
        )  # fmt: skip
        self.parallel.barrier()
        # Committed to the run's copy (when it has one) before it is reported: a reported checkpoint
        # is one another machine can resume from.
        self.config.run_copy.commit_folder(self.run_dir, folder)
        pruned = {step for step, _ in checkpoint.prune(self.run_dir, self.hp.save_total_limit)}
        pruned |= set(self.config.run_copy.prune(self.hp.save_total_limit))
        self.telemetry.emit(
            contract.KIND_CHECKPOINT, step=self.state.step, path=str(folder.relative_to(self.run_dir)),
            epoch=self.state.epoch, tokens=self.state.tokens_seen, loss=self.state.last_loss,
            pruned=sorted(pruned),
        )  # fmt: skip
        self.config.run_copy.push_files(self.run_dir)  # the telemetry up to this checkpoint's record
        return folder

    def _evaluate(self, baseline: bool) -> dict[str, float]:
        rows, on = (self.eval_rows, "eval") if self.eval_rows else (self.rows[:32], "train_sample")
        loss, tokens = evaluate(self.session, rows, self.hp.batch_size, self.collate)
        figures = {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0)), "eval_tokens": tokens}
        self.telemetry.emit(contract.KIND_EVAL, step=self.state.step, baseline=baseline, eval_on=on, **figures)
        return figures

    # ---- finish ------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Final eval, the trained model in final/, and the result card."""
        self.telemetry.phase("final_eval")
        result = self._result(self._evaluate(baseline=False))
        self.telemetry.phase("saving")
        weights = self.parallel.full_weights()
        if self.ranks.primary:  # the others ran this far only for the evaluation's and the gather's sake
            self.session.save_final(self.run_dir / contract.FINAL_DIR, self._card_inputs(result), weights)
        return result

    def _card_inputs(self, result: dict[str, Any]) -> CardInputs:
        stats = self.data.stats
        return CardInputs(
            spec=self.config.to_json(), source=self.session.source, result=result, data_files=stats.files,
            data_counts={"examples": stats.examples, "eval_examples": stats.eval_examples, "tokens": stats.tokens,
                         "loss_tokens": stats.loss_tokens},
            lineage=read_lineage(self.run_dir), versions=library_versions(),
        )  # fmt: skip

    def _result(self, final_eval: dict[str, float]) -> dict[str, Any]:
        baseline = self.state.baseline_eval or final_eval
        model = self.session.model
        return {
            "ppl_baseline": baseline["eval_ppl"],
            "ppl_final": final_eval["eval_ppl"],
            "ppl_delta_pct": 100.0 * (final_eval["eval_ppl"] - baseline["eval_ppl"]) / baseline["eval_ppl"],
            "eval_loss_baseline": baseline["eval_loss"],
            "eval_loss_final": final_eval["eval_loss"],
            "loss_final": self.state.last_loss,
            "params_total": sum(p.numel() for p in model.parameters()),
            "params_trainable": sum(p.numel() for p in self.trainable),
            "steps": self.state.step,
            "tokens_processed": self.state.tokens_seen,
            "train_seconds": round(self.state.train_seconds, 3),
            "compute_seconds": round(self._prior_compute + time.monotonic() - self._process_start, 3),
            "device": str(self.session.device),
            "compiled": self.session.compiled is not None,
        }


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _loss_tokens(row: Any) -> int:
    """Positions whose next token carries loss: what Session.loss_sum averages over."""
    return sum(1 for label in row.labels[1:] if label != -100)
