"""What clients see of the server's paths: the run folder as relative paths, uploads by name and id."""

from __future__ import annotations

from typing import Any

import pytest

from tuneyard.services.path_display import DATA, PathDisplay

RUN = "/srv/ty/runs/job_1"
FILE = "/srv/ty/files/file_ab.jsonl"
SHOWN = PathDisplay({"/srv/ty/": f"{DATA}/", "/srv/ty": DATA, f"{RUN}/": "", RUN: ".",
                     FILE: "chats.jsonl (file_ab)", "/srv/ty/runs/job_0/checkpoints/step-000002/model": "ckpt_9"})


@pytest.mark.parametrize(("written", "shown"), [
    (f"first, {FILE} line 2: not JSON", "first, chats.jsonl (file_ab) line 2: not JSON"),
    (f"saved {RUN}/checkpoints/step-000004", "saved checkpoints/step-000004"),
    (f"run folder {RUN}", "run folder ."),
    ("loading /srv/ty/runs/job_0/checkpoints/step-000002/model", "loading ckpt_9"),
    ("cache at /srv/ty/cache/hf/x", f"cache at {DATA}/cache/hf/x"),
    (f"{FILE}:3", "chats.jsonl (file_ab):3"),
    # Other paths stay as they are, even where they share the data folder's letters.
    ("/srv/tyrant/x and /home/srv/ty/y", "/srv/tyrant/x and /home/srv/ty/y"),
    (f"{RUN}x/final", f"{DATA}/runs/job_1x/final"),
    ("/srv/ty/files/file_ab.jsonl.bak", f"{DATA}/files/file_ab.jsonl.bak"),
    ("no paths here", "no paths here"),
])
def test_text(written: str, shown: str) -> None:
    assert SHOWN.text(written) == shown


def test_json_values_keys_included_and_other_types_untouched() -> None:
    value: dict[str, Any] = {"datasets": [{"path": FILE, "format": "chat"}], "base_model": "tiny-llama",
                             "steps": 3, "ok": True, "none": None, RUN: {"nested": [f"{RUN}/final"]}}
    assert SHOWN.value(value) == {"datasets": [{"path": "chats.jsonl (file_ab)", "format": "chat"}],
                                  "base_model": "tiny-llama", "steps": 3, "ok": True, "none": None,
                                  ".": {"nested": ["final"]}}


def test_an_empty_display_changes_nothing() -> None:
    assert PathDisplay().text(f"{RUN}/final") == f"{RUN}/final"
    assert PathDisplay().value({"a": [1, "b"]}) == {"a": [1, "b"]}
