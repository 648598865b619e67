"""What the export process is asked to do, as the service writes it (JSON) and the process reads it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneyard.errors import SpecError
from tuneyard.export.formats import EXPORT_FORMATS, QUANTIZATIONS, Variant


@dataclass(frozen=True)
class ExportRequest:
    model_path: str
    """The trained model's folder: an adapter or full weights."""
    model_kind: str
    """adapter | full, as the trained model is recorded."""
    format: str
    out_dir: str
    """Where the finished export lands (atomically); its manifest.json is written last."""
    model_cache_dir: str
    """Where built-in base models are (an adapter's base is resolved from there)."""
    quantization: str | None = None
    variant: Variant = "merged"
    converter_dir: str | None = None
    threads: int = 2
    nice: int = 0
    """The nice increment the process takes first (no preexec_fn from the API's threads): an export
    yields the cores to training and the API, as runners do."""
    model_name: str = "model"
    """The file stem of what is written (model.gguf, model.Modelfile)."""
    conversations: list[list[dict[str, str]]] = field(default_factory=list)
    """Chat conversations from the model's own data, verified through its chat template."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportRequest:
        return cls(**data)

    @property
    def out(self) -> Path:
        return Path(self.out_dir)


def request_problems(format_name: str, quantization: str | None, variant: str,
                     model_kind: str) -> list[dict[str, Any]]:
    """Every problem with an export request at once, each naming its field."""
    problems: list[dict[str, Any]] = []
    if format_name not in EXPORT_FORMATS:
        problems.append({"field": "format", "message": f"must be one of {', '.join(EXPORT_FORMATS.names())}"})
        return problems
    quantized = EXPORT_FORMATS.get(format_name).quantized
    if quantized and quantization is not None and quantization not in QUANTIZATIONS:
        problems.append({"field": "quantization",
                         "message": f"must be one of {', '.join(QUANTIZATIONS.names())}"})
    if not quantized and quantization is not None:
        problems.append({"field": "quantization", "message": f"{format_name} takes no quantization"})
    if variant not in ("merged", "adapter"):
        problems.append({"field": "variant", "message": "must be merged or adapter"})
    elif variant == "adapter" and (format_name != "safetensors" or model_kind != "adapter"):
        problems.append({"field": "variant", "message": "adapter exports a LoRA model's adapter as is, "
                                                        "in safetensors only; GGUF exports are merged"})
    return problems


def check_request(format_name: str, quantization: str | None, variant: str, model_kind: str) -> None:
    problems = request_problems(format_name, quantization, variant, model_kind)
    if problems:
        raise SpecError(problems, message="invalid export: " + "; ".join(
            f"{p['field']}: {p['message']}" for p in problems))
