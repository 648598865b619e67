"""The text tiny-llama's BPE tokenizer is trained on, generated from a fixed seed.

Generated rather than read from disk so the tokenizer depends on nothing but this file. The
mix (plain sentences, chat turns, numbers, a little code and JSON) gives merges for the kinds
of text the training formats carry; anything else still encodes, byte by byte.
"""

from __future__ import annotations

import random

_SUBJECTS = (
    "the model",
    "a user",
    "the assistant",
    "our team",
    "this dataset",
    "the worker",
    "a small cat",
    "the river",
    "my friend",
    "the teacher",
    "each student",
    "the city",
    "a new job",
    "the server",
)
_VERBS = (
    "reads",
    "writes",
    "trains",
    "answers",
    "finds",
    "keeps",
    "moves",
    "learns",
    "builds",
    "checks",
    "opens",
    "sends",
    "counts",
    "explains",
    "remembers",
    "stops",
    "resumes",
    "saves",
    "loads",
)
_OBJECTS = (
    "the question",
    "a long story",
    "every line",
    "the weights",
    "a short answer",
    "the data",
    "its own notes",
    "the last checkpoint",
    "a red apple",
    "the tokenizer",
    "three examples",
    "the evening news",
    "a simple plan",
    "the file",
    "two numbers",
    "the loss curve",
)
_TAILS = (
    "today",
    "again",
    "with care",
    "before dinner",
    "in the morning",
    "step by step",
    "quickly",
    "without errors",
    "at the end",
    "for the first time",
    "on the weekend",
    "as expected",
)
_QUESTIONS = (
    "What is the capital of France?",
    "How do I sort a list in Python?",
    "Can you summarize this?",
    "Why is the sky blue?",
    "What does this error mean?",
    "How many days are in a week?",
    "Translate 'good morning' into Spanish.",
    "Write a haiku about rain.",
    "What is 12 plus 30?",
)
_ANSWERS = (
    "The capital of France is Paris.",
    "Use the sorted() function, or call list.sort().",
    "Here is a short summary of the main points.",
    "Sunlight scatters off air molecules.",
    "It means the file could not be found.",
    "There are seven days in a week.",
    "Buenos días.",
    "Soft rain on the roof, quiet streets under grey skies, the garden drinks.",
    "12 plus 30 is 42.",
)
_CODE = (
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i)\n",
    "import json\n\nwith open(path) as f:\n    data = json.load(f)\n",
    'if __name__ == "__main__":\n    main()\n',
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
)


_ONSETS = ("b", "br", "c", "ch", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "th", "v", "w")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou")
_CODAS = ("", "", "n", "r", "s", "l", "t", "nd", "ng", "st")


def _name(rng: random.Random) -> str:
    """A made-up word: names and rare words give the BPE the long tail real text has."""
    syllables = rng.randint(1, 3)
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))


def _story(rng: random.Random) -> str:
    who = _name(rng).capitalize()
    place = _name(rng).capitalize()
    return f"{who} lives in {place} and {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}."


def _sentence(rng: random.Random) -> str:
    words = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
    return words[0].upper() + words[1:] + rng.choice((".", ".", ".", "!", "?"))


def _chat_turn(rng: random.Random) -> str:
    i = rng.randrange(len(_QUESTIONS))
    return f"user\n{_QUESTIONS[i]}\nassistant\n{_ANSWERS[i]}\n"


def _record(rng: random.Random) -> str:
    fields = {"id": rng.randrange(10_000), "score": round(rng.random(), 3), "label": rng.choice(_VERBS)}
    return "{" + ", ".join(f'"{k}": {v!r}'.replace("'", '"') for k, v in fields.items()) + "}"


def tiny_corpus(lines: int = 4000, seed: int = 1234) -> list[str]:
    """`lines` deterministic lines of mixed text; the same on every machine and Python."""
    rng = random.Random(seed)
    makers = (
        lambda: " ".join(_sentence(rng) for _ in range(rng.randint(1, 3))),
        lambda: _chat_turn(rng),
        lambda: rng.choice(_CODE),
        lambda: _record(rng),
        lambda: f"{rng.randint(0, 9999)} + {rng.randint(0, 9999)} = ?",
        lambda: _story(rng),
    )
    weights = (5, 3, 1, 1, 1, 4)
    return [rng.choices(makers, weights)[0]() for _ in range(lines)]
