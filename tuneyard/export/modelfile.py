"""What Ollama needs besides the GGUF: chat template, stop tokens and parameters, as a Modelfile
(beside the export) and as the fields of Ollama's /api/create (the import).

Ollama's TEMPLATE is a Go template, not the tokenizer's Jinja one, so a template is written only
for a chat format we recognise (ChatML, which tiny-llama and SmolLM2 use); for any other it is
left out and Ollama reads the chat template the converter stored in the GGUF.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CHATML_GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)

DEFAULT_PARAMETERS: dict[str, Any] = {"temperature": 0.7, "top_p": 0.9}
"""Documented Modelfile parameters; num_ctx is added from the model's context length."""


@dataclass(frozen=True)
class OllamaRecipe:
    template: str | None
    stop: list[str]
    parameters: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



def recipe_for(chat_template: str | None, eos_token: str | None, context_length: int | None) -> OllamaRecipe:
    chatml = bool(chat_template and "<|im_start|>" in chat_template)
    stop = [eos_token] if eos_token else []
    if chat_template and "<|im_end|>" in chat_template:
        stop.append("<|im_end|>")
    parameters = dict(DEFAULT_PARAMETERS)
    if context_length:
        parameters["num_ctx"] = int(context_length)
    return OllamaRecipe(CHATML_GO_TEMPLATE if chatml else None, list(dict.fromkeys(stop)), parameters)


def render_modelfile(gguf_name: str, recipe: OllamaRecipe) -> str:
    lines = [f"FROM ./{gguf_name}"]
    if recipe.template:
        lines.append(f'TEMPLATE """{recipe.template}"""')
    lines += [f"PARAMETER {key} {value}" for key, value in recipe.parameters.items()]
    lines += [f"PARAMETER stop {_quote(token)}" for token in recipe.stop]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
