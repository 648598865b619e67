"""ChatML: the one chat layout tuneyard gives tokenizers that come without a template. Pure strings.

ChatML (`<|im_start|>role\\n...<|im_end|>\\n`) is what SmolLM2, Qwen and many others use, so a
model fine-tuned with it talks the way most serving stacks already expect. Tool calls are shown
as JSON inside <tool_call> tags, the convention of Qwen and Hermes templates. The layout is
defined here once, twice rendered from the same markers: as the Jinja template tokenizers carry
(assistant turns inside `{% generation %}` blocks, so `apply_chat_template(...,
return_assistant_tokens_mask=True)` can tell which tokens carry the loss), and as `chatml_turn`
for code that lays turns out without a tokenizer (the console's dataset preview). A test holds
the two to the same text.
"""

from __future__ import annotations

import json
from typing import Any

CHATML_START = "<|im_start|>"
CHATML_END = "<|im_end|>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"

_TOOL_CALLS = (
    "{%- for call in message.get('tool_calls') or [] %}"
    f"{{{{- '{TOOL_CALL_OPEN}' }}}}{{{{- call | tojson }}}}{{{{- '{TOOL_CALL_CLOSE}' }}}}"
    "{%- endfor %}"
)

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- set content = message.get('content') or '' %}"
    "{%- if message['role'] == 'assistant' %}"
    f"{{{{- '{CHATML_START}assistant\\n' }}}}"
    f"{{%- generation %}}{{{{- content }}}}{_TOOL_CALLS}{{{{- '{CHATML_END}' }}}}{{%- endgeneration %}}"
    "{{- '\\n' }}"
    "{%- else %}"
    f"{{{{- '{CHATML_START}' + message['role'] + '\\n' + content }}}}{_TOOL_CALLS}{{{{- '{CHATML_END}\\n' }}}}"
    "{%- endif %}"
    "{%- endfor %}"
    f"{{%- if add_generation_prompt %}}{{{{- '{CHATML_START}assistant\\n' }}}}{{%- endif %}}"
)


def chatml_turn(role: str, content: str, tool_calls: list[dict[str, Any]] | None = None) -> tuple[str, str, str]:
    """One turn as CHATML_TEMPLATE lays it out: (header, body through the end marker, trailing newline).

    The body is what an assistant turn's loss covers: its text and the marker that ends it."""
    calls = "".join(f"{TOOL_CALL_OPEN}{json.dumps(c, ensure_ascii=False)}{TOOL_CALL_CLOSE}" for c in tool_calls or [])
    return f"{CHATML_START}{role}\n", f"{content}{calls}{CHATML_END}", "\n"
