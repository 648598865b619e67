"""transformers: any model tuneyard can train on or make, served as trained.

A LoRA adapter is loaded on its base through peft and left unmerged, so what answers is exactly the
trained pair (and the base's weights are not rewritten). The chat layout is the tokenizer's own
template, or tuneyard's ChatML for a tokenizer without one (`load_tokenizer` guarantees one).
Tokens are picked one at a time over the model's KV cache, so each is sent as soon as it exists.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneyard.serving.backends import BackendError, Chunk, Event, Finish, ModelToLoad, Prompt, Sampling, StopScanner
from tuneyard.training.models.chat_template import CHATML_END


class TransformersBackend:
    name = "transformers"

    def __init__(self) -> None:
        self.model: Any = None
        self.tokenizer: Any = None
        self.end_ids: set[int] = set()
        self.context = 0

    def load(self, model: ModelToLoad, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        try:
            self._load(model)
        except Exception as exc:  # libraries fail in their own types; uncaught, the connection drops: "died"
            raise _load_error(model, exc) from exc
        self.model.eval()
        config = self.model.config
        self.context = int(getattr(config, "max_position_embeddings", 0) or 2048)
        ends = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids(CHATML_END)}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ends.update(configured if isinstance(configured, list) else [configured])
        unknown = self.tokenizer.unk_token_id
        self.end_ids = {i for i in ends if isinstance(i, int) and i >= 0 and i != unknown}

    def _load(self, model: ModelToLoad) -> None:
        from tuneyard.training.models.loading import load_adapter, load_model, load_tokenizer
        from tuneyard.training.models.source import resolve_model_source

        source = resolve_model_source(model.source, Path(model.cache_dir))
        self.tokenizer = load_tokenizer(source)
        self.model = load_adapter(source) if source.kind == "peft_adapter" else load_model(source)

    def generate(self, prompt: Prompt, sampling: Sampling) -> Iterator[Event]:
        import torch

        ids = self._encode(prompt)
        if len(ids) >= self.context:
            raise BackendError(f"the prompt is {len(ids)} tokens; the model's context is {self.context}",
                               user=True, field="messages" if prompt.messages is not None else "prompt")
        budget = min(sampling.max_tokens, self.context - len(ids))
        generator = torch.Generator().manual_seed(sampling.seed if sampling.seed is not None
                                                  else random.getrandbits(63))
        scanner = StopScanner(sampling.stop)
        produced: list[int] = []
        sent = ""
        reason: str = "length"
        with torch.inference_mode():
            inputs = torch.tensor([ids])
            past = None
            for _ in range(budget):
                out = self.model(input_ids=inputs, cache=past, use_cache=True, logits_to_keep=1)
                past = out.cache
                token = _pick(out.logits[0, -1].float(), sampling, generator)
                if token in self.end_ids:
                    reason = "stop"
                    break
                produced.append(token)
                # Decode the whole answer and send what is new: a character may span tokens.
                text = self.tokenizer.decode(produced, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue
                piece = scanner.feed(text[len(sent):])
                sent = text
                if piece:
                    yield Chunk(piece)
                if scanner.stopped:
                    reason = "stop"
                    break
                inputs = torch.tensor([[token]])
        rest = "" if scanner.stopped else scanner.flush()
        if rest:
            yield Chunk(rest)
        yield Finish("stop" if reason == "stop" else "length", len(ids), len(produced))

    def _encode(self, prompt: Prompt) -> list[int]:
        if prompt.messages is not None:
            text = self.tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=False)
        else:
            text = prompt.text or ""
        ids: list[int] = self.tokenizer(text, add_special_tokens=prompt.messages is None)["input_ids"]
        if not ids:
            ids = [self.tokenizer.bos_token_id or self.tokenizer.eos_token_id]
        return ids

    def unload(self) -> None:
        self.model = None
        self.tokenizer = None


def _pick(logits: Any, sampling: Sampling, generator: Any) -> int:
    """The next token: the most likely at temperature 0, else a draw from the nucleus (top_p)."""
    import torch

    if sampling.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least the first token)
        outside = ordered.cumsum(-1) - ordered >= sampling.top_p
        ordered[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, ordered)
    return int(torch.multinomial(probs, 1, generator=generator))


def _load_error(model: ModelToLoad, exc: Exception) -> BackendError:
    """Why the model cannot load: its files' fault (gone, not a model, corrupt: the runner's table of
    library errors, `training/failures.py`) is the request's, naming `model`; anything else is ours."""
    from tuneyard.errors import TuneyardError
    from tuneyard.training.failures import classify

    known = classify(exc)
    if known is not None:
        field = known.details.get("field")  # the runner's job field (base_model): here the request's is `model`
        reason = known.message.removeprefix(f"{field}: ") if isinstance(field, str) else known.message
        return BackendError(f"cannot load {model.key}: {reason}", user=True, field="model")
    reason = exc.message if isinstance(exc, TuneyardError) else f"{type(exc).__name__}: {exc}"
    return BackendError(f"cannot load {model.key}: {reason}", user=False)
