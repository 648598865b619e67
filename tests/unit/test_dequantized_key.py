"""Which dequantized copy a GGUF reads: its content picks it, so an edited or replaced file is converted again."""

from __future__ import annotations

import os
from pathlib import Path

from tuneyard.training.models.dequantized import _part_folder, cached_part
from tuneyard.training.models.source import resolve_model_source


def test_the_copy_follows_the_file_content_not_its_name(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF one")
    source = resolve_model_source(str(gguf), tmp_path / "cache")
    assert cached_part(source, "model") is None  # nothing kept yet
    first = _part_folder(source, "model")
    assert first is not None and first.is_relative_to(tmp_path / "cache" / "dequantized")
    first.mkdir(parents=True)
    assert cached_part(source, "model") == first
    assert cached_part(source, "tokenizer") is None  # each part is whole or absent on its own

    gguf.write_bytes(b"GGUF two")  # same size, new content
    os.utime(gguf, ns=(1, 1))
    assert cached_part(source, "model") is None
    assert _part_folder(source, "model") != first


def test_a_model_folder_has_no_copy(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert cached_part(resolve_model_source(str(tmp_path), tmp_path / "cache"), "model") is None
