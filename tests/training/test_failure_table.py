"""The table of library exceptions that mean the request's fault (tuneyard.training.failures): one
test per row with the real exception, made the cheapest way the library allows, and the default
for everything else: a platform error, retried."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch
from peft import LoraConfig, inject_adapter_in_model
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from tuneyard.errors import DataError, ModelNotFoundError, SpecError, UserError
from tuneyard.training import failures
from tuneyard.training.failures import KNOWN_FAILURES, KnownFailure
from tuneyard.training.methods import get_method

SMALL = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=1, vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def raised(action: Callable[[], object]) -> BaseException:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            action()
        except Exception as exc:
            return exc
    raise AssertionError("expected the library to raise")


class WithNorm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.norm = torch.nn.LayerNorm(4)


def peft_targets(name: str) -> BaseException:
    return raised(lambda: inject_adapter_in_model(LoraConfig(r=2, target_modules=[name]), WithNorm()))


def mismatched_checkpoint(tmp: Path) -> BaseException:
    LlamaForCausalLM(SMALL).save_pretrained(tmp)
    config = json.loads((tmp / "config.json").read_text())
    (tmp / "config.json").write_text(json.dumps({**config, "hidden_size": 32}))
    return raised(lambda: AutoModelForCausalLM.from_pretrained(tmp))


def tokenizer_without_entries(tmp: Path) -> BaseException:
    (tmp / "tokenizer.json").write_text('{"model": {"type": "nope"}}')
    (tmp / "tokenizer_config.json").write_text("{}")
    return raised(lambda: AutoTokenizer.from_pretrained(tmp))


def no_checkpointing() -> BaseException:
    with torch.device("meta"):
        model = LlamaForCausalLM(SMALL)
    model.supports_gradient_checkpointing = False
    return raised(model.gradient_checkpointing_enable)


# One sample per row of KNOWN_FAILURES, in its order: (the real exception, the module that called the library).
SAMPLES: list[tuple[Callable[[Path], BaseException], str]] = [
    (lambda _: peft_targets("nope"), failures.METHODS),
    (lambda _: peft_targets("nope"), failures.METHODS),  # the ValueError form older peft versions raise
    (lambda _: peft_targets("norm"), failures.METHODS),
    (lambda _: raised(lambda: safetensors.torch.load(b"not safetensors")), "tuneyard.training.models.loading"),
    (mismatched_checkpoint, "tuneyard.training.models.loading"),
    (lambda _: raised(lambda: torch.nn.Linear(2, 2).load_state_dict({"weight": torch.zeros(3, 3)})),
     "tuneyard.training.models.loading"),
    (lambda _: raised(lambda: Tokenizer.from_str('{"model": {"type": "Nope"}}')), "tuneyard.training.models.loading"),
    (tokenizer_without_entries, "tuneyard.training.models.loading"),
    (lambda _: raised(lambda: b"\xff".decode("utf-8")), "tuneyard.training.models.source"),
    (lambda _: raised(lambda: json.loads("{")), "tuneyard.training.models.source"),
    (lambda _: no_checkpointing(), failures.SESSION),
]


def test_every_row_has_a_sample() -> None:
    assert len(SAMPLES) == len(KNOWN_FAILURES)


@pytest.mark.parametrize("index", range(len(KNOWN_FAILURES)),
                         ids=[f"{k.exception.rsplit('.', 1)[-1]}-{k.field}" for k in KNOWN_FAILURES])
def test_each_known_failure_is_a_user_error_naming_its_field(index: int, tmp_path: Path) -> None:
    row: KnownFailure = KNOWN_FAILURES[index]
    make, where = SAMPLES[index]
    exc = make(tmp_path)
    assert row.matches(exc, where)
    user_error = failures.classify(exc, where)
    assert user_error is not None and user_error.error_type == "user_error"
    field = failures.blamed_field(user_error)
    assert failures.user_message(user_error).startswith(f"{field}: ")
    assert field == next(k.field for k in KNOWN_FAILURES if k.matches(exc, where))
    assert not row.matches(exc, "tuneyard.training.recipes.finetune")  # the same exception elsewhere is ours


@pytest.mark.parametrize("exc", [
    ValueError("something else entirely"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    OSError(28, "No space left on device"),
    KeyError("added_tokens"),  # raised outside model loading
])
def test_anything_else_is_a_platform_error(exc: Exception) -> None:
    assert failures.classify(exc, failures.METHODS) is None


def test_where_is_read_from_the_traceback(tmp_path: Path) -> None:
    """A corrupt file in the runner's own checkpoint is not the user's: restore raises, unclassified."""
    weights = tmp_path / "model"
    weights.mkdir()
    (weights / "adapter_model.safetensors").write_bytes(b"not safetensors")
    exc = raised(lambda: get_method("lora").restore(torch.nn.Linear(2, 2), weights))
    assert type(exc).__name__ == "SafetensorError"
    assert failures.raised_in(exc) == "tuneyard.training.methods"
    assert failures.classify(exc) is None


@pytest.mark.parametrize(("error", "field"), [
    (SpecError([{"field": "hyperparams.epochs", "message": "too big"}]), "hyperparams.epochs"),
    (DataError("no training example is left: every one lost all its loss tokens to truncation"),
     "hyperparams.max_seq_length"),
    (DataError("3 example(s) cannot be tokenized; first, f line 1: the chat template cannot render it"), "base_model"),
    (DataError("2 invalid line(s) in the data"), "datasets"),
    (ModelNotFoundError("base model 'x': no such file or folder"), "base_model"),
    (UserError("method: resume it with 'full'", field="method"), "method"),
])
def test_tuneyards_own_user_errors_name_a_field(error: UserError, field: str) -> None:
    assert failures.classify(error) is error
    assert failures.blamed_field(error) == field
    message = failures.user_message(error)
    assert field in message and message.endswith(error.message)
