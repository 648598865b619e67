"""The dataset formats: detect which one a row is in, and normalize it into a Record. Pure Python.

Each parser takes one decoded row (a dict) and returns (kind, turns, tools) or raises
``Invalid`` with a reason a user can act on. The reading code adds the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tuneyard.spec.formats import FORMATS
from tuneyard.training.data.records import CHAT_ROLES, RecordKind, Turn


class Invalid(ValueError):
    """One row cannot be used; the message says why."""


Parsed = tuple[RecordKind, list[Turn], list[dict[str, Any]] | None]

# Aliases seen in the wild. OpenAI's "developer" is its newer name for "system"; "function"
# is its legacy name for "tool".
_CHAT_ROLE_ALIASES = {"developer": "system", "function": "tool"}
_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "function_call": "assistant",
}


def detect(row: dict[str, Any]) -> str | None:
    """The format a row looks like, by the key each format declares; None when it looks like none."""
    return next((entry.name for entry in FORMATS if entry.key in row), None)


def _text(value: Any, what: str, *, allow_empty: bool = False) -> str:
    if value is None:
        raise Invalid(f"{what} is missing")
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a string, not {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise Invalid(f"{what} is empty")
    return value


def _content(msg: dict[str, Any], what: str) -> str:
    """Message content: a string, or OpenAI's list of text parts joined."""
    content = msg.get("content")
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) != len(content) or not all(isinstance(p, str) for p in parts):
            raise Invalid(f"{what}.content: only text parts are supported")
        content = "".join(str(p) for p in parts)
    if content is None and msg.get("tool_calls"):
        return ""
    return _text(content, f"{what}.content")


def _weight(msg: dict[str, Any], what: str, role: str) -> bool:
    weight = msg.get("weight", 1)
    if weight not in (0, 1) or isinstance(weight, bool):
        raise Invalid(f"{what}.weight must be 0 or 1")
    if weight == 0 and role != "assistant":
        raise Invalid(f"{what}.weight is only allowed on assistant messages")
    return weight == 1


def _tool_calls(msg: dict[str, Any], what: str) -> list[dict[str, Any]] | None:
    calls = msg.get("tool_calls")
    if calls is None:
        return None
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise Invalid(f"{what}.tool_calls must be a list of objects")
    return calls


def _chat_turn(index: int, msg: Any) -> Turn:
    what = f"messages[{index}]"
    if not isinstance(msg, dict):
        raise Invalid(f"{what} must be an object")
    role = msg.get("role")
    role = _CHAT_ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
    if role not in CHAT_ROLES:
        raise Invalid(f"{what}.role: unknown role {msg.get('role')!r}")
    calls = _tool_calls(msg, what)
    if calls and role != "assistant":
        raise Invalid(f"{what}.tool_calls is only allowed on assistant messages")
    extra = {k: msg[k] for k in ("name", "tool_call_id") if isinstance(msg.get(k), str)}
    train = role == "assistant" and _weight(msg, what, role)
    return Turn(role, _content(msg, what), train=train, tool_calls=calls, extra=extra)


def _needs_trained_turn(turns: list[Turn], key: str) -> list[Turn]:
    if not turns:
        raise Invalid(f"{key} is empty")
    if not any(t.role == "assistant" for t in turns):
        raise Invalid("no assistant turn")
    if not any(t.train for t in turns):
        raise Invalid("every assistant turn has weight 0: nothing to train on")
    return turns


def parse_chat(row: dict[str, Any]) -> Parsed:
    messages = row.get("messages")
    if messages is None:
        raise Invalid("messages is missing")
    if not isinstance(messages, list):
        raise Invalid("messages must be a list")
    tools = row.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise Invalid("tools must be a list of objects")
    turns = [_chat_turn(i, m) for i, m in enumerate(messages)]
    return "chat", _needs_trained_turn(turns, "messages"), tools


def parse_sharegpt(row: dict[str, Any]) -> Parsed:
    conversations = row.get("conversations")
    if conversations is None:
        raise Invalid("conversations is missing")
    if not isinstance(conversations, list):
        raise Invalid("conversations must be a list")
    turns = []
    if row.get("system") is not None:
        turns.append(Turn("system", _text(row["system"], "system")))
    for i, msg in enumerate(conversations):
        what = f"conversations[{i}]"
        if not isinstance(msg, dict):
            raise Invalid(f"{what} must be an object")
        role = _SHAREGPT_ROLES.get(str(msg.get("from", "")).lower())
        if role is None:
            raise Invalid(f"{what}.from: unknown role {msg.get('from')!r}")
        turns.append(Turn(role, _text(msg.get("value"), f"{what}.value"), train=role == "assistant"))
    return "chat", _needs_trained_turn(turns, "conversations"), None


def parse_alpaca(row: dict[str, Any]) -> Parsed:
    """Alpaca becomes a conversation (as LLaMA-Factory does): system?, history, user, assistant."""
    instruction = _text(row.get("instruction"), "instruction")
    given = row.get("input")
    extra_input = _text(given, "input", allow_empty=True) if given is not None else ""
    prompt = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    turns = []
    if row.get("system") is not None:
        turns.append(Turn("system", _text(row["system"], "system")))
    history = row.get("history") or []
    if not isinstance(history, list):
        raise Invalid("history must be a list of [instruction, response] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise Invalid(f"history[{i}] must be an [instruction, response] pair")
        turns.append(Turn("user", _text(pair[0], f"history[{i}][0]")))
        turns.append(Turn("assistant", _text(pair[1], f"history[{i}][1]"), train=True))
    turns.append(Turn("user", prompt))
    turns.append(Turn("assistant", _text(row.get("output"), "output"), train=True))
    return "chat", turns, None


def parse_prompt_completion(row: dict[str, Any]) -> Parsed:
    """Raw text, prompt then completion, as the OpenAI legacy and Together formats are."""
    prompt = _text(row.get("prompt"), "prompt", allow_empty=True)
    completion = _text(row.get("completion"), "completion")
    return "completion", [Turn("prompt", prompt), Turn("completion", completion, train=True)], None


def parse_text(row: dict[str, Any]) -> Parsed:
    return "text", [Turn("text", _text(row.get("text"), "text"), train=True)], None


PREFERRED, NON_PREFERRED = "preferred", "non_preferred"
"""The roles of a preference record's two answers, after its prompt's chat turns."""


def _single_answer(row: dict[str, Any], key: str) -> str:
    """OpenAI's DPO format gives each answer as a list of exactly one assistant message."""
    value = row.get(key)
    if value is None:
        raise Invalid(f"{key} is missing")
    if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)):
        raise Invalid(f"{key} must be a list of one assistant message")
    message = value[0]
    if message.get("role") != "assistant":
        raise Invalid(f"{key}[0].role must be 'assistant', not {message.get('role')!r}")
    if message.get("tool_calls"):
        raise Invalid(f"{key}[0].tool_calls: preference answers are text only")
    return _content(message, f"{key}[0]")


def parse_preference(row: dict[str, Any]) -> Parsed:
    """OpenAI's DPO row: the prompt's chat turns, then the preferred and the non-preferred answer."""
    given = row.get("input")
    if not isinstance(given, dict):
        raise Invalid("input must be an object with 'messages'")
    messages = given.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("input.messages must be a non-empty list")
    tools = given.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise Invalid("input.tools must be a list of objects")
    prompt = [_chat_turn(i, m) for i, m in enumerate(messages)]
    if prompt[-1].role == "assistant":
        raise Invalid("input.messages must end with a user (or tool) turn: the answers follow it")
    prompt = [Turn(t.role, t.content, train=False, tool_calls=t.tool_calls, extra=t.extra) for t in prompt]
    preferred = _single_answer(row, "preferred_output")
    rejected = _single_answer(row, "non_preferred_output")
    if preferred == rejected:
        raise Invalid("preferred_output and non_preferred_output are the same answer: nothing to prefer")
    return "preference", [*prompt, Turn(PREFERRED, preferred, train=True), Turn(NON_PREFERRED, rejected)], tools or None


# One parser per format registered in tuneyard.spec.formats (a test holds the two together).
PARSERS: dict[str, Callable[[dict[str, Any]], Parsed]] = {
    "chat": parse_chat,
    "sharegpt": parse_sharegpt,
    "alpaca": parse_alpaca,
    "prompt_completion": parse_prompt_completion,
    "text": parse_text,
    "preference": parse_preference,
}

# Columns that hold nested JSON; in CSV cells they arrive as strings and are decoded first.
NESTED_COLUMNS = ("messages", "conversations", "tools", "history")
# A preference row's columns, decoded only in a row that has preferred_output: Alpaca's `input` is text.
PREFERENCE_COLUMNS = ("input", "preferred_output", "non_preferred_output")


def decode_nested(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are strings: decode the ones that must hold lists (or, in a preference row, objects)."""
    out = dict(row)
    for key in NESTED_COLUMNS + (PREFERENCE_COLUMNS if "preferred_output" in row else ()):
        if isinstance(out.get(key), str):
            try:
                out[key] = json.loads(out[key])
            except json.JSONDecodeError as exc:
                raise Invalid(f"{key}: not valid JSON ({exc.msg})") from None
    return out
