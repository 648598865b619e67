"""The data pipeline of the training engine: files in, tokenized examples and packed rows out.

    prepare_data(sources, tokenizer, ...) -> PreparedData   read, validate, split, tokenize
    build_rows(examples, max_seq_length, packing) -> rows   pack whole examples into rows
    collate(rows, pad_token_id) -> tensors                  one forward pass (use_cache=False!), padded
    collate_padding_free(rows) -> tensors                   one forward pass, rows end to end, no padding

Importing this package imports neither torch nor transformers: the API service uses
``validate_file`` to check uploads. Only ``collate`` needs torch, and imports it when called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneyard.errors import DataError
from tuneyard.training.data.collate import PACKED_FORWARD_KWARGS, Collate, collate, collate_for, collate_padding_free
from tuneyard.training.data.encoding import IGNORE_INDEX, Encoder, EncodeStats, Example
from tuneyard.training.data.formats import Invalid
from tuneyard.training.data.packing import Row, build_rows
from tuneyard.training.data.preview import PreviewSpan, preview_markup, render_preview
from tuneyard.training.data.records import FORMATS, Record
from tuneyard.training.data.splits import split_eval
from tuneyard.training.data.templates import DEFAULT_CHAT_TEMPLATE, chat_template_for
from tuneyard.training.data.validation import MAX_REPORTED_ERRORS, FileScan, scan_file, validate_file

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "FORMATS",
    "IGNORE_INDEX",
    "PACKED_FORWARD_KWARGS",
    "Collate",
    "DataSource",
    "DataStats",
    "Example",
    "PreparedData",
    "PreviewSpan",
    "Row",
    "build_rows",
    "chat_template_for",
    "collate",
    "collate_for",
    "collate_padding_free",
    "prepare_data",
    "preview_markup",
    "render_preview",
    "validate_file",
]


@dataclass(frozen=True)
class DataSource:
    """One file to read: its format ("auto" to detect) and whether it trains or evaluates."""

    path: Path
    format: str = "auto"
    split: str = "train"  # "train" or "eval"


@dataclass
class DataStats:
    """What the data turned into; the runner logs it and puts it in telemetry."""

    examples: int = 0  # training examples kept
    eval_examples: int = 0
    tokens: int = 0  # training tokens (no padding)
    loss_tokens: int = 0  # training tokens that carry loss
    eval_tokens: int = 0
    truncated: int = 0  # examples cut to max_seq_length (train and eval)
    dropped: int = 0  # examples with no loss token left, not used (train and eval)
    split_tokenized: int = 0  # examples whose template pieces were tokenized one by one
    last_turn_only: int = 0  # chats trained on their last assistant turn only (template quirk)
    files: list[dict[str, Any]] = field(default_factory=list)  # path, split, format, examples, bytes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreparedData:
    train: list[Example]
    eval: list[Example]
    stats: DataStats


def prepare_data(
    sources: Sequence[DataSource],
    tokenizer: Any,
    *,
    max_seq_length: int,
    train_on_inputs: bool = False,
    eval_split: float = 0.0,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> PreparedData:
    """Read every source, validate it whole, hold out ``eval_split`` of the training records
    (besides any eval sources), and tokenize. Raises DataError listing every bad line."""
    say = log or (lambda _message: None)
    scans = _scan_all(sources)
    train_records = [r for s, scan in zip(sources, scans, strict=True) if s.split == "train" for r in scan.records]
    eval_records = [r for s, scan in zip(sources, scans, strict=True) if s.split == "eval" for r in scan.records]
    train_records, held_out = split_eval(train_records, eval_split, seed)
    eval_records += held_out
    encoder = Encoder(tokenizer, max_seq_length=max_seq_length, train_on_inputs=train_on_inputs)
    train, evaluation = _encode_all(encoder, train_records, eval_records)
    if not train:
        raise DataError("no training example is left: every one lost all its loss tokens to truncation")
    stats = _stats(sources, scans, train, evaluation, encoder.stats)
    for line in _describe(stats, len(held_out)):
        say(line)
    return PreparedData(train, evaluation, stats)


def _scan_all(sources: Sequence[DataSource]) -> list[FileScan]:
    """Scan every file before failing, so one error lists the problems of all of them."""
    if not any(s.split == "train" for s in sources):
        raise DataError("no training data: give at least one source with split='train'")
    scans, errors, count = [], [], 0
    for source in sources:
        if source.split not in ("train", "eval"):
            raise DataError(f"{source.path}: split must be 'train' or 'eval', not {source.split!r}")
        scan = scan_file(source.path, source.format)
        scans.append(scan)
        errors += scan.errors
        count += scan.error_count
    if count:
        shown = errors[:MAX_REPORTED_ERRORS]
        first = shown[0]
        more = f"; {count - len(shown)} more not listed" if count > len(shown) else ""
        raise DataError(
            f"{count} invalid line(s) in the data; first, {first['file']} line {first['line']}: "
            f"{first['message']}{more}",
            errors=shown,
        )
    return scans


def _encode_all(
    encoder: Encoder, train_records: list[Record], eval_records: list[Record]
) -> tuple[list[Example], list[Example]]:
    errors: list[dict[str, Any]] = []
    outputs: tuple[list[Example], list[Example]] = ([], [])
    for records, out in zip((train_records, eval_records), outputs, strict=True):
        for record in records:
            try:
                example = encoder.encode(record)
            except Invalid as exc:
                errors.append({"file": record.file, "line": record.line, "message": str(exc)})
                continue
            if example is not None:
                out.append(example)
    if errors:
        raise DataError(
            f"{len(errors)} example(s) cannot be tokenized; first, {errors[0]['file']} "
            f"line {errors[0]['line']}: {errors[0]['message']}",
            errors=errors[:MAX_REPORTED_ERRORS],
        )
    return outputs


def _stats(
    sources: Sequence[DataSource],
    scans: list[FileScan],
    train: list[Example],
    evaluation: list[Example],
    encoded: EncodeStats,
) -> DataStats:
    files = [
        {
            "path": str(source.path),
            "split": source.split,
            "format": scan.format,
            "examples": len(scan.records),
            "bytes": scan.bytes,
        }
        for source, scan in zip(sources, scans, strict=True)
    ]
    return DataStats(
        examples=len(train),
        eval_examples=len(evaluation),
        tokens=sum(len(e.input_ids) for e in train),
        loss_tokens=sum(e.loss_tokens for e in train),
        eval_tokens=sum(len(e.input_ids) for e in evaluation),
        files=files,
        **asdict(encoded),
    )


def _describe(stats: DataStats, held_out: int) -> list[str]:
    lines = [f"data: {f['path']} ({f['split']}): {f['format']}, {f['examples']} examples" for f in stats.files]
    lines.append(
        f"data: {stats.examples} train examples ({stats.tokens} tokens, {stats.loss_tokens} with loss), "
        f"{stats.eval_examples} eval examples ({held_out} held out of the training data)"
    )
    if stats.truncated or stats.dropped:
        lines.append(
            f"data: {stats.truncated} example(s) truncated to max_seq_length, "
            f"{stats.dropped} dropped for having no loss token left"
        )
    if stats.split_tokenized or stats.last_turn_only:
        lines.append(
            f"data: chat template quirks: {stats.split_tokenized} example(s) tokenized piece by piece, "
            f"{stats.last_turn_only} trained on their last assistant turn only"
        )
    return lines
