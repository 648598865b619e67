"""Tokenization with loss masks, splits, rows and prepare_data, on a tiny BPE tokenizer."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tuneyard.errors import DataError
from tuneyard.training.data import (
    IGNORE_INDEX,
    DataSource,
    Example,
    build_rows,
    prepare_data,
    preview_markup,
    render_preview,
)
from tuneyard.training.data.encoding import Encoder
from tuneyard.training.data.splits import split_eval
from tuneyard.training.data.validation import load_records

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
sys.path.insert(0, str(FIXTURES))  # the tiny tokenizer helper lives beside the data fixtures
from tiny_tokenizer import make_tokenizer  # noqa: E402


def marked(name: str, tokenizer: Any = None, **options: Any) -> list[str]:
    """Each example of a fixture file with its loss-bearing text between [[ ]]."""
    tokenizer = tokenizer or make_tokenizer()
    encoder = Encoder(tokenizer, max_seq_length=options.pop("max_seq_length", 512), **options)
    out = []
    for record in load_records(FIXTURES / name).records:
        example = encoder.encode(record)
        assert example is not None
        assert example.labels[0] == IGNORE_INDEX
        out.append(preview_markup(render_preview(example, tokenizer)))
    return out


def test_chat_loss_on_assistant_turns_through_end_of_turn() -> None:
    assert marked("chat.jsonl") == [
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n[[hello<|im_end|>]]\n",
        "<|im_start|>user\nhow are you<|im_end|>\n<|im_start|>assistant\nfine<|im_end|>\n"  # weight 0
        "<|im_start|>user\nand?<|im_end|>\n<|im_start|>assistant\n[[good<|im_end|>]]\n",
    ]


def test_train_on_inputs_puts_loss_on_everything_but_the_first_token() -> None:
    text = marked("sharegpt.jsonl", train_on_inputs=True)[0]
    assert text == "<|im_start|>[[user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n]]"


def test_sharegpt_and_alpaca_render_as_conversations() -> None:
    assert marked("sharegpt.jsonl") == ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n[[hello<|im_end|>]]\n"]
    assert marked("alpaca.jsonl") == [
        "<|im_start|>user\nTranslate to French\n\ngood morning<|im_end|>\n<|im_start|>assistant\n"
        "[[Bonjour.<|im_end|>]]\n",
        "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n[[hi<|im_end|>]]\n",
    ]


def test_prompt_completion_is_raw_text_with_bos_and_eos() -> None:
    tokenizer = make_tokenizer(bos=True)
    assert marked("prompt_completion.jsonl", tokenizer) == ["<s>Q: capital of France? A:[[ Paris.<|endoftext|>]]"]


def test_text_carries_loss_on_every_token_after_the_first() -> None:
    assert marked("text.jsonl") == ["The[[ quick brown fox<|endoftext|>]]"]
    assert marked("text.jsonl", make_tokenizer(bos=True)) == ["<s>[[The quick brown fox<|endoftext|>]]"]


def test_default_template_when_the_tokenizer_has_none() -> None:
    tokenizer = make_tokenizer(chat_template=False)
    assert marked("sharegpt.jsonl", tokenizer) == [
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n[[hello<|im_end|>]]\n"
    ]


def test_eos_is_appended_when_the_template_does_not_close_the_turn() -> None:
    tokenizer = make_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}" + (
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    assert marked("sharegpt.jsonl", tokenizer) == ["user: hi\nassistant: [[hello\n<|endoftext|>]]"]


def test_pieces_are_tokenized_apart_when_bpe_merges_across_a_boundary(tmp_path: Path) -> None:
    # "assistant: " + "brown": byte-level BPE merges " b" into one token, so the prompt's own
    # tokens are not a prefix of the whole text's; the masks must stay exact anyway.
    path = tmp_path / "chat.jsonl"
    path.write_text(
        json.dumps({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "brown"}]})
    )
    tokenizer = make_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|im_end|>{% endfor %}" + (
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    encoder = Encoder(tokenizer, max_seq_length=512)
    example = encoder.encode(load_records(path).records[0])
    assert example is not None
    assert preview_markup(render_preview(example, tokenizer)) == "user: hi<|im_end|>assistant: [[brown<|im_end|>]]"
    assert encoder.stats.split_tokenized == 1


def test_template_that_is_not_prefix_stable_trains_the_last_turn_only() -> None:
    # Like Qwen3's: earlier assistant turns render differently once a later turn exists.
    tokenizer = make_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}<|im_start|>assistant\n"
        "(old)<|im_end|>\n{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    encoder = Encoder(tokenizer, max_seq_length=512)
    record = load_records(FIXTURES / "chat.jsonl").records[1]
    example = encoder.encode(record)
    assert example is not None
    assert preview_markup(render_preview(example, tokenizer)).endswith("assistant\n[[good<|im_end|>]]\n")
    assert encoder.stats.last_turn_only == 1


def test_truncation_and_drops_are_counted() -> None:
    tokenizer = make_tokenizer()
    records = load_records(FIXTURES / "chat.jsonl").records
    encoder = Encoder(tokenizer, max_seq_length=8)  # cuts both before any assistant token
    assert [encoder.encode(r) for r in records] == [None, None]
    assert (encoder.stats.truncated, encoder.stats.dropped) == (2, 2)
    full = Encoder(tokenizer, max_seq_length=512).encode(records[0])
    assert full is not None
    keep = len(full.input_ids) - 2
    cut = Encoder(tokenizer, max_seq_length=keep).encode(records[0])
    assert cut is not None and cut.truncated and cut.input_ids == full.input_ids[:keep]


def test_eval_split_is_deterministic_by_seed() -> None:
    items = list(range(100))
    train, held = split_eval(items, 0.1, seed=3)
    assert (train, held) == split_eval(items, 0.1, seed=3)
    assert len(held) == 10 and sorted(train + held) == items
    assert held != split_eval(items, 0.1, seed=4)[1]
    assert split_eval([1, 2], 0.01, seed=0)[1] != []  # at least one held out
    assert split_eval([1], 0.5, seed=0) == ([1], [])


def _example(length: int, tag: int) -> Example:
    return Example([tag] * length, [IGNORE_INDEX] + [tag] * (length - 1), f"x:{tag}")


def test_packing_keeps_examples_whole_and_is_deterministic() -> None:
    lengths = [7, 3, 9, 2, 5, 8, 1, 4, 6, 10, 3]
    examples = [_example(n, i) for i, n in enumerate(lengths)]
    rows = build_rows(examples, 10, packing=True)
    assert rows == build_rows(examples, 10, packing=True)
    assert sorted(n for row in rows for n in row.lengths) == sorted(lengths)
    assert len(rows) == 6  # 58 tokens in rows of 10: best fit needs the minimum
    for row in rows:
        assert len(row) <= 10 and len(row) == sum(row.lengths)
        assert row.position_ids == [p for n in row.lengths for p in range(n)]
        starts = [sum(row.lengths[:k]) for k in range(len(row.lengths))]
        assert all(row.labels[s] == IGNORE_INDEX for s in starts)
        assert all(len(set(row.input_ids[s : s + n])) == 1 for s, n in zip(starts, row.lengths, strict=True))
    unpacked = build_rows(examples, 10, packing=False)
    assert [r.input_ids for r in unpacked] == [e.input_ids for e in examples]
    with pytest.raises(ValueError, match="longer than max_seq_length"):
        build_rows(examples, 9, packing=True)


def test_prepare_data_splits_reports_and_collects_errors(tmp_path: Path) -> None:
    tokenizer = make_tokenizer()
    lines = [{"text": f"The quick brown fox {i}"} for i in range(20)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(x) + "\n" for x in lines))
    logged: list[str] = []
    sources = [DataSource(train), DataSource(FIXTURES / "chat.jsonl", split="eval")]
    data = prepare_data(sources, tokenizer, max_seq_length=64, eval_split=0.2, seed=1, log=logged.append)
    assert (len(data.train), len(data.eval)) == (16, 2 + 4)
    again = prepare_data(sources, tokenizer, max_seq_length=64, eval_split=0.2, seed=1)
    assert [e.source for e in again.eval] == [e.source for e in data.eval]
    stats = data.stats
    assert stats.examples == 16 and stats.tokens == sum(len(e.input_ids) for e in data.train)
    assert [f["format"] for f in stats.files] == ["text", "chat"]
    assert any("4 held out" in line for line in logged)
    bad = [DataSource(train), DataSource(FIXTURES / "malformed.jsonl", split="eval")]
    with pytest.raises(DataError) as caught:
        prepare_data(bad, tokenizer, max_seq_length=64)
    assert len(caught.value.errors) == 10


def test_prepare_data_needs_training_examples_that_survive_truncation() -> None:
    sources = [DataSource(FIXTURES / "chat.jsonl")]
    with pytest.raises(DataError, match="no training example is left"):
        prepare_data(sources, make_tokenizer(), max_seq_length=8)
