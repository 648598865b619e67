"""Loading a GGUF into llama-cpp-python safely on this CPU, for the export's verification and for
serving alike.

On a CPU that advertises AMX inside a VM that does not grant the tile state, llama.cpp 0.3.36's
AMX matrix multiply segfaults on the first batch of more than one token (seen here: the q4_1
SmolLM2 GGUF dies in ggml_backend_amx_mul_mat; the export's own verification, which evaluates
whole sequences, died the same way). The AMX kernels come in through llama.cpp's "extra" weight
buffers (repacked layouts, AMX tiles); without them the plain CPU kernels run. llama-cpp-python
has no argument for `use_extra_bufts`, so the model's default parameters are changed for the one
load, under a lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_LOADING = threading.Lock()


def cpu_advertises_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        return " amx_tile" in cpuinfo.read_text()
    except OSError:
        return False


@contextlib.contextmanager
def extra_buffers(allowed: bool) -> Iterator[None]:
    """Load with llama.cpp's extra weight buffers only when `allowed`."""
    if allowed:
        yield
        return
    import llama_cpp.llama as binding

    with _LOADING:
        defaults = binding.llama_cpp.llama_model_default_params

        def without_extra() -> Any:
            params = defaults()
            params.use_extra_bufts = False
            return params

        binding.llama_cpp.llama_model_default_params = without_extra
        try:
            yield
        finally:
            binding.llama_cpp.llama_model_default_params = defaults


def load_llama(model_path: str, **options: Any) -> Any:
    """`llama_cpp.Llama(model_path, **options)`, without the AMX kernels where they would crash."""
    from llama_cpp import Llama

    with extra_buffers(not cpu_advertises_amx()):
        return Llama(model_path=model_path, **options)
