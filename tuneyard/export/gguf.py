"""Making a GGUF from a Hugging Face folder with llama.cpp's own tools.

The converter (`convert_hf_to_gguf.py` from the llama-cpp-python source distribution, extracted by
scripts/llama_cpp_wheel) writes f16 and q8_0 itself; q4_k_m is made from its f16 output by
llama.cpp's quantizer, through llama-cpp-python. No tensor names are mapped here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tuneyard.errors import PlatformError, UnsupportedError
from tuneyard.export.formats import Quantization

CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
LLAMA_CPP_VERSION = "0.3.36"
"""The llama-cpp-python release scripts/llama_cpp_wheel pins: its converter and its runtime."""
LOG_TAIL_CHARS = 4000


class ConverterMissingError(PlatformError):
    """llama.cpp's converter is not installed here; run scripts/llama_cpp_wheel."""


def default_converter_dir() -> Path:
    """Where scripts/llama_cpp_wheel extracts the converter (its cache, outside the repo)."""
    return Path.home() / ".cache" / "tuneyard" / "wheels" / f"llama-cpp-converter-{LLAMA_CPP_VERSION}"


def check_converter(converter_dir: Path | None) -> Path:
    if converter_dir is None or not (converter_dir / CONVERTER_SCRIPT).is_file():
        raise ConverterMissingError(
            f"llama.cpp's converter is not at {converter_dir} (TUNEYARD_GGUF_CONVERTER_DIR); "
            "scripts/llama_cpp_wheel extracts it"
        )
    return converter_dir


def convert(hf_dir: Path, out_file: Path, quantization: Quantization, converter_dir: Path | None,
            threads: int) -> None:
    """Write `out_file` in `quantization` from the model folder `hf_dir`."""
    converter = check_converter(converter_dir)
    if quantization.converter_outtype is not None:
        _run_converter(converter, hf_dir, out_file, quantization.converter_outtype)
        return
    f16 = out_file.with_suffix(".f16.tmp")
    try:
        _run_converter(converter, hf_dir, f16, "f16")
        _quantize(f16, out_file, quantization, threads)
    finally:
        f16.unlink(missing_ok=True)


def _run_converter(converter: Path, hf_dir: Path, out_file: Path, outtype: str) -> None:
    # A child process: the converter is a script that parses sys.argv and logs at import; running
    # it in-process would share our sys.path, logging and memory with it.
    argv = [sys.executable, "-m", "tuneyard.export.convert_driver", str(converter), str(hf_dir),
            "--outfile", str(out_file), "--outtype", outtype]
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # the converter's own gguf-py is the one it was written against
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not out_file.is_file():
        tail = (done.stderr or done.stdout)[-LOG_TAIL_CHARS:]
        if "NotImplementedError" in tail or "not supported" in tail.lower():
            raise UnsupportedError(f"llama.cpp's converter cannot convert this model: {tail.strip()[-600:]}")
        raise PlatformError(f"llama.cpp's converter failed (exit {done.returncode}): {tail.strip()}")


def _quantize(source: Path, out_file: Path, quantization: Quantization, threads: int) -> None:
    import llama_cpp

    assert quantization.llama_ftype is not None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = quantization.llama_ftype
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out_file).encode(), params)
    if status != 0 or not out_file.is_file():
        raise PlatformError(f"llama.cpp's quantizer failed making {quantization.name} (status {status})")
