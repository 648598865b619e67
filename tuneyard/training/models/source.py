"""Where a base model comes from: `resolve_model_source` turns the spec's `base_model` string
into a `ModelSource` that says exactly what will be loaded, and records it for spec.json.

Importable without torch (building tiny-llama imports it, lazily). Order of resolution:
a built-in id; an existing local path (a `.gguf` file, a folder holding a peft adapter, an HF
model folder, or a folder holding one `.gguf`); a path-looking string that does not exist (an
error); otherwise a Hugging Face Hub id, looked up with short timeouts so an unreachable hub is
a prompt, clear user error rather than a minute of retries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tuneyard.errors import ModelNotFoundError
from tuneyard.training.models import catalog
from tuneyard.training.models.hub import download_from_hub

SourceKind = Literal["builtin", "hf_dir", "gguf", "peft_adapter", "hub"]

MAX_ADAPTER_DEPTH = 8
"""An adapter's base may itself be an adapter (a LoRA of a LoRA); deeper means a loop."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved base model: what to load and how it was found."""

    requested: str
    """The string as the spec gave it."""
    kind: SourceKind
    path: Path
    """A local folder: the HF model folder, the adapter folder, or the folder holding the GGUF."""
    gguf_file: str | None = None
    """The GGUF file's name inside `path` (GGUF sources only)."""
    builtin_id: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    """The hub commit the files came from, when the hub said."""
    base: ModelSource | None = None
    """For an adapter: the model it was trained on, resolved the same way."""
    cache_dir: Path | None = None
    """The model cache it was resolved against: where a GGUF's dequantized copy is kept
    (`dequantized.py`). Not part of what was loaded, so not in `to_dict`."""

    @property
    def chain(self) -> list[str]:
        """The requested names from this model down to the first non-adapter base."""
        return [self.requested, *(self.base.chain if self.base else [])]

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "kind": self.kind,
            "path": str(self.path),
            "gguf_file": self.gguf_file,
            "builtin_id": self.builtin_id,
            "hub_id": self.hub_id,
            "revision": self.revision,
            "base": self.base.to_dict() if self.base else None,
            "chain": self.chain,
        }


def resolve_model_source(
    base_model: str,
    cache_dir: Path,
    *,
    hub_endpoint: str | None = None,
    hub_timeout_s: float = 5.0,
) -> ModelSource:
    """Find `base_model`; raise ModelNotFoundError, naming it, when it cannot be had."""
    return _resolve(base_model, Path(cache_dir), hub_endpoint, hub_timeout_s, depth=0)


def _resolve(name: str, cache_dir: Path, endpoint: str | None, timeout_s: float, depth: int) -> ModelSource:
    if depth > MAX_ADAPTER_DEPTH:
        raise ModelNotFoundError(
            f"base model {name!r}: adapters nest deeper than {MAX_ADAPTER_DEPTH}; is there a loop?"
        )
    if catalog.is_builtin(name):
        return _resolve_builtin(name, cache_dir)
    path = Path(name).expanduser()
    if path.exists():
        return _resolve_local(name, path.resolve(), cache_dir, endpoint, timeout_s, depth)
    if _looks_like_path(name):
        raise ModelNotFoundError(f"base model {name!r}: no such file or folder", base_model=name)
    folder, revision = download_from_hub(name, cache_dir / "hub", endpoint=endpoint, timeout_s=timeout_s)
    return ModelSource(requested=name, kind="hub", path=folder, hub_id=name, revision=revision)


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else is meant as a local path."""
    return name.startswith(("/", ".", "~")) or name.endswith(".gguf") or name.count("/") > 1 or "\\" in name


def _resolve_builtin(model_id: str, cache_dir: Path) -> ModelSource:
    if model_id == catalog.TINY_LLAMA:
        # imported here so resolving other sources, and this module, stay torch-free
        from tuneyard.training.models.tiny_llama import ensure_tiny_llama

        folder = ensure_tiny_llama(cache_dir)
        return ModelSource(requested=model_id, kind="builtin", path=folder, builtin_id=model_id)
    if model_id == catalog.SMOLLM2_135M:
        gguf = cache_dir / catalog.SMOLLM2_135M / catalog.SMOLLM2_GGUF_NAME
        if not gguf.is_file():
            raise ModelNotFoundError(
                f"base model {model_id!r} is not in the model cache; fetch it with "
                f"`python scripts/fetch_smollm2.py --dest {gguf.parent}`",
                base_model=model_id,
            )
        return ModelSource(requested=model_id, kind="gguf", path=gguf.parent, gguf_file=gguf.name, builtin_id=model_id,
                           cache_dir=cache_dir)
    raise ModelNotFoundError(f"built-in model {model_id!r} has no maker", base_model=model_id)


def _resolve_local(
    name: str, path: Path, cache_dir: Path, endpoint: str | None, timeout_s: float, depth: int
) -> ModelSource:
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelNotFoundError(
                f"base model {name!r} is a file but not a .gguf; give a model folder or a GGUF file"
            )
        return ModelSource(requested=name, kind="gguf", path=path.parent, gguf_file=path.name, cache_dir=cache_dir)
    if (path / "adapter_config.json").is_file():
        base_name = _adapter_base(name, path)
        base = _resolve(base_name, cache_dir, endpoint, timeout_s, depth + 1)
        return ModelSource(requested=name, kind="peft_adapter", path=path, base=base)
    if (path / "config.json").is_file():
        return ModelSource(requested=name, kind="hf_dir", path=path)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelSource(requested=name, kind="gguf", path=path, gguf_file=ggufs[0].name, cache_dir=cache_dir)
    raise ModelNotFoundError(
        f"base model {name!r}: the folder holds no config.json, no adapter_config.json and no single "
        f".gguf file, so it is not a model transformers or peft can load",
        base_model=name,
    )


def _adapter_base(name: str, folder: Path) -> str:
    """The adapter's base model name; a relative path is taken relative to the adapter first."""
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"base model {name!r}: unreadable adapter_config.json ({exc})") from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise ModelNotFoundError(
            f"base model {name!r} is a LoRA adapter whose adapter_config.json names no "
            "base_model_name_or_path, so there is nothing to merge it into",
            base_model=name,
        )
    beside = folder / base
    if not Path(base).is_absolute() and not catalog.is_builtin(base) and beside.exists():
        return str(beside)
    if Path(base).name == catalog.tiny_llama_folder_name():
        # the same recipe builds the same bytes anywhere: name the built-in, so the adapter
        # survives a moved or wiped model cache and the record says what its base really is
        return catalog.TINY_LLAMA
    return base
