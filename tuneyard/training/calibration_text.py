"""The text a contraction is calibrated on (channels scored by their activations) and measured on
(perplexity before and after, KL(source ‖ contracted)), and where it came from.

The first there is of: the spec's `calibration` (set by the service: the job's calibration_dataset,
or the held-out split of the source model's own training data from its lineage), its
`calibration_dataset` by path (a runner started alone), the job's `datasets` (their eval rows, else
their training rows). Records are read and split as training read and split them
(`heldout.held_out_records`), so a lineage's held-out split is the one its training never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneyard.errors import UserError
from tuneyard.spec.job import CalibrationText, ContractSpec
from tuneyard.training.data import Encoder, Example, PreparedData
from tuneyard.training.heldout import held_out_records

CALIBRATION_DATASET = "calibration_dataset"
DATASETS = "datasets"
LINEAGE = "lineage"


@dataclass(frozen=True)
class Calibration:
    origin: str
    """calibration_dataset, datasets or lineage."""
    source_id: str | None
    """The stored dataset (calibration_dataset) or trained model (lineage) the service resolved it from."""
    examples: list[Example]


def calibration_text(
    spec: ContractSpec, data: PreparedData | None, tokenizer: Any, max_seq_length: int, limit: int
) -> Calibration | None:
    """At most `limit` examples of the job's calibration text; None when it has none."""
    text = spec.calibration
    if text is None and spec.calibration_dataset is not None:
        text = CalibrationText(origin="calibration_dataset",
                               datasets=[spec.calibration_dataset.model_copy(update={"split": "eval"})])
    if text is not None:
        return Calibration(text.origin, text.source_id, _examples(text, tokenizer, max_seq_length, limit))
    if data is not None and (data.eval or data.train):
        return Calibration(DATASETS, None, (data.eval or data.train)[:limit])
    return None


def _examples(text: CalibrationText, tokenizer: Any, max_seq_length: int, limit: int) -> list[Example]:
    """The records encoded as training encodes them (loss on the answers). Preference pairs are not
    text to measure a language model on; a DPO model's lineage has nothing else, so it is refused."""
    field = CALIBRATION_DATASET if text.origin == CALIBRATION_DATASET else "base_model"
    try:
        records = held_out_records(text.datasets, text.eval_split, text.seed, limit)
    except UserError:
        records = []
    encoder = Encoder(tokenizer, max_seq_length=max_seq_length)
    examples = [e for e in (encoder.encode(r) for r in records if r.kind != "preference") if e is not None]
    if not examples:
        where = ("calibration_dataset holds" if field == CALIBRATION_DATASET
                 else f"the held-out split of {text.source_id or 'the source model'}'s training data holds")
        raise UserError(f"{field}: {where} no text to calibrate on (records with a trained answer or plain "
                        "text; preference pairs are not)", field=field)
    return examples
