"""Resolving `base_model` strings to sources, and the errors for ones that cannot be had.

No model is built or loaded here: folders are faked with the files that decide their kind.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tuneyard.errors import ModelNotFoundError
from tuneyard.training.models import ModelSource, resolve_model_source


def _hf_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "llama"}')
    return path


def _adapter(path: Path, base: str | None) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": base}))
    return path


def _closed_port_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_local_hf_folder(tmp_path: Path) -> None:
    folder = _hf_dir(tmp_path / "m")
    source = resolve_model_source(str(folder), tmp_path / "cache")
    assert (source.kind, source.path, source.gguf_file) == ("hf_dir", folder, None)


def test_gguf_file_and_folder_with_one_gguf(tmp_path: Path) -> None:
    gguf = tmp_path / "g" / "model.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    by_file = resolve_model_source(str(gguf), tmp_path / "cache")
    by_folder = resolve_model_source(str(gguf.parent), tmp_path / "cache")
    for source in (by_file, by_folder):
        assert (source.kind, source.path, source.gguf_file) == ("gguf", gguf.parent, gguf.name)


def test_adapter_resolves_its_base_recursively(tmp_path: Path) -> None:
    base = _hf_dir(tmp_path / "base")
    first = _adapter(tmp_path / "a1", str(base))
    second = _adapter(tmp_path / "a2", str(first))
    source = resolve_model_source(str(second), tmp_path / "cache")
    assert source.kind == "peft_adapter"
    assert source.base is not None and source.base.kind == "peft_adapter"
    assert source.base.base is not None and source.base.base.kind == "hf_dir"
    assert source.chain == [str(second), str(first), str(base)]
    recorded = json.loads(json.dumps(source.to_dict()))
    assert recorded["base"]["base"]["path"] == str(base)


def test_adapter_base_given_relative_to_the_adapter(tmp_path: Path) -> None:
    _hf_dir(tmp_path / "run" / "base")
    adapter = _adapter(tmp_path / "run" / "final", "../base")
    source = resolve_model_source(str(adapter), tmp_path / "cache")
    assert source.base == ModelSource(
        requested=str(adapter / "../base"), kind="hf_dir", path=(tmp_path / "run" / "base").resolve()
    )


@pytest.mark.parametrize("name", ["/no/such/model", "./missing-model", "~/nope/model.gguf", "a/b/c"])
def test_missing_local_paths(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelNotFoundError, match="no such file or folder") as info:
        resolve_model_source(name, tmp_path)
    assert name in str(info.value)
    assert info.value.error_type == "user_error"


def test_a_folder_that_is_no_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        resolve_model_source(str(tmp_path / "empty"), tmp_path)


def test_a_file_that_is_no_gguf(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=r"not a \.gguf"):
        resolve_model_source(str(tmp_path / "weights.bin"), tmp_path)


def test_adapter_without_base_name(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path / "a", None)
    with pytest.raises(ModelNotFoundError, match="names no base_model_name_or_path"):
        resolve_model_source(str(adapter), tmp_path)


def test_adapter_loop_is_caught(tmp_path: Path) -> None:
    _adapter(tmp_path / "a", str(tmp_path / "b"))
    _adapter(tmp_path / "b", str(tmp_path / "a"))
    with pytest.raises(ModelNotFoundError, match="loop"):
        resolve_model_source(str(tmp_path / "a"), tmp_path)


def test_unreachable_hub_is_a_fast_clear_error(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="unreachable") as info:
        resolve_model_source("someorg/some-model", tmp_path, hub_endpoint=_closed_port_endpoint())
    assert time.monotonic() - started < 5
    assert "'someorg/some-model'" in str(info.value)
    assert info.value.__cause__ is None  # a message, not a chained stack trace


def test_hub_id_with_the_default_hub_fails_fast_here(tmp_path: Path) -> None:
    # unreachable on a machine without network; "no such model" on one with it
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="tuneyard-tests/no-such-model"):
        resolve_model_source("tuneyard-tests/no-such-model", tmp_path, hub_timeout_s=3)
    assert time.monotonic() - started < 10


def test_not_a_valid_hub_id(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not a built-in id, an existing local path or a valid hub id"):
        resolve_model_source("not a model!", tmp_path)


def test_smollm2_builtin_says_how_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"fetch_smollm2\.py"):
        resolve_model_source("smollm2-135m-instruct", tmp_path)
