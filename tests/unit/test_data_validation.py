"""Reading, format detection and validation of dataset files (pure Python, no tokenizer)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuneyard.errors import DataError
from tuneyard.training.data.validation import MAX_REPORTED_ERRORS, load_records, validate_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.mark.parametrize(
    ("name", "fmt", "kind", "count"),
    [
        ("chat.jsonl", "chat", "chat", 2),
        ("sharegpt.jsonl", "sharegpt", "chat", 1),
        ("alpaca.jsonl", "alpaca", "chat", 2),
        ("alpaca.csv", "alpaca", "chat", 3),
        ("prompt_completion.jsonl", "prompt_completion", "completion", 1),
        ("text.jsonl", "text", "text", 1),
    ],
)
def test_each_format_is_detected(name: str, fmt: str, kind: str, count: int) -> None:
    scan = load_records(FIXTURES / name)
    assert scan.format == fmt
    assert [r.kind for r in scan.records] == [kind] * count


def test_chat_normalizes_roles_weights_and_tool_calls(tmp_path: Path) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    row = {
        "messages": [
            {"role": "developer", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
            {"role": "assistant", "content": "it is 42", "weight": 1},
        ]
    }
    path = tmp_path / "tools.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (record,) = load_records(path).records
    assert [(t.role, t.content, t.train) for t in record.turns] == [
        ("system", "sys", False),
        ("user", "ab", False),
        ("assistant", "", True),
        ("tool", "42", False),
        ("assistant", "it is 42", True),
    ]
    assert record.turns[2].tool_calls == [call]
    assert record.turns[3].extra == {"tool_call_id": "c1"}


def test_every_bad_line_is_reported_at_once_with_its_line_number() -> None:
    with pytest.raises(DataError) as caught:
        load_records(FIXTURES / "malformed.jsonl")
    found = {e["line"]: e["message"] for e in caught.value.errors}
    assert set(found) == {2, 3, 4, 5, 7, 8, 9, 10, 11, 12}  # line 6 is blank, line 1 is good
    assert found[2].startswith("invalid JSON")
    assert found[3] == "expected a JSON object, got an array"
    assert found[4] == "no assistant turn"
    assert found[5] == "messages[0].role: unknown role 'wizard'"
    assert found[7] == "messages[0].content is empty"
    assert found[8] == "messages must be a list"
    assert found[9] == "looks like text but this file is chat (mixed formats)"
    assert found[10] == "messages[0].content must be a string, not int"
    assert "weight 0" in found[11]
    assert found[12] == "messages is missing"  # the file is chat, by its first good line
    assert all(e["file"].endswith("malformed.jsonl") for e in caught.value.errors)
    assert "10 invalid line(s)" in caught.value.message


def test_errors_are_capped_with_a_count_of_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("oops\n" * (MAX_REPORTED_ERRORS + 23))  # also: no line is recognizable
    report = validate_file(path)
    assert report["error_count"] == MAX_REPORTED_ERRORS + 23
    assert len(report["errors"]) == MAX_REPORTED_ERRORS
    assert [e["line"] for e in report["errors"]] == list(range(1, MAX_REPORTED_ERRORS + 1))
    with pytest.raises(DataError, match="23 more not shown"):
        load_records(path)


def test_empty_and_missing_files_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no examples"):
        load_records(empty)
    report = validate_file(tmp_path / "missing.jsonl")
    assert not report["valid"]
    assert report["errors"][0]["message"] == "no such file"


def test_explicit_format_overrides_detection(tmp_path: Path) -> None:
    path = tmp_path / "both.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c", "text": "t"}) + "\n")
    assert load_records(path).format == "prompt_completion"
    assert load_records(path, "text").records[0].turns[0].content == "t"
    with pytest.raises(DataError, match="unknown data format"):
        load_records(path, "xml")


def test_validate_file_reports_without_raising() -> None:
    report = validate_file(FIXTURES / "chat.jsonl")
    assert report["valid"] and report["format"] == "chat" and report["examples"] == 2
    assert report["bytes"] == (FIXTURES / "chat.jsonl").stat().st_size
    assert report["estimated_tokens"] == len("Be brief.hihellohow are youfineand?good") // 4
    bad = validate_file(FIXTURES / "malformed.jsonl")
    assert not bad["valid"] and bad["error_count"] == 10 and bad["examples"] == 1


def test_csv_line_numbers_count_the_header_and_multiline_cells(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('instruction,output\n"two\nlines",ok\nno output,\n')
    report = validate_file(path)
    assert report["errors"] == [{"file": str(path), "line": 4, "message": "output is missing"}]


def test_parquet_is_read_when_pyarrow_is_installed(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "data.parquet"
    table = pa.table(
        {
            "messages": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]] * 2,
        }
    )
    pq.write_table(table, path)
    scan = load_records(path)
    assert scan.format == "chat" and len(scan.records) == 2
    assert [r.line for r in scan.records] == [1, 2]


def test_validation_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, tuneyard.training.data as d; "
        "assert not {'torch', 'transformers'} & set(sys.modules), 'heavy import'"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
