"""Job specs: typed, validated, pure data (no torch)."""

from __future__ import annotations

from tuneyard.spec.hyperparams import Hyperparams
from tuneyard.spec.job import (
    DatasetRef,
    JobSpec,
    parse_spec,
    problems_from,
    resolve_hyperparams,
)

__all__ = ["DatasetRef", "Hyperparams", "JobSpec", "parse_spec", "problems_from", "resolve_hyperparams"]
