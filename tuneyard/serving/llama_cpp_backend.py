"""llama.cpp: a model's verified GGUF export through llama-cpp-python, much faster than transformers
on CPU. Chat messages are laid out by the chat template the GGUF carries (the converter copies the
tokenizer's), rendered by llama-cpp-python's own Jinja formatter; generation stops at the GGUF's
end-of-sequence token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tuneyard.export.llama_loading import load_llama
from tuneyard.serving.backends import BackendError, Chunk, Event, Finish, ModelToLoad, Prompt, Sampling, StopScanner

CONTEXT_TOKENS = 2048
"""The context llama.cpp allocates (the model's own when smaller): its KV cache is sized by it."""


class LlamaCppBackend:
    name = "llama_cpp"

    def __init__(self) -> None:
        self.llm: Any = None
        self.formatter: Any = None

    def load(self, model: ModelToLoad, threads: int) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self.llm = load_llama(model.source, n_ctx=CONTEXT_TOKENS, n_threads=max(1, threads),
                                  n_threads_batch=max(1, threads), verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendError(f"llama.cpp cannot load {model.key}'s GGUF: {exc}", user=False) from exc
        template = self.llm.metadata.get("tokenizer.chat_template")
        if template:
            vocab = self.llm._model
            eos, bos = self.llm.token_eos(), self.llm.token_bos()
            self.formatter = Jinja2ChatFormatter(
                template=template, eos_token=vocab.token_get_text(eos) if eos >= 0 else "",
                bos_token=vocab.token_get_text(bos) if bos >= 0 else "")

    def generate(self, prompt: Prompt, sampling: Sampling) -> Iterator[Event]:
        stops = list(sampling.stop)
        if prompt.messages is not None:
            if self.formatter is None:
                raise BackendError("this GGUF carries no chat template; use /v1/completions", user=True,
                                   field="messages")
            formatted = self.formatter(messages=prompt.messages)
            text, special = formatted.prompt, True
            stops += [s for s in formatted.stop or [] if s]
        else:
            text, special = prompt.text or "", False
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=not special, special=special)
        if len(ids) >= self.llm.n_ctx():
            raise BackendError(f"the prompt is {len(ids)} tokens; the context is {self.llm.n_ctx()}",
                               user=True, field="messages" if prompt.messages is not None else "prompt")
        scanner = StopScanner(tuple(stops))
        produced, reason = 0, "length"
        # Temperature 0 is greedy in llama.cpp too (its sampler takes the argmax).
        stream = self.llm.create_completion(
            ids, max_tokens=min(sampling.max_tokens, self.llm.n_ctx() - len(ids)),
            temperature=sampling.temperature, top_p=sampling.top_p, top_k=0, min_p=0.0, repeat_penalty=1.0,
            seed=sampling.seed, stream=True)
        for part in stream:
            choice = part["choices"][0]
            produced += 1 if choice["text"] or not choice.get("finish_reason") else 0
            piece = scanner.feed(choice["text"])
            if piece:
                yield Chunk(piece)
            if scanner.stopped:
                reason = "stop"
                break
            if choice.get("finish_reason"):
                reason = "stop" if choice["finish_reason"] == "stop" else "length"
        rest = "" if scanner.stopped else scanner.flush()
        if rest:
            yield Chunk(rest)
        yield Finish("stop" if reason == "stop" else "length", len(ids), produced)

    def unload(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.llm = None
        self.formatter = None
