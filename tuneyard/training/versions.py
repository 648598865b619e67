"""Library versions recorded beside every artifact, so a run can be reproduced."""

from __future__ import annotations

import platform
from importlib import metadata

import tuneyard

_LIBRARIES = ("torch", "transformers", "peft", "safetensors", "tokenizers", "numpy", "gguf")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "tuneyard": tuneyard.__version__}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
