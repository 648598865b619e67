"""The one internal shape every dataset format is normalized into. Pure Python.

A record is a list of turns. Each turn says whether it carries loss, so the tokenizer code
never needs to know which file format a record came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneyard.spec.formats import RecordKind, format_choices

# The formats a user may name (registered in tuneyard.spec.formats); "auto" detects one per file.
FORMATS = format_choices()

CHAT_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True, slots=True)
class Turn:
    """One piece of a record.

    ``role`` is a chat role for chat records, "prompt"/"completion" for completion records,
    "text" for text records. ``train`` marks the turns whose tokens carry loss by default.
    """

    role: str
    content: str
    train: bool = False
    tool_calls: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # name, tool_call_id: passed to the template


@dataclass(frozen=True, slots=True)
class Record:
    """One training example, normalized, with where it came from (for error messages)."""

    kind: RecordKind
    turns: list[Turn]
    file: str
    line: int
    tools: list[dict[str, Any]] | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"
