"""Every native status through every dialect's table: each has a word, and each word is one that
dialect's document lists (statuses.DOCUMENTED, as printed)."""

from __future__ import annotations

import pytest

from tuneyard.api.dialects import statuses
from tuneyard.store.status import TERMINAL, JobStatus


@pytest.mark.parametrize("dialect", sorted(statuses.TABLES))
@pytest.mark.parametrize("status", list(JobStatus))
def test_every_status_has_a_documented_word_in_every_dialect(dialect: str, status: JobStatus) -> None:
    word = statuses.TABLES[dialect][status]
    assert word in statuses.DOCUMENTED[dialect], f"{dialect} calls {status.value} {word!r}, not a word of its document"


def test_every_dialect_has_a_table_and_a_documented_vocabulary() -> None:
    assert set(statuses.TABLES) == set(statuses.DOCUMENTED)


@pytest.mark.parametrize("dialect", sorted(statuses.TABLES))
def test_a_finished_job_never_reads_as_one_still_at_work(dialect: str) -> None:
    """A client polling until a word it takes for 'done' must stop: no terminal status shares a word
    with a status a worker holds or a queued one."""
    table = statuses.TABLES[dialect]
    finished = {table[s] for s in TERMINAL}
    working = {table[s] for s in (JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING, JobStatus.FINALIZING)}
    assert not finished & working


def test_the_words_the_issue_names() -> None:
    assert statuses.FELIX[JobStatus.QUEUED] == "requested" and statuses.FELIX[JobStatus.COMPLETED] == "complete"
    assert statuses.ARCHETYPE[JobStatus.QUEUED] == "REGISTERED"
    assert statuses.OPENAI[JobStatus.STOPPED] == "paused" and statuses.OPENAI[JobStatus.COMPLETED] == "succeeded"
    assert statuses.statuses_named(statuses.FELIX, "requested") == {JobStatus.QUEUED, JobStatus.STARTING}
    assert statuses.statuses_named(statuses.FELIX, "queued") == frozenset()


def test_a_table_without_a_word_for_some_status_is_refused() -> None:
    with pytest.raises(ValueError, match="cancelled"):
        statuses._table({s: s.value for s in JobStatus if s is not JobStatus.CANCELLED})


def test_felixs_status_filter_schema_lists_its_documented_words() -> None:
    from typing import get_args

    from tuneyard.api.dialects import felix

    assert set(get_args(felix.FelixStatus)) == statuses.DOCUMENTED["felix"]
