"""/v1/keys: an organization's admin keys manage its keys; member keys get 403 here.

The operator does the same on the database with `tuneyard keys`; organizations themselves are the
operator's alone (`tuneyard orgs`), so they have no route.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from tuneyard.api.deps import ADMIN_RESPONSES, AdminCaller, Context, checked_id
from tuneyard.api.schemas.common import BODY_RESPONSES, ERROR_RESPONSES, ListOf
from tuneyard.api.schemas.keys import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from tuneyard.store import tenancy

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses={**ERROR_RESPONSES, **ADMIN_RESPONSES})


@router.get("", response_model=ListOf[ApiKeyPublic])
def list_keys(context: Context, admin: AdminCaller) -> ListOf[ApiKeyPublic]:
    """The organization's keys, oldest first, revoked ones too (prefixes only)."""
    return ListOf(data=[ApiKeyPublic.of(k) for k in tenancy.list_api_keys(context.db, admin.org_id)])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, responses=BODY_RESPONSES)
def create_key(body: ApiKeyCreate, context: Context, admin: AdminCaller) -> ApiKeyCreated:
    """A new key of the organization; the answer holds the key, which is never shown again."""
    key, plaintext = tenancy.create_api_key(context.db, admin.org_id, body.name, is_admin=body.is_admin)
    return ApiKeyCreated.made(key, plaintext)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def revoke_key(key_id: str, context: Context, admin: AdminCaller) -> Response:
    """Revoke a key of the organization: it stops authenticating at once (the caller's own too)."""
    tenancy.revoke_api_key(context.db, admin.org_id, checked_id("api key", key_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
