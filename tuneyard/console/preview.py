"""Dataset rows as the model sees them, with the text that carries loss marked.

Why no tokenizer here: a dataset is not tied to a base model until a job names one, and loading a
tokenizer means importing `transformers` into the API process (seconds, hundreds of MB, and a path
to torch). Instead each row is normalized with the training engine's own parsers (the same `Turn.train`
flags that decide the loss mask) and laid out in ChatML, the template tiny-llama ships and the one
the runner falls back to when a tokenizer has none. A base model with another template lays the same
turns out differently; which text carries loss does not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneyard.training.data.formats import PARSERS, Invalid, decode_nested, detect
from tuneyard.training.data.records import Turn
from tuneyard.training.models.chat_template import chatml_turn


@dataclass(frozen=True)
class Span:
    text: str
    loss: bool


@dataclass(frozen=True)
class PreviewExample:
    line: int
    file_index: int
    format: str
    spans: list[Span]
    problem: str | None = None


def preview_row(row: dict[str, Any], line: int, file_index: int, fmt: str = "auto") -> PreviewExample:
    """One stored row laid out as training text, split into spans with and without loss."""
    name = detect(row) if fmt == "auto" else fmt
    parser = PARSERS.get(name or "")
    if parser is None:
        return PreviewExample(line, file_index, "unknown", [], "no known format")
    try:
        kind, turns, _tools = parser(decode_nested(row))
    except Invalid as exc:
        return PreviewExample(line, file_index, name or "unknown", [], str(exc))
    # Completion and text records are their turns' text, end to end; chats go through ChatML.
    spans = _chatml(turns) if kind == "chat" else [Span(t.content, t.train) for t in turns]
    return PreviewExample(line, file_index, name or "unknown", _merged(spans))


def _chatml(turns: list[Turn]) -> list[Span]:
    spans: list[Span] = []
    for turn in turns:
        head, body, tail = chatml_turn(turn.role, turn.content, turn.tool_calls)
        # The response and the end-of-turn marker carry loss: the model must learn when to stop.
        spans += [Span(head, False), Span(body, turn.train), Span(tail, False)]
    return spans


def _merged(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for span in spans:
        if not span.text:
            continue
        if out and out[-1].loss == span.loss:
            out[-1] = Span(out[-1].text + span.text, span.loss)
        else:
            out.append(span)
    return out
