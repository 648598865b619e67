"""Group examples into rows of at most max_seq_length tokens. Pure Python, deterministic.

Packing puts whole examples side by side in a row (never splitting one), best-fit by
decreasing length, which fills rows to within a few percent for typical SFT length
distributions. Each example's position ids restart at 0: that is both what the model would
see alone and how transformers recognizes the boundaries (see collate.py).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from tuneyard.training.data.encoding import Example


@dataclass(slots=True)
class Row:
    """One sequence of the batch: one example, or several packed."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # of the examples in it, in order

    def add(self, example: Example) -> None:
        self.input_ids += example.input_ids
        self.labels += example.labels
        self.position_ids += range(len(example.input_ids))
        self.lengths.append(len(example.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


def build_rows(examples: list[Example], max_seq_length: int, packing: bool) -> list[Row]:
    """Rows in a deterministic order (the training loop shuffles them by its own seed).

    Without packing, one example a row, in the given order.
    """
    too_long = [e.source for e in examples if len(e.input_ids) > max_seq_length]
    if too_long:
        raise ValueError(f"{len(too_long)} example(s) longer than max_seq_length, e.g. {too_long[0]}")
    if not packing:
        return [_single(e) for e in examples]
    return _best_fit_decreasing(examples, max_seq_length)


def _single(example: Example) -> Row:
    row = Row()
    row.add(example)
    return row


def _best_fit_decreasing(examples: list[Example], capacity: int) -> list[Row]:
    # Longest first (ties by input order, so the result depends on nothing else); each goes to
    # the row with the least room that still fits it. ``free`` is kept sorted by room left.
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].input_ids), i))
    rows: list[Row] = []
    free: list[tuple[int, int]] = []  # (room left, row index)
    for index in order:
        example = examples[index]
        size = len(example.input_ids)
        slot = bisect.bisect_left(free, (size, -1))
        if slot == len(free):
            rows.append(Row())
            room, row_index = capacity, len(rows) - 1
        else:
            room, row_index = free.pop(slot)
        rows[row_index].add(example)
        if room - size > 0:
            bisect.insort(free, (room - size, row_index))
    return rows
