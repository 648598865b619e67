"""JSON nested too deep is one bad row, reported at its line with a clear message, never a crash of the
whole file (`line 0: RecursionError`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tuneyard.errors import DataError
from tuneyard.training.data.formats import Invalid
from tuneyard.training.data.reading import MAX_JSON_DEPTH, TOO_DEEP, bounded_loads, nested_deeper
from tuneyard.training.data.validation import load_records, validate_file

CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})


def arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("nest", [arrays, objects])
def test_nesting_up_to_the_limit_decodes_and_one_more_level_is_refused(nest: Callable[[int], str]) -> None:
    assert bounded_loads(nest(MAX_JSON_DEPTH)) == json.loads(nest(MAX_JSON_DEPTH))
    for depth in (MAX_JSON_DEPTH + 1, 5_000, 100_000):
        with pytest.raises(Invalid, match=TOO_DEEP):
            bounded_loads(nest(depth))


def test_depth_is_measured_on_containers_not_brackets_in_strings() -> None:
    wide = "[" + ",".join(["[]"] * 5_000) + "]"  # many containers, two levels
    assert not nested_deeper(json.loads(wide))
    assert bounded_loads(json.dumps({"text": "[" * 10_000})) == {"text": "[" * 10_000}


def test_a_10000_deep_line_is_that_lines_error_and_the_others_still_count(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    deep_chat = '{"messages": ' + arrays(300) + "}"
    path.write_text("\n".join([CHAT, CHAT, arrays(10_000), CHAT, deep_chat, CHAT]) + "\n")
    report = validate_file(path)
    assert [(e["line"], e["message"]) for e in report["errors"]] == [(3, TOO_DEEP), (5, TOO_DEEP)]
    assert report["examples"] == 4
    with pytest.raises(DataError, match=f"line 3: {TOO_DEEP}"):
        load_records(path)


def test_a_json_array_file_names_the_line_of_a_deep_element(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text("[\n" + CHAT + ",\n" + CHAT + ",\n" + arrays(10_000) + "\n]\n")
    assert [(e["line"], e["message"]) for e in validate_file(path)["errors"]] == [(4, TOO_DEEP)]
    path.write_text("[\n" + CHAT + ",\n" + objects(300) + "\n]\n")  # decodable: named by its row
    assert [(e["line"], e["message"]) for e in validate_file(path)["errors"]] == [(2, TOO_DEEP)]


def test_a_csv_cell_nested_too_deep_is_that_rows_error(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    cell = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    rows = [cell, arrays(10_000), arrays(300), cell]
    path.write_text("messages\n" + "".join('"' + r.replace('"', '""') + '"\n' for r in rows))
    report = validate_file(path)
    assert [(e["line"], e["message"]) for e in report["errors"]] == [(3, TOO_DEEP), (4, TOO_DEEP)]
    assert report["examples"] == 2
