"""The time estimate held to real runs of tiny-llama once a worker is calibrated (issue 13).

A real worker runs real tiny-llama jobs (LoRA and full, two batch x sequence-length settings), the
service calibrates on their results, and POST /v1/estimate then predicts a run of each setting that
a worker ran on the same host: the prediction must be within ±30 % of what that run measured.

This machine is shared and loaded (2 cores; load averages of 15-25 while this was written), so the
check is built to measure the estimator, not the neighbours:
- it compares the seconds the runner spent in its optimizer steps (`compute.train_seconds`), what
  the estimate's `time.train_seconds` predicts, not wall time around the run (queueing, process
  start and model loading, which the load stretches by tens of seconds and which no FLOP count
  describes);
- each predicted run runs at the same time as the calibrating run of its setting, on a second
  service's worker (its own database, so its result calibrates nothing), so both meet the same load:
  run one after the other, a slow spell of the host made the same setting 28 % slower five minutes
  later (−33.6 %, +14.3 %, +21.2 %, +1.2 % in the first version of this test);
- each run trains on the same number of tokens (ten steps of the largest setting, forty of the
  smallest), so one step slowed by a neighbour moves its total little: at ten steps a run of the
  smallest took 0.5 s, and one slow spell made it read +46.8 % (a full-suite run, 2026-12-04).
What is held is then the estimator's own part: the FLOPs it counts for a spec against the work the
runner did, and a calibration that picks the host's jobs like the one estimated.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api, paired_runs
from tests.support.api import Tenant
from tests.support.paired_runs import Setting, create_dataset, time_settings
from tests.support.runs import arithmetic_chat
from tuneyard.services.estimates import TIME_BAND
from tuneyard.settings import Settings
from tuneyard.store.engine import Database

app, client, tenant = api.app, api.client, api.tenant
api_settings, twin = paired_runs.api_settings, paired_runs.twin

SETTINGS: list[Setting] = [("lora", 2, 128), ("full", 2, 128), ("lora", 4, 256), ("full", 4, 256)]
RUN_TOKENS = 10 * 4 * 256
"""What each run trains on: ten steps of the largest setting."""


def job_body(dataset_id: str, method: str, batch: int, seq: int) -> dict[str, Any]:
    """Packed rows, so every step holds batch x seq tokens as the estimate counts them."""
    return {"base_model": "tiny-llama", "method": method, "datasets": [{"id": dataset_id}],
            "hyperparams": {"max_steps": RUN_TOKENS // (batch * seq), "batch_size": batch, "max_seq_length": seq,
                            "packing": True, "bf16": False, "learning_rate": 1e-4, "eval_split": 0.05}}


@pytest.mark.timeout(2400)
def test_a_calibrated_worker_times_each_setting_within_the_band(
    client: TestClient, tenant: Tenant, db: Database, api_settings: Settings, twin: tuple[Database, Settings]
) -> None:
    dataset_id = create_dataset(client, tenant, arithmetic_chat(800))
    timed = time_settings(client, tenant, db, api_settings, twin,
                          {s: job_body(dataset_id, *s) for s in SETTINGS})
    assert all("like this one" in t.source for t in timed), [t.source for t in timed]
    assert all(abs(t.error) <= TIME_BAND for t in timed), [str(t) for t in timed]
