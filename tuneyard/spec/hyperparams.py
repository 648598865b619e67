"""Training hyperparameters: each field documented once, defaults in the schema.

Every number has an upper bound as well as a lower one: a request is refused at submission rather
than allowed to hold a worker for ever or overflow a counter (`max_steps: 10**12` used to queue).
The bounds sit far past any fine-tune a user means; each says why it is where it is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_STEPS = 10_000_000
"""The most optimizer steps a job may ask for (`max_steps`, and the intervals counted in steps)."""


class Hyperparams(BaseModel):
    """Everything that shapes the optimisation, whatever the method. All optional; the defaults are
    documented here. A method's own parameters (LoRA's rank, say) are declared by the method
    (`tuneyard.spec.methods`) and sit beside these in a spec's `hyperparams`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    epochs: int = Field(1, ge=1, le=1000, description="Passes over the training data.")
    # 10 million steps is months of a GPU at a step a second: past it, a typo, not a plan.
    max_steps: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="Optimizer steps to run; overrides `epochs` when set."
    )
    learning_rate: float = Field(2.0e-4, gt=0, le=1.0, description="Peak learning rate of AdamW.")
    batch_size: int = Field(
        4, ge=1, le=4096,
        description="Examples per micro-batch (rows of several examples with `packing`); times "
        "`gradient_accumulation_steps`, the examples of one optimizer step, as in HF Trainer.",
    )  # fmt: skip
    gradient_accumulation_steps: int = Field(
        1, ge=1, le=1024, description="Micro-batches summed into one optimizer step."
    )
    max_seq_length: int = Field(512, ge=8, le=1_048_576, description="Tokens per row; longer examples are truncated.")
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Share of steps spent warming the LR up linearly.")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="Decay after warmup: cosine or linear to zero, or constant."
    )
    weight_decay: float = Field(0.0, ge=0.0, le=10.0, description="AdamW decoupled weight decay.")
    # Gradient norms past 1e6 mean the run has diverged; clipping there is clipping nothing.
    max_grad_norm: float | None = Field(
        1.0, gt=0, le=1.0e6, description="Clip the global gradient norm to this; null disables clipping."
    )
    # Off by default so an epoch has the steps users expect (ceil(examples / (batch_size x
    # accumulation))); each micro-batch is then joined end to end with no padding, so none is wasted.
    packing: bool = Field(
        False,
        description="Fill rows of max_seq_length with several examples (no attention across them) and batch "
        "rows, not examples: fewer, fuller optimizer steps (an epoch is about tokens / (max_seq_length x "
        "batch_size x accumulation) steps). Off: each step takes batch_size x accumulation examples, "
        "joined without padding.",
    )
    bf16: bool | Literal["auto"] = Field(
        "auto", description="bf16 autocast; 'auto' turns it on where the hardware has fast bf16."
    )
    compile: bool | Literal["auto"] = Field(
        "auto",
        description="torch.compile the training forward; 'auto' only where measured to repay its compile "
        "time (docs/engine.md).",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    eval_split: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share of the training examples held out for evaluation."
    )
    # Intervals longer than the longest run allowed would never fire: the same bound as max_steps.
    eval_steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="Evaluate every N optimizer steps.")
    save_steps: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="Checkpoint every N steps (also at each epoch's end and at the end)."
    )
    # Each kept checkpoint is a copy of the trainable weights and optimizer state on disk.
    save_total_limit: int = Field(
        3, ge=1, le=1000, description="Complete checkpoints to keep; the newest always stays."
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds data order, initialisation and dropout.")
    train_on_inputs: bool = Field(
        False, description="Put loss on prompt tokens too; by default only assistant/completion tokens."
    )


HYPERPARAM_NAMES = frozenset(Hyperparams.model_fields)
"""The method-independent names; `tuneyard.spec.methods.all_hyperparam_names` adds the methods'."""
