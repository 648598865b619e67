"""`python -m tuneyard.export.convert_driver CONVERTER_DIR -- ARGS…`: llama.cpp's own HF → GGUF
converter, run as it ships, with one addition.

The converter names a BPE tokenizer's pre-tokenizer by hashing how it splits a probe text, which
identifies the *vocabulary* of a published model, not the pre-tokenizer's rules: a tokenizer
trained on the spot (tiny-llama's) splits exactly like GPT-2 but has an unknown hash, and the
converter refuses it. When, and only when, the hash is unknown and the folder's tokenizer.json
declares GPT-2's own pre-tokenizer (a lone ByteLevel with its regex), we name it `gpt-2`.
Nothing is taken on trust: the export's verification compares llama.cpp's tokens with
transformers' on the eval sequences and fails the export on any difference.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

GPT2_PRE_TOKENIZER = "gpt-2"


def declared_pre_tokenizer(model_dir: Path) -> str | None:
    """`gpt-2` when tokenizer.json's pre-tokenizer is GPT-2's byte-level split, else None."""
    try:
        config = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pre = config.get("pre_tokenizer") if isinstance(config, dict) else None
    if isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) \
            and not pre.get("add_prefix_space", False):
        return GPT2_PRE_TOKENIZER
    return None


def _patch_pre_tokenizer_lookup(text_model: Any) -> None:
    known = text_model.get_vocab_base_pre

    def lookup(self: Any, tokenizer: Any) -> str:
        try:
            return str(known(self, tokenizer))
        except NotImplementedError:
            declared = declared_pre_tokenizer(Path(self.dir_model))
            if declared is None:
                raise
            return declared

    text_model.get_vocab_base_pre = lookup


def main(argv: list[str]) -> None:
    converter_dir = Path(argv[0])
    script = converter_dir / "convert_hf_to_gguf.py"
    # The converter imports its `conversion` package and its own gguf-py from beside itself.
    sys.path[:0] = [str(converter_dir), str(converter_dir / "gguf-py")]
    from conversion.base import TextModel

    _patch_pre_tokenizer_lookup(TextModel)
    sys.argv = [str(script), *argv[1:]]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
