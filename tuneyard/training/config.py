"""From a user's spec file to the run's resolved configuration, written to RUN_DIR/spec.json.

Paths are made absolute, defaults filled in with the origin of every value (user, method,
base model, default), and the decisions the runner makes for the hardware (device, bf16)
recorded next to them, so spec.json says exactly what ran and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneyard.errors import SpecError, UnsupportedError
from tuneyard.planning.memory import Device
from tuneyard.spec import (
    JOB_TYPES,
    DatasetRef,
    Hyperparams,
    JobSpecBase,
    TrainingJobSpec,
    parse_spec,
    resolve_hyperparams,
)
from tuneyard.spec.job import ContractSpec
from tuneyard.training.contract import SPEC_DEVICE_FIELD
from tuneyard.training.ranks import Ranks
from tuneyard.training.run_storage import LocalRun, RunCopy

_COMMON_FIELDS = {"type", "base_model", "datasets", "wandb_project"}


@dataclass
class RunConfig:
    spec: JobSpecBase
    hyperparams: Hyperparams
    """A training type's resolved hyperparameters; the schema's defaults (seed, bf16) for a type
    without a method, which takes its own parameters in `spec`."""
    origins: dict[str, str]
    """Where each resolved value came from: a training type's hyperparameters; for another type, the
    fields of its own the runner fills in (a contraction's heal_learning_rate, from the model's size)."""
    datasets: list[DatasetRef]
    model_cache_dir: Path
    decisions: dict[str, Any] = field(default_factory=dict)  # device, bf16, model source, ...
    device: Device | None = None
    """The device the run must train on (`contract.SPEC_DEVICE_FIELD`); None: the best the host has."""
    ranks: Ranks = field(default_factory=Ranks)
    """This process's place among the run's processes (the runner's entry reads it from torchrun)."""
    run_copy: RunCopy = field(default_factory=LocalRun)
    """The run folder's copy in run storage, that checkpoints and final/ are committed to (none by default)."""

    @property
    def method(self) -> str:
        """The training method; a type without one (merge, contract) rewrites every weight, so its
        model is saved, checkpointed and restored as full weights."""
        return self.spec.method if isinstance(self.spec, TrainingJobSpec) else "full"

    @property
    def strategy(self) -> str:
        """How the ranks share the training (distributed.strategy); a type without one trains in one
        process, where the default (ddp) is moot."""
        return self.spec.processes().strategy if isinstance(self.spec, TrainingJobSpec) else "ddp"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.spec.type,
            "base_model": self.spec.base_model,
            "datasets": [d.model_dump(exclude_none=True) for d in self.datasets],
        }
        if isinstance(self.spec, TrainingJobSpec):
            out.update(method=self.spec.method, hyperparams=self.hyperparams.model_dump(),
                       origins={f"hyperparams.{k}": v for k, v in self.origins.items()})
            if self.spec.distributed is not None:  # none given: a spec.json as before the field existed
                out["distributed"] = self.spec.distributed.model_dump()
        else:  # the type's own parameters, as the spec model filled them in (and the runner, from the model)
            out.update(self.spec.model_dump(exclude=_COMMON_FIELDS))
            if self.origins:
                out["origins"] = dict(self.origins)
        required = {SPEC_DEVICE_FIELD: self.device} if self.device else {}  # none: a spec.json as before it existed
        return {**out, **self.spec.reporting(), **required, "resolved": self.decisions}


def read_spec_file(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON spec file; a syntax error is a user error naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([{"field": "(file)", "message": f"cannot read {path}: {exc.strerror}"}]) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SpecError([{"field": "(file)", "message": f"{path.name} is not valid YAML/JSON: {exc}"}]) from None
    return data if data is not None else {}


def resolve(
    raw: dict[str, Any], spec_dir: Path, model_cache_dir: Path, base_model_defaults: dict[str, Any]
) -> RunConfig:
    """Validate and complete a spec. It may be a spec.json this runner wrote before (a worker
    starts each attempt from it): its recorded origins are kept, its decisions made afresh."""
    raw = dict(raw)
    recorded = raw.pop("origins", None) or {}
    raw.pop("resolved", None)
    device = _required_device(raw.pop(SPEC_DEVICE_FIELD, None))  # the service's, beside the user's spec
    spec = parse_spec(raw)
    if not JOB_TYPES.get(spec.type).runnable:
        raise UnsupportedError(f"job type {spec.type!r} cannot run yet: no runner implements it", type=spec.type)
    if not isinstance(spec, TrainingJobSpec):
        spec = _checked_calibration(spec, spec_dir) if isinstance(spec, ContractSpec) else spec
        kept = {name: origin for name, origin in recorded.items()
                if name in type(spec).model_fields and isinstance(origin, str)}
        return RunConfig(spec, Hyperparams(), kept, _checked_datasets(spec, spec_dir), model_cache_dir, device=device)
    hyperparams, origins = resolve_hyperparams(spec, base_model_defaults)
    for name in origins:
        if isinstance(recorded.get(f"hyperparams.{name}"), str):
            origins[name] = recorded[f"hyperparams.{name}"]
    return RunConfig(spec, hyperparams, origins, _checked_datasets(spec, spec_dir), model_cache_dir, device=device)


def _required_device(value: Any) -> Device | None:
    if value is None or value == "cpu" or value == "cuda":
        return value
    raise SpecError([{"field": SPEC_DEVICE_FIELD, "message": f"expected cpu or cuda (or no {SPEC_DEVICE_FIELD}), "
                                                            f"not {value!r}"}])


def _checked_datasets(spec: JobSpecBase, spec_dir: Path) -> list[DatasetRef]:
    """The spec's datasets with absolute paths; a SpecError naming each that is not a file."""
    datasets = [_absolute(ref, spec_dir) for ref in spec.datasets]
    missing = [
        {"field": f"datasets.{i}.path", "message": f"no such file: {ref.path}"}
        for i, ref in enumerate(datasets)
        if ref.path and not Path(ref.path).is_file()
    ]
    missing += [
        {"field": f"datasets.{i}", "message": "the runner takes files by path; ids and names are the service's"}
        for i, ref in enumerate(datasets)
        if not ref.path
    ]
    if missing:
        raise SpecError(missing)
    return datasets


def _checked_calibration(spec: ContractSpec, spec_dir: Path) -> ContractSpec:
    """A contraction's calibration files with absolute paths; a SpecError naming each that is not a file."""
    given = spec.calibration_dataset and _absolute(spec.calibration_dataset, spec_dir)
    resolved = spec.calibration and spec.calibration.model_copy(
        update={"datasets": [_absolute(ref, spec_dir) for ref in spec.calibration.datasets]})
    refs = [("calibration_dataset", given)] if given else []
    refs += [(f"calibration.datasets.{i}", ref) for i, ref in enumerate(resolved.datasets if resolved else [])]
    missing = [{"field": f"{field}.path", "message": f"no such file: {ref.path}"}
               for field, ref in refs if ref.path and not Path(ref.path).is_file()]
    missing += [{"field": field, "message": "the runner takes files by path; ids and names are the service's"}
                for field, ref in refs if not ref.path]
    if missing:
        raise SpecError(missing)
    return spec.model_copy(update={"calibration_dataset": given, "calibration": resolved})


def _absolute(ref: DatasetRef, spec_dir: Path) -> DatasetRef:
    if ref.path is None:
        return ref
    path = Path(ref.path).expanduser()
    return ref.model_copy(update={"path": str(path if path.is_absolute() else (spec_dir / path).resolve())})
