"""Scores from an LLM judge: each answer graded by a model at an OpenAI-compatible endpoint.

The judge sees the conversation's prompt, the reference answer and the model's answer, and
grades three criteria, document 003's `scores`, from 0 to 10 by the rubric below; a score is
the mean grade over the graded answers ÷ 10. An answer the judge grades unreadably is left out
and counted (`unparsed`); a judge that cannot be reached, or grades nothing, fails the job as a
platform error, retried like any other (the operator's endpoint, not the user's request).

Plain HTTP through the standard library: the runner needs no client library for one POST.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tuneyard.errors import PlatformError
from tuneyard.spec.job import JudgeEndpoint

CRITERIA = ("coherence", "consistency", "helpfulness")
MAX_GRADE = 10

RUBRIC = """You grade one answer of an AI assistant. You are shown the conversation so far, a reference \
answer written by a person, and the assistant's answer. Grade the assistant's answer on three criteria, \
each an integer from 0 (worst) to 10 (best):

- coherence: the answer is fluent, well-formed language whose sentences follow from one another; \
repetition loops, broken words or unrelated fragments score low.
- consistency: the answer agrees with itself and with the conversation (no contradictions, no facts \
that conflict with what the user said); where the reference states a fact, agreeing with it scores high.
- helpfulness: the answer does what the user asked, as well as the reference does or better; an answer \
that is correct but not what was asked, or that refuses without reason, scores low.

Judge the answer alone, not its length. Reply with one JSON object and nothing else, for example \
{"coherence": 7, "consistency": 9, "helpfulness": 6}."""
"""The judge's system prompt; docs/architecture.md ("Evaluation") points here."""


@dataclass(frozen=True)
class Graded:
    """What the judge made of the answers: the scores (0–1), how many it graded and how many it did not."""

    scores: dict[str, float]
    graded: int
    unparsed: int


def grade_answers(endpoint: JudgeEndpoint, api_key: str | None, items: list[tuple[str, str, str]]) -> Graded:
    """Grade each (prompt, reference, answer); the mean of each criterion ÷ MAX_GRADE."""
    totals = dict.fromkeys(CRITERIA, 0.0)
    graded = unparsed = 0
    for prompt, reference, answer in items:
        grades = parse_grades(_ask(endpoint, api_key, _user_message(prompt, reference, answer)))
        if grades is None:
            unparsed += 1
            continue
        graded += 1
        for name in CRITERIA:
            totals[name] += grades[name]
    if items and not graded:
        raise PlatformError(f"the evaluation judge {endpoint.model} at {endpoint.base_url} answered no readable "
                            f"grade for any of {len(items)} answers", judge=endpoint.base_url)
    scores = {name: round(totals[name] / graded / MAX_GRADE, 4) if graded else 0.0 for name in CRITERIA}
    return Graded(scores, graded, unparsed)


def _user_message(prompt: str, reference: str, answer: str) -> str:
    return (f"Conversation so far:\n<<<\n{prompt}\n>>>\n\nReference answer:\n<<<\n{reference}\n>>>\n\n"
            f"Assistant's answer to grade:\n<<<\n{answer}\n>>>")


def _ask(endpoint: JudgeEndpoint, api_key: str | None, message: str) -> str:
    body = {"model": endpoint.model, "temperature": 0, "max_tokens": 64,
            "messages": [{"role": "system", "content": RUBRIC}, {"role": "user", "content": message}]}
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    url = endpoint.base_url.rstrip("/") + "/chat/completions"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=endpoint.timeout_s) as response:
            answer: Any = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise PlatformError(f"the evaluation judge at {url} answered HTTP {exc.code}", judge=url) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PlatformError(f"the evaluation judge at {url} cannot be used: {exc}", judge=url) from None
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise PlatformError(f"the evaluation judge at {url} did not answer as chat completions do", judge=url) from None
    return content if isinstance(content, str) else ""


_OBJECT = re.compile(r"\{[^{}]*\}")


def parse_grades(text: str) -> dict[str, float] | None:
    """The three grades from the judge's reply (the first JSON object holding them all, each a number
    in 0..MAX_GRADE); None when the reply holds no such object."""
    for found in _OBJECT.finditer(text):
        try:
            value = json.loads(found.group())
        except ValueError:
            continue
        if not isinstance(value, dict):
            continue
        grades = {name: value.get(name) for name in CRITERIA}
        if all(isinstance(g, int | float) and not isinstance(g, bool) and 0 <= g <= MAX_GRADE for g in grades.values()):
            return {name: float(g) for name, g in grades.items()}  # type: ignore[arg-type]
    return None
