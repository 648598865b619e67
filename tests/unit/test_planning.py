"""Planning arithmetic: shapes from config.json, the memory breakdown, FLOPs and calibration."""

from __future__ import annotations

import math

import pytest

from tuneyard.errors import SpecError
from tuneyard.planning.calibration import Sample, job_kind, pooled, throughputs
from tuneyard.planning.compute import flops_per_token, run_size, steps_per_epoch
from tuneyard.planning.cost import Prices, priced
from tuneyard.planning.memory import COMPONENTS, LINE_ROWS, TrainingSetup, estimate_memory, micro_batch
from tuneyard.planning.recommend import (
    MIN_STEP_EXAMPLES,
    MIN_STEPS,
    STEP_EXAMPLES,
    DataFigures,
    epochs_for,
    examples_per_step,
    recommend,
    seq_len_for,
)
from tuneyard.planning.shape import BUILTIN_CONFIGS, ModelShape
from tuneyard.training.models import catalog


@pytest.mark.parametrize("model_id", sorted(BUILTIN_CONFIGS))
def test_builtin_shapes_count_the_catalogs_parameters(model_id: str) -> None:
    entry = catalog.get_builtin(model_id)
    assert entry is not None
    assert ModelShape.from_config(BUILTIN_CONFIGS[model_id]).params == entry.parameters


def test_every_builtin_has_a_config_to_estimate_from() -> None:
    assert {e.id for e in catalog.list_builtins()} == set(BUILTIN_CONFIGS)


def test_a_config_without_dimensions_names_what_is_missing() -> None:
    with pytest.raises(SpecError) as raised:
        ModelShape.from_config({"model_type": "llama", "hidden_size": 64})
    assert raised.value.problems[0]["field"] == "base_model"
    assert "vocab_size" in raised.value.problems[0]["message"]


def test_lora_counts_rank_times_in_plus_out_per_adapted_linear() -> None:
    shape = ModelShape.from_config(BUILTIN_CONFIGS["tiny-llama"])
    # q 128->128, k/v 128->64, o 128->128, gate/up 128->384, down 384->128: sum(in+out) = 2432
    assert shape.lora_params(8, "all-linear") == 4 * 8 * 2432
    assert shape.lora_params(8, ["q_proj", "v_proj"]) == 4 * 8 * (256 + 192)


def test_the_breakdown_sums_to_the_peak_and_names_every_component() -> None:
    shape = ModelShape.from_config(BUILTIN_CONFIGS["smollm2-135m-instruct"])
    estimate = estimate_memory(shape, TrainingSetup("full", batch_size=2, max_seq_length=256, packing=True))
    assert set(estimate.components) == set(COMPONENTS)
    assert estimate.peak_bytes == sum(estimate.components.values())
    # full fine-tuning: weights, gradients and AdamW's two moments, four fp32 copies in all
    assert estimate.components["trainable_weights"] == shape.params * 4
    assert estimate.components["optimizer_state"] == 2 * estimate.components["gradients"]


def test_activations_grow_with_tokens_and_shrink_with_checkpointing() -> None:
    shape = ModelShape.from_config(BUILTIN_CONFIGS["smollm2-135m-instruct"])

    def activations(**kw: object) -> int:
        setup = TrainingSetup("lora", **{"batch_size": 2, "max_seq_length": 256, "packing": True, **kw})  # type: ignore[arg-type]
        return estimate_memory(shape, setup).components["activations"]

    assert activations(batch_size=4) == 2 * activations(batch_size=2)
    assert activations(gradient_checkpointing=True) < activations() / 5


def test_a_micro_batch_is_one_line_attended_per_example_as_the_engine_runs_it() -> None:
    """The engine joins a micro-batch into one line and attends each example alone (no mask)."""
    packed = micro_batch(8, 512, packing=True)
    assert (packed.rows, packed.row_tokens, packed.several_examples) == (1, 8 * 512, False)
    joined = micro_batch(8, 512, packing=False, example_tokens=100.4)
    assert (joined.rows, joined.row_tokens, joined.several_examples, joined.span) == (1, 800, False, 100)
    truncated = micro_batch(8, 512, packing=False, example_tokens=5000)  # examples truncated to 512
    assert (truncated.rows, truncated.row_tokens, truncated.span) == (1, 8 * 512, 512)


def test_without_per_example_attention_lines_are_capped_and_masked() -> None:
    joined = micro_batch(8, 512, packing=False, example_tokens=100.4, per_example=False)
    assert (joined.rows, joined.row_tokens, joined.several_examples, joined.span) == (1, 800, True, 800)
    # a line holds LINE_ROWS x 512 = 4 examples of 512, so 8 make 2 lines
    truncated = micro_batch(8, 512, packing=False, example_tokens=5000, per_example=False)
    assert (truncated.rows, truncated.row_tokens) == (2, LINE_ROWS * 512)
    assert not micro_batch(1, 512, packing=False, per_example=False).several_examples
    assert micro_batch(8, 512, packing=True, per_example=False).several_examples


def test_the_micro_batch_matches_the_engines_collate() -> None:
    """The engine's own collate over equal examples makes the micro-batch micro_batch() gives:
    one line with per-example attention; lines x longest line without it."""
    from tuneyard.training.data.collate import collate_for
    from tuneyard.training.data.packing import Row

    for batch_size, max_seq, example in ((8, 512, 100), (8, 512, 512), (16, 64, 30), (5, 32, 7)):
        rows = [Row([1] * example, [1] * example, list(range(example)), [example]) for _ in range(batch_size)]
        for per_example, line_tokens in ((True, None), (False, LINE_ROWS * max_seq)):
            tensors = collate_for(False, line_tokens)(rows, 0)
            expected = micro_batch(batch_size, max_seq, packing=False, example_tokens=example, per_example=per_example)
            assert tuple(tensors["input_ids"].shape) == (expected.rows, expected.row_tokens)


def test_steps_per_epoch_are_the_engines() -> None:
    """An epoch is ceil(rows / batch_size / accumulation) steps, rows being examples without
    packing: what training/plan.TrainingPlan counts."""
    from tuneyard.training.plan import TrainingPlan

    for examples, batch, accumulation in ((8, 4, 1), (9, 4, 1), (100, 3, 2), (1, 8, 4)):
        setup = TrainingSetup("lora", batch_size=batch, max_seq_length=64, gradient_accumulation_steps=accumulation)
        engine = TrainingPlan(examples, batch, accumulation, epochs=1, max_steps=None, seed=0).steps_per_epoch
        assert steps_per_epoch(setup, dataset_tokens=examples * 20, dataset_examples=examples) == engine
        size = run_size(setup, None, 3, examples * 20, examples)
        assert size is not None and (size.steps, size.steps_per_epoch) == (3 * engine, engine)
    packed = TrainingSetup("lora", batch_size=2, max_seq_length=100, packing=True)
    assert steps_per_epoch(packed, dataset_tokens=1000, dataset_examples=50) == 5  # 10 rows of 100, 2 a step


def test_a_result_is_priced_at_its_devices_price() -> None:
    prices = Prices(cpu=3.6, cuda=7.2)
    assert priced({"compute_seconds": 100.0}, prices, "cpu") == {
        "compute_seconds": 100.0, "cost_usd": 0.1, "price_per_device_hour": 3.6}
    assert priced({"compute_seconds": 100.0, "device": "cuda:0"}, prices, "cpu")["cost_usd"] == 0.2
    assert priced({"compute_seconds": 100.0}, Prices(), "cuda")["cost_usd"] == 0.0  # no price set: 0
    assert priced({}, prices, "cpu")["cost_usd"] is None  # nothing measured, nothing made up


def test_lora_backward_costs_one_forward_and_full_two() -> None:
    shape = ModelShape.from_config(BUILTIN_CONFIGS["tiny-llama"])
    full = flops_per_token(shape, TrainingSetup("full", 4, 128))
    lora = flops_per_token(shape, TrainingSetup("lora", 4, 128, lora_rank=1))
    assert lora / full == pytest.approx(2 / 3, rel=0.02)
    recomputed = flops_per_token(shape, TrainingSetup("full", 4, 128, gradient_checkpointing=True))
    assert recomputed / full == pytest.approx(4 / 3)


def test_run_size_from_steps_or_epochs() -> None:
    setup = TrainingSetup("lora", batch_size=2, max_seq_length=100, packing=True, gradient_accumulation_steps=2)
    unknown, known = run_size(setup, max_steps=5, epochs=1, dataset_tokens=None), run_size(setup, 5, 1, 10**6)
    assert unknown is not None and known is not None and (unknown.steps, unknown.tokens) == (known.steps, known.tokens)
    assert run_size(setup, None, 3, 1000) is not None and run_size(setup, None, 3, 1000).tokens == 3000  # type: ignore[union-attr]
    assert run_size(setup, None, 1, None) is None
    assert run_size(setup, 10, 1, 50).tokens == 500  # type: ignore[union-attr]  # a step is the whole small dataset


def test_calibration_is_the_median_of_each_hosts_newest_jobs() -> None:
    samples = [Sample("a", "cpu", 100.0, 1.0, 2.0), Sample("a", "cpu", 300.0, 1.0, 4.0),
               Sample("a", "cpu", 200.0, 1.0, 3.0), Sample("b", "cpu", 50.0, 1.0, 0.0),
               Sample("a", "cuda", 9e9, 1.0, 0.0)]
    by_host = throughputs(samples, "cpu")
    assert by_host["a"].flops_per_second == 200.0 and by_host["a"].overhead_seconds == 3.0
    assert by_host["b"].flops_per_second == 50.0
    assert pooled(samples, "cuda").flops_per_second == 9e9  # type: ignore[union-attr]
    assert pooled([], "cpu") is None


def test_calibration_takes_the_jobs_like_the_one_estimated_where_a_host_has_any() -> None:
    lora, full = job_kind("m", "lora", False, 256), job_kind("m", "full", False, 256)
    samples = [Sample("a", "cpu", 100.0, 1.0, 0.0, lora), Sample("a", "cpu", 400.0, 1.0, 0.0, full),
               Sample("a", "cpu", 120.0, 1.0, 0.0, lora), Sample("b", "cpu", 50.0, 1.0, 0.0, full),
               Sample("a", "cpu", 300.0, 1.0, 0.0, job_kind("m", "lora", False, 4096))]
    by_host = throughputs(samples, "cpu", lora)
    assert by_host["a"].flops_per_second == 110.0 and by_host["a"].jobs == 2 and "~256 tokens" in by_host["a"].source
    assert by_host["b"].flops_per_second == 50.0 and "m|lora" not in by_host["b"].source  # none like it: all of b's
    fulls, unlike = pooled(samples, "cpu", full), pooled(samples, "cpu", job_kind("m", "full", True, 256))
    assert fulls is not None and fulls.flops_per_second == 225.0  # (400 + 50) / 2, a's and b's full jobs
    assert unlike is not None and unlike.jobs == 5  # nothing checkpointed: every job
    assert job_kind("m", "lora", False, 256) == job_kind("m", "lora", False, 256.0)
    assert job_kind("m", "lora", True, 256) != lora != job_kind("n", "lora", False, 256)
    assert job_kind("m", "lora", False, None).tokens is None and job_kind("m", "lora", False, 0).tokens is None


def _sized(flops_per_second: float, tokens: float | None, host: str = "a") -> Sample:
    return Sample(host, "cpu", flops_per_second, 1.0, 0.0, job_kind("m", "lora", False, tokens))


def test_a_size_within_a_tenth_is_the_same_size() -> None:
    samples = [_sized(100.0, 32), _sized(110.0, 34), _sized(250.0, 128)]
    near = pooled(samples, "cpu", job_kind("m", "lora", False, 33))
    assert near is not None and near.flops_per_second == 105.0 and near.jobs == 2


def test_between_two_sizes_the_flops_follow_a_power_law_in_tokens() -> None:
    # SmolLM2 on CPU: ~2.5x the FLOP/s at 128 tokens a micro-batch as at 32
    samples = [_sized(100.0, 32), _sized(250.0, 128), _sized(90.0, 32), _sized(9e9, 128, host="b")]
    between = throughputs(samples, "cpu", job_kind("m", "lora", False, 64))["a"]
    # halfway in log tokens: the geometric mean of the medians at 32 (95) and at 128 (250)
    assert between.flops_per_second == pytest.approx(math.sqrt(95.0 * 250.0))
    assert between.jobs == 3 and "between" in between.source and "~32" in between.source
    # a job at 32 or 128 itself gets that size's own median, not a blend
    assert throughputs(samples, "cpu", job_kind("m", "lora", False, 128))["a"].flops_per_second == 250.0


def test_beyond_every_size_measured_the_nearest_in_log_tokens_is_taken() -> None:
    samples = [_sized(100.0, 32), _sized(250.0, 128), _sized(60.0, 8)]
    larger = pooled(samples, "cpu", job_kind("m", "lora", False, 2048))
    smaller = pooled(samples, "cpu", job_kind("m", "lora", False, 2))
    assert larger is not None and larger.flops_per_second == 250.0 and "nearest size" in larger.source
    assert smaller is not None and smaller.flops_per_second == 60.0
    # jobs whose size is not known count for their model and method only when no job's size is
    unsized = [_sized(70.0, None), _sized(80.0, None)]
    assert pooled(unsized + samples, "cpu", job_kind("m", "lora", False, 32)).flops_per_second == 100.0  # type: ignore[union-attr]
    assert pooled(unsized, "cpu", job_kind("m", "lora", False, 32)).flops_per_second == 75.0  # type: ignore[union-attr]


def test_a_result_without_compute_figures_is_no_sample() -> None:
    assert Sample.from_result({"ppl_final": 3.0}) is None
    assert Sample.from_result({"compute": {"train_flops": 10.0, "train_seconds": 0}}) is None
    sample = Sample.from_result({"compute": {"train_flops": 10.0, "train_seconds": 2.0, "device": "cpu", "host": "a"},
                                 "compute_seconds": 5.0})
    assert sample is not None and sample.flops_per_second == 5.0 and sample.overhead_seconds == 3.0
    assert sample.host == "a"


@pytest.mark.parametrize("method", ["lora", "full"])
def test_recommendations_stay_inside_their_windows_and_lr_falls_with_size(method: str) -> None:
    last_lr = float("inf")
    for params in (10**6, 10**8, 10**9, 7 * 10**9, 70 * 10**9):
        for tokens in (10**4, 10**6, 10**8, 10**10):
            advice = recommend(params, DataFigures(tokens, lengths=(30, 60, 90, 700)), method, 2048, 4)
            for name, value in advice["recommended"].items():
                assert advice["windows"][name]["min"] <= value <= advice["windows"][name]["max"], (name, advice)
        assert advice["recommended"]["lr"] <= last_lr
        last_lr = advice["recommended"]["lr"]


def test_small_data_takes_smaller_steps_to_make_enough_updates() -> None:
    def step(examples: int, batch_size: int = 8) -> tuple[int, int, str]:
        advice = recommend(10**6, DataFigures(examples * 5, examples), "lora", 1024, batch_size)
        rec = advice["recommended"]
        return rec["batch_size"], rec["gradient_accumulation_steps"], advice["notes"][2]

    assert step(100_000)[:2] == (8, 2)  # plenty of data: 16 a step, as before
    assert step(400) == (4, 1, "4 examples per optimizer step: batch 4 x 1 accumulated, 300 updates in all "
                               "(small data learns from more, smaller steps)")  # 16 a step would make 75
    assert step(64)[:2] == (4, 1) and "48 updates" in step(64)[2]  # 16 would make 12; the floor of 4 makes 48
    assert step(64, batch_size=2)[:2] == (2, 2)  # a tier's smaller micro-batch accumulates to the same
    assert examples_per_step(10**6, 1) == STEP_EXAMPLES and examples_per_step(10, 3) == MIN_STEP_EXAMPLES
    assert examples_per_step(3185, 1) == 16 and examples_per_step(3184, 1) == 8 and MIN_STEPS == 200


def test_more_data_means_fewer_passes_and_seq_len_is_a_percentile() -> None:
    assert epochs_for(10**5) > epochs_for(10**7) > epochs_for(10**9) == 1
    lengths = tuple(range(1, 101))  # 1..100 tokens: p95 = 95 → 128; p50 → 64; p99 → 128
    assert seq_len_for(DataFigures(5050, 100, lengths), context=1024, fallback=512) == (128, 64, 128)
    assert seq_len_for(DataFigures(5050, 100, lengths), context=100, fallback=512)[0] == 100  # the context caps it


def test_a_pool_shares_the_hosts_memory_and_a_pool_of_none_measures_too() -> None:
    from tuneyard.scheduler.capacity import declared_capacity, format_bytes

    assert declared_capacity(8_000_000_000, workers=4).memory_bytes == 8_000_000_000  # set: each worker's
    one, none = declared_capacity(None, workers=1), declared_capacity(None, workers=0)  # serve --workers 0
    assert one.memory_bytes is not None and none.memory_bytes is not None and one.device == none.device
    assert format_bytes(11_150_000_000) == "11.2 GB" and format_bytes(84_300_001) == "84.4 MB"  # rounded up
