"""Library versions recorded beside every artifact, so a run can be reproduced."""

from __future__ import annotations

import functools
import platform
from importlib import metadata

import tuneyard

_LIBRARIES = ("torch", "transformers", "peft", "safetensors", "tokenizers", "numpy", "gguf")


def library_versions() -> dict[str, str]:
    return dict(_installed_versions())  # a copy: a caller may add to what it records


@functools.cache
def _installed_versions() -> dict[str, str]:
    """Read once a process: each read scans sys.path for the packages' metadata (about 10 ms), and a
    run recorded them with its model, every checkpoint and its final folder. They cannot change
    under a running process."""
    versions = {"python": platform.python_version(), "tuneyard": tuneyard.__version__}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
