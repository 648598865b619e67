"""Attention one example at a time inside a padding-free line: no mask, no compute across examples.

A padding-free micro-batch is one line of examples end to end, with position ids restarting at
each (`training/data/collate.py`). Left to transformers' sdpa, such a line gets a dense
block-diagonal mask of (line tokens)² and sdpa's masked kernel computes every block of it, the
ones between examples included: on a line of 8 examples that is ~8x the attention work of the
examples themselves, and it was the bulk of a step for small models. Here each example's span of
the line is attended alone with sdpa's causal kernel (`is_causal`, no mask), which skips the
future and never sees another example: the work is the sum of the examples' own squares, as when
each runs alone, and the outputs are the same (tests/training/test_per_example_attention.py).

It is registered with transformers' AttentionInterface under PER_EXAMPLE and switched on for a
forward (and the backward that may recompute it under gradient checkpointing) by
`per_example_attention`, never left on a model: generation, and any batch with padding, need the
masks transformers builds for its own implementations, and this one gets none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import AttentionInterface

PER_EXAMPLE = "tuneyard_per_example"
PER_EXAMPLE_FP32 = "tuneyard_per_example_fp32"
"""The same, computed in fp32 under bf16 autocast: where bf16 attention kernels are slower than fp32
ones (training/attention_precision.py measures it)."""
BATCH_EQUAL_LENGTHS = True
"""Whether a line of examples that are all one length is attended as a batch of them (`_side_by_side`);
off only in the test that compares the two ways."""


def _spans(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each example in a line: an example starts where its position id is 0."""
    starts = (position_ids == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    ends = [*starts[1:], int(position_ids.shape[-1])]
    return list(zip(starts, ends, strict=True))


def per_example_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query/key/value (1, heads, line, head_dim) → (1, line,
    heads, head_dim), each example's span through sdpa's causal kernel on its own."""
    position_ids = kwargs.get("position_ids")
    if attention_mask is not None or position_ids is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        # Only a padding-free line is ever run under this implementation (per_example_attention's
        # callers); anything else would silently attend across what it cannot see.
        raise RuntimeError(
            "per-example attention takes one padding-free line with position ids and no mask or cache; "
            f"got batch {query.shape[0]}, {query.shape[2]} queries, {key.shape[2]} keys, "
            f"mask {'given' if attention_mask is not None else 'none'}, "
            f"position ids {'given' if position_ids is not None else 'none'}"
        )
    spans = _spans(position_ids[0])
    if BATCH_EQUAL_LENGTHS and len(spans) > 1 and len({end - start for start, end in spans}) == 1:
        return _side_by_side(module, query, key, value, len(spans), dropout, scaling), None
    outputs = [
        sdpa_attention_forward(
            module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], None,
            dropout=dropout, scaling=scaling, is_causal=True,
        )[0]
        for start, end in spans
    ]  # fmt: skip
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)), None


def _side_by_side(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  examples: int, dropout: float, scaling: float | None) -> torch.Tensor:
    """A line of `examples` examples of one length (fixed-length rows: every chunk is max_seq_length)
    attended as a batch of them in one call, the work and the answer of one call per example: one
    kernel launch instead of `examples` per layer, which is what a padded batch of such rows costs."""

    def batch(t: torch.Tensor) -> torch.Tensor:  # (1, heads, n·length, dim) -> (n, heads, length, dim)
        return t[0].unflatten(1, (examples, -1)).transpose(0, 1)

    out = sdpa_attention_forward(module, batch(query), batch(key), batch(value), None,
                                 dropout=dropout, scaling=scaling, is_causal=True)[0]
    return out.flatten(0, 1).unsqueeze(0)  # (n, length, heads, dim) -> (1, n·length, heads, dim)


def per_example_sdpa_fp32(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """per_example_sdpa on fp32 copies of bf16 inputs, autocast off (it would cast them back), the
    output returned in the inputs' precision; the casts are in the graph, so gradients flow through."""
    with torch.autocast(query.device.type, enabled=False):
        out, _ = per_example_sdpa(module, query.float(), key.float(), value.float(), attention_mask,
                                  dropout=dropout, scaling=scaling, **kwargs)
    return out.to(query.dtype), None


AttentionInterface.register(PER_EXAMPLE, per_example_sdpa)
AttentionInterface.register(PER_EXAMPLE_FP32, per_example_sdpa_fp32)


def supports_per_example(model: Any) -> bool:
    """Whether the model reads its attention function from transformers' AttentionInterface (every
    decoder ported to it does; an older remote-code model may not) and runs sdpa today."""
    config = getattr(model, "config", None)
    return bool(getattr(model, "_supports_attention_backend", False)) and getattr(
        config, "_attn_implementation", None
    ) in ("sdpa", PER_EXAMPLE, PER_EXAMPLE_FP32)


@contextlib.contextmanager
def per_example_attention(model: Any, fp32: bool = False) -> Iterator[None]:
    """Run the model's attention per example while inside (`fp32`: in fp32 under bf16 autocast);
    what it ran before, after. Nests."""
    config = model.config
    previous = config._attn_implementation
    config._attn_implementation = PER_EXAMPLE_FP32 if fp32 else PER_EXAMPLE
    try:
        yield
    finally:
        config._attn_implementation = previous
