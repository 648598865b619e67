"""Estimate a job before it is queued: its peak memory, its time and its cost.

The request is checked exactly as a submission is (`submission.plan_job`: every problem at once,
nothing stored), then the arithmetic of `tuneyard.planning` runs on the base model's config.json
(read, never loaded: the answer takes milliseconds) and the job's resolved hyperparameters. Time
divides the job's FLOPs by what the workers' own finished jobs like it reached (`planning.calibration`),
or, before any has finished one on the device, by a probe of this host (`services.throughput_probe`: a
few timed steps of one of the model's layers), and says which (`time.source`, `time.calibrated`);
cost is device-hours times the configured price of the device kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneyard.errors import SpecError
from tuneyard.planning import calibration
from tuneyard.planning.compute import run_size, train_flops
from tuneyard.planning.cost import Prices
from tuneyard.planning.memory import LINE_ROWS, Device, MemoryEstimate, TrainingSetup, estimate_memory
from tuneyard.planning.shape import BUILTIN_CONFIGS, ModelShape
from tuneyard.services import templates, throughput_probe
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.model_inputs import MAX_CONFIG_BYTES
from tuneyard.services.submission import JobPlan, JobRequest, plan_job
from tuneyard.settings import Settings
from tuneyard.store import datasets as datasets_store
from tuneyard.store.engine import Database
from tuneyard.store.throughput import finished_samples

TIME_BAND = 0.3
"""The time estimate's band, ±: what a calibrated worker is held to (tests/training/test_time_estimates.py)."""
PROBE_BAND = (0.25, 4.0)
"""An uncalibrated (probed) time's band, as factors of it. The probe times a layer's matmuls only, so on
a steady host it errs short; on the shared 2-core host it was written on (load 15-25) tiny-llama's real steps
ran at 0.5-4x the FLOP/s of a probe taken minutes apart, the load swinging both."""
MEMORY_BAND = 0.2
"""The memory estimate's band, ±: what the estimate is held to against measured peaks."""


def estimate_job(db: Database, settings: Settings, org_id: str, request: JobRequest,
                 device: Device | None = None) -> dict[str, Any]:
    """Memory, time and cost of the job `request` would submit; InvalidRequest as a submission gets."""
    request = templates.with_template(db, org_id, request)
    plan = plan_job(db, settings, org_id, request)
    samples = finished_samples(db)
    device = device or _likely_device(samples)
    sizing = _sizing(db, org_id, plan, device)
    setup, shape, hyperparams = sizing.setup, sizing.shape, sizing.hyperparams
    memory = estimate_memory(shape, setup, device)
    tokens = sizing.tokens
    train_tokens = None if tokens is None else round(tokens * (1 - float(hyperparams.get("eval_split", 0.0))))
    size = run_size(setup, hyperparams.get("max_steps"), int(hyperparams.get("epochs", 1)), train_tokens,
                    sizing.train_examples)
    flops = None if size is None else train_flops(shape, setup, size.tokens)
    # the micro-batch's tokens as the engine will run them (the dataset's mean example where known),
    # as finished jobs record theirs
    kind = calibration.job_kind(plan.config["base_model"], setup.method, setup.gradient_checkpointing,
                                setup.batch.tokens)
    time = _time(flops, samples, device, kind)
    if flops is not None and time["seconds"] is None:
        time = _probed_time(flops, throughput_probe.LayerProbe.of(shape, device, setup.batch.tokens,
                                                                  not setup.adapter))
    return {
        "base_model": request.spec.get("base_model"), "type": plan.type, "method": setup.method, "device": device,
        "model_params": shape.params,
        "trainable_params": memory.components["lora"] // 4 if setup.adapter else shape.params,
        "memory": {**memory.to_json(), "band_pct": round(100 * MEMORY_BAND)},
        "run": {"steps": size.steps if size else None, "steps_per_epoch": size.steps_per_epoch if size else None,
                "tokens": size.tokens if size else None, "flops": flops},
        "batch": _batch(setup),
        "time": time,
        "cost": _cost(settings, device, time),
    }  # fmt: skip


def planned_memory(db: Database, org_id: str, plan: JobPlan, device: Device) -> MemoryEstimate | None:
    """The peak memory `estimate_job` gives for a checked plan, or None where it gives none (a type
    that trains nothing to estimate, a base model whose config.json cannot be read here)."""
    try:
        sizing = _sizing(db, org_id, plan, device)
    except InvalidRequest:
        return None
    return estimate_memory(sizing.shape, sizing.setup, device)


@dataclass(frozen=True)
class _Sizing:
    shape: ModelShape
    setup: TrainingSetup
    hyperparams: dict[str, Any]
    tokens: int | None  # the training datasets' tokens, when counted
    examples: int | None  # and their examples

    @property
    def train_examples(self) -> int | None:
        """The examples left to train on once the eval split is taken out, as the runner splits
        (`training/data/splits.split_eval`: at least one held out and one kept)."""
        split, n = float(self.hyperparams.get("eval_split", 0.0)), self.examples
        if n is None or split == 0.0 or n < 2:
            return n
        return n - min(n - 1, max(1, round(n * split)))


def _sizing(db: Database, org_id: str, plan: JobPlan, device: Device) -> _Sizing:
    """What the arithmetic needs of a plan: the model's shape and the run's setup."""
    config = plan.config
    hyperparams = config.get("hyperparams")
    method = config.get("method")
    if not isinstance(hyperparams, dict) or not isinstance(method, str):
        raise InvalidRequest([{"field": "type", "message": f"{plan.type} jobs train nothing to estimate yet"}])
    shape = _shape(config["base_model"])
    tokens, examples = _dataset_figures(db, org_id, plan.dataset_ids, plan.request.spec.get("datasets"))
    example_tokens = tokens / examples if tokens and examples else None
    bf16 = hyperparams.get("bf16") is True or (hyperparams.get("bf16") == "auto" and device == "cuda")
    setup = TrainingSetup.from_hyperparams(method, hyperparams, bf16, example_tokens)
    return _Sizing(shape, setup, hyperparams, tokens, examples)


def _batch(setup: TrainingSetup) -> dict[str, Any]:
    """What batch_size means for this job, and the micro-batch the memory and FLOPs assume (docs/engine.md)."""
    batch = setup.batch
    examples = setup.batch_size * setup.gradient_accumulation_steps
    meaning = (f"{examples} examples an optimizer step (batch_size {setup.batch_size} x gradient_accumulation_steps "
               f"{setup.gradient_accumulation_steps})")
    if setup.packing:
        meaning = (f"{examples} packed rows of {setup.max_seq_length} tokens an optimizer step, each filled with "
                   "several examples (packing)")
    return {"examples_per_step": None if setup.packing else examples, "rows_per_step": examples if setup.packing
            else None, "packing": setup.packing, "meaning": meaning,
            "line_tokens": LINE_ROWS * setup.max_seq_length if batch.several_examples and not setup.packing else None,
            "attention": "per example" if not batch.several_examples else "block-diagonal mask over each row",
            "micro_batch": {"rows": batch.rows, "row_tokens": batch.row_tokens,
                            "several_examples_a_row": batch.several_examples}}


def _shape(runner_source: str) -> ModelShape:
    try:
        return ModelShape.from_config(model_config(runner_source))
    except SpecError as exc:
        raise InvalidRequest(exc.problems, exc.message) from None


def model_config(runner_source: str) -> dict[str, Any]:
    """A base model's config.json, by what the runner's base_model will be: a built-in's from the
    table, a folder's read (never its weights); InvalidRequest on base_model when it cannot be read."""
    config = BUILTIN_CONFIGS.get(runner_source)
    return dict(config) if config is not None else _read_config(Path(runner_source))


def _read_config(folder: Path) -> dict[str, Any]:
    unreadable = InvalidRequest([{"field": "base_model", "message": (
        "its config.json cannot be read here (a hub id or a GGUF file): give a model folder or a built-in "
        "to estimate")}])
    config_file = folder / "config.json"
    try:
        if not folder.is_absolute() or config_file.stat().st_size > MAX_CONFIG_BYTES:
            raise unreadable
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise unreadable from None
    if not isinstance(config, dict):
        raise unreadable
    return config


def likely_device(db: Database) -> Device:
    """The device the newest finished job ran on: where the next one most likely runs."""
    return _likely_device(finished_samples(db, limit=1))


def _likely_device(samples: list[calibration.Sample]) -> Device:
    return "cuda" if samples and samples[0].device == "cuda" else "cpu"


def _dataset_figures(db: Database, org_id: str, ids: list[str], refs: Any) -> tuple[int | None, int | None]:
    """(tokens, examples) of the training datasets; None where a dataset has not counted them."""
    splits = [r.get("split", "train") if isinstance(r, dict) else "train" for r in refs or []]
    tokens = examples = 0
    for dataset_id, split in zip(ids, splits, strict=False):
        if split != "train":
            continue
        dataset = datasets_store.get_dataset(db, org_id, dataset_id)
        if dataset.tokens_est is None or dataset.examples is None:
            return None, None
        tokens += dataset.tokens_est
        examples += dataset.examples
    return (tokens, examples) if ids else (None, None)


def _time(
    flops: float | None, samples: list[calibration.Sample], device: str, kind: calibration.JobKind
) -> dict[str, Any]:
    """Seconds on each host that has finished a job on `device` (from its jobs of `kind` where it has
    any), and the service-wide figure."""
    pooled = calibration.pooled(samples, device, kind)
    if flops is None or pooled is None:
        why = ("the run's length depends on a dataset whose tokens are not counted yet" if flops is None
               else f"no {device} worker has finished a job yet to measure its throughput")
        return {"seconds": None, "calibrated": False, "source": why, "by_host": {}}
    by_host = {host: _seconds(flops, t) for host, t in calibration.throughputs(samples, device, kind).items()}
    seconds = _seconds(flops, pooled)
    return {"seconds": seconds, "low": round(seconds * (1 - TIME_BAND), 1), "high": round(seconds * (1 + TIME_BAND), 1),
            "train_seconds": round(flops / pooled.flops_per_second, 1), "calibrated": True,
            "source": pooled.source, "flops_per_second": pooled.flops_per_second, "by_host": by_host}


def _probed_time(flops: float, probe: throughput_probe.LayerProbe) -> dict[str, Any]:
    """The steps' seconds at this host's probed FLOP/s, before any worker has calibrated: no loading or
    evaluation time (no job has measured it), and the wider PROBE_BAND."""
    measured = throughput_probe.measured(probe)
    uncalibrated = f"no {probe.device} worker has finished a job yet to measure its throughput"
    if measured is None:
        return {"seconds": None, "calibrated": False, "by_host": {}, "source": (
            f"{uncalibrated}; this host's throughput is being measured (a few timed steps of one of the "
            "model's layers): ask again in a few seconds")}
    if measured.flops_per_second is None:
        return {"seconds": None, "calibrated": False, "by_host": {}, "source": f"{uncalibrated}; {measured.why}"}
    seconds = round(flops / measured.flops_per_second, 1)
    low, high = PROBE_BAND
    return {"seconds": seconds, "low": round(seconds * low, 1), "high": round(seconds * high, 1),
            "train_seconds": seconds, "calibrated": False, "flops_per_second": measured.flops_per_second,
            "by_host": {}, "source": f"{uncalibrated}; a probe instead: {measured.why}"}


def _seconds(flops: float, throughput: calibration.Throughput) -> float:
    return round(flops / throughput.flops_per_second + throughput.overhead_seconds, 1)


def prices(settings: Settings) -> Prices:
    return Prices(cpu=settings.price_per_cpu_hour, cuda=settings.price_per_cuda_hour)


def price_per_hour(settings: Settings, device: str) -> float:
    return prices(settings).per_hour(device)


def _cost(settings: Settings, device: str, time: dict[str, Any]) -> dict[str, Any]:
    """Device-hours at the configured price, with the time's own band."""
    price = price_per_hour(settings, device)
    seconds = time.get("seconds")
    if seconds is None:
        return {"usd": None, "price_per_device_hour": price}

    def usd(at: float) -> float:
        return round(at / 3600 * price, 4)

    return {"usd": usd(seconds), "low": usd(time["low"]), "high": usd(time["high"]),
            "price_per_device_hour": price, "device_hours": round(seconds / 3600, 4)}
