"""The runner trains on the device its spec.json requires (`device`, set by the service for 003's
`backend: cpu|cuda`), else the best its host has: a `cpu` job on a CUDA worker trains on the CPU, and a
`cuda` job where torch sees no GPU fails as the platform's error, never trained on the CPU instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.support.runs import arithmetic_chat, run_runner, telemetry, write_jsonl, write_spec
from tuneyard.errors import DeviceUnavailable, SpecError
from tuneyard.training import contract
from tuneyard.training.config import read_spec_file, resolve
from tuneyard.training.device import pick_device
from tuneyard.training.footprint import Footprint
from tuneyard.training.session import Session
from tuneyard.training.telemetry import Telemetry

# peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` when it wraps a model here
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

HAS_CUDA = torch.cuda.is_available()
no_cuda_here = pytest.mark.skipif(HAS_CUDA, reason="checks what happens where torch sees no CUDA device")


def spec_requiring(folder: Path, device: Any) -> Path:
    data = write_jsonl(folder / "train.jsonl", arithmetic_chat(8))
    spec = write_spec(folder, data, max_steps=1)
    fields = yaml.safe_load(spec.read_text(encoding="utf-8"))
    spec.write_text(yaml.safe_dump({**fields, contract.SPEC_DEVICE_FIELD: device}), encoding="utf-8")
    return spec


def test_the_device_chosen_is_the_one_required_else_the_best_there_is() -> None:
    assert pick_device(None).type == ("cuda" if HAS_CUDA else "cpu")
    assert pick_device("cpu").type == "cpu"  # on a CUDA host too: a cpu job is not moved to the GPU
    assert Footprint.start("cpu").device == "cpu"  # and its memory is measured where it runs
    if HAS_CUDA:
        assert pick_device("cuda").type == "cuda"
    else:
        with pytest.raises(DeviceUnavailable, match="never trained on cpu"):
            pick_device("cuda")


def test_spec_json_keeps_the_required_device_for_every_attempt(tmp_path: Path, model_cache: Path) -> None:
    config = resolve(read_spec_file(spec_requiring(tmp_path, "cpu")), tmp_path, model_cache, {})
    assert config.device == "cpu" and config.to_json()[contract.SPEC_DEVICE_FIELD] == "cpu"
    again = resolve(config.to_json(), tmp_path, model_cache, {})  # a later attempt starts from spec.json
    assert again.device == "cpu"
    plain = read_spec_file(spec_requiring(tmp_path, None))
    assert contract.SPEC_DEVICE_FIELD not in resolve(plain, tmp_path, model_cache, {}).to_json()
    with pytest.raises(SpecError) as refused:
        resolve({**plain, contract.SPEC_DEVICE_FIELD: "mlx"}, tmp_path, model_cache, {})
    assert [p["field"] for p in refused.value.problems] == [contract.SPEC_DEVICE_FIELD]


def test_a_cpu_job_loads_and_trains_on_the_cpu(tmp_path: Path, model_cache: Path) -> None:
    config = resolve(read_spec_file(spec_requiring(tmp_path, "cpu")), tmp_path, model_cache, {})
    events = Telemetry(tmp_path / "telemetry.jsonl", echo=None)
    try:
        session = Session.load_model(config, events)
    finally:
        events.close()
    assert session.device.type == "cpu" and config.decisions["device"] == "cpu"
    assert {p.device.type for p in session.model.parameters()} == {"cpu"}


@no_cuda_here
def test_a_cuda_job_without_cuda_fails_clearly_before_loading_anything(tmp_path: Path, model_cache: Path) -> None:
    run_dir = tmp_path / "run"
    code = run_runner(spec_requiring(tmp_path, "cuda"), run_dir, model_cache, timeout=120)
    assert code not in (contract.EXIT_COMPLETED, contract.EXIT_USER_ERROR, contract.EXIT_STOPPED)  # retried
    records = telemetry(run_dir)
    [error] = [r for r in records if r["kind"] == contract.KIND_ERROR]
    assert error["error_type"] == "platform_error" and error["message"].startswith("DeviceUnavailable: ")
    assert "requires cuda" in error["message"] and "never trained on cpu" in error["message"]
    assert not [r for r in records if r["kind"] in (contract.KIND_PHASE, contract.KIND_METRIC)]  # nothing loaded
