"""The table of organizations' custom job templates (migration 0005).

Beside tables.py, as trajectory_tables.py is, so templates read as one unit; the package imports
this module, so `Base.metadata` always holds the table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneyard.store.ids import utcnow
from tuneyard.store.tables import ID, Base


class JobTemplate(Base):
    """A partial job spec an organization saved under a name its submissions can give."""

    __tablename__ = "job_templates"
    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str]
    description: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
