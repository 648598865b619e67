"""Dialects: explicit registration, what overlaps are refused and which are allowed, status names,
and the helpers a dialect's translators share."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
from fastapi import APIRouter
from pydantic import BaseModel, SecretStr

from tuneyard.api.dialects import Dialect, DialectRegistry, registered
from tuneyard.api.dialects.translate import renamed, split_secrets
from tuneyard.api.errors import render_envelope
from tuneyard.services.errors import InvalidRequest
from tuneyard.store.status import JobStatus

OWN_NAMES = {status: status.value for status in JobStatus}


def dialect(name: str, *prefixes: str, routes: tuple[str, ...] = (), nested_in: tuple[str, ...] = (),
            statuses: Mapping[JobStatus, str] = OWN_NAMES, uploads: tuple[str, ...] = ()) -> Dialect:
    router = APIRouter()
    for path in routes:
        router.add_api_route(path, lambda: {}, methods=["GET"])
    return Dialect(name, prefixes, router, render_envelope, statuses, uploads, nested_in)


def registry(*dialects: Dialect) -> DialectRegistry:
    found = DialectRegistry()
    for one in dialects:
        found.register(one)
    return found


def test_the_native_api_is_the_first_dialect_and_owns_v1_with_its_uploads() -> None:
    dialects = registered()
    native = dialects.get("native")
    assert dialects.names()[0] == "native" and native.prefixes == ("/v1",)
    assert dialects.owner("/v1/jobs/job_1/logs") is native and dialects.owner("/v1") is native
    assert [dialects.owner(p) for p in ("/v10/jobs", "/healthz", "/")] == [None] * 3
    assert dialects.upload_paths() == ("/v1/files",)


def test_every_status_has_its_own_name_in_the_native_api() -> None:
    native = registered().get("native")
    for status in JobStatus:
        assert native.status_name(status) == status.value == native.status_name(status.value)
        assert native.statuses_named(status.value) == {status}
    assert native.statuses_named("complete") == frozenset()


def test_a_dialect_may_give_several_statuses_one_name_but_must_name_each() -> None:
    words = {**OWN_NAMES, JobStatus.QUEUED: "requested", JobStatus.STARTING: "requested"}
    felixish = dialect("felixish", "/felix", statuses=words)
    assert felixish.statuses_named("requested") == {JobStatus.QUEUED, JobStatus.STARTING}
    partial = {s: w for s, w in OWN_NAMES.items() if s is not JobStatus.FINALIZING}
    with pytest.raises(ValueError, match="names no status for finalizing"):
        dialect("partial", "/partial", statuses=partial)


def test_a_second_dialect_of_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'fusion' is already registered"):
        registry(dialect("fusion", "/fusion"), dialect("fusion", "/fusion2"))


def test_the_same_prefix_twice_is_refused_even_when_nesting_is_declared() -> None:
    with pytest.raises(ValueError, match="both claim /api/training"):
        registry(dialect("local", "/api/training"), dialect("agent", "/api/training", nested_in=("local",)))


@pytest.mark.parametrize("inner_first", [False, True])
def test_an_accidental_prefix_inside_another_is_refused_in_either_order(inner_first: bool) -> None:
    outer, inner = dialect("outer", "/v1", routes=("/v1/jobs",)), dialect("openai", "/v1/fine_tuning")
    with pytest.raises(ValueError, match="overlaps outer's /v1; list 'outer' in its nested_in"):
        registry(*((inner, outer) if inner_first else (outer, inner)))


@pytest.mark.parametrize("inner_first", [False, True])
def test_a_declared_nested_prefix_is_allowed_and_owns_what_is_below_it(inner_first: bool) -> None:
    outer = dialect("outer", "/v1", routes=("/v1/jobs", "/v1/jobs/{job_id}"), uploads=("/v1/files",))
    inner = dialect("openai", "/v1/fine_tuning", routes=("/v1/fine_tuning/jobs",), nested_in=("outer",))
    dialects = registry(*((inner, outer) if inner_first else (outer, inner)))
    assert dialects.owner("/v1/fine_tuning/jobs/ftjob-1") is inner and dialects.owner("/v1/fine_tuning") is inner
    assert dialects.owner("/v1/jobs") is outer and dialects.owner("/v1/fine_tuningx") is outer
    assert dialects.in_route_order()[0] is inner  # its routes are tried before the outer one's templates


def test_nesting_is_refused_where_the_outer_dialect_has_its_own_routes_inside() -> None:
    outer = dialect("outer", "/v1", routes=("/v1/files", "/v1/files/{file_id}"))
    with pytest.raises(ValueError, match=re.escape("would take outer's /v1/files, /v1/files/{file_id}")):
        registry(outer, dialect("files2", "/v1/files", nested_in=("outer",)))


def test_prefixes_that_only_start_alike_do_not_overlap() -> None:
    dialects = registry(dialect("a", "/v1"), dialect("b", "/v10"), dialect("c", "/api/training"),
                        dialect("d", "/api/trainings"), dialect("fusion", "/jobs", "/base-models"))
    assert dialects.owner("/api/trainings/x").name == "d"  # type: ignore[union-attr]
    assert dialects.owner("/base-models").name == "fusion"  # type: ignore[union-attr]


@pytest.mark.parametrize("prefix", ["", "/", "v1", "/v1/", "//v1", "/a//b"])
def test_a_prefix_is_an_absolute_path_without_a_trailing_slash(prefix: str) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        dialect("bad", prefix)


def test_a_dialects_routes_and_uploads_stay_under_its_prefixes() -> None:
    with pytest.raises(ValueError, match="outside its prefixes: /healthz"):
        dialect("leaky", "/v1", routes=("/v1/jobs", "/healthz"))
    with pytest.raises(ValueError, match="outside its prefixes: /upload"):
        dialect("leaky", "/v1", uploads=("/upload",))


class Options(BaseModel):
    depth: int = 2
    token: SecretStr | None = None


class VendorJob(BaseModel):
    model: str
    api_key: SecretStr
    options: Options = Options()
    extra: list[Options] = []


def test_fields_typed_secret_are_split_off_at_any_depth() -> None:
    request = VendorJob(model="m", api_key=SecretStr("sk-top"), options=Options(token=SecretStr("tok-inner")),
                        extra=[Options(depth=1), Options(token=SecretStr("tok-listed"))])
    public, secrets = split_secrets(request)
    assert public == {"model": "m", "options": {"depth": 2}, "extra": [{"depth": 1}, {"depth": 2}]}
    assert secrets == {"api_key": "sk-top", "options.token": "tok-inner", "extra.1.token": "tok-listed"}


def test_the_services_problems_are_renamed_into_the_dialects_words() -> None:
    error = InvalidRequest([{"field": "hyperparams.max_steps", "message": "too small"},
                            {"field": "datasets.0", "message": "no dataset 'x'"},
                            {"field": "base_model", "message": "no base model"},
                            {"field": "(body)", "message": "broken"}])
    names = {"hyperparams.max_steps": "steps", "datasets": "dataset_ids", "base_model": "model"}
    fields = [p["field"] for p in renamed(error, names).problems]
    assert fields == ["steps", "dataset_ids.0", "model", "(body)"]
