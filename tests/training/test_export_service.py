"""The export service end to end: a trained model's row, an export queued, run by the service in
its own process (python -m tuneyard.export), stored with its manifest; q4_k_m made by llama.cpp's
quantizer from the converter's f16 and verified like every GGUF."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.exports import require_llama_cpp, train_tiny_lora
from tuneyard.services import exports
from tuneyard.settings import Settings
from tuneyard.store import exports as store
from tuneyard.store import tenancy
from tuneyard.store.engine import Database
from tuneyard.store.tables import TrainedModel


def test_a_queued_export_runs_in_its_own_process_and_is_stored(tmp_path: Path, settings: Settings,
                                                              db: Database, model_cache: Path) -> None:
    require_llama_cpp()
    final = train_tiny_lora(tmp_path / "trained", model_cache, steps=4)
    org = tenancy.create_org(db, "exporters")
    with db.write() as session:
        session.add(TrainedModel(id="model_tiny", org_id=org.id, base_model="tiny-llama", datasets=[],
                                 kind="adapter", path=str(final), meta={}))
    row = exports.request_export(db, settings, org.id, "model_tiny", format="gguf", quantization="q4_k_m",
                                 variant="merged", start=False)
    assert row.status == "queued"
    exports.run_pending(db, settings)
    done = store.get_export(db, org.id, "model_tiny", row.id)
    assert done.status == "completed", done.error
    assert done.attempts == 1 and done.manifest is not None
    verification = done.manifest["verification"]
    print("\nq4_k_m: " + json.dumps({k: verification[k] for k in ("positions", "top1_agreement",
                                                                  "max_abs_logit_delta")}))
    assert verification["passed"] and done.manifest["quantization"] == "q4_k_m"
    gguf = Path(done.path) / done.manifest["gguf_file"]
    assert gguf.is_file() and done.manifest["files"][gguf.name]["bytes"] == gguf.stat().st_size
    assert store.queued_ids(db) == []
