"""Show an example as the model sees it, with the spans that carry loss marked.

The web console shows this so users can check their masks and chat template before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any

from tuneyard.training.data.encoding import IGNORE_INDEX, Example


@dataclass(frozen=True, slots=True)
class PreviewSpan:
    text: str
    loss: bool  # whether the model is trained to produce these tokens


def render_preview(example: Example, tokenizer: Any) -> list[PreviewSpan]:
    """The example's text cut into consecutive spans with and without loss.

    Special tokens are shown (they are part of what the model learns, e.g. end of turn).
    """
    flags = [label != IGNORE_INDEX for label in example.labels]
    spans, start = [], 0
    for loss, run in groupby(flags):
        length = len(list(run))
        ids = example.input_ids[start : start + length]
        spans.append(PreviewSpan(tokenizer.decode(ids, skip_special_tokens=False), loss))
        start += length
    return spans


def preview_markup(spans: list[PreviewSpan], open_mark: str = "[[", close_mark: str = "]]") -> str:
    """The spans as one string, loss-bearing text between markers (for logs and the CLI)."""
    return "".join(f"{open_mark}{s.text}{close_mark}" if s.loss else s.text for s in spans)
