"""TelemetryTailer: incremental, resumable reading of a file that is still being written."""

from __future__ import annotations

import json
from pathlib import Path

from tuneyard.worker.outcome import TelemetryRecord
from tuneyard.worker.telemetry import MalformedLine, TelemetryTailer


def line(**fields: object) -> str:
    return json.dumps(fields) + "\n"


def steps(items: list[TelemetryRecord | MalformedLine]) -> list[object]:
    return [i["step"] for i in items if isinstance(i, dict)]


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_a_missing_file_is_not_an_error_and_is_picked_up_when_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    tailer = TelemetryTailer(path, job_id="j")
    assert tailer.read() == []
    append(path, line(kind="phase", phase="training"))
    assert tailer.read() == [{"kind": "phase", "phase": "training"}]


def test_reads_only_what_was_appended_since_the_last_call(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    tailer = TelemetryTailer(path, job_id="j")
    append(path, line(kind="metric", step=1) + line(kind="metric", step=2))
    assert steps(tailer.read()) == [1, 2]
    assert tailer.read() == []
    append(path, line(kind="metric", step=3))
    assert steps(tailer.read()) == [3]
    assert tailer.offset == path.stat().st_size


def test_a_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    tailer = TelemetryTailer(path, job_id="j")
    append(path, line(kind="metric", step=1) + '{"kind": "log", "mess')
    assert tailer.read() == [{"kind": "metric", "step": 1}]
    complete_up_to = tailer.offset
    append(path, 'age": "hello"')
    assert tailer.read() == []
    assert tailer.offset == complete_up_to  # the offset never points into a partial line
    append(path, "}\n")
    assert tailer.read() == [{"kind": "log", "message": "hello"}]


def test_a_new_tailer_resumes_from_a_saved_offset_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    first = TelemetryTailer(path, job_id="j")
    append(path, line(kind="metric", step=1) + '{"kind": "metric", "st')
    assert len(first.read()) == 1
    first.close()
    append(path, 'ep": 2}\n' + line(kind="metric", step=3))
    second = TelemetryTailer(path, job_id="j", offset=first.offset)
    assert steps(second.read()) == [2, 3]


def test_malformed_lines_come_back_in_place_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    append(path, line(kind="metric", step=1) + "not json\n" + "[1, 2]\n" + '{"no": "kind"}\n\n')
    append(path, line(kind="metric", step=2))
    items = TelemetryTailer(path, job_id="j").read()
    assert items[0] == {"kind": "metric", "step": 1}
    assert [type(i) for i in items[1:4]] == [MalformedLine] * 3
    bad = items[1]
    assert isinstance(bad, MalformedLine)
    assert bad.offset == len(line(kind="metric", step=1))
    assert bad.excerpt == "not json"
    assert items[4] == {"kind": "metric", "step": 2}  # the blank line is simply skipped
    assert len(items) == 5


def test_a_runaway_line_is_dropped_whole_and_the_next_one_is_read(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    tailer = TelemetryTailer(path, job_id="j", max_line_bytes=50)
    append(path, '{"kind": "log", "message": "' + "x" * 80)
    assert [type(i) for i in tailer.read()] == [MalformedLine]
    append(path, "y" * 80)
    assert tailer.read() == []  # still the same runaway line: reported once
    append(path, '"}\n' + line(kind="metric", step=1))
    assert tailer.read() == [{"kind": "metric", "step": 1}]
    assert tailer.offset == path.stat().st_size


def test_a_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    tailer = TelemetryTailer(path, job_id="j")
    append(path, line(kind="metric", step=1) + line(kind="metric", step=2))
    tailer.read()
    path.write_text(line(kind="phase", phase="loading_model"))
    assert tailer.read() == [{"kind": "phase", "phase": "loading_model"}]


def test_a_saved_offset_past_the_end_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    append(path, line(kind="metric", step=1))
    assert TelemetryTailer(path, job_id="j", offset=10_000).read() == [{"kind": "metric", "step": 1}]
