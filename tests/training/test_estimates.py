"""The memory estimate held to real runs of tiny-llama: each component against what a real training
step holds, and the whole peak against what the runner measured (peak RSS growth from just before
the model loads, `tuneyard.training.footprint`). LoRA and full, two batch x sequence-length settings.

Time is held to its band in benchmarks/estimate_accuracy.py, not here: a timed assertion on shared
CPUs would fail with the neighbours' load, not with the estimate.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.support.runs import arithmetic_chat, run_runner, write_jsonl, write_spec
from tuneyard.planning.memory import TrainingSetup, estimate_memory
from tuneyard.planning.shape import BUILTIN_CONFIGS, ModelShape
from tuneyard.spec import METHODS
from tuneyard.training.data.collate import collate
from tuneyard.training.data.packing import Row
from tuneyard.training.methods import get_method
from tuneyard.training.models.tiny_llama import ensure_tiny_llama
from tuneyard.training.optim import build_optimizer

SETTINGS = [("lora", 2, 128), ("lora", 4, 256), ("full", 2, 128), ("full", 4, 256)]
PEAKS = [(*setting, False) for setting in SETTINGS] + [("lora", 8, 512, False), ("lora", 8, 512, True)]
"""The settings whose whole peak is held to the measured one: SETTINGS, and LoRA at 8 x 512 tokens with
and without gradient checkpointing, where the estimate once fell 27 % and 46 % short (the C allocator's
retention, `planning.memory.heap_retention_bytes`)."""
SHAPE = ModelShape.from_config(BUILTIN_CONFIGS["tiny-llama"])


def test_the_builtin_config_is_tiny_llamas(model_cache: Path) -> None:
    built = json.loads((ensure_tiny_llama(model_cache) / "config.json").read_text())
    assert {k: built[k] for k in BUILTIN_CONFIGS["tiny-llama"]} == BUILTIN_CONFIGS["tiny-llama"]


def _packed_rows(batch: int, seq: int) -> list[Row]:
    """Rows of several 40-token examples, as packing makes them: position ids restart per example."""
    rows = []
    for r in range(batch):
        row = Row()
        row.input_ids = [(7 * r + i) % 2000 + 4 for i in range(seq)]
        row.labels = list(row.input_ids)
        row.position_ids = [i % 40 for i in range(seq)]
        rows.append(row)
    return rows


def _bytes_saved_for_backward(model: Any, batch: dict[str, torch.Tensor]) -> int:
    """Bytes autograd keeps from one forward pass, weights left out (they are counted as weights)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    decoder = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        hidden = decoder(**batch, use_cache=False).last_hidden_state
    del hidden
    return sum(saved.values())


@pytest.mark.parametrize(("method", "batch", "seq"), SETTINGS)
def test_each_component_against_a_real_step(model_cache: Path, method: str, batch: int, seq: int) -> None:
    own = {"lora_rank": 8} if method == "lora" else {}
    hp = METHODS.get(method).hyperparams(batch_size=batch, max_seq_length=seq, packing=True, **own)
    setup = TrainingSetup.from_hyperparams(method, hp.model_dump(), bf16=False)
    estimate = estimate_memory(SHAPE, setup).components
    model = AutoModelForCausalLM.from_pretrained(ensure_tiny_llama(model_cache), dtype=torch.float32)
    with warnings.catch_warnings():
        # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` (as loading.py notes)
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        model = get_method(method).prepare(model, hp, False)
    model.train()

    def nbytes(tensors: Any) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert estimate["weights"] == nbytes(frozen)
    assert estimate["trainable_weights" if method == "full" else "lora"] == nbytes(trainable)

    tensors = collate(_packed_rows(batch, seq), pad_token_id=0)
    kept = _bytes_saved_for_backward(model, {k: v for k, v in tensors.items() if k != "labels"})
    predicted = estimate["activations"] + estimate["attention_mask"]
    assert abs(predicted - kept) <= 0.2 * kept, (predicted, kept)

    optimizer = build_optimizer(model, hp)
    loss = model(**tensors, use_cache=False).loss
    loss.backward()
    assert estimate["gradients"] == nbytes(p.grad for p in trainable if p.grad is not None)
    optimizer.step()
    moments = [v for state in optimizer.state.values() for k, v in state.items() if k != "step"]
    assert estimate["optimizer_state"] == nbytes(moments)


Run = tuple[str, int, int, bool]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> dict[Run, dict[str, Any]]:
    """The runner's result card for each setting: 3 packed steps over rows filled with chat."""
    results = {}
    folder = tmp_path_factory.mktemp("data")
    # 4k-token steps need more chats than the small settings' 200 for their rows to be full
    data = {n: write_jsonl(folder / f"train-{n}.jsonl", arithmetic_chat(n)) for n in (200, 800)}
    for method, batch, seq, checkpointing in PEAKS:
        folder = tmp_path_factory.mktemp(f"{method}-{batch}-{seq}-{'gc' if checkpointing else 'no-gc'}")
        own: dict[str, Any] = {"lora_rank": 8} if method == "lora" else {}
        if checkpointing:
            own["gradient_checkpointing"] = True
        spec = write_spec(folder, data[200 if batch * seq < 4096 else 800], method=method, max_steps=3,
                          batch_size=batch, max_seq_length=seq, packing=True, **own)
        assert run_runner(spec, folder / "run", model_cache) == 0, (folder / "run" / "runner.log").read_text()[-3000:]
        results[(method, batch, seq, checkpointing)] = json.loads((folder / "run" / "result.json").read_text())
    return results


@pytest.mark.parametrize("setting", PEAKS, ids=lambda s: "-".join(map(str, s)))
def test_the_peak_is_within_a_fifth_of_the_measured_one(runs: dict[Run, dict[str, Any]], setting: Run) -> None:
    memory = runs[setting]["memory"]
    assert memory["measured_as"].startswith("peak RSS")
    estimated, measured = memory["estimated_peak_bytes"], memory["measured_peak_bytes"]
    print(f"tiny-llama {setting}: memory estimate {estimated / 2**20:.0f} MiB, measured {measured / 2**20:.0f} MiB "
          f"({memory['error_pct']:+.1f} %)")
    assert abs(estimated - measured) <= 0.2 * measured, memory


def test_every_result_records_its_compute_for_calibration(runs: dict[Run, dict[str, Any]]) -> None:
    for (_, batch, seq, _), result in runs.items():
        compute = result["compute"]
        assert compute["train_seconds"] == result["train_seconds"] > 0
        assert compute["train_flops"] > 0 and compute["host"] and compute["device"] == "cpu"
        # what calibration matches jobs on: a micro-batch's tokens as it ran (packed rows: nearly full)
        assert 0.8 * batch * seq <= compute["micro_batch_tokens"] <= batch * seq, compute
    # the same tokens cost a full fine-tune half again LoRA's FLOPs (backward for the weights too)
    lora_run, full_run = runs[("lora", 2, 128, False)], runs[("full", 2, 128, False)]
    per_token = [c["train_flops"] / r["tokens_processed"] for c, r in
                 ((lora_run["compute"], lora_run), (full_run["compute"], full_run))]
    assert 1.3 < per_token[1] / per_token[0] < 1.6
