"""A dialect: one API this server speaks, at its own paths, over the same services and JobView.

Each is a router plus its own words: how it renders errors, what it calls each JobStatus, which of
its paths take uploads (they get the upload body limit). Dialects are registered explicitly, by
name, in tuneyard.api.dialects; a registry refuses a second dialect of a name, and a prefix that
overlaps another dialect's unless the inner one names the outer in `nested_in` (OpenAI's
/v1/fine_tuning inside the native /v1) and the outer has no route of its own in there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from fastapi import APIRouter
from starlette.routing import BaseRoute

from tuneyard.api.errors import ErrorRenderer, render_envelope
from tuneyard.store.status import JobStatus

NAME_LENGTH = 32
"""As long as the store keeps a dialect's name (labels and aliases are kept under it)."""


def _check_prefix(prefix: str) -> None:
    """A prefix is an absolute path of one segment or more, without a trailing slash: /v1, /api/training."""
    if not prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        raise ValueError(f"a dialect prefix is an absolute path below / without a trailing slash, not {prefix!r}")


def is_under(path: str, prefix: str) -> bool:
    """Whether `path` is `prefix` or below it, segment-wise: /v1/files is under /v1, /v10 is not."""
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Dialect:
    """One API: its routes, under its prefixes, and its words for errors and statuses."""

    name: str
    prefixes: tuple[str, ...]
    """The paths it owns; errors under them are rendered by `render_error`. Most have one; one whose
    document puts its resources at the root (Fusion's /jobs, /models, ...) lists each."""
    router: APIRouter
    render_error: ErrorRenderer
    status_names: Mapping[JobStatus, str]
    """What the dialect calls each status of the one state machine: every status has a name."""
    upload_paths: tuple[str, ...] = ()
    """Exact paths whose bodies may be as large as an upload, not only a JSON request."""
    nested_in: tuple[str, ...] = ()
    """Dialects whose prefixes this one may sit inside, by name: the overlap is meant."""

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or len(self.name) > NAME_LENGTH:
            raise ValueError(f"a dialect's name is an identifier of at most {NAME_LENGTH} characters, "
                             f"not {self.name!r}")
        if not self.prefixes:
            raise ValueError(f"dialect {self.name} has no prefix")
        for prefix in self.prefixes:
            _check_prefix(prefix)
        missing = [s.value for s in JobStatus if s not in self.status_names]
        if missing:
            raise ValueError(f"dialect {self.name} names no status for {', '.join(missing)}")
        outside = [p for p in (*route_paths(self.router), *self.upload_paths) if self.prefix_of(p) is None]
        if outside:
            raise ValueError(f"dialect {self.name} has paths outside its prefixes: {', '.join(outside)}")

    def prefix_of(self, path: str) -> str | None:
        """The longest of its prefixes `path` is under, or None."""
        owned = [p for p in self.prefixes if is_under(path, p)]
        return max(owned, key=len) if owned else None

    def status_name(self, status: JobStatus | str) -> str:
        return self.status_names[JobStatus(status)]

    def statuses_named(self, word: str) -> frozenset[JobStatus]:
        """The statuses the dialect calls `word` (several may share one name); empty for no such word."""
        return frozenset(s for s, name in self.status_names.items() if name == word)


def route_paths(router: APIRouter) -> Iterator[str]:
    route: BaseRoute
    for route in router.routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            yield path


class DialectRegistry:
    """The dialects one app serves, in registration order; see the module for what is refused."""

    def __init__(self) -> None:
        self._dialects: dict[str, Dialect] = {}

    def register(self, dialect: Dialect) -> Dialect:
        if dialect.name in self._dialects:
            raise ValueError(f"dialect {dialect.name!r} is already registered")
        for other in self._dialects.values():
            _check_overlap(dialect, other)
            _check_overlap(other, dialect)
        self._dialects[dialect.name] = dialect
        return dialect

    def get(self, name: str) -> Dialect:
        try:
            return self._dialects[name]
        except KeyError:
            raise KeyError(f"unknown dialect {name!r}; known: {', '.join(self._dialects)}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._dialects)

    def __iter__(self) -> Iterator[Dialect]:
        return iter(tuple(self._dialects.values()))

    def __len__(self) -> int:
        return len(self._dialects)

    def owner(self, path: str) -> Dialect | None:
        """The dialect whose prefix `path` falls under most specifically, or None."""
        best: tuple[int, Dialect] | None = None
        for dialect in self._dialects.values():
            prefix = dialect.prefix_of(path)
            if prefix is not None and (best is None or len(prefix) > best[0]):
                best = (len(prefix), dialect)
        return best[1] if best else None

    def renderer_for(self, path: str) -> ErrorRenderer:
        """How errors at `path` are rendered: by its dialect, else (the console, /healthz) natively."""
        owner = self.owner(path)
        return owner.render_error if owner is not None else render_envelope

    def upload_paths(self) -> tuple[str, ...]:
        return tuple(p for d in self._dialects.values() for p in d.upload_paths)

    def in_route_order(self) -> list[Dialect]:
        """Nested dialects before the rest, so a route template of an outer one can never match first."""
        return sorted(self._dialects.values(), key=lambda d: not d.nested_in)


def _check_overlap(inner: Dialect, outer: Dialect) -> None:
    """Refuse `inner`'s prefixes under (or equal to) `outer`'s, unless the nesting is declared and clean."""
    for prefix in inner.prefixes:
        covering = outer.prefix_of(prefix)
        if covering is None:
            continue
        if prefix == covering:
            raise ValueError(f"dialects {inner.name} and {outer.name} both claim {prefix}")
        if outer.name not in inner.nested_in:
            raise ValueError(f"dialect {inner.name}'s prefix {prefix} overlaps {outer.name}'s {covering}; "
                             f"list {outer.name!r} in its nested_in if that is meant")
        shadowed = [p for p in (*route_paths(outer.router), *outer.upload_paths) if is_under(p, prefix)]
        if shadowed:
            raise ValueError(f"dialect {inner.name}'s prefix {prefix} would take {outer.name}'s "
                             f"{', '.join(shadowed)}")
