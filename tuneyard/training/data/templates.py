"""Render chat records through the tokenizer's chat template, or a default one.

Imports no transformers: the tokenizer is used through ``apply_chat_template`` alone.
"""

from __future__ import annotations

import json
from typing import Any

from tuneyard.training.data.records import Record, Turn
from tuneyard.training.models.chat_template import CHATML_TEMPLATE

# ChatML (tuneyard.training.models.chat_template): the most widely used layout, and what an
# untemplated base model is most likely to have seen. Used only when the tokenizer has no
# template of its own.
DEFAULT_CHAT_TEMPLATE = CHATML_TEMPLATE


def chat_template_for(tokenizer: Any) -> str:
    """The template used for this tokenizer: its own, else the default ChatML one.

    The runner may set ``tokenizer.chat_template`` to this before saving the trained model, so
    inference renders conversations exactly as training did.
    """
    own = getattr(tokenizer, "chat_template", None)
    return own if isinstance(own, str) and own else DEFAULT_CHAT_TEMPLATE


def to_message(turn: Turn) -> dict[str, Any]:
    """A turn as the message dict chat templates expect."""
    message: dict[str, Any] = {"role": turn.role, "content": turn.content, **turn.extra}
    if turn.tool_calls:
        message["tool_calls"] = [_template_call(c) for c in turn.tool_calls]
    return message


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    # OpenAI sends function arguments as a JSON string; HF templates expect a mapping.
    function = call.get("function")
    if isinstance(function, dict) and isinstance(function.get("arguments"), str):
        try:
            arguments = json.loads(function["arguments"])
        except json.JSONDecodeError:
            return call
        return {**call, "function": {**function, "arguments": arguments}}
    return call


def render(tokenizer: Any, record: Record, upto: int, *, generation_prompt: bool) -> str:
    """The template's text for the first ``upto`` turns of a chat record."""
    messages = [to_message(t) for t in record.turns[:upto]]
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": generation_prompt}
    if record.tools:
        kwargs["tools"] = record.tools
    if not getattr(tokenizer, "chat_template", None):
        kwargs["chat_template"] = DEFAULT_CHAT_TEMPLATE
    text = tokenizer.apply_chat_template(messages, **kwargs)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected text")
    return text
