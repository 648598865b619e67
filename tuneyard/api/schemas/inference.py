"""Bodies and answers of the OpenAI-compatible inference routes (/v1/chat/completions,
/v1/completions) and of activation, in OpenAI's shapes. Every bound is checked before a model is
touched; what tuneyard does not implement (n > 1, penalties, logprobs, echo) is refused by name
rather than ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from tuneyard.api.schemas.common import Request
from tuneyard.serving.backends import Sampling
from tuneyard.spec.text import Name, Reference
from tuneyard.store.activation_tables import ModelActivation

MAX_TOKENS = 4096
"""The most tokens one answer may have (the model's context may stop it sooner)."""
DEFAULT_MAX_TOKENS = 256
MAX_CONTENT = 100_000
"""Characters of one message or prompt."""
MAX_MESSAGES = 256
MAX_STOPS = 4

Content = Annotated[str, Field(max_length=MAX_CONTENT)]
Stop = Annotated[str, Field(min_length=1, max_length=256)]


class ChatTextPart(Request):
    type: Literal["text"]
    text: Content


class ChatMessage(Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: Content | Annotated[list[ChatTextPart], Field(min_length=1, max_length=64)]
    name: Name | None = None

    def plain(self) -> dict[str, str]:
        """As chat templates take it: `developer` is OpenAI's newer word for `system`."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatStreamOptions(Request):
    include_usage: bool = False


class GenerationRequest(Request):
    """What both routes share: the model, the sampling settings, streaming."""

    model: Reference = Field(description="A trained model's id or `ft:` name (activated), an activated model's "
                                         "provider_model, or a base model's id.")
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS,
                                   description=f"At most this many tokens; {DEFAULT_MAX_TOKENS} when left out.")
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS,
                                              description="OpenAI's newer name for max_tokens; give one of them.")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0, description="0 picks the most likely token.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOPS)] | None = None
    n: int = Field(default=1, ge=1, le=1, description="One answer per request.")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: ChatStreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=0.0, le=0.0, description="Not implemented: 0 only.")
    frequency_penalty: float = Field(default=0.0, ge=0.0, le=0.0, description="Not implemented: 0 only.")
    user: Name | None = None

    @field_validator("max_completion_tokens")
    @classmethod
    def _one_max(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("max_tokens") is not None:
            raise ValueError("give max_tokens or max_completion_tokens, not both")
        return value

    def sampling(self) -> Sampling:
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return Sampling(max_tokens=self.max_tokens or self.max_completion_tokens or DEFAULT_MAX_TOKENS,
                        temperature=self.temperature, top_p=self.top_p, stop=stops, seed=self.seed)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionCreate(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)


class CompletionCreate(GenerationRequest):
    prompt: Content | Annotated[list[Content], Field(min_length=1, max_length=1)] = Field(
        description="The text to continue (a list of exactly one text is taken too).")

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class TokenUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatAnswerMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatAnswerMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: TokenUsage


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: TokenUsage


class ActivationCreate(Request):
    backend: Literal["transformers", "llama_cpp", "vllm"] | None = Field(
        default=None, description="llama_cpp (the model's verified GGUF export) when one exists, else "
                                  "transformers; vllm only on a GPU host where it is installed.")
    provider_model: Name | None = Field(default=None, description="Another name the model answers to (003's "
                                                                  "providerModel), unique in your organization.")


class ActivationPublic(BaseModel):
    object: Literal["model.activation"] = "model.activation"
    model_id: str
    active: bool
    backend: str | None = None
    export_id: str | None = None
    provider_model: str | None = None
    activated_at: datetime | None = None

    @classmethod
    def of(cls, model_id: str, row: ModelActivation | None) -> ActivationPublic:
        if row is None:
            return cls(model_id=model_id, active=False)
        return cls(model_id=model_id, active=True, backend=row.backend, export_id=row.export_id,
                   provider_model=row.provider_model, activated_at=row.activated_at)


def stream_item(schema: str) -> dict[str, Any]:
    """An SSE item of a streamed answer: `data:` holds a chunk, or the literal `[DONE]` at the end."""
    return {"type": "object", "required": ["data"], "description": (
        f"`data: {{...}}` lines, each a {schema} (the text that came since the last), then `data: [DONE]`. "
        "A serving process that dies mid-answer sends `data: {\"error\": {code, message}}` and no [DONE]."),
        "properties": {"data": {"type": "string"}}}
