"""Per-example attention (training/models/attention.py): a padding-free line attended one example
at a time gives the padded batch's losses and gradients, under gradient checkpointing too, and is
never left switched on, nor used where it would attend across what it cannot see."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tuneyard.training.data import DataSource, Example, Row, build_rows, collate, collate_for, prepare_data
from tuneyard.training.loss import token_loss_sum
from tuneyard.training.models.attention import PER_EXAMPLE, per_example_attention, supports_per_example
from tuneyard.training.session import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "data"))
from tiny_tokenizer import CORPUS, make_tokenizer

MAX_LEN = 64


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list[Example]:
    folder = tmp_path_factory.mktemp("data")
    texts = folder / "text.jsonl"
    texts.write_text("".join(json.dumps({"text": CORPUS[i % 6][: 5 + 9 * i]}) + "\n" for i in range(7)))
    data = prepare_data([DataSource(texts)], make_tokenizer(), max_seq_length=MAX_LEN)
    assert len({len(e.input_ids) for e in data.train}) > 3  # lengths differ: a padded batch has pads
    return list(data.train)


@pytest.fixture(scope="module")
def rows(examples: list[Example]) -> list[Row]:
    return build_rows(examples, MAX_LEN, packing=False)


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=MAX_LEN, attn_implementation="sdpa",
    )  # fmt: skip
    return LlamaForCausalLM(config).train()


def loss_and_grads(model: LlamaForCausalLM, batch: dict[str, torch.Tensor]) -> tuple[float, int, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
    loss, count = token_loss_sum(logits, batch["labels"])
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return loss.item(), count, grads


def padded_with_mask(rows: list[Row]) -> dict[str, torch.Tensor]:
    batch = collate(rows, pad_token_id=3)
    mask = torch.zeros_like(batch["input_ids"])
    for i, row in enumerate(rows):
        mask[i, : len(row)] = 1
    return {"input_ids": batch["input_ids"], "attention_mask": mask, "labels": batch["labels"]}


@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_line_attended_per_example_trains_as_the_padded_batch(rows: list[Row], checkpointing: bool) -> None:
    model = tiny_llama()
    assert supports_per_example(model)
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    padded_loss, padded_count, padded_grads = loss_and_grads(model, padded_with_mask(rows))
    line = collate_for(packing=False, line_tokens=None)(rows, 3)
    assert line["input_ids"].shape == (1, sum(len(row) for row in rows))  # one line, not one pad
    with per_example_attention(model):
        loss, count, grads = loss_and_grads(model, line)
    assert model.config._attn_implementation == "sdpa"  # switched back
    assert count == padded_count
    assert abs(loss - padded_loss) <= 1e-5 * count
    assert torch.allclose(grads, padded_grads, rtol=1e-4, atol=1e-6)

    # Without it, the same line through sdpa's block mask agrees too: only the work differs.
    mask_loss, _, _ = loss_and_grads(model, line)
    assert abs(mask_loss - padded_loss) <= 1e-5 * count


def test_packed_rows_join_into_one_line_with_the_same_loss(examples: list[Example], rows: list[Row]) -> None:
    packed = build_rows(examples, MAX_LEN, packing=True)
    assert any(len(r.lengths) > 1 for r in packed)
    model = tiny_llama()
    reference, count, _ = loss_and_grads(model, padded_with_mask(rows))
    with per_example_attention(model):
        loss, packed_count, _ = loss_and_grads(model, collate_for(packing=True, line_tokens=None)(packed, 3))
    assert packed_count == count and abs(loss - reference) <= 1e-5 * count


def test_it_refuses_what_it_cannot_attend_correctly(rows: list[Row]) -> None:
    model = tiny_llama()
    batch = padded_with_mask(rows[:3])
    with per_example_attention(model), pytest.raises(RuntimeError, match="one padding-free line"):
        model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False)
    assert model.config._attn_implementation == "sdpa"  # restored on the way out of an error too
    with per_example_attention(model), pytest.raises(RuntimeError, match="one padding-free line"):
        model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=2, do_sample=False)
    # Outside it, generation is the model's own.
    assert model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=2, do_sample=False).shape == (1, 5)
    assert model.config._attn_implementation != PER_EXAMPLE


def test_the_session_keeps_a_checkpointed_backward_inside_the_scope(rows: list[Row]) -> None:
    model = tiny_llama()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    session = Session(model, None, None, torch.device("cpu"), False, None, per_example=True)  # type: ignore[arg-type]
    line = collate_for(packing=False, line_tokens=None)(rows, 3)
    with pytest.raises(RuntimeError, match="attention_scope"):
        session.loss_sum(line)
    with session.attention_scope():
        loss, count = session.loss_sum(line)
        loss.backward()
    assert count > 0 and model.config._attn_implementation == "sdpa"
    with torch.no_grad():  # no backward to recompute anything: evaluation needs no scope
        assert session.loss_sum(line)[1] == count


def test_under_bf16_autocast_fp32_attention_attends_in_fp32_and_trains_alike(
    rows: list[Row], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fp32 variant really attends in fp32 (autocast would cast its inputs back to bf16) and
    gradients flow through its casts: loss and gradients agree with the fp32 run's to bf16's bound."""
    model = tiny_llama()
    line = collate_for(packing=False, line_tokens=None)(rows, 3)
    with per_example_attention(model):
        reference, count, reference_grads = loss_and_grads(model, line)
    attended: list[torch.dtype] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(query: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        out = sdpa(query, *args, **kwargs)  # type: ignore[arg-type]
        attended.append(out.dtype)  # what the kernel computed in, after autocast's casts
        return out

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)

    def under_bf16(fp32: bool) -> tuple[float, torch.Tensor]:
        session = Session(model, None, None, torch.device("cpu"), True, None, per_example=True,  # type: ignore[arg-type]
                          attention_fp32=fp32)
        model.zero_grad(set_to_none=True)
        attended.clear()
        with session.attention_scope():
            loss, bf16_count = session.loss_sum(line)
            loss.backward()
        assert bf16_count == count and model.config._attn_implementation == "sdpa"
        assert attended and set(attended) == {torch.float32 if fp32 else torch.bfloat16}
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    for fp32 in (False, True):
        loss, grads = under_bf16(fp32)
        assert abs(loss - reference) <= 1e-2 * count  # bf16 matmuls around it: bf16's bound
        assert float((grads - reference_grads).norm() / reference_grads.norm()) < 2e-2


def test_a_line_of_equal_lengths_is_attended_as_one_batch_with_the_same_answer(
    examples: list[Example], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fixed-length rows (every chunk max_seq_length long) are attended side by side in one call per
    layer; the losses and gradients are those of the rows as a plain batch, and of one call per row."""
    from tuneyard.training.models import attention

    length = min(len(e.input_ids) for e in examples)
    equal = [dataclasses.replace(e, input_ids=e.input_ids[:length], labels=e.labels[:length]) for e in examples]
    rows = build_rows(equal, MAX_LEN, packing=False)
    model = tiny_llama()
    batch = collate(rows, pad_token_id=3)
    assert bool((batch["input_ids"] != 3).all())  # no padding: the plain batch is the reference
    reference, count, reference_grads = loss_and_grads(model, batch)
    line = collate_for(packing=False, line_tokens=None)(rows, 3)
    calls: list[int] = []
    sdpa = attention.sdpa_attention_forward

    def counting(module: torch.nn.Module, query: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(query.shape[0])
        return sdpa(module, query, *args, **kwargs)

    monkeypatch.setattr(attention, "sdpa_attention_forward", counting)
    with per_example_attention(model):
        loss, line_count, grads = loss_and_grads(model, line)
    assert calls and set(calls) == {len(rows)}  # one call a layer, the rows as its batch
    assert line_count == count and abs(loss - reference) <= 1e-5 * count
    assert torch.allclose(grads, reference_grads, rtol=1e-4, atol=1e-6)
    calls.clear()
    monkeypatch.setattr(attention, "BATCH_EQUAL_LENGTHS", False)  # one call per row, as for unequal lengths
    with per_example_attention(model):
        looped, _, looped_grads = loss_and_grads(model, line)
    assert calls and set(calls) == {1}
    assert abs(looped - loss) <= 1e-6 * count and torch.allclose(grads, looped_grads, rtol=1e-5, atol=1e-7)
