"""The export process: materialize the trained model, write the format, verify a GGUF, seal.

`python -m tuneyard.export REQUEST.json OUTCOME.json` reads an `ExportRequest` and always leaves
an outcome (status, the manifest or the error with its figures) in OUTCOME.json. The export
folder appears only when everything passed: it is filled under a temporary name and renamed into
place with its manifest (files, sizes, sha256, verification) written last.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from tuneyard.errors import TuneyardError, UserError
from tuneyard.export import gguf
from tuneyard.export.formats import DEFAULT_QUANTIZATION, QUANTIZATIONS
from tuneyard.export.modelfile import recipe_for, render_modelfile
from tuneyard.export.request import ExportRequest, check_request
from tuneyard.export.verify import VERIFY_TEXTS, Verification, verify
from tuneyard.training.artifacts import atomic_folder, write_json_atomic
from tuneyard.training.versions import library_versions

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
HF_FOLDER = "hf"


class VerificationFailedError(UserError):
    """The GGUF does not reproduce the trained model closely enough to be offered."""

    def __init__(self, verification: Verification) -> None:
        super().__init__(verification.failure(), verification=verification.to_dict())


def run_export(request: ExportRequest) -> dict[str, Any]:
    """Do the export; the manifest of the sealed folder. Raises a TuneyardError on failure."""
    check_request(request.format, request.quantization, request.variant, request.model_kind)
    manifest: dict[str, Any] = {"format": request.format, "variant": request.variant,
                                "started_at": time.time(), "versions": library_versions()}
    with atomic_folder(request.out, manifest) as folder:
        if request.variant == "adapter":
            _copy_adapter(Path(request.model_path), folder)
        elif request.format == "safetensors":
            _save_merged(request, folder)
        else:
            # the sealed manifest is this dict, read when the folder is sealed on leaving the block
            manifest.update(_export_gguf(request, folder))
    return _read_manifest(request.out)


def _export_gguf(request: ExportRequest, folder: Path) -> dict[str, Any]:
    quantization = QUANTIZATIONS.get(request.quantization or DEFAULT_QUANTIZATION)
    gguf.check_converter(Path(request.converter_dir) if request.converter_dir else None)
    staging = folder.parent / f".{folder.name}-{HF_FOLDER}"
    try:
        model, tokenizer = _save_merged(request, staging)
        out_file = folder / f"{request.model_name}.{quantization.name}.gguf"
        gguf.convert(staging, out_file, quantization, Path(request.converter_dir or ""), request.threads)
        texts = [*VERIFY_TEXTS, *_chat_texts(tokenizer, request.conversations)]
        verification = verify(model, tokenizer, out_file, texts, quantization, request.threads)
        if not verification.passed:
            raise VerificationFailedError(verification)
        chat_template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
        recipe = recipe_for(chat_template, tokenizer.eos_token,
                            getattr(model.config, "max_position_embeddings", None))
        modelfile = folder / f"{request.model_name}.Modelfile"
        modelfile.write_text(render_modelfile(out_file.name, recipe), encoding="utf-8")
        return {"quantization": quantization.name, "gguf_file": out_file.name, "modelfile": modelfile.name,
                "ollama": recipe.to_dict(), "verification": verification.to_dict()}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _save_merged(request: ExportRequest, folder: Path) -> tuple[Any, Any]:
    """The trained model as full fp32 weights (a LoRA adapter merged into its base) saved in `folder`."""
    from tuneyard.training.models.loading import load_model, load_tokenizer
    from tuneyard.training.models.source import resolve_model_source

    source = resolve_model_source(request.model_path, Path(request.model_cache_dir))
    model = load_model(source)
    tokenizer = load_tokenizer(source)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def _copy_adapter(model_path: Path, folder: Path) -> None:
    for name in ADAPTER_FILES:
        if (model_path / name).is_file():
            shutil.copy2(model_path / name, folder / name)


def _chat_texts(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[str]:
    texts = []
    for messages in conversations:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        if isinstance(rendered, str):
            texts.append(rendered)
    return texts


def _read_manifest(folder: Path) -> dict[str, Any]:
    import json

    from tuneyard.training.contract import MANIFEST_FILE

    data: dict[str, Any] = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    return data


def main(request_file: Path, outcome_file: Path) -> int:
    """Exit 0 exported, 3 refused (the request's or the model's fault), 1 failed otherwise."""
    import json

    request = ExportRequest.from_dict(json.loads(request_file.read_text(encoding="utf-8")))
    if request.nice:
        os.nice(request.nice)
    try:
        manifest = run_export(request)
    except TuneyardError as exc:
        write_json_atomic(outcome_file, {"status": "failed", "error": {
            "error_type": str(exc.error_type), "message": exc.message, "details": exc.details}})
        return 3 if isinstance(exc, UserError) else 1
    except Exception as exc:  # a library's failure: reported with its type, never swallowed silently
        write_json_atomic(outcome_file, {"status": "failed", "error": {
            "error_type": "platform_error", "message": f"{type(exc).__name__}: {exc}", "details": {}}})
        return 1
    write_json_atomic(outcome_file, {"status": "completed", "manifest": manifest})
    return 0
