"""Preference pairs for DPO: files of OpenAI's DPO rows in, (preferred, non-preferred) examples out.

Each pair is two tokenized chats sharing one prompt; only the answer's tokens carry labels, so a
sequence's log-probability is the answer's given the prompt. A pair one of whose answers loses
every label to truncation is dropped whole: half a pair compares nothing. Pure Python, like the
rest of the data package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tuneyard.errors import DataError
from tuneyard.training.data import DataSource, DataStats, _scan_all
from tuneyard.training.data.encoding import Encoder, Example
from tuneyard.training.data.formats import Invalid
from tuneyard.training.data.records import Record
from tuneyard.training.data.splits import split_eval
from tuneyard.training.data.validation import MAX_REPORTED_ERRORS


@dataclass(frozen=True, slots=True)
class Pair:
    preferred: Example
    rejected: Example


@dataclass
class PreparedPairs:
    train: list[Pair]
    eval: list[Pair]
    stats: DataStats


def prepare_pairs(
    sources: Sequence[DataSource],
    tokenizer: Any,
    *,
    max_seq_length: int,
    eval_split: float = 0.0,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> PreparedPairs:
    """Read every source (all of them preference files), hold out ``eval_split`` of the training
    pairs, and tokenize both answers of each. Raises DataError listing every unusable line."""
    say = log or (lambda _message: None)
    scans = _scan_all(sources)
    records = [(s.split, r) for s, scan in zip(sources, scans, strict=True) for r in scan.records]
    _only_pairs([r for _, r in records])
    train_records, held_out = split_eval([r for split, r in records if split == "train"], eval_split, seed)
    eval_records = [r for split, r in records if split == "eval"] + held_out
    # Answers are what DPO compares; the prompt never carries loss, whatever train_on_inputs says.
    encoder = Encoder(tokenizer, max_seq_length=max_seq_length, train_on_inputs=False)
    train, evaluation = _encode(encoder, train_records), _encode(encoder, eval_records)
    if not train:
        raise DataError("no preference pair is left: in every one an answer lost all its tokens to truncation")
    stats = DataStats(
        examples=len(train), eval_examples=len(evaluation),
        tokens=sum(len(e.input_ids) for p in train for e in (p.preferred, p.rejected)),
        loss_tokens=sum(e.loss_tokens for p in train for e in (p.preferred, p.rejected)),
        eval_tokens=sum(len(e.input_ids) for p in evaluation for e in (p.preferred, p.rejected)),
        truncated=encoder.stats.truncated, dropped=encoder.stats.dropped,
        files=[{"path": str(s.path), "split": s.split, "format": scan.format, "examples": len(scan.records),
                "bytes": scan.bytes} for s, scan in zip(sources, scans, strict=True)],
    )  # fmt: skip
    say(f"data: {len(train)} preference pairs to train on ({stats.tokens} tokens), {len(evaluation)} to "
        f"evaluate ({len(held_out)} held out of the training data)")
    if encoder.stats.truncated or encoder.stats.dropped:
        say(f"data: {encoder.stats.truncated} answer(s) truncated to max_seq_length, "
            f"{encoder.stats.dropped} left without a token (their pairs dropped)")
    return PreparedPairs(train, evaluation, stats)


def _only_pairs(records: list[Record]) -> None:
    wrong = [r for r in records if r.kind != "preference"]
    if wrong:
        errors = [{"file": r.file, "line": r.line, "message": f"a {r.kind} example, not a preference pair"}
                  for r in wrong[:MAX_REPORTED_ERRORS]]
        raise DataError(
            f"method 'dpo' trains on preference pairs ({{input, preferred_output, non_preferred_output}}); "
            f"{len(wrong)} example(s) are not, first {wrong[0].where}", errors=errors,
        )


def _encode(encoder: Encoder, records: list[Record]) -> list[Pair]:
    pairs, errors = [], []
    for record in records:
        try:
            preferred, rejected = (encoder.encode(chat) for chat in record.as_pair())
        except Invalid as exc:
            errors.append({"file": record.file, "line": record.line, "message": str(exc)})
            continue
        if preferred is not None and rejected is not None:
            pairs.append(Pair(preferred, rejected))
    if errors:
        raise DataError(f"{len(errors)} preference pair(s) cannot be tokenized; first, {errors[0]['file']} "
                        f"line {errors[0]['line']}: {errors[0]['message']}", errors=errors[:MAX_REPORTED_ERRORS])
    return pairs
