"""vLLM on a CUDA GPU, where it is installed (`BACKENDS` lists it only there). Full weights load as
they are; a LoRA adapter is served on its base through vLLM's LoRA support, unmerged. Not exercised
on the CPU hosts tuneyard's tests run on: the registry refuses it there before it is imported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneyard.serving.backends import BackendError, Chunk, Event, Finish, ModelToLoad, Prompt, Sampling, StopScanner


class VllmBackend:
    name = "vllm"

    def __init__(self) -> None:
        self.llm: Any = None
        self.lora: Any = None

    def load(self, model: ModelToLoad, threads: int) -> None:
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        from tuneyard.training.models.source import resolve_model_source

        source = resolve_model_source(model.source, Path(model.cache_dir))
        if source.kind == "peft_adapter" and source.base is not None:
            rank = json.loads((source.path / "adapter_config.json").read_text()).get("r", 16)
            self.llm = LLM(model=str(source.base.path), enable_lora=True, max_lora_rank=max(8, int(rank)))
            self.lora = LoRARequest(model.key, 1, str(source.path))
        elif source.gguf_file:
            raise BackendError("vLLM serves model folders here; use llama_cpp for a GGUF", user=True,
                               field="backend")
        else:
            self.llm = LLM(model=str(source.path))

    def generate(self, prompt: Prompt, sampling: Sampling) -> Iterator[Event]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=sampling.max_tokens, temperature=sampling.temperature,
                                top_p=sampling.top_p, seed=sampling.seed)
        tokenizer = self.llm.get_tokenizer()
        text = (tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=False)
                if prompt.messages is not None else prompt.text or "")
        # vLLM's offline engine answers whole; the stream is that answer, stop strings applied.
        done = self.llm.generate([text], params, lora_request=self.lora)[0]
        out = done.outputs[0]
        scanner = StopScanner(sampling.stop)
        piece = scanner.feed(out.text)
        if piece:
            yield Chunk(piece)
        if not scanner.stopped and (rest := scanner.flush()):
            yield Chunk(rest)
        stopped = scanner.stopped or out.finish_reason == "stop"
        yield Finish("stop" if stopped else "length", len(done.prompt_token_ids or []), len(out.token_ids))

    def unload(self) -> None:
        self.llm = None
        self.lora = None
