"""Recommended starting settings, and a safe window around each, from a model's size and a dataset's.

The rules, and where each comes from (published recipes checked; the numbers are theirs, the
interpolation ours):

- Learning rate scales down with model size. LoRA: 2e-4 for models up to ~13B (QLoRA, Dettmers et
  al. 2023, Table 9: 2e-4 for 7B and 13B, 1e-4 for 33B and 65B); full fine-tuning: 2e-5 at 7B (Alpaca;
  Tülu 2, Ivison et al. 2023: 2e-5 for 7B/13B, 1e-5 for 70B). Small models take larger steps:
  tuneyard's size tiers (`tuneyard.training.models.catalog`), 1e-3 under 20M parameters. The window
  is half to double the value (QLoRA's sweeps found LoRA insensitive within that factor).
- Training amount scales with the data: small sets need several passes, big ones one. Under 1M tokens
  3 epochs (Alpaca: 3 epochs over 52k short examples; LIMA, Zhou et al. 2023, trained 1k examples for
  15 epochs), under 100M 2 (Tülu 2: 2 epochs), beyond that one pass, as pretraining-scale corpora are
  not repeated (Chinchilla). Window: 1 to twice the recommendation.
- seq_len is the 95th percentile of the examples' token lengths, rounded up to a multiple of 64 and
  capped at the model's context: the longest example decides nothing, as truncating 5 % of examples
  costs little and padding every batch to the longest costs much. Window: the median to the 99th percentile.
- LoRA rank 16 with every linear layer adapted (QLoRA: with all layers adapted, rank matters little;
  16 is peft's and Axolotl's common default); 8 for datasets under 100k tokens, 64 over 50M.
- Batch: up to 16 examples per optimizer step (Alpaca's 128 and QLoRA's 16 bracket it), fewer on
  small data so that the run makes at least MIN_STEPS (200) optimizer updates: halved down to
  MIN_STEP_EXAMPLES (4) until it does. Small-data recipes take small steps and many of them: Unsloth's
  notebooks default to 2 x 4 = 8 examples a step, LIMA went over its 1,000 examples 15 times, and
  Alpaca-LoRA's 3 epochs of 52k examples at 128 a step make ~1,200 updates (200 is a sixth of that,
  a floor, not a target). Measured at a fixed compute (benchmarks/recommend_quality.py, tiny-llama LoRA):
  16-example steps lost to the defaults' 8 on 64 chats (12 updates against 24), 8-example steps lost
  on 400 (150 updates against 164, in a first run), and 4-example steps beat the defaults by 0.04 to
  0.05 in held-out loss at both sizes and two seeds. As batch_size x gradient accumulation,
  batch_size from the size tier unless that is more than a step's examples.
- Fusion's `turns` are full passes (= epochs); `cycles` are evaluation-and-checkpoint cycles, five a
  run, each `steps_per_cycle` optimizer steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DISCLAIMER = "Recommended starting points — tune within the window for your model and data."
CHARS_PER_TOKEN = 4
"""The same rough ratio the dataset report's token estimate uses (`training.data.validation`)."""
STEP_EXAMPLES = 16
"""Examples an optimizer step takes when the data has plenty."""
MIN_STEPS = 200
"""Optimizer updates a run should make, where even its smallest steps allow (see the module docstring)."""
MIN_STEP_EXAMPLES = 4
"""The fewest examples a step averages its gradient over: half Unsloth's default 8."""
CYCLES = 5


@dataclass(frozen=True)
class DataFigures:
    """What is known of a dataset: its tokens, its examples and their lengths in tokens (if read)."""

    tokens: int
    examples: int | None = None
    lengths: tuple[int, ...] = ()


def learning_rate(params: int, method: str) -> float:
    full = method == "full"
    if params <= 20_000_000:
        return 1.0e-3
    if params <= 1_000_000_000:
        return 2.0e-5 if full else 2.0e-4
    if params <= 13_000_000_000:
        return 1.0e-5 if full else 2.0e-4
    return 5.0e-6 if full else 1.0e-4


def epochs_for(tokens: int) -> int:
    if tokens < 1_000_000:
        return 3
    if tokens < 100_000_000:
        return 2
    return 1


def lora_rank_for(tokens: int) -> int:
    if tokens < 100_000:
        return 8
    if tokens > 50_000_000:
        return 64
    return 16


def examples_per_step(examples: int, epochs: int) -> int:
    """STEP_EXAMPLES, halved while the run would make fewer than MIN_STEPS updates, down to MIN_STEP_EXAMPLES."""
    step = STEP_EXAMPLES
    while step > MIN_STEP_EXAMPLES and epochs * math.ceil(examples / step) < MIN_STEPS:
        step //= 2
    return step


def percentile(values: tuple[int, ...], pct: float) -> int:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def _round_up(value: int, multiple: int = 64) -> int:
    return max(multiple, -(-value // multiple) * multiple)


def seq_len_for(data: DataFigures, context: int, fallback: int) -> tuple[int, int, int]:
    """(recommended, low, high) sequence lengths from the length distribution, within the context."""
    if not data.lengths:
        typical = data.tokens // data.examples if data.examples else fallback
        value = min(context, _round_up(min(fallback, 2 * typical)))
        return value, min(value, _round_up(typical)), min(context, max(value, fallback))
    p50, p95, p99 = (_round_up(percentile(data.lengths, pct)) for pct in (50, 95, 99))
    value = min(context, p95)
    return value, min(value, p50), min(context, p99)


def recommend(params: int, data: DataFigures, method: str, context: int, batch_size: int) -> dict[str, Any]:
    """The recommended settings, their windows and the notes that say why."""
    lr = learning_rate(params, method)
    epochs = epochs_for(data.tokens)
    seq_len, seq_low, seq_high = seq_len_for(data, context, fallback=min(context, 1024))
    examples = data.examples or max(1, data.tokens // max(1, seq_len // 2))
    step_examples = examples_per_step(examples, epochs)
    batch_size = min(batch_size, step_examples)
    accumulation = max(1, step_examples // batch_size)
    steps = max(1, epochs * math.ceil(examples / (batch_size * accumulation)))
    recommended: dict[str, Any] = {
        "turns": epochs, "epochs": epochs, "lr": lr, "learning_rate": lr, "cycles": min(CYCLES, steps),
        "steps_per_cycle": math.ceil(steps / min(CYCLES, steps)), "seq_len": seq_len, "max_seq_length": seq_len,
        "batch_size": batch_size, "gradient_accumulation_steps": accumulation,
    }  # fmt: skip
    windows: dict[str, dict[str, Any]] = {
        "lr": {"min": lr / 2, "max": lr * 2}, "learning_rate": {"min": lr / 2, "max": lr * 2},
        "turns": {"min": 1, "max": 2 * epochs}, "epochs": {"min": 1, "max": 2 * epochs},
        "cycles": {"min": 1, "max": max(recommended["cycles"], 2 * CYCLES)},
        "steps_per_cycle": {"min": max(1, recommended["steps_per_cycle"] // 2),
                            "max": 2 * recommended["steps_per_cycle"]},
        "seq_len": {"min": seq_low, "max": seq_high}, "max_seq_length": {"min": seq_low, "max": seq_high},
        "batch_size": {"min": 1, "max": 2 * batch_size},
        "gradient_accumulation_steps": {"min": 1, "max": 2 * accumulation},
    }  # fmt: skip
    notes = [
        f"≈{epochs} epoch{'s' if epochs > 1 else ''} over your ~{_human(data.tokens)}-token dataset",
        f"Learning rate tuned for a ~{_human(params)}-parameter model ({method})",
        f"{batch_size * accumulation} examples per optimizer step: batch {batch_size} x {accumulation} accumulated"
        + (f", {steps} updates in all (small data learns from more, smaller steps)"
           if batch_size * accumulation < STEP_EXAMPLES else ""),
    ]
    if data.lengths:
        notes.append(f"seq_len {seq_len} covers 95 % of your examples whole (the longest is {max(data.lengths)})")
    else:
        notes.append(f"seq_len {seq_len} from the mean example length; name a dataset to use its length percentiles")
    if method in ("lora", "qlora"):
        rank = lora_rank_for(data.tokens)
        recommended["lora_rank"] = rank
        windows["lora_rank"] = {"min": max(1, rank // 2), "max": rank * 4}
        notes.append(f"LoRA rank {rank} on every linear layer, sized to the data")
    return {"recommended": recommended, "windows": windows, "notes": notes, "disclaimer": DISCLAIMER}


def _human(value: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}".replace(".0", "")
    return str(int(value))
