"""OpenAI-compatible inference: /v1/chat/completions and /v1/completions (streamed as SSE or not),
a trained model's activation (/v1/models/{id}/activate, /deactivate), and the serving process's
state for operators (/v1/serving)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from tuneyard.api.deps import ADMIN_RESPONSES, AdminCaller, Caller, Context, ModelId
from tuneyard.api.errors import MODEL_PROCESS_DIED
from tuneyard.api.schemas.common import BODY_RESPONSES, ERROR_RESPONSES
from tuneyard.api.schemas.inference import (
    ActivationCreate,
    ActivationPublic,
    ChatAnswerMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionCreate,
    Completion,
    CompletionChoice,
    CompletionCreate,
    GenerationRequest,
    TokenUsage,
    stream_item,
)
from tuneyard.services import models, serving
from tuneyard.services.errors import ModelProcessDied
from tuneyard.serving.backends import Chunk, Event, Finish, Prompt
from tuneyard.serving.supervisor import ServingSupervisor

router = APIRouter(responses=ERROR_RESPONSES)


async def _serving(request: Request) -> ServingSupervisor:
    supervisor: ServingSupervisor = request.app.state.serving
    return supervisor


Serving = Annotated[ServingSupervisor, Depends(_serving)]


def _owned_model(model_id: ModelId, context: Context, caller: Caller) -> str:
    # Resolved before the body is validated: another organization's model is a 404 whatever was sent.
    models.get_model(context.db, caller.org_id, model_id)
    return model_id


OwnedModelId = Annotated[str, Depends(_owned_model)]


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


@router.post("/v1/models/{model_id}/activate", response_model=ActivationPublic, tags=["serving"],
             responses=BODY_RESPONSES)
def activate(model_id: OwnedModelId, body: ActivationCreate, context: Context, caller: Caller,
             supervisor: Serving) -> ActivationPublic:
    """Load the model into a serving backend; from then on it answers /v1/chat/completions and
    /v1/completions by its id, its `ft:` name or its provider_model. Survives a restart of the service.
    Optional: a completion naming an inactive model activates it with the defaults (no provider_model)."""
    row = serving.activate(context.db, context.settings, supervisor, caller.org_id, model_id,
                           backend=body.backend, provider_model=body.provider_model)
    return ActivationPublic.of(model_id, row)


@router.post("/v1/models/{model_id}/deactivate", response_model=ActivationPublic, tags=["serving"])
def deactivate(model_id: OwnedModelId, context: Context, caller: Caller, supervisor: Serving) -> ActivationPublic:
    """Stop serving the model and free its memory."""
    serving.deactivate(context.db, supervisor, caller.org_id, model_id)
    return ActivationPublic.of(model_id, None)


@router.get("/v1/models/{model_id}/activation", response_model=ActivationPublic, tags=["serving"])
def get_activation(model_id: ModelId, context: Context, caller: Caller) -> ActivationPublic:
    return ActivationPublic.of(model_id, serving.get_activation(context.db, caller.org_id, model_id))


@router.post("/v1/chat/completions", response_model=ChatCompletion, tags=["serving"],
             responses={**BODY_RESPONSES, 200: {"content": {"text/event-stream": {
                 "itemSchema": stream_item("chat.completion.chunk")}}}})
def chat_completions(body: ChatCompletionCreate, context: Context, caller: Caller,
                     supervisor: Serving) -> Any:
    """OpenAI's chat completion: the model's answer to the messages, laid out by its chat template.
    A trained model that is not active is activated by this request (as POST .../activate would)."""
    prompt = Prompt(messages=[m.plain() for m in body.messages])
    return _answer(body, prompt, "chat.completion", context, caller.org_id, supervisor)


@router.post("/v1/completions", response_model=Completion, tags=["serving"],
             responses={**BODY_RESPONSES, 200: {"content": {"text/event-stream": {
                 "itemSchema": stream_item("text_completion")}}}})
def completions(body: CompletionCreate, context: Context, caller: Caller, supervisor: Serving) -> Any:
    """OpenAI's (legacy) completion: the prompt's continuation, no chat template."""
    return _answer(body, Prompt(text=body.text()), "text_completion", context, caller.org_id, supervisor)


@router.get("/v1/serving", tags=["serving"], responses=ADMIN_RESPONSES)
def serving_status(context: Context, supervisor: Serving, caller: AdminCaller) -> dict[str, Any]:
    """The serving process (pid, how many times it was started) and which of your organization's
    models and of the base models it holds, busy or idle for how long (admin key)."""
    return serving.status(context.db, supervisor, caller.org_id)


def _answer(body: GenerationRequest, prompt: Prompt, kind: str, context: Context, org_id: str,
            supervisor: ServingSupervisor) -> Any:
    served = serving.resolve_model_name(context.db, context.settings, supervisor, org_id, body.model)
    events = serving.generate(supervisor, served, prompt, body.sampling())
    answer_id = ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + secrets.token_hex(12)
    created = int(time.time())
    if body.stream:
        return EventStream(_sse(events, kind, answer_id, created, served.name, body.include_usage),
                           headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    text, finish = _collect(events)
    usage = TokenUsage(prompt_tokens=finish.prompt_tokens, completion_tokens=finish.completion_tokens,
                  total_tokens=finish.prompt_tokens + finish.completion_tokens)
    if kind == "chat.completion":
        return ChatCompletion(id=answer_id, created=created, model=served.name, usage=usage, choices=[
            ChatChoice(message=ChatAnswerMessage(content=text), finish_reason=finish.reason)])
    return Completion(id=answer_id, created=created, model=served.name, usage=usage,
                      choices=[CompletionChoice(text=text, finish_reason=finish.reason)])


def _collect(events: Iterator[Event]) -> tuple[str, Finish]:
    parts: list[str] = []
    for event in events:
        if isinstance(event, Finish):
            return "".join(parts), event
        parts.append(event.text)
    raise ModelProcessDied("the serving process ended the answer without finishing it")


def _sse(events: Iterator[Event], kind: str, answer_id: str, created: int, model: str,
         include_usage: bool) -> Iterator[bytes]:
    chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else "text_completion"
    head = {"id": answer_id, "object": chunk_kind, "created": created, "model": model}

    def choice(text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
        if kind == "chat.completion":
            delta = ({"role": "assistant", "content": text or ""} if first
                     else {"content": text} if text is not None else {})
            return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}

    if kind == "chat.completion":
        yield _data({**head, "choices": [choice("", None, first=True)]})
    try:
        for event in events:
            if isinstance(event, Chunk):
                yield _data({**head, "choices": [choice(event.text, None)]})
                continue
            yield _data({**head, "choices": [choice(None, event.reason)]})
            if include_usage:
                usage = {"prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens,
                         "total_tokens": event.prompt_tokens + event.completion_tokens}
                yield _data({**head, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"
            return
    except ModelProcessDied as exc:
        # The 200 is sent; the stream itself says what happened, and ends without [DONE].
        yield _data({"error": {"code": MODEL_PROCESS_DIED, "message": exc.message, "details": {}}})


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
