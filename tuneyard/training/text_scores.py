"""Reference-based scores of generated text: exact match and ROUGE-L. Pure Python, no torch.

ROUGE-L is implemented here from its definition (Lin, 2004, "ROUGE: A Package for Automatic
Evaluation of Summaries", section 3.1): with LCS the length of the longest common subsequence of
the candidate's and the reference's tokens, recall R = LCS / |reference|, precision
P = LCS / |candidate|, and F = (1 + β²)·R·P / (R + β²·P). β = 1 here (the F1 that common
toolkits report as `rougeL` fmeasure). Tokens are lowercased words and numbers, punctuation
dropped, as rouge-score's default tokenizer does, so "4 plus 5 is 9." and "4 plus 5 is 9" agree.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """The lowercased word and number tokens of `text`: what both scores compare."""
    return _WORD.findall(text.lower())


def exact_match(candidate: str, reference: str) -> bool:
    """Whether the two say the same words in the same order (case, punctuation and spacing aside)."""
    return words(candidate) == words(reference)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, by the standard dynamic programme in O(|a|·|b|)
    time and O(|b|) memory."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str, beta: float = 1.0) -> float:
    """ROUGE-L F-measure of `candidate` against `reference`, in [0, 1]; 0 when either has no words."""
    cand, ref = words(candidate), words(reference)
    lcs = lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    recall, precision = lcs / len(ref), lcs / len(cand)
    return (1 + beta**2) * recall * precision / (recall + beta**2 * precision)
