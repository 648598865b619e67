"""The held-out examples an evaluation measures: records read as training read them, the same
eval split held out by the same seed, then encoded twice, as training rows (for loss and token
accuracy) and as prompts with their reference answers (for generation).

A record's reference is its last trained turn (the last assistant message of a chat, the
completion of a prompt/completion record); its prompt is everything before it, rendered as the
model sees it at inference: through the chat template with the generation prompt added. A plain
text record has no answer to compare, so it counts in loss and accuracy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneyard.errors import UserError
from tuneyard.spec.job import DatasetRef
from tuneyard.training.data import Example, split_eval
from tuneyard.training.data.encoding import Encoder, _special_prefix
from tuneyard.training.data.records import Record
from tuneyard.training.data.templates import render
from tuneyard.training.data.validation import load_records


@dataclass(frozen=True)
class Prompt:
    """One question to answer: the ids the model continues, what a person reads as the question,
    and the reference answer."""

    source: str  # "file:line"
    ids: list[int]
    shown: str
    reference: str


@dataclass(frozen=True)
class HeldOut:
    examples: list[Example]
    """Encoded as training encodes them: labels on the answer tokens."""
    prompts: list[Prompt]
    files: list[dict[str, Any]]


def held_out_records(datasets: list[DatasetRef], eval_split: float, seed: int, limit: int) -> list[Record]:
    """The eval-split records, then the `eval_split` share of the train-split ones that `seed` holds
    out (tuneyard.training.data.prepare_data's order), at most `limit`; a user error when none."""
    train: list[Record] = []
    evaluation: list[Record] = []
    for ref in datasets:
        records = load_records(Path(ref.path or ""), ref.format).records
        (evaluation if ref.split == "eval" else train).extend(records)
    _, held = split_eval(train, eval_split, seed)
    chosen = (evaluation + held)[:limit]
    if not chosen:
        raise UserError("datasets: no held-out example to evaluate on: give a dataset with an eval split, or "
                        "eval_split above 0 over more than one training record", field="datasets")
    return chosen


def encode_held_out(records: list[Record], tokenizer: Any, max_seq_length: int, max_new_tokens: int) -> HeldOut:
    """The records as training examples and as prompts; a prompt longer than the room left for the
    answer keeps its last tokens, the ones nearest the answer."""
    encoder = Encoder(tokenizer, max_seq_length=max_seq_length)
    examples = [e for e in (encoder.encode(r) for r in records) if e is not None]
    room = max(1, max_seq_length - max_new_tokens)
    prefix = _special_prefix(tokenizer)
    prompts = []
    for record in records:
        prompt = _prompt(record, tokenizer, prefix)
        if prompt is not None:
            prompts.append(Prompt(prompt.source, prompt.ids[-room:], prompt.shown, prompt.reference))
    files = sorted({r.file for r in records})
    return HeldOut(examples, prompts, [{"path": f, "examples": sum(r.file == f for r in records)} for f in files])


def _prompt(record: Record, tokenizer: Any, prefix: list[int]) -> Prompt | None:
    answers = [i for i, t in enumerate(record.turns) if t.train]
    if record.kind == "text" or not answers or answers[-1] == 0:
        return None
    index = answers[-1]
    reference = record.turns[index].content
    if record.kind == "chat":
        text = render(tokenizer, record, index, generation_prompt=True)
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        asked = [t.content for t in record.turns[:index] if t.role == "user"]
        shown = asked[-1] if asked else record.turns[index - 1].content
    else:
        shown = "".join(t.content for t in record.turns[:index])
        ids = prefix + list(tokenizer(shown, add_special_tokens=False)["input_ids"])
    return Prompt(record.where, ids, shown, reference)
