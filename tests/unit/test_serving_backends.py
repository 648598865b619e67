"""The serving package's pure parts: stop strings held back across token boundaries, the backend
registry (duplicates refused, vLLM not offered without CUDA), and the wire forms round-tripping."""

from __future__ import annotations

import importlib.util

import pytest

from tuneyard.serving.backends import (
    BACKENDS,
    BackendEntry,
    BackendRegistry,
    ModelToLoad,
    Sampling,
    StopScanner,
)


def feed_all(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    sent = ""
    for piece in pieces:
        sent += scanner.feed(piece)
        if scanner.stopped:
            return sent, True
    return sent + scanner.flush(), False


def test_a_stop_string_split_across_tokens_is_never_sent() -> None:
    assert feed_all(("END",), ["Hello E", "N", "D and more"]) == ("Hello ", True)
    assert feed_all(("\n\n",), ["a\n", "\nb"]) == ("a", True)
    # a prefix of a stop that turns out not to be one is sent after all, in order
    assert feed_all(("END",), ["Hello E", "NTER"]) == ("Hello ENTER", False)
    assert feed_all((), ["no ", "stops"]) == ("no stops", False)
    assert feed_all(("b", "abc"), ["xab"]) == ("xa", True)  # the earliest match in the text wins


def test_text_is_sent_as_soon_as_it_cannot_begin_a_stop() -> None:
    scanner = StopScanner(("<|end|>",))
    assert scanner.feed("Hi there") == "Hi there"
    assert scanner.feed(" <|e") == " "
    assert scanner.feed("x") == "<|ex"


def test_the_registry_refuses_duplicates_and_says_why_a_backend_cannot_serve() -> None:
    registry = BackendRegistry()
    entry = BackendEntry("one", "a backend", lambda: None)  # type: ignore[arg-type,return-value]
    registry.register(entry)
    with pytest.raises(ValueError, match="twice"):
        registry.register(entry)
    assert registry.unavailable_reason("two") == "unknown backend 'two'; one of one"
    assert BACKENDS.names() == ["transformers", "llama_cpp", "vllm"]
    assert BACKENDS.unavailable_reason("transformers") is None
    import torch

    if importlib.util.find_spec("vllm") is None or not torch.cuda.is_available():
        assert "vllm" not in BACKENDS.available() and BACKENDS.unavailable_reason("vllm")


def test_what_crosses_to_the_serving_process_round_trips() -> None:
    model = ModelToLoad("model_x", "llama_cpp", "/data/exports/exp_1/model_x.f16.gguf", "/data/cache/models")
    assert ModelToLoad.from_dict(model.to_dict()) == model
    sampling = Sampling(max_tokens=12, temperature=0.0, top_p=0.9, stop=("\n", "END"), seed=7)
    assert Sampling.from_dict(sampling.to_dict()) == sampling
