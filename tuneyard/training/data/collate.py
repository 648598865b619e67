"""Rows to the tensors of one causal-LM forward pass: padded side by side (``collate``), or end to
end in one sequence with no padding at all (``collate_padding_free``, the default batching).

No attention mask is returned, on purpose. transformers (>= 4.56, and 5.x) builds the mask
itself when ``attention_mask`` is None: it reads example boundaries from ``position_ids``
(each restart at 0 starts a new sequence) and makes a block-diagonal causal mask for eager
and sdpa, varlen kernels for flash attention, a block mask for flex attention. A 2D padding
mask would switch that detection off and let packed examples attend to each other.

Padding is right-side, with position id 0 at every pad, so each pad is its own one-token
sequence: real tokens never see it, and its label is IGNORE_INDEX.

The caller MUST run the model with ``use_cache=False`` (PACKED_FORWARD_KWARGS): with a cache,
transformers skips the boundary detection and packed rows would attend across examples.
torch is imported inside the function so ``tuneyard.training.data`` stays torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuneyard.training.data.encoding import IGNORE_INDEX
from tuneyard.training.data.packing import Row

if TYPE_CHECKING:
    import torch

# Keyword arguments every forward pass over collated rows needs (see the module docstring).
PACKED_FORWARD_KWARGS: dict[str, Any] = {"use_cache": False}


def collate(rows: list[Row], pad_token_id: int, *, pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """input_ids, labels and position_ids, each (batch, longest row), right-padded."""
    import torch

    if not rows:
        raise ValueError("cannot collate an empty batch")
    length = max(len(row) for row in rows)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        input_ids[i, :n] = torch.tensor(row.input_ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(row.labels, dtype=torch.long)
        position_ids[i, :n] = torch.tensor(row.position_ids, dtype=torch.long)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def collate_padding_free(
    rows: list[Row], pad_token_id: int = 0, *, line_tokens: int | None = None
) -> dict[str, torch.Tensor]:
    """Every row's examples end to end, with no padding between them.

    Position ids restart at each example, so attention stays within each (see the module
    docstring), and each example's first label is IGNORE_INDEX, so none predicts across a
    boundary: the losses are the padded batch's. With ``line_tokens``, rows go into as few lines of
    at most that many tokens as first fit takes (a longer row alone), padded to the longest line:
    eager and sdpa attend through a dense mask over a line, so one line of a whole large micro-batch
    would cost (all its tokens)² in memory and time. Without it, one line: no pad at all.
    """
    lines: list[Row] = []
    for row in rows:
        line = next((ln for ln in lines if line_tokens is None or len(ln) + len(row) <= line_tokens), None)
        if line is None:
            line = Row()
            lines.append(line)
        line.input_ids += row.input_ids
        line.labels += row.labels
        line.position_ids += row.position_ids
        line.lengths += row.lengths
    return collate(lines, pad_token_id)


Collate = Callable[[list[Row], int], "dict[str, torch.Tensor]"]


def collate_for(packing: bool, line_tokens: int | None) -> Collate:
    """How a recipe collates its micro-batches.

    ``line_tokens=None`` (the model attends one example at a time, models/attention.py): every row,
    a single example or a packed one, joined into one line with no padding at all. Otherwise
    attention goes through a mask over whole rows: packed rows are nearly full and of one length,
    so they are padded side by side; single examples vary, and are joined without padding into
    lines of at most ``line_tokens``, which bounds the mask's square.
    """
    if line_tokens is None:
        return lambda rows, pad_token_id: collate_padding_free(rows, pad_token_id)
    if packing:
        return collate
    return lambda rows, pad_token_id: collate_padding_free(rows, pad_token_id, line_tokens=line_tokens)
