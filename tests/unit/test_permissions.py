"""The start-up check of the data folder: what others could read is made private, once, with a
warning naming it; links and what they point at are left alone."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from tuneyard.permissions import secure_data_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_readable_paths_are_made_private_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    (data / "runs" / "job-1").mkdir(parents=True)
    for path, mode in ((data, 0o755), (data / "runs", 0o750), (data / "runs" / "job-1", 0o700)):
        os.chmod(path, mode)
    (data / "tuneyard.db").write_bytes(b"")
    os.chmod(data / "tuneyard.db", 0o644)
    (data / "runs" / "job-1" / "run.sh").write_text("")
    os.chmod(data / "runs" / "job-1" / "run.sh", 0o755)
    outside = tmp_path / "outside.txt"
    outside.write_text("")
    os.chmod(outside, 0o644)
    (data / "link").symlink_to(outside)

    with caplog.at_level(logging.WARNING, logger="tuneyard.permissions"):
        fixed = secure_data_dir(data)
    assert sorted(fixed) == [". 0755 -> 0700", "runs 0750 -> 0700", "runs/job-1/run.sh 0755 -> 0700",
                             "tuneyard.db 0644 -> 0600"]
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "tuneyard.db 0644 -> 0600" in caplog.records[0].getMessage()
    assert _mode(data / "tuneyard.db") == 0o600 and _mode(data) == 0o700
    assert _mode(outside) == 0o644  # not ours: a link is not followed

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tuneyard.permissions"):
        assert secure_data_dir(data) == []
    assert caplog.records == []


def test_a_missing_data_folder_is_made_private(tmp_path: Path) -> None:
    secure_data_dir(tmp_path / "new" / "data")
    assert _mode(tmp_path / "new" / "data") == 0o700
