"""The table of activated models (migration 0008): which trained models are served, how, and under
which extra name. Beside tables.py, as template_tables.py is; the package imports this module, so
`Base.metadata` always holds the table.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneyard.store.ids import utcnow
from tuneyard.store.tables import ID, Base


class ModelActivation(Base):
    """A trained model that answers /v1/chat/completions and /v1/completions. The row is the
    activation: it survives a restart of the API, and its serving process loads the model again on
    the first request that names it."""

    __tablename__ = "model_activations"
    # One provider_model name per organization, so a name means one model. NULLs never collide.
    __table_args__ = (UniqueConstraint("org_id", "provider_model"),)
    model_id: Mapped[str] = mapped_column(ID, ForeignKey("trained_models.id", ondelete="CASCADE"),
                                          primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    backend: Mapped[str] = mapped_column(String(32))  # a name in tuneyard.serving.backends.BACKENDS
    export_id: Mapped[str | None] = mapped_column(ID, ForeignKey("model_exports.id", ondelete="CASCADE"))
    """The verified GGUF export llama.cpp serves; None for backends that load the trained folder."""
    provider_model: Mapped[str | None] = mapped_column(String(255))
    """Document 003's `providerModel`: another name the model answers to."""
    activated_at: Mapped[datetime] = mapped_column(default=utcnow)
