"""The base-model catalog and method checks: pure data, no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tuneyard.errors import UnsupportedError
from tuneyard.spec import parse_spec, resolve_hyperparams
from tuneyard.training.models import (
    TINY_LLAMA,
    builtin_defaults,
    check_method_supported,
    get_builtin,
    heal_learning_rate,
    list_builtins,
    size_defaults,
)


def test_tiny_llama_is_listed_with_its_facts() -> None:
    ids = [e.id for e in list_builtins()]
    assert TINY_LLAMA in ids
    entry = get_builtin(TINY_LLAMA)
    assert entry is not None
    assert entry.architecture == "llama"
    assert entry.context_length >= 512
    assert set(entry.methods) == {"lora", "full", "dpo"}
    assert entry.to_dict()["id"] == TINY_LLAMA


def test_tiny_llama_wants_big_steps_and_short_rows() -> None:
    defaults = builtin_defaults(TINY_LLAMA)
    assert defaults["learning_rate"] == pytest.approx(1e-3)
    assert defaults["max_seq_length"] == 256


def test_unknown_ids_have_no_builtin_defaults() -> None:
    assert builtin_defaults("someone/some-model") == {}
    assert get_builtin("someone/some-model") is None


@pytest.mark.parametrize("entry", list_builtins(), ids=lambda e: e.id)
@pytest.mark.parametrize("method", ["lora", "full", "qlora"])
def test_every_builtin_default_is_a_valid_hyperparameter(entry, method: str) -> None:
    spec = parse_spec({"base_model": entry.id, "datasets": [{"path": "x.jsonl"}], "method": method})
    hyper, origins = resolve_hyperparams(spec, builtin_defaults(entry.id, method))
    assert origins["max_seq_length"] == "base_model"
    assert hyper.max_seq_length == builtin_defaults(entry.id, method)["max_seq_length"]


def test_size_defaults_shrink_the_learning_rate_as_models_grow() -> None:
    rates = [size_defaults(n)["learning_rate"] for n in (1_000_000, 135_000_000, 7_000_000_000, 70_000_000_000)]
    assert rates == sorted(rates, reverse=True)
    assert size_defaults(135_000_000, "full")["learning_rate"] < size_defaults(135_000_000)["learning_rate"]


def test_healing_takes_the_full_fine_tuning_rate_of_the_models_size() -> None:
    """Issue 11: a flat 1e-3 wrecked SmolLM2; the test models keep the large steps they need."""
    assert heal_learning_rate(1_049_728) == pytest.approx(1e-3)  # tiny-llama
    assert heal_learning_rate(134_515_008) == pytest.approx(2e-5)  # SmolLM2-135M
    assert heal_learning_rate(7_000_000_000) == pytest.approx(1e-5)
    assert heal_learning_rate(70_000_000_000) == pytest.approx(5e-6)


def test_the_package_imports_without_torch() -> None:
    code = (
        "import sys, tuneyard.training.models as m; m.list_builtins(); "
        "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("method", ["lora", "full"])
def test_lora_and_full_run_anywhere(method: str) -> None:
    check_method_supported(method, "cpu")


def test_qlora_on_cpu_is_a_clear_user_error() -> None:
    with pytest.raises(UnsupportedError) as info:
        check_method_supported("qlora", "cpu")
    assert info.value.error_type == "user_error"
    message = str(info.value)
    assert "qlora" in message and "CUDA" in message and "'lora'" in message


def test_unknown_method_is_refused() -> None:
    with pytest.raises(UnsupportedError, match="unknown training method 'kto'"):
        check_method_supported("kto", "cpu")
