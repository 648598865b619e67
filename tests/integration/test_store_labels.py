"""A dialect's own fields (labels) and ids (aliases) of a job, on both databases."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tuneyard.store import Database, jobs, labels, tenancy
from tuneyard.store.errors import Conflict, NotFound


def test_labels_are_written_with_the_job_and_replaced_a_dialect_at_a_time(
    db: Database, org_id: str, new_job: Callable[..., str]
) -> None:
    job_id = new_job(labels={"felix": {"project_id": "p-1"}})
    assert jobs.get_job(db, org_id, job_id).labels == {"felix": {"project_id": "p-1"}}
    labels.set_labels(db, org_id, job_id, "openai", {"suffix": "mine", "metadata": {"team": "a"}})
    assert labels.set_labels(db, org_id, job_id, "felix", {"project_id": "p-2"}) == {
        "felix": {"project_id": "p-2"}, "openai": {"suffix": "mine", "metadata": {"team": "a"}}}
    assert labels.get_labels(db, org_id, job_id, "openai") == {"suffix": "mine", "metadata": {"team": "a"}}
    labels.set_labels(db, org_id, job_id, "felix", {})
    assert jobs.get_job(db, org_id, job_id).labels == {"openai": {"suffix": "mine", "metadata": {"team": "a"}}}
    assert labels.get_labels(db, org_id, job_id, "fusion") == {}
    assert jobs.get_job(db, org_id, new_job()).labels == {}


def test_an_alias_names_one_job_per_organization_and_dialect(
    db: Database, org_id: str, new_job: Callable[..., str]
) -> None:
    first, second = new_job(), new_job()
    labels.add_alias(db, org_id, "archetype", "ftj-demo-0a1b2c3d", first)
    labels.add_alias(db, org_id, "archetype", "ftj-demo-0a1b2c3d", first)  # saying it again changes nothing
    labels.add_alias(db, org_id, "archetype", "7f1c2e9a-uuid", first)
    labels.add_alias(db, org_id, "felix", "ftj-demo-0a1b2c3d", second)  # another dialect's words: no clash
    assert labels.resolve_alias(db, org_id, "archetype", "ftj-demo-0a1b2c3d") == first
    assert labels.resolve_alias(db, org_id, "felix", "ftj-demo-0a1b2c3d") == second
    assert labels.aliases_of(db, org_id, first) == {"archetype": ["ftj-demo-0a1b2c3d", "7f1c2e9a-uuid"]}
    with pytest.raises(Conflict, match="already names job"):
        labels.add_alias(db, org_id, "archetype", "ftj-demo-0a1b2c3d", second)
    with pytest.raises(NotFound):
        labels.resolve_alias(db, org_id, "archetype", "ftj-other-00000000")


def test_aliases_are_per_organization_and_go_with_their_job(
    db: Database, org_id: str, new_job: Callable[..., str]
) -> None:
    job_id = new_job()
    labels.add_alias(db, org_id, "fusion", "uuid-1", job_id)
    stranger = tenancy.create_org(db, "other").id
    with pytest.raises(NotFound):
        labels.resolve_alias(db, stranger, "fusion", "uuid-1")
    with pytest.raises(NotFound):  # another organization's job cannot be named either
        labels.add_alias(db, stranger, "fusion", "uuid-2", job_id)
    with pytest.raises(NotFound):
        labels.set_labels(db, stranger, job_id, "fusion", {"x": 1})
    jobs.delete_job(db, org_id, job_id)
    with pytest.raises(NotFound):
        labels.resolve_alias(db, org_id, "fusion", "uuid-1")
    other_job = jobs.create_job(db, jobs.NewJob(org_id=org_id, type="finetune", spec={}, config={})).job.id
    labels.add_alias(db, org_id, "fusion", "uuid-1", other_job)  # the id is free again
