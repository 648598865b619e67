"""The text a request names, keys or points at something with: one definition for every store write.

PostgreSQL refuses a NUL byte in text (a 500 if it got that far), SQLite and the drivers refuse lone
surrogates, and control characters in a name or key are invisible in a listing and rewrite a
terminal or a log line. So every name, key, id and reference a request carries is one of the types
below, checked with its length before anything reaches the store: a bad one is a 422 naming the
field, on every database. `text_problem` is the same check for text that arrives outside a pydantic
model (a header, an upload's file name).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

NAME_MAX = 255
KEY_MAX = 255
REFERENCE_MAX = 1024
DESCRIPTION_MAX = 2000
ID_MAX = 128

# C0 and C1 controls (Unicode's Cc: NUL, CR, LF, ESC, DEL, ...) and lone surrogates (no UTF-8 for them);
# free text (a description) may also break lines and indent. Written as JSON Schema (ECMA) patterns
# as well, so the OpenAPI document says what is enforced; those leave the surrogates out, as no
# Unicode-aware regex engine (Rust's, which schemathesis and many validators use) can name them,
# and a tool that cannot compile a pattern drops it whole. A UTF-8 body cannot carry one anyway.
_C0_C1 = r"\x00-\x1f\x7f-\x9f"
_C0_C1_BUT_LAYOUT = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_SURROGATES = r"\ud800-\udfff"
_CONTROL = re.compile(f"[{_C0_C1}{_SURROGATES}]")
_CONTROL_BUT_LAYOUT = re.compile(f"[{_C0_C1_BUT_LAYOUT}{_SURROGATES}]")
PRINTABLE_PATTERN = rf"^[^{_C0_C1}]*[^\s{_C0_C1}][^{_C0_C1}]*$"
_DESCRIPTION_PATTERN = rf"^[^{_C0_C1_BUT_LAYOUT}]*$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""Every id the store hands out, and every built-in model name, has this shape."""
_ID = re.compile(ID_PATTERN)


def text_problem(value: str, *, layout: bool = False, max_length: int = NAME_MAX) -> str | None:
    """What is wrong with `value` as a name or key (`layout`: free text, line breaks and tabs allowed)."""
    found = (_CONTROL_BUT_LAYOUT if layout else _CONTROL).search(value)
    if found:
        return f"may not contain control characters (found {found.group()!r} at {found.start()})"
    if not layout and not value.strip():
        return "may not be empty or blank"
    if len(value) > max_length:
        return f"at most {max_length} characters"
    return None


def _printable(value: str) -> str:
    problem = text_problem(value, max_length=len(value))
    if problem:
        raise PydanticCustomError("printable_text", problem)
    return value


def _laid_out(value: str) -> str:
    problem = text_problem(value, layout=True, max_length=len(value))
    if problem:
        raise PydanticCustomError("printable_text", problem)
    return value


def _no_path(value: str) -> str:
    if "/" in value or "\\" in value or value in (".", ".."):
        raise PydanticCustomError("name_not_path", "may not contain a path ('/', '\\' or '..')")
    return value


def _id(value: str) -> str:
    if not _ID.match(value):
        raise PydanticCustomError("id_shape", "not an id: letters, digits, '_', '.' or '-', at most {max} long",
                                  {"max": ID_MAX})
    return value


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, json_schema_extra={"pattern": PRINTABLE_PATTERN}),
                 AfterValidator(_printable)]
"""A name for people (a job's, a base model's, an API key's): printable, not blank."""

LABEL_MAX = 128
Label = Annotated[str, Field(min_length=1, max_length=LABEL_MAX, json_schema_extra={"pattern": PRINTABLE_PATTERN}),
                  AfterValidator(_printable)]
"""A short name kept in a narrow column (a trajectory's source): printable, not blank."""

DatasetName = Annotated[Name, AfterValidator(_no_path)]
"""A dataset's name, unique in its organization; a name, never a path."""

Key = Annotated[str, Field(min_length=1, max_length=KEY_MAX, json_schema_extra={"pattern": PRINTABLE_PATTERN}),
                AfterValidator(_printable)]
"""An idempotency key: printable, not blank."""

Ident = Annotated[str, Field(min_length=1, max_length=ID_MAX, json_schema_extra={"pattern": ID_PATTERN}),
                  AfterValidator(_id)]
"""An id of something stored (a project, a dataset, a file, a checkpoint)."""

Reference = Annotated[str, Field(min_length=1, max_length=REFERENCE_MAX,
                                 json_schema_extra={"pattern": PRINTABLE_PATTERN}), AfterValidator(_printable)]
"""What names a model or a file by id, built-in name, path or hub id."""

Description = Annotated[str, Field(max_length=DESCRIPTION_MAX, json_schema_extra={"pattern": _DESCRIPTION_PATTERN}),
                        AfterValidator(_laid_out)]
"""Free text for people: lines and tabs allowed, other control characters not."""
