"""Dataset formats, registered by name: how a row is recognised and what kind of record it makes.

Pure data. The parsers that read each format live in `tuneyard.training.data.formats`, held to
exactly these names by a test; "auto" is not a format but the choice to detect one per file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tuneyard.spec.registry import Registry

AUTO = "auto"

RecordKind = Literal["chat", "completion", "text", "preference"]
"""How a record is rendered: through the chat template, as prompt + completion text, as plain text, or
as two chats (one prompt, a preferred and a non-preferred answer) that only method `dpo` trains on."""


@dataclass(frozen=True)
class FormatEntry:
    name: str
    description: str
    key: str
    """The column that marks a row as this format when detecting (checked in registration order)."""
    record: RecordKind


FORMATS: Registry[FormatEntry] = Registry("data format")

for _entry in (
    FormatEntry("chat", "OpenAI chat: {messages: [{role, content}], tools?}.", "messages", "chat"),
    FormatEntry("sharegpt", "ShareGPT: {conversations: [{from, value}]}.", "conversations", "chat"),
    FormatEntry("alpaca", "Alpaca instructions: {instruction, input?, output}.", "instruction", "chat"),
    FormatEntry("prompt_completion", "Raw prompt and completion text: {prompt, completion}.", "prompt", "completion"),
    FormatEntry("text", "Plain text, all of it trained on: {text}.", "text", "text"),
    FormatEntry("preference", "OpenAI DPO pairs: {input: {messages, tools?}, preferred_output: [assistant message], "
                "non_preferred_output: [assistant message]}; trained by method 'dpo' only.",
                "preferred_output", "preference"),
):
    FORMATS.register(_entry)


def format_choices() -> tuple[str, ...]:
    """What a user may name: "auto" or a registered format."""
    return (AUTO, *FORMATS.names())
