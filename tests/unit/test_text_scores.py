"""ROUGE-L and exact match against values worked out by hand, and the judge's reply parsing."""

from __future__ import annotations

import pytest

from tuneyard.spec.job import EvaluateSpec
from tuneyard.training.judge import parse_grades
from tuneyard.training.text_scores import exact_match, lcs_length, rouge_l, words


def test_words_are_lowercased_words_and_numbers() -> None:
    assert words("4 plus 5 is 9. That's IT!") == ["4", "plus", "5", "is", "9", "that", "s", "it"]


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("a b c d e", "a c e", 3),
    ("a b c b d a b", "b d c a b a", 4),  # CLRS's example: "bcba"
    ("", "a b", 0),
    ("x y", "a b", 0),
])  # fmt: skip
def test_lcs_length(a: str, b: str, expected: int) -> None:
    assert lcs_length(a.split(), b.split()) == expected


def test_rouge_l_by_hand() -> None:
    # Lin (2004)'s example: reference "police killed the gunman"; "police kill the gunman" shares
    # "police the gunman" (LCS 3), so R = P = 3/4 and F = 0.75.
    assert rouge_l("police kill the gunman", "police killed the gunman") == pytest.approx(0.75)
    # "the gunman kill police": LCS "the gunman" = 2, F = 0.5
    assert rouge_l("the gunman kill police", "police killed the gunman") == pytest.approx(0.5)
    # candidate of 2 words inside a reference of 6: R = 2/6, P = 1, F = 2·(1/3)·1/(4/3) = 0.5
    assert rouge_l("cat sat", "the cat sat on the mat") == pytest.approx(0.5)
    assert rouge_l("4 plus 5 is 9.", "4 Plus 5 is 9") == 1.0
    assert rouge_l("", "anything") == 0.0 and rouge_l("anything", "") == 0.0


def test_rouge_l_beta_weights_recall() -> None:
    # R = 1/3, P = 1: β = 2 weighs recall, F = 5·(1/3)·1 / (1/3 + 4) = 5/13
    assert rouge_l("cat", "the cat sat", beta=2.0) == pytest.approx(5 / 13)


def test_exact_match_ignores_case_punctuation_and_spacing_only() -> None:
    assert exact_match("  4 plus 5 is 9. ", "4 plus 5 is 9")
    assert exact_match("It's done", "its done") is False
    assert not exact_match("4 plus 5 is 10", "4 plus 5 is 9")
    assert not exact_match("9 is 4 plus 5", "4 plus 5 is 9")


@pytest.mark.parametrize(("reply", "expected"), [
    ('{"coherence": 7, "consistency": 9, "helpfulness": 6}', {"coherence": 7.0, "consistency": 9.0,
                                                              "helpfulness": 6.0}),
    ('Sure. {"note": 1} then {"coherence": 10, "consistency": 0, "helpfulness": 2.5}', {
        "coherence": 10.0, "consistency": 0.0, "helpfulness": 2.5}),
    ('{"coherence": 11, "consistency": 9, "helpfulness": 6}', None),  # past the scale
    ('{"coherence": true, "consistency": 9, "helpfulness": 6}', None),
    ('{"coherence": 7, "consistency": 9}', None),
    ("no grades at all", None),
    ("{not json}", None),
])  # fmt: skip
def test_judge_replies(reply: str, expected: dict[str, float] | None) -> None:
    assert parse_grades(reply) == expected


def test_an_evaluation_needs_something_held_out() -> None:
    common = {"base_model": "m", "compare_with": "tiny-llama"}
    assert EvaluateSpec.model_validate({**common, "datasets": []}).problems()[0]["field"] == "datasets"
    train_only = EvaluateSpec.model_validate({**common, "datasets": [{"path": "a.jsonl"}]})
    assert train_only.problems()[0]["field"] == "eval_split"
    assert EvaluateSpec.model_validate({**common, "datasets": [{"path": "a.jsonl", "split": "eval"}]}).problems() == []
    with pytest.raises(ValueError, match="http"):
        EvaluateSpec.model_validate({**common, "judge": {"base_url": "file:///etc/passwd", "model": "j"}})
