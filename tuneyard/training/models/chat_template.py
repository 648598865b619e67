"""The ChatML chat template tuneyard gives tokenizers that come without one.

ChatML (`<|im_start|>role\\n...<|im_end|>\\n`) is what SmolLM2, Qwen and many others use, so a
model fine-tuned with it talks the way most serving stacks already expect. Assistant turns sit
inside `{% generation %}` blocks so `apply_chat_template(..., return_assistant_tokens_mask=True)`
can tell which tokens carry the loss.
"""

from __future__ import annotations

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- set content = message.get('content') or '' %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- content + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

CHATML_START = "<|im_start|>"
CHATML_END = "<|im_end|>"
