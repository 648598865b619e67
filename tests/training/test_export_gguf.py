"""A trained tiny-llama exported to GGUF (f16, q8_0) is verified by llama.cpp against transformers;
a GGUF with one tensor perturbed is caught and the export fails with its figures, leaving nothing.

Figures of each export are printed (run with -s to see them); the bounds are in export/formats.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.support.exports import export_request, perturb_tensor, require_llama_cpp, train_tiny_lora
from tuneyard.export import gguf, run
from tuneyard.export.formats import QUANTIZATIONS


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    return train_tiny_lora(tmp_path_factory.mktemp("trained"), model_cache)


@pytest.mark.parametrize("quantization", ["f16", "q8_0"])
def test_trained_model_exports_to_a_verified_gguf(trained: Path, tmp_path: Path, model_cache: Path,
                                                  quantization: str) -> None:
    out = tmp_path / "export"
    request = export_request(trained, out, model_cache, require_llama_cpp(), quantization=quantization)
    manifest = run.run_export(request)
    verification = manifest["verification"]
    figures = ("positions", "top1_agreement", "decided_positions", "decided_top1_agreement", "max_abs_logit_delta")
    print(f"\n{quantization}: {json.dumps({k: verification[k] for k in figures})}")
    bound = QUANTIZATIONS.get(quantization)
    assert verification["passed"] and verification["tokenization_identical"]
    assert verification["tokenization_mismatches"] == []
    assert verification["decided_top1_agreement"] >= bound.min_top1
    assert 0 <= verification["max_abs_logit_delta"] <= bound.max_abs_logit_delta
    assert verification["texts"] >= 6 and verification["positions"] > 100
    gguf_file = out / f"tiny.{quantization}.gguf"
    assert manifest["gguf_file"] == gguf_file.name and gguf_file.read_bytes()[:4] == b"GGUF"
    assert manifest["files"][gguf_file.name]["sha256"] == hashlib.sha256(gguf_file.read_bytes()).hexdigest()
    assert manifest["files"][gguf_file.name]["bytes"] == gguf_file.stat().st_size
    modelfile = (out / "tiny.Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{gguf_file.name}\n")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "<|im_start|>{{ .Role }}" in modelfile
    assert sorted(p.name for p in out.iterdir()) == sorted([gguf_file.name, "tiny.Modelfile", "manifest.json"])


def test_a_perturbed_tensor_is_caught_and_the_export_fails(trained: Path, tmp_path: Path, model_cache: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real_convert = gguf.convert

    def convert_then_corrupt(*args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        real_convert(*args, **kwargs)
        perturb_tensor(args[1], "blk.1.ffn_down.weight")

    monkeypatch.setattr(gguf, "convert", convert_then_corrupt)
    out = tmp_path / "export"
    with pytest.raises(run.VerificationFailedError) as failed:
        run.run_export(export_request(trained, out, model_cache, require_llama_cpp(), quantization="f16"))
    figures = failed.value.details["verification"]
    print(f"\nperturbed f16: top1 {figures['top1_agreement']:.4f}, max |Δlogit| {figures['max_abs_logit_delta']:.3f}")
    assert not figures["passed"] and figures["tokenization_identical"]
    bound = QUANTIZATIONS.get("f16")
    assert (figures["decided_top1_agreement"] < bound.min_top1
            or figures["max_abs_logit_delta"] > bound.max_abs_logit_delta)
    assert "top-1 agreement" in failed.value.message and "max |Δlogit|" in failed.value.message
    assert not out.exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_safetensors_exports_merged_weights_or_the_adapter_as_is(trained: Path, tmp_path: Path,
                                                                model_cache: Path) -> None:
    merged = run.run_export(export_request(trained, tmp_path / "merged", model_cache, None,
                                           format="safetensors", quantization=None))
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(merged["files"])
    adapter = run.run_export(export_request(trained, tmp_path / "adapter", model_cache, None,
                                            format="safetensors", quantization=None, variant="adapter"))
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(adapter["files"])
    assert (adapter["files"]["adapter_model.safetensors"]["sha256"]
            == hashlib.sha256((trained / "adapter_model.safetensors").read_bytes()).hexdigest())
