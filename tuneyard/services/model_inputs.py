"""What a job's models resolve to, and what each job type checks of them before it is queued.

`resolve_base_model` turns a request's model name (a built-in, a registered base, a checkpoint or a
trained model) into what the runner will load. The checks below read only config.json and adapter
files (no weights, no torch): a merge's adapter and its base, an evaluation's model to compare with,
whether growth or contraction knows the architecture, LoRA's target modules against the model's
module names. Each adds a problem naming the field rather than raising, so `submission.plan_job`
reports every fault of a request at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.spec import JobSpecBase, TrainingJobSpec, module_names
from tuneyard.spec.job import GROWABLE_MODEL_TYPES, EvaluateSpec
from tuneyard.store import catalog as models_store
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.telemetry import get_checkpoint
from tuneyard.training.model_card import ADAPTER_CONFIG_FILE
from tuneyard.training.models import catalog

Problem = dict[str, Any]
"""{"field": a dotted path in the request's words, "message": what is wrong with it}"""
Problems = list[Problem]


@dataclass(frozen=True)
class ResolvedModel:
    runner_source: str  # what the runner's base_model will be: a built-in id, a path or a hub id
    defaults: dict[str, Any]
    methods: tuple[str, ...] | None  # None: not known, any method may be tried


def resolve_base_model(db: Database, settings: Settings, org_id: str, name: str) -> ResolvedModel:
    """What `name` means for this organization; NotFound when nothing by that id is visible."""
    entry = catalog.get_builtin(name)
    if entry is not None:
        return ResolvedModel(entry.id, entry.defaults_for("*"), entry.methods)
    if name.startswith("ckpt_"):
        ckpt = get_checkpoint(db, org_id, name)
        path = Path(ckpt.path)
        path = path if path.is_absolute() else run_dir(settings, ckpt.job_id) / path
        weights = path / "model"  # a checkpoint keeps its weights in model/ (tuneyard.training.checkpoint)
        return ResolvedModel(str(weights if weights.is_dir() else path), {}, None)
    if name.startswith("model_"):
        return ResolvedModel(models_store.get_trained_model(db, org_id, name).path, {}, None)
    row = models_store.get_base_model(db, org_id, name)
    parameters = (row.meta or {}).get("parameters")
    defaults = catalog.size_defaults(parameters) if isinstance(parameters, int) else {}
    return ResolvedModel(row.source, defaults, tuple(row.meta.get("methods") or ()) or None)


def merge_input(
    db: Database, settings: Settings, org_id: str, spec: JobSpecBase, model: ResolvedModel,
    given: Mapping[str, Any], problems: Problems,
) -> dict[str, str]:
    """A merge folds a LoRA adapter into its base: anything else under base_model is refused here,
    not after a worker has loaded it. The adapter is known by its files, wherever it came from (a
    trained model, a checkpoint). A trained adapter names its base portably, which for a registered
    base or a trained model is this service's id: that base's folder is passed on as `adapter_base`."""
    if spec.type != "merge":
        return {}
    config_file = Path(model.runner_source) / ADAPTER_CONFIG_FILE
    if not config_file.is_file():
        problems.append({"field": "base_model", "message": (
            f"{given.get('base_model')} is not a LoRA adapter (full weights or a base model); merge folds a "
            "LoRA model or a LoRA job's checkpoint into its base")})
        return {}
    try:
        named = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return {}  # an unreadable adapter config: the runner reports it, naming base_model
    if not isinstance(named, str) or catalog.get_builtin(named) is not None or Path(named).is_absolute():
        return {}
    try:
        return {"adapter_base": resolve_base_model(db, settings, org_id, named).runner_source}
    except NotFound:
        return {}  # a hub id, or a name the runner judges


def evaluate_input(
    db: Database, settings: Settings, org_id: str, spec: JobSpecBase, problems: Problems
) -> dict[str, Any]:
    """An evaluation compares a trained model with the model it came from: `compare_with` (by default
    the trained model's own base) becomes what the runner loads. The judge is the operator's, from the
    settings; a request naming one is refused, since the runner calls whatever URL it is given."""
    if not isinstance(spec, EvaluateSpec):
        return {}
    out: dict[str, Any] = {}
    if spec.judge is not None:
        problems.append({"field": "judge", "message": (
            "the judge is set by the operator (TUNEYARD_JUDGE_BASE_URL and TUNEYARD_JUDGE_MODEL); leave it out")})
    if settings.judge_base_url and settings.judge_model:
        out["judge"] = {"base_url": settings.judge_base_url, "model": settings.judge_model}
    name = spec.compare_with or trained_base(db, org_id, spec.base_model)
    if name is None:
        problems.append({"field": "compare_with", "message": (
            "give the model to compare with: base_model is not a trained model whose base it would be")})
        return out
    try:
        out["compare_with"] = resolve_base_model(db, settings, org_id, name).runner_source
    except NotFound:
        problems.append({"field": "compare_with", "message": f"no model {name!r} to compare with"})
    return out


def trained_base(db: Database, org_id: str, model_id: str) -> str | None:
    """The base a trained model was trained from, as its job named it; None for anything else."""
    if not model_id.startswith("model_"):
        return None
    try:
        return models_store.get_trained_model(db, org_id, model_id).base_model
    except NotFound:
        return None  # base_model's own check reports it


def check_growable(spec: JobSpecBase, model: ResolvedModel, problems: Problems) -> None:
    """Growth and contraction know the blocks of some architectures; another is refused before it is
    queued (one whose config cannot be read here is left to the runner, which refuses it the same way)."""
    found = model_architecture(model.runner_source) if spec.type in ("train", "contract") else None
    if found is not None and found[0] not in GROWABLE_MODEL_TYPES:
        problems.append({"field": "base_model", "message": (
            f"{spec.type} jobs reshape {', '.join(GROWABLE_MODEL_TYPES)} models; this one is {found[0]}")})


MAX_CONFIG_BYTES = 1 << 20
"""A config.json is a few KiB; a bigger one is not read at submission."""


def check_target_modules(spec: JobSpecBase, model: ResolvedModel, problems: Problems) -> None:
    """LoRA's target modules against the base model's module names, read from its config (no weights,
    no torch). A model whose names are not known here is left to the runner, which reports a name
    matching nothing as a user error too, but only after loading the model."""
    targets = getattr(spec.hyperparams, "lora_target_modules", None) if isinstance(spec, TrainingJobSpec) else None
    if targets is None or targets == "all-linear":
        return
    found = model_architecture(model.runner_source)
    if found is None:
        return
    model_type, layers = found
    layout = module_names.layout_for(model_type, module_names.layers_to_assume(targets) if layers is None else layers)
    if layout is None:
        return
    for problem in module_names.target_problems(targets, layout):
        problems.append({"field": "hyperparams.lora_target_modules", "message": (
            f"{problem}; LoRA can adapt {', '.join(layout.adaptable_names())}, or give 'all-linear'")})


def model_architecture(source: str) -> tuple[str, int | None] | None:
    """(model_type, number of layers if known) of a built-in or of a local folder's config.json."""
    entry = catalog.get_builtin(source)
    if entry is not None:
        return entry.architecture, None
    if not Path(source).is_absolute():
        return None  # a hub id: its files are the runner's to fetch
    config_file = Path(source) / "config.json"
    try:
        if config_file.stat().st_size > MAX_CONFIG_BYTES:
            return None
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not a model folder, or not readable here: the runner will judge it
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        return None
    layers = config.get("num_hidden_layers")
    return config["model_type"], layers if isinstance(layers, int) and not isinstance(layers, bool) else None
