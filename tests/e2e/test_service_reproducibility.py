"""Two jobs of one spec through `tuneyard serve` end with bitwise equal weights, though the first
builds the model cache and the second finds it warm, each in its own run folder, with its own id."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.e2e.test_service_jobs import submit
from tests.support.runs import final_tensors, step_losses
from tests.support.service import Service

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_identical_jobs_end_bitwise_equal(tmp_path: Path, database_url: str) -> None:
    service = Service(tmp_path / "data", database_url, tmp_path / "cold-cache")  # tiny-llama not built yet
    try:
        service.start_serve()
        client = service.client()
        first, second = submit(client), submit(client)
        for job in (first, second):
            done = client.wait(job["id"], timeout=300)
            assert done["status"] == "completed", (done, service.log("serve.log"))
    finally:
        service.stop_all()
    runs = service.data_dir / "runs"
    assert step_losses(runs / first["id"]) == step_losses(runs / second["id"])
    expected, actual = final_tensors(runs / first["id"]), final_tensors(runs / second["id"])
    assert expected.keys() == actual.keys() and expected
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name
