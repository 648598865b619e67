"""Helpers for export tests: a trained tiny-llama, export requests, a GGUF with one tensor perturbed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.runs import arithmetic_chat, run_runner, write_jsonl, write_spec
from tuneyard.export.gguf import default_converter_dir
from tuneyard.export.request import ExportRequest


def require_llama_cpp() -> Path:
    """The converter folder; skips (saying how to install) when llama-cpp-python or it is missing."""
    converter = default_converter_dir()
    if importlib.util.find_spec("llama_cpp") is None or not (converter / "convert_hf_to_gguf.py").is_file():
        pytest.skip("llama-cpp-python or llama.cpp's converter is not installed: run scripts/llama_cpp_wheel")
    return converter


def train_tiny_lora(folder: Path, cache: Path, steps: int = 6) -> Path:
    """A LoRA adapter on tiny-llama trained for a few steps; its final/ folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(folder / "train.jsonl", arithmetic_chat(24))
    spec = write_spec(folder, data, method="lora", max_steps=steps)
    run = folder / "run"
    assert run_runner(spec, run, cache) == 0, (run / "runner.log").read_text()[-3000:]
    return run / "final"


def export_request(model: Path, out: Path, cache: Path, converter: Path | None, **fields: Any) -> ExportRequest:
    values: dict[str, Any] = {"model_path": str(model), "model_kind": "adapter", "format": "gguf",
                              "quantization": "f16", "out_dir": str(out), "model_cache_dir": str(cache),
                              "converter_dir": str(converter) if converter else None, "model_name": "tiny"}
    return ExportRequest(**{**values, **fields})


def perturb_tensor(gguf_file: Path, name: str, scale: float = 8.0) -> None:
    """Overwrite one f16/f32 tensor of the file in place with seeded noise of `scale` × its spread."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_file, "r+")
    tensor = next(t for t in reader.tensors if t.name == name)
    data = tensor.data
    noise = np.random.default_rng(0).standard_normal(data.shape).astype(np.float32)
    data[...] = (data.astype(np.float32) + scale * float(np.std(data.astype(np.float32))) * noise).astype(data.dtype)
    if hasattr(data, "flush"):
        data.flush()
    del reader
