"""What a dialect's translators share: its secrets kept apart, and the services' problems in its words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, SecretStr

from tuneyard.services.errors import InvalidRequest


def split_secrets(request: BaseModel) -> tuple[dict[str, Any], dict[str, str]]:
    """A dialect's parsed request as (what may be stored, its secrets).

    A field typed SecretStr (or SecretStr | None), at any depth, is a secret: it is left out of the
    first (a JSON-ready dump) and given in the second by its dotted path. Hand the secrets to JobRequest.secrets; the
    service refuses a job that would store one.
    """
    data = request.model_dump(mode="json")
    secrets: dict[str, str] = {}
    _take_secrets(request, data, "", secrets)
    return data, secrets


def _take_secrets(value: Any, dumped: Any, path: str, secrets: dict[str, str]) -> None:
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        for name, info in type(value).model_fields.items():
            inner = getattr(value, name)
            if _marked_secret(info.annotation):
                dumped.pop(name, None)
                if isinstance(inner, SecretStr):
                    secrets[f"{path}{name}"] = inner.get_secret_value()
            else:
                _take_secrets(inner, dumped.get(name), f"{path}{name}.", secrets)
    elif isinstance(value, list | tuple) and isinstance(dumped, list):
        for i, (item, item_dumped) in enumerate(zip(value, dumped, strict=False)):
            _take_secrets(item, item_dumped, f"{path}{i}.", secrets)


def _marked_secret(annotation: Any) -> bool:
    """SecretStr, or SecretStr | None: the field is left out of what is stored even when unset."""
    return annotation is SecretStr or [a for a in get_args(annotation) if a is not type(None)] == [SecretStr]


def renamed(error: InvalidRequest, names: Mapping[str, str]) -> InvalidRequest:
    """The services' problems in a dialect's words: the longest leading part of each field path
    found in `names` is replaced (`hyperparams.max_steps` → `steps`, `datasets.0` → `dataset`)."""
    problems = [{**p, "field": _rename(str(p.get("field", "")), names)} for p in error.problems]
    return InvalidRequest(problems)


def _rename(field: str, names: Mapping[str, str]) -> str:
    parts = field.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in names:
            return ".".join([names[head], *parts[cut:]])
    return field
