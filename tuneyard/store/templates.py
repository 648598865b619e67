"""Custom job templates of an organization: save, list, read, replace, delete. Names are unique per org."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.template_tables import JobTemplate


def save_template(db: Database, org_id: str, name: str, description: str, spec: dict[str, Any], *,
                  replace: bool = False) -> JobTemplate:
    """Create the template (Conflict when the name is taken), or with `replace` overwrite it (NotFound
    when there is none)."""
    now = utcnow()
    try:
        with db.write() as session:
            row = session.scalar(select(JobTemplate).where(JobTemplate.org_id == org_id, JobTemplate.name == name))
            if replace:
                if row is None:
                    raise NotFound("template", name)
                row.description, row.spec, row.updated_at = description, dict(spec), now
            else:
                row = JobTemplate(id=new_id("tpl"), org_id=org_id, name=name, description=description,
                                  spec=dict(spec), created_at=now, updated_at=now)
                session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a template named {name!r} already exists", name=name) from exc
    return row


def list_templates(db: Database, org_id: str) -> list[JobTemplate]:
    with db.read() as session:
        return list(session.scalars(select(JobTemplate).where(JobTemplate.org_id == org_id)
                                    .order_by(JobTemplate.name)))


def find_template(db: Database, org_id: str, name: str) -> JobTemplate | None:
    with db.read() as session:
        return session.scalar(select(JobTemplate).where(JobTemplate.org_id == org_id, JobTemplate.name == name))


def delete_template(db: Database, org_id: str, name: str) -> None:
    with db.write() as session:
        done = session.execute(delete(JobTemplate).where(JobTemplate.org_id == org_id, JobTemplate.name == name))
        if not getattr(done, "rowcount", 0):
            raise NotFound("template", name)
