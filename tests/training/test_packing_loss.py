"""Packing changes nothing but speed: packed and unpacked losses of the same examples agree.

A tiny random Llama (fp32, CPU) scores the same examples one per row and packed several to a
row with padding; per-token losses, their sums and counts must match, for eager and sdpa.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tuneyard.training.data import (
    PACKED_FORWARD_KWARGS,
    DataSource,
    Example,
    Row,
    build_rows,
    collate,
    collate_padding_free,
    prepare_data,
)
from tuneyard.training.loss import chunked_token_loss_sum, token_loss_sum

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "data"))
from tiny_tokenizer import CORPUS, make_tokenizer

MAX_LEN = 64


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list[Example]:
    """A dozen examples of different lengths and formats, with masked prompts."""
    folder = tmp_path_factory.mktemp("data")
    chats = folder / "chat.jsonl"
    rows = []
    for i in range(8):
        turns = [{"role": "user", "content": CORPUS[i % 6][: 4 + 3 * i]}]
        turns.append({"role": "assistant", "content": CORPUS[(i + 1) % 6][: 3 + 2 * i]})
        rows.append({"messages": turns})
    chats.write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = folder / "text.jsonl"
    texts.write_text("".join(json.dumps({"text": CORPUS[i][: 6 + 7 * i]}) + "\n" for i in range(4)))
    sources = [DataSource(chats), DataSource(texts)]
    data = prepare_data(sources, make_tokenizer(), max_seq_length=MAX_LEN)
    assert len(data.train) == 12
    return data.train


def tiny_llama(attention: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_LEN,
        attn_implementation=attention,
    )
    return LlamaForCausalLM(config).eval()


def per_token_losses(
    model: LlamaForCausalLM, rows: list[Row], batch_size: int, join: bool = False, **forward: bool
) -> list[torch.Tensor]:
    """The loss of each loss-bearing token, per example, in the order rows hold them; `join`: each
    batch's rows end to end in one sequence (the padding-free batching), else padded side by side."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = (collate_padding_free if join else collate)(chunk, 3)
        lines = [[n for row in chunk for n in row.lengths]] if join else [row.lengths for row in chunk]
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], **forward).logits
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], reduction="none"
        )
        targets = batch["labels"][:, 1:]
        for i, lengths in enumerate(lines):
            begin = 0
            for length in lengths:
                # Targets of this example: positions begin..begin+length-1, shifted by one.
                span = slice(max(begin - 1, 0), begin + length - 1)
                keep = targets[i, span] != -100
                out.append(losses[i, span][keep])
                begin += length
    return out


def by_source(rows: list[Row], examples: list[Example], losses: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    order = {tuple(e.input_ids): e.source for e in examples}
    sources = []
    for row in rows:
        begin = 0
        for length in row.lengths:
            sources.append(order[tuple(row.input_ids[begin : begin + length])])
            begin += length
    return dict(zip(sources, losses, strict=True))


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_packed_and_unpacked_losses_agree(examples: list[Example], attention: str) -> None:
    model = tiny_llama(attention)
    alone = build_rows(examples, MAX_LEN, packing=False)
    packed = build_rows(examples, MAX_LEN, packing=True)
    assert len(packed) < len(alone) and max(len(r.lengths) for r in packed) >= 3
    assert len({len(r) for r in packed}) > 1  # rows of different lengths: the batch is padded
    reference = by_source(alone, examples, per_token_losses(model, alone, 1, **PACKED_FORWARD_KWARGS))
    padded = by_source(alone, examples, per_token_losses(model, alone, 4, **PACKED_FORWARD_KWARGS))
    together = by_source(packed, examples, per_token_losses(model, packed, 3, **PACKED_FORWARD_KWARGS))
    for source, expected in reference.items():
        assert torch.allclose(padded[source], expected, rtol=0, atol=1e-5), source
        assert torch.allclose(together[source], expected, rtol=0, atol=1e-5), source
    total = torch.cat(list(reference.values()))
    assert sum(e.loss_tokens for e in examples) == total.numel()

    # The same through token_loss_sum, as the training loop computes it.
    def summed(rows: list[Row]) -> tuple[float, int]:
        batch = collate(rows, pad_token_id=3)
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        loss, count = token_loss_sum(logits, batch["labels"])
        return loss.item(), count

    (packed_sum, packed_count), (alone_sum, alone_count) = summed(packed), summed(alone)
    assert packed_count == alone_count == total.numel()
    assert abs(packed_sum - alone_sum) <= 1e-5 * alone_count  # fp32 sums of ~5.7 a token
    assert abs(packed_sum - total.double().sum().item()) <= 1e-5 * alone_count


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_padding_free_batches_score_as_padded_ones(examples: list[Example], attention: str) -> None:
    """The default batching: a micro-batch's examples end to end, no pad, the padded batch's losses."""
    model = tiny_llama(attention)
    alone = build_rows(examples, MAX_LEN, packing=False)
    joined = collate_padding_free(alone[:4])
    assert joined["input_ids"].shape == (1, sum(len(row) for row in alone[:4]))  # not one pad
    padded = by_source(alone, examples, per_token_losses(model, alone, 4, **PACKED_FORWARD_KWARGS))
    free = by_source(alone, examples, per_token_losses(model, alone, 4, join=True, **PACKED_FORWARD_KWARGS))
    assert padded.keys() == free.keys() and len(free) == len(examples)
    for source, expected in padded.items():
        assert free[source].shape == expected.shape, source
        assert torch.allclose(free[source], expected, rtol=0, atol=1e-5), source

    # Capped lines (as the trainer joins a large micro-batch): the same loss, lines within the cap.
    cap = 2 * max(len(row) for row in alone)
    lined = collate_padding_free(alone, 3, line_tokens=cap)
    assert 1 < lined["input_ids"].shape[0] < len(alone) and lined["input_ids"].shape[1] <= cap
    with torch.no_grad():
        logits = model(input_ids=lined["input_ids"], position_ids=lined["position_ids"], use_cache=False).logits
    loss, count = token_loss_sum(logits, lined["labels"])
    reference = torch.cat(list(padded.values()))
    assert count == reference.numel() and abs(loss.item() - reference.double().sum().item()) <= 1e-5 * count


def test_a_cache_switches_off_boundary_detection(examples: list[Example]) -> None:
    """Why PACKED_FORWARD_KWARGS exists: with use_cache on, packed examples see each other."""
    model = tiny_llama("sdpa")
    packed = build_rows(examples, MAX_LEN, packing=True)
    alone = build_rows(examples, MAX_LEN, packing=False)
    reference = by_source(alone, examples, per_token_losses(model, alone, 1, use_cache=False))
    leaky = by_source(packed, examples, per_token_losses(model, packed, 1, use_cache=True))
    worst = max((leaky[s] - reference[s]).abs().max().item() for s in reference)
    assert worst > 1e-3


def test_token_loss_sum_matches_the_models_own_mean_loss(examples: list[Example]) -> None:
    model = tiny_llama("sdpa")
    batch = collate(build_rows(examples, MAX_LEN, packing=True), pad_token_id=3)
    with torch.no_grad():
        output = model(**batch, use_cache=False)
    loss, count = token_loss_sum(output.logits, batch["labels"])
    assert count == sum(e.loss_tokens for e in examples)
    assert torch.allclose(loss / count, output.loss, rtol=1e-6, atol=0)


def test_chunked_loss_matches_the_plain_one_with_gradients(examples: list[Example]) -> None:
    model = tiny_llama("sdpa")
    batch = collate(build_rows(examples, MAX_LEN, packing=True), pad_token_id=3)
    hidden = model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    states = hidden.last_hidden_state
    weight = model.lm_head.weight
    plain, plain_count = token_loss_sum(model.lm_head(states), batch["labels"])
    (plain_grad,) = torch.autograd.grad(plain, weight, retain_graph=True)
    chunked, chunked_count = chunked_token_loss_sum(states, weight, batch["labels"], chunk_size=7)
    (chunked_grad,) = torch.autograd.grad(chunked, weight)
    assert chunked_count == plain_count
    assert torch.allclose(chunked, plain, rtol=1e-6, atol=0)
    assert torch.allclose(chunked_grad, plain_grad, rtol=1e-5, atol=1e-6)
