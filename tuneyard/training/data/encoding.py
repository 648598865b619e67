"""Records to token ids with loss labels.

Chat records go through the chat template. The assistant spans are found by rendering the
conversation turn by turn (the text before each response with the generation prompt, and the
text through it) so it works for any template, with no ``{% generation %}`` markers. The full
text is tokenized once; each boundary's own tokenization must be a prefix of it (true for
almost every template and BPE). Where it is not, the pieces are tokenized one by one and
joined: the masks stay exact, the tokens at a boundary may differ from the full text's.
Prompt/completion and text records are raw text (as the OpenAI legacy, Together and TRL
formats are), with the tokenizer's BOS where it adds one and EOS appended.

Imports no transformers: the tokenizer is any Hugging Face tokenizer, used by duck typing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from tuneyard.training.data.formats import Invalid
from tuneyard.training.data.records import Record
from tuneyard.training.data.templates import render

IGNORE_INDEX = -100  # the label that carries no loss (PyTorch cross_entropy's ignore_index)


@dataclass(slots=True)
class Example:
    """One tokenized example. ``labels[i]`` is the target at position i (unshifted, HF style);
    ``labels[0]`` is always IGNORE_INDEX so a packed row never predicts across examples."""

    input_ids: list[int]
    labels: list[int]
    source: str  # "file:line", for previews and messages
    truncated: bool = False

    @property
    def loss_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class EncodeStats:
    truncated: int = 0  # examples cut to max_seq_length (kept if loss tokens remained)
    dropped: int = 0  # examples with no loss token left (after truncation)
    split_tokenized: int = 0  # examples whose pieces had to be tokenized separately
    last_turn_only: int = 0  # chats whose template renders turns inconsistently: loss on the last


@dataclass(slots=True)
class _Piece:
    text: str
    loss: bool
    response: bool = False  # an assistant response: closed with EOS if the template does not


@dataclass
class Encoder:
    """Encodes records for one tokenizer; counts what it truncated, dropped or fell back on."""

    tokenizer: Any
    max_seq_length: int
    train_on_inputs: bool = False
    stats: EncodeStats = field(default_factory=EncodeStats)

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self._eos: int | None = tok.eos_token_id
        self._prefix = _special_prefix(tok)
        added = getattr(tok, "added_tokens_decoder", {}) or {}
        self._special = set(tok.all_special_ids) | {i for i, t in added.items() if t.special}

    def encode(self, record: Record) -> Example | None:
        """The record as an Example, or None (counted) when no loss token is left."""
        if record.kind == "preference":  # two answers make two examples: data.preference encodes them
            raise Invalid("a preference pair (preferred_output, non_preferred_output) trains with method 'dpo' only")
        ids, loss = self._tokens(record)
        truncated = len(ids) > self.max_seq_length
        if truncated:
            self.stats.truncated += 1
            ids, loss = ids[: self.max_seq_length], loss[: self.max_seq_length]
        labels = [t if keep else IGNORE_INDEX for t, keep in zip(ids, loss, strict=True)]
        if labels:
            labels[0] = IGNORE_INDEX
        example = Example(ids, labels, record.where, truncated)
        if example.loss_tokens == 0:
            self.stats.dropped += 1
            return None
        return example

    def _tokens(self, record: Record) -> tuple[list[int], list[bool]]:
        if record.kind == "chat":
            pieces, prefix = self._chat_pieces(record), []
        else:
            inputs = self.train_on_inputs
            pieces = [_Piece(t.content, t.train or inputs, response=t.train) for t in record.turns]
            prefix = self._prefix
        ids: list[int] = list(prefix)
        loss = [self.train_on_inputs] * len(prefix)
        for piece, piece_ids in zip(pieces, self._tokenize([p.text for p in pieces]), strict=True):
            marks = [piece.loss] * len(piece_ids)
            if piece.response:
                piece_ids, marks = self._close_response(piece_ids, marks, chat=record.kind == "chat")
            ids += piece_ids
            loss += marks
        return ids, loss

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per piece, cut from one tokenization of the whole text when possible."""
        full = "".join(texts)
        ends, total = [], 0
        for text in texts[:-1]:
            total += len(text)
            ends.append(total)
        batch = self.tokenizer([full[:end] for end in ends] + [full], add_special_tokens=False)
        *prefixes, whole = batch["input_ids"]
        cuts = [len(p) for p in prefixes]
        if all(whole[:n] == p for n, p in zip(cuts, prefixes, strict=True)) and cuts == sorted(cuts):
            bounds = [0, *cuts, len(whole)]
            return [whole[a:b] for a, b in pairwise(bounds)]
        self.stats.split_tokenized += 1
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _close_response(self, ids: list[int], loss: list[bool], *, chat: bool) -> tuple[list[int], list[bool]]:
        """End a response on a special token carrying loss; append EOS when the template did not.

        Whitespace the template puts after its end-of-turn token (ChatML's newline) is not
        something to learn, so it carries no loss unless train_on_inputs is set.
        """
        end = len(ids)
        while chat and end > 0 and ids[end - 1] not in self._special and self._is_blank(ids[end - 1]):
            end -= 1
        if chat and end > 0 and ids[end - 1] in self._special:
            tail = [self.train_on_inputs] * (len(ids) - end)
            return ids, loss[:end] + tail
        if self._eos is None:
            return ids, loss
        return [*ids, self._eos], [*loss, loss[-1] if loss else True]

    def _is_blank(self, token: int) -> bool:
        return not self.tokenizer.decode([token]).strip()

    def _chat_pieces(self, record: Record) -> list[_Piece]:
        full = self._render(record, len(record.turns), False)
        spans = self._assistant_spans(record, full)
        if spans is None:
            self.stats.last_turn_only += 1
            spans = self._last_turn_span(record, full)
        pieces, position = [], 0
        for start, end, train in spans:
            pieces.append(_Piece(full[position:start], self.train_on_inputs))
            pieces.append(_Piece(full[start:end], train, response=True))
            position = end
        pieces.append(_Piece(full[position:], self.train_on_inputs))
        return pieces

    def _render(self, record: Record, upto: int, generation_prompt: bool) -> str:
        try:
            return render(self.tokenizer, record, upto, generation_prompt=generation_prompt)
        except Exception as exc:  # templates raise anything (jinja errors, raise_exception)
            raise Invalid(f"the chat template cannot render this conversation: {exc}") from None

    def _assistant_spans(self, record: Record, full: str) -> list[tuple[int, int, bool]] | None:
        """(start, end, carries loss) of each assistant response in ``full``; None when the
        template does not render the conversation as a growing prefix."""
        spans: list[tuple[int, int, bool]] = []
        previous = 0
        for index, turn in enumerate(record.turns):
            if turn.role != "assistant":
                continue
            try:
                before = self._render(record, index, True)
                through = self._render(record, index + 1, False)
            except Invalid:
                return None
            if not (through.startswith(before) and full.startswith(through) and len(before) >= previous):
                return None
            spans.append((len(before), len(through), turn.train))
            previous = len(through)
        return spans

    def _last_turn_span(self, record: Record, full: str) -> list[tuple[int, int, bool]]:
        """Loss on the last trained assistant turn alone, the one span such templates keep stable
        (Qwen3's, say, drops earlier turns' reasoning once a later turn exists)."""
        index = max(i for i, t in enumerate(record.turns) if t.train)
        before = self._render(record, index, True)
        if not full.startswith(before):
            raise Invalid("the chat template renders this conversation differently turn by turn")
        if index == len(record.turns) - 1:
            return [(len(before), len(full), True)]
        through = self._render(record, index + 1, False)
        if not full.startswith(through):
            raise Invalid("the chat template renders this conversation differently turn by turn")
        return [(len(before), len(through), True)]


def _special_prefix(tokenizer: Any) -> list[int]:
    """The tokens the tokenizer puts before text by itself (a BOS, for Llama-style ones)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return list(full[:start])
    return []
