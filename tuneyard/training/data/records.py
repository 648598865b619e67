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

    def as_pair(self) -> tuple[Record, Record]:
        """A preference record as two chats: its prompt with the preferred answer, and with the other.

        The answers are the last two turns (roles "preferred", "non_preferred"; see
        `tuneyard.training.data.formats.parse_preference`); each becomes the trained assistant turn.
        """
        if self.kind != "preference":
            raise ValueError(f"{self.where}: a {self.kind} record is not a preference pair")
        *prompt, preferred, rejected = self.turns
        return tuple(  # type: ignore[return-value]
            Record("chat", [*prompt, Turn("assistant", answer.content, train=True)], self.file, self.line,
                   self.tools)
            for answer in (preferred, rejected)
        )
