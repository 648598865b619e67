"""The peak memory of a training job, by component, from the model's shape and the job's settings.

What is estimated is what the runner measures (`tuneyard.training.footprint`): the growth of the
runner's memory from just before it loads the model to its peak, on CPU peak RSS, on CUDA peak
allocated memory. The runner loads weights in fp32 and keeps trainable weights, gradients and
AdamW's two moments in fp32; bf16 is autocast, so only activations shrink with it.

Activation coefficients were read off tiny-llama with autograd's saved-tensor hooks (transformers
5, sdpa, which on CPU and CUDA keeps no seq x seq attention matrix): per token and decoder layer a
Llama layer keeps about 9 x hidden + 4 x intermediate values (the norms' inputs and outputs,
q/k/v after RoPE with k/v repeated to every head, the attention output, o_proj's input, and the
MLP's gate, up, act and product), plus rank values per adapted linear under LoRA. With gradient
checkpointing a layer keeps only its input, and one layer at a time is recomputed in backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from tuneyard.planning.shape import ModelShape

Device = Literal["cpu", "cuda"]

FP32 = 4
LOSS_CHUNK = 1024
"""Rows of logits the fused loss holds at once (`tuneyard.training.loss.chunked_token_loss_sum`)."""

RUNTIME_OVERHEAD: dict[str, int] = {"cpu": 40 << 20, "cuda": 0}
"""Memory a run grows by whatever the model: on CPU the allocator's arenas, oneDNN's kernels and
the data read (measured with tiny-llama, whose tensors are a few MB: 40 MB over them); CUDA's
context is not in allocated memory, so none there."""
ADAPTER_RUNTIME: dict[str, int] = {"cpu": 16 << 20, "cuda": 0}
"""peft's code, imported as the adapter is made (after the baseline): measured on CPU as the
difference between LoRA's and full fine-tuning's fixed growth."""


LINE_ROWS = 4
"""For a model that cannot attend one example at a time (training/models/attention.py), padding-free
lines hold up to this many max_seq_length rows' worth of tokens: long enough that the pad at each
line's end is a small share, short enough that the dense attention mask of a line (eager, sdpa)
stays near what a padded batch of 4 full rows would cost. The engine joins with it then
(`training/recipes/finetune.py`, `training/data/collate.collate_for`)."""


@dataclass(frozen=True)
class MicroBatch:
    """The shape of the largest micro-batch a job runs: `rows` sequences of `row_tokens` each.

    The one batch model every activation and FLOP figure uses (keep it here, in one place), as the
    engine batches (docs/engine.md). The engine attends one example at a time wherever the model
    lets it (every decoder on transformers' attention interface), and then a micro-batch is ONE
    line: its rows (batch_size examples, each at most max_seq_length and typically
    `example_tokens`, the dataset's mean when known; or batch_size packed rows of max_seq_length)
    end to end with no padding and no mask. Otherwise (`per_example=False`): packed rows side by
    side, or the examples joined into lines of at most LINE_ROWS x max_seq_length, first fit,
    padded to the longest line, each row behind a block-diagonal mask.
    """

    rows: int
    row_tokens: int
    several_examples: bool
    """Whether a row holds several examples behind one block-diagonal mask (sdpa then keeps that
    mask and attends over the whole row: quadratic in the row's length)."""
    span: int
    """The most tokens one token attends over: an example's length, or the whole masked row."""

    @property
    def tokens(self) -> int:
        return self.rows * self.row_tokens


def micro_batch(
    batch_size: int, max_seq_length: int, packing: bool, example_tokens: float | None = None,
    per_example: bool = True,
) -> MicroBatch:  # fmt: skip
    example = max_seq_length if example_tokens is None else min(max_seq_length, max(1, round(example_tokens)))
    if per_example:
        return MicroBatch(1, batch_size * (max_seq_length if packing else example), False, example)
    if packing:
        return MicroBatch(batch_size, max_seq_length, True, max_seq_length)
    per_line = max(1, LINE_ROWS * max_seq_length // example)  # first fit of equal examples
    lines = math.ceil(batch_size / per_line)
    row_tokens = min(batch_size, per_line) * example
    return MicroBatch(lines, row_tokens, min(batch_size, per_line) > 1, row_tokens)


@dataclass(frozen=True)
class TrainingSetup:
    """What about a job moves its memory and compute, from its method and resolved hyperparameters."""

    method: str
    batch_size: int
    max_seq_length: int
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    bf16: bool = False
    lora_rank: int = 16
    lora_targets: str | list[str] = "all-linear"
    packing: bool = False
    example_tokens: float | None = None
    """The dataset's mean tokens per example, when known (padding-free micro-batches hold batch_size of them)."""

    @classmethod
    def from_hyperparams(
        cls, method: str, hyperparams: dict[str, Any], bf16: bool, example_tokens: float | None = None
    ) -> TrainingSetup:
        """From a spec's resolved `hyperparams` (a dict, as the config and spec.json carry them)."""
        return cls(
            method=method, batch_size=int(hyperparams.get("batch_size", 4)),
            max_seq_length=int(hyperparams.get("max_seq_length", 512)),
            gradient_accumulation_steps=int(hyperparams.get("gradient_accumulation_steps", 1)),
            gradient_checkpointing=bool(hyperparams.get("gradient_checkpointing", False)), bf16=bf16,
            lora_rank=int(hyperparams.get("lora_rank", 16)),
            lora_targets=hyperparams.get("lora_target_modules", "all-linear"),
            packing=bool(hyperparams.get("packing", False)), example_tokens=example_tokens,
        )  # fmt: skip

    @property
    def batch(self) -> MicroBatch:
        return micro_batch(self.batch_size, self.max_seq_length, self.packing, self.example_tokens)

    @property
    def adapter(self) -> bool:
        return self.method in ("lora", "qlora", "dpo")


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory in bytes, by component (each documented in `COMPONENTS`), and their sum."""

    components: dict[str, int]
    device: str
    notes: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return sum(self.components.values())

    def to_json(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "peak_gb": round(self.peak_bytes / 1e9, 3),
                "components": dict(self.components), "device": self.device, "notes": list(self.notes)}


COMPONENTS: dict[str, str] = {
    "weights": "the frozen base weights (fp32; 4-bit under qlora)",
    "trainable_weights": "weights the optimizer updates (every weight under full fine-tuning)",
    "lora": "the LoRA adapter's weights",
    "gradients": "one fp32 gradient per trainable weight",
    "optimizer_state": "AdamW's two fp32 moments per trainable weight",
    "activations": "what the forward pass keeps for backward, for the largest micro-batch (MicroBatch)",
    "attention_mask": "the block-diagonal mask sdpa keeps per layer when a row holds several examples",
    "backward_workspace": "one layer's gradients in flight in backward (and its recomputed values under checkpointing)",
    "logits_workspace": "the loss's chunk of fp32 logits, and the gradient it hands back to the model",
    "runtime": "the framework's own growth (allocator arenas, kernels), measured",
    "heap_retention": "on CPU, freed temporaries of LoRA's adapter branches that the C allocator keeps, measured",
}


def estimate_memory(shape: ModelShape, setup: TrainingSetup, device: Device = "cpu") -> MemoryEstimate:
    """The peak of one training step: everything resident plus what backward holds at its start."""
    adapter_params = shape.lora_params(setup.lora_rank, setup.lora_targets) if setup.adapter else 0
    trainable = adapter_params if setup.adapter else shape.params
    components = {
        "weights": _weight_bytes(shape, setup.method),
        "trainable_weights": 0 if setup.adapter else shape.params * FP32,
        "lora": adapter_params * FP32,
        "gradients": trainable * FP32,
        "optimizer_state": 2 * trainable * FP32,
        "activations": activation_bytes(shape, setup),
        "attention_mask": attention_mask_bytes(shape, setup),
        "backward_workspace": backward_workspace_bytes(shape, setup),
        "logits_workspace": _logits_bytes(shape, setup),
        "runtime": RUNTIME_OVERHEAD[device] + (ADAPTER_RUNTIME[device] if setup.adapter else 0),
        "heap_retention": heap_retention_bytes(shape, setup) if device == "cpu" else 0,
    }
    notes = []
    if setup.method == "qlora":
        notes.append("qlora's 4-bit weights are estimated at half a byte per layer weight")
    return MemoryEstimate(components, device, notes)


def _per_layer_values(shape: ModelShape, setup: TrainingSetup) -> int:
    """Values one token keeps in one decoder layer for backward (see the module docstring)."""
    values = 9 * shape.hidden + 4 * shape.intermediate
    if setup.adapter:
        values += setup.lora_rank * shape.lora_width(setup.lora_targets)
    return values


def activation_bytes(shape: ModelShape, setup: TrainingSetup) -> int:
    """What the forward pass keeps for backward: every layer's values, or with gradient
    checkpointing only each layer's input (the fp32 residual stream) and the head's."""
    tokens = setup.batch.tokens
    if setup.gradient_checkpointing:
        return tokens * shape.hidden * FP32 * (shape.layers + 3)
    return tokens * _per_layer_values(shape, setup) * (2 if setup.bf16 else FP32) * shape.layers


def backward_workspace_bytes(shape: ModelShape, setup: TrainingSetup) -> int:
    """Backward holds one layer's gradients in flight, and under checkpointing that layer's
    recomputed values too. With a block-diagonal mask, sdpa's backward on one layer makes the
    attention probabilities and their gradient, rows x heads x row_tokens^2 each (measured: the
    peak of packed rows grows with the square of their length by about that)."""
    batch = setup.batch
    one_layer = batch.tokens * _per_layer_values(shape, setup) * (2 if setup.bf16 else FP32)
    attention = 2 * batch.rows * shape.heads * batch.row_tokens**2 * FP32 if batch.several_examples else 0
    return (2 * one_layer if setup.gradient_checkpointing else one_layer) + attention


def attention_mask_bytes(shape: ModelShape, setup: TrainingSetup) -> int:
    """Rows of several examples are masked block-diagonally; torch's sdpa keeps that mask as fp32,
    rows x row_tokens^2, for each layer's backward: quadratic in a row's length."""
    batch = setup.batch
    if not batch.several_examples:
        return 0
    # under checkpointing only the layer being recomputed holds its converted mask
    layers = 1 if setup.gradient_checkpointing else shape.layers
    return layers * batch.rows * batch.row_tokens**2 * FP32


def heap_retention_bytes(shape: ModelShape, setup: TrainingSetup) -> int:
    """What a CPU run's RSS holds beyond its live tensors: under LoRA, one out_features-wide fp32
    value per token, adapted linear and layer; half again with gradient checkpointing.

    Measured on tiny-llama (packed, 256 to 4,096 tokens a micro-batch): peak RSS minus the same run's
    peak with glibc's mmap threshold pinned (MALLOC_MMAP_THRESHOLD_=131072, so every tensor over
    128 KiB is mapped and unmapped alone and RSS follows the live tensors) was ~35 KB a token under
    LoRA on every linear, ~18 KB with only q and v adapted, ~13 KB under full fine-tuning: linear in
    the tokens, and ~27 % more with checkpointing, whose backward runs each layer's forward again and
    with it the adapter's temporaries (half again fits the checkpointed points within -6 to +14 %).
    Why: every activation-sized tensor comes from the heap (measured when glibc raised its mmap
    threshold to the largest block freed, the loss's 8 MB chunk of logits; runners now fix it at 32 MiB
    from the start, `child_process.keep_freed_memory`, and test_estimates holds the same), and peft's
    adapter branch (`lora_B(lora_A(x)) * scaling`, added to the base layer's output) frees its
    out-sized temporaries between tensors autograd keeps: holes the heap cannot hand back. Without
    this the estimate was -27 % (-39 to -46 % checkpointed) at 8 x 512 tokens. The part common to
    every method (~13 KB a token) is left out: RUNTIME_OVERHEAD was itself measured as RSS and holds
    it at the sizes it was read at. CUDA's peak allocated memory counts live tensors only: none there.
    """
    if not setup.adapter:
        return 0
    names = None if setup.lora_targets == "all-linear" else {t.rsplit(".", 1)[-1] for t in setup.lora_targets}
    width = sum(lin.d_out for lin in shape.layer_linears() if names is None or lin.name in names)
    once = setup.batch.tokens * shape.layers * width * FP32
    return once * 3 // 2 if setup.gradient_checkpointing else once


def _logits_bytes(shape: ModelShape, setup: TrainingSetup) -> int:
    tokens = setup.batch.tokens
    chunk = min(tokens, LOSS_CHUNK)
    # log-probs and the matmul's output for one chunk; the states' gradient for every loss token
    return 2 * chunk * shape.vocab * FP32 + tokens * shape.hidden * FP32


def _weight_bytes(shape: ModelShape, method: str) -> int:
    if method == "full":
        return 0  # every weight is trainable, counted there
    if method == "qlora":
        layer_weights = shape.layers * shape.layer_params
        return layer_weights // 2 + (shape.params - layer_weights) * FP32
    return shape.params * FP32
