"""TelemetryTailer: incremental, resumable reading of a stream that is still being written.

The tailer reads by offset through a runner handle; here it reads a file the way the local
executor's handle does, with `read_file_range`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from tuneyard.training.telemetry import Telemetry, drop_torn_tail
from tuneyard.worker.outcome import TelemetryRecord
from tuneyard.worker.telemetry import MalformedLine, TelemetryTailer, read_file_range


def file_tailer(path: Path, **options: Any) -> TelemetryTailer:
    """A tailer of the file at `path`, read as the local executor reads it."""
    return TelemetryTailer(functools.partial(read_file_range, path), **options)


def line(**fields: object) -> str:
    return json.dumps(fields) + "\n"


def steps(items: list[TelemetryRecord | MalformedLine]) -> list[object]:
    return [i["step"] for i in items if isinstance(i, dict)]


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_a_missing_file_is_not_an_error_and_is_picked_up_when_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    tailer = file_tailer(path, job_id="j")
    assert tailer.read() == []
    append(path, line(kind="phase", phase="training"))
    assert tailer.read() == [{"kind": "phase", "phase": "training"}]


def test_reads_only_what_was_appended_since_the_last_call(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    tailer = file_tailer(path, job_id="j")
    append(path, line(kind="metric", step=1) + line(kind="metric", step=2))
    assert steps(tailer.read()) == [1, 2]
    assert tailer.read() == []
    append(path, line(kind="metric", step=3))
    assert steps(tailer.read()) == [3]
    assert tailer.offset == path.stat().st_size


def test_a_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    tailer = file_tailer(path, job_id="j")
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
    first = file_tailer(path, job_id="j")
    append(path, line(kind="metric", step=1) + '{"kind": "metric", "st')
    assert len(first.read()) == 1
    append(path, 'ep": 2}\n' + line(kind="metric", step=3))
    second = file_tailer(path, job_id="j", offset=first.offset)
    assert steps(second.read()) == [2, 3]


def test_malformed_lines_come_back_in_place_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    append(path, line(kind="metric", step=1) + "not json\n" + "[1, 2]\n" + '{"no": "kind"}\n\n')
    append(path, line(kind="metric", step=2))
    items = file_tailer(path, job_id="j").read()
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
    tailer = file_tailer(path, job_id="j", max_line_bytes=50)
    append(path, '{"kind": "log", "message": "' + "x" * 80)
    assert [type(i) for i in tailer.read()] == [MalformedLine]
    append(path, "y" * 80)
    assert tailer.read() == []  # still the same runaway line: reported once
    append(path, '"}\n' + line(kind="metric", step=1))
    assert tailer.read() == [{"kind": "metric", "step": 1}]
    assert tailer.offset == path.stat().st_size


def test_a_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    tailer = file_tailer(path, job_id="j")
    append(path, line(kind="metric", step=1) + line(kind="metric", step=2))
    tailer.read()
    path.write_text(line(kind="phase", phase="loading_model"))
    assert tailer.read() == [{"kind": "phase", "phase": "loading_model"}]


def test_a_saved_offset_past_the_end_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    append(path, line(kind="metric", step=1))
    assert file_tailer(path, job_id="j", offset=10_000).read() == [{"kind": "metric", "step": 1}]


def test_a_stream_longer_than_one_read_arrives_whole_in_order(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    append(path, "".join(line(kind="metric", step=i) for i in range(100)))
    reads: list[tuple[int, int]] = []

    def read(offset: int, limit: int) -> bytes | None:
        reads.append((offset, limit))
        return read_file_range(path, offset, limit)

    tailer = TelemetryTailer(read, job_id="j", chunk_bytes=64)
    assert steps(tailer.read()) == list(range(100))
    assert tailer.offset == path.stat().st_size
    assert all(limit == 64 for _, limit in reads) and len(reads) > path.stat().st_size // 64


def test_a_file_range_is_empty_before_the_file_exists_and_none_past_its_end(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    assert read_file_range(path, 0, 10) == b""
    path.write_bytes(b"0123456789")
    assert read_file_range(path, 2, 5) == b"23456"
    assert read_file_range(path, 10, 5) == b""
    assert read_file_range(path, 11, 5) is None


def test_a_fragment_left_by_a_killed_writer_is_cut_and_the_next_writer_starts_a_clean_line(tmp_path: Path) -> None:
    # A SIGKILL between the pages of one write leaves part of a line; the next attempt's runner opens
    # the file through Telemetry, which cuts the fragment, so a tailer that was holding it back (the
    # same attempt's, or a new one from the saved offset) reads every record the new writer appends.
    path = tmp_path / "telemetry.jsonl"
    live = file_tailer(path, job_id="j")
    append(path, line(kind="metric", step=1) + '{"kind": "metric", "step": 2, "lo')
    assert steps(live.read()) == [1]
    saved = live.offset
    writer = Telemetry(path, echo=None)
    writer.emit("metric", step=2)
    writer.close()
    assert path.read_text().splitlines()[1].startswith('{"kind":"metric"')
    assert steps(live.read()) == [2]
    assert steps(file_tailer(path, job_id="j", offset=saved).read()) == [2]


def test_cutting_a_torn_tail_keeps_complete_lines_and_leaves_clean_files_alone(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    drop_torn_tail(path)  # no file yet: nothing to do
    assert not path.exists()
    complete = "".join(line(kind="metric", step=i) for i in range(200))  # past one read chunk
    path.write_text(complete)
    drop_torn_tail(path, chunk_bytes=64)
    assert path.read_text() == complete
    path.write_text(complete + "x" * 150)  # a fragment longer than one backward chunk
    drop_torn_tail(path, chunk_bytes=64)
    assert path.read_text() == complete
    path.write_text('{"kind": "me')  # a fragment and nothing before it
    drop_torn_tail(path)
    assert path.read_text() == ""
