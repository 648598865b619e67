"""The backend interface, what a generation is asked and yields, and the registry of backends.

A backend holds one model: `load(model, threads)`, then any number of `generate(...)` calls, each
a stream of `Chunk`s ending in one `Finish`, then `unload()`. Calls on one backend are never
concurrent (the serving process holds a lock per model): neither transformers' forward pass nor a
llama.cpp context may be driven from two threads at once.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

BackendName = Literal["transformers", "llama_cpp", "vllm"]


@dataclass(frozen=True)
class ModelToLoad:
    """What a backend loads: `source` is what `resolve_model_source` takes (a built-in id, a model
    folder, an adapter folder) for transformers and vLLM, the GGUF file for llama.cpp."""

    key: str
    """The name the serving process keeps the loaded model under (one load per key)."""
    backend: str
    source: str
    cache_dir: str
    """The model cache, where built-in models are made (tiny-llama) or found (SmolLM2)."""

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "backend": self.backend, "source": self.source, "cache_dir": self.cache_dir}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelToLoad:
        return cls(str(data["key"]), str(data["backend"]), str(data["source"]), str(data["cache_dir"]))


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens; the API checked every bound before it got here."""

    max_tokens: int = 256
    temperature: float = 1.0
    """0 means greedy: always the most likely token."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "stop": list(self.stop), "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sampling:
        return cls(int(data["max_tokens"]), float(data["temperature"]), float(data["top_p"]),
                   tuple(str(s) for s in data.get("stop") or ()), data.get("seed"))


@dataclass(frozen=True)
class Prompt:
    """Either chat messages (laid out by the model's chat template) or raw text."""

    messages: list[dict[str, Any]] | None = None
    text: str | None = None


@dataclass(frozen=True)
class Chunk:
    text: str


@dataclass(frozen=True)
class Finish:
    reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


Event = Chunk | Finish


class Backend(Protocol):
    name: str

    def load(self, model: ModelToLoad, threads: int) -> None: ...

    def generate(self, prompt: Prompt, sampling: Sampling) -> Iterator[Event]: ...

    def unload(self) -> None: ...


class BackendError(Exception):
    """A backend could not do what it was asked; `user` says whether the request is at fault
    (a model that cannot be loaded, a prompt longer than the context) or the backend is."""

    def __init__(self, message: str, *, user: bool, field: str | None = None) -> None:
        super().__init__(message)
        self.user = user
        self.field = field


@dataclass(frozen=True)
class BackendEntry:
    name: str
    description: str
    factory: Callable[[], Backend]
    available: Callable[[], str | None] = field(default=lambda: None)
    """None when the backend can run on this host, else why not."""


class BackendRegistry:
    def __init__(self) -> None:
        self._entries: dict[str, BackendEntry] = {}

    def register(self, entry: BackendEntry) -> None:
        if entry.name in self._entries:
            raise ValueError(f"backend {entry.name!r} is registered twice")
        self._entries[entry.name] = entry

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> BackendEntry:
        return self._entries[name]

    def unavailable_reason(self, name: str) -> str | None:
        """Why `name` cannot serve here (unknown, or its library missing); None when it can."""
        entry = self._entries.get(name)
        if entry is None:
            return f"unknown backend {name!r}; one of {', '.join(self._entries)}"
        return entry.available()

    def available(self) -> list[str]:
        return [name for name, entry in self._entries.items() if entry.available() is None]


def _missing(module: str) -> str | None:
    return None if importlib.util.find_spec(module) is not None else f"the {module} package is not installed"


def _vllm_available() -> str | None:
    missing = _missing("vllm")
    if missing:
        return missing
    import torch

    return None if torch.cuda.is_available() else "vLLM serves on a CUDA GPU and this host has none"


def _transformers() -> Backend:
    from tuneyard.serving.hf_backend import TransformersBackend

    return TransformersBackend()


def _llama_cpp() -> Backend:
    from tuneyard.serving.llama_cpp_backend import LlamaCppBackend

    return LlamaCppBackend()


def _vllm() -> Backend:
    from tuneyard.serving.vllm_backend import VllmBackend

    return VllmBackend()


BACKENDS = BackendRegistry()
BACKENDS.register(BackendEntry("transformers", "any trained model; a LoRA adapter runs on its base unmerged",
                               _transformers, lambda: _missing("transformers")))
BACKENDS.register(BackendEntry("llama_cpp", "the model's verified GGUF export, through llama-cpp-python",
                               _llama_cpp, lambda: _missing("llama_cpp")))
BACKENDS.register(BackendEntry("vllm", "vLLM on a CUDA GPU, where it is installed", _vllm, _vllm_available))


class StopScanner:
    """Holds back text that may be the start of a stop string, so a stop string is never sent,
    even when it arrives split across tokens."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """What of `text` can be sent now; sets `stopped` when a stop string was reached."""
        self.pending += text
        for stop in self.stops:
            at = self.pending.find(stop)
            if at >= 0:
                self.stopped = True
                out, self.pending = self.pending[:at], ""
                return out
        keep = max((n for stop in self.stops for n in range(1, len(stop)) if self.pending.endswith(stop[:n])),
                   default=0)
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out
