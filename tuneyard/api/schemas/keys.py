"""API keys as an organization's admin manages them (/v1/keys): the plaintext only in the answer
that made the key, never again."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tuneyard.api.schemas.common import Request
from tuneyard.spec.text import Name
from tuneyard.store.tables import ApiKey


class ApiKeyCreate(Request):
    name: Name = Field(description="A label for who or what uses the key.")
    is_admin: bool = Field(False, description="An admin key (keys, base-model registration); else a member key.")


class ApiKeyPublic(BaseModel):
    id: str
    object: str = "api_key"
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it by.")
    is_admin: bool
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyPublic:
        return cls(id=key.id, name=key.name, prefix=key.prefix, is_admin=key.is_admin, created_at=key.created_at,
                   revoked_at=key.revoked_at)


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself: shown in this answer only, never again.")

    @classmethod
    def made(cls, key: ApiKey, plaintext: str) -> ApiKeyCreated:
        return cls(**ApiKeyPublic.of(key).model_dump(), key=plaintext)
