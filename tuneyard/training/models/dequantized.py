"""A GGUF's dequantized copy, kept in the model cache so each GGUF file is converted once.

transformers reads a GGUF by dequantizing every tensor and rebuilding the tokenizer from the file's
vocabulary: for SmolLM2-135M that was about three minutes on a loaded 2-core host (two for the
tensors, one for the tokenizer), paid again by every job, evaluation, export and served model on
that base. The first load saves the dense fp32 weights and the converted tokenizer
(`save_pretrained`) under `<model cache>/dequantized/<key>/{model,tokenizer}`; later loads read
those folders in seconds. What they hold is what the conversion gave: fp32 saved and read back is
the same bits, and the tokenizer is transformers' own round trip of the one it built.

The key is the GGUF's content hash and the transformers version, so an edited or replaced file,
or a transformers whose conversion may differ, never reads an old copy. Each part is written under
a temporary name and renamed into place, so a concurrent loader sees a whole copy or none; a copy
that cannot be written (a full disk, a read-only cache) costs only the speed-up, never the load.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from functools import cache
from pathlib import Path
from typing import Any, Literal

import transformers

from tuneyard.training.models.source import ModelSource

Part = Literal["model", "tokenizer"]

log = logging.getLogger(__name__)


def cached_part(source: ModelSource, part: Part) -> Path | None:
    """The folder holding this GGUF's converted `part`, when a whole one is in the cache."""
    folder = _part_folder(source, part)
    return folder if folder is not None and folder.is_dir() else None


def keep_part(source: ModelSource, part: Part, converted: Any) -> None:
    """Save a just-converted model or tokenizer for the next load; a failure only logs."""
    folder = _part_folder(source, part)
    if folder is None or folder.is_dir() or not _may_save():
        return
    staging = folder.parent / f".{part}-{uuid.uuid4().hex}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        converted.save_pretrained(staging)
        try:
            os.rename(staging, folder)
        except OSError:
            if not folder.is_dir():  # not another loader that got there first: a real failure
                raise
    except OSError as exc:
        log.warning("could not keep the dequantized %s of %s in the model cache (%s); the next load "
                    "converts the GGUF again", part, source.requested, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _may_save() -> bool:
    """Whether save_pretrained writes here: in a data-parallel run's process group only rank 0's does,
    and another rank's copy would be a folder without weights that every later load fails on."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def _part_folder(source: ModelSource, part: Part) -> Path | None:
    if source.gguf_file is None or source.cache_dir is None:
        return None
    gguf = source.path / source.gguf_file
    stat = gguf.stat()
    digest = _content_hash(str(gguf.resolve()), stat.st_size, stat.st_mtime_ns)
    return source.cache_dir / "dequantized" / f"{digest[:24]}-transformers-{transformers.__version__}" / part


@cache
def _content_hash(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of the file; `size` and `mtime_ns` key the memo, so a rewritten file is hashed again."""
    del size, mtime_ns
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
