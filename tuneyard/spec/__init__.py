"""Job specs: typed, validated, pure data (no torch).

The vocabularies every other layer reads live here, each in one registry: job types
(`jobtypes.JOB_TYPES`), training methods (`methods.METHODS`) and data formats (`formats.FORMATS`).
Names are imported from their modules on first use, so `tuneyard.spec.formats` alone (the CLI's
need) does not load pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneyard.spec.formats import FORMATS, format_choices
    from tuneyard.spec.hyperparams import Hyperparams
    from tuneyard.spec.job import DatasetRef, JobSpecBase, TrainingJobSpec, problems_from
    from tuneyard.spec.jobtypes import JOB_TYPES, model_output
    from tuneyard.spec.methods import METHODS
    from tuneyard.spec.parse import check_spec, job_spec_adapter, parse_spec, resolve_hyperparams

    JobSpec = JobSpecBase

_HOMES = {
    "FORMATS": "formats", "format_choices": "formats",
    "Hyperparams": "hyperparams",
    "DatasetRef": "job", "JobSpecBase": "job", "TrainingJobSpec": "job", "problems_from": "job",
    "JOB_TYPES": "jobtypes", "model_output": "jobtypes",
    "METHODS": "methods",
    "check_spec": "parse", "job_spec_adapter": "parse", "parse_spec": "parse", "resolve_hyperparams": "parse",
}


def __getattr__(name: str) -> Any:
    if name == "JobSpec":  # any parsed spec (the static type; job_spec_adapter() validates the union)
        name = "JobSpecBase"
    if name not in _HOMES:
        raise AttributeError(f"module 'tuneyard.spec' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tuneyard.spec.{_HOMES[name]}"), name)


__all__ = [
    "FORMATS",
    "JOB_TYPES",
    "METHODS",
    "DatasetRef",
    "Hyperparams",
    "JobSpec",
    "JobSpecBase",
    "TrainingJobSpec",
    "check_spec",
    "format_choices",
    "job_spec_adapter",
    "model_output",
    "parse_spec",
    "problems_from",
    "resolve_hyperparams",
]
