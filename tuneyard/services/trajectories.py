"""Trajectories: agent runs with their LLM calls, ingested one or a batch at a time (idempotent on
`id`), or imported from OpenAI-style chat logs (JSONL, every bad line reported, nothing stored then).

The trajectory object keeps document 003's camelCase words (`startTime`, `llmCalls`, ...) in and
out, so one body serves the native `/v1/trajectories` and 003's paths alike.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuneyard.services.errors import InvalidRequest
from tuneyard.spec.text import Ident, Label, Name
from tuneyard.store import trajectories as store
from tuneyard.store.engine import Database
from tuneyard.store.trajectory_tables import NO_TASK, Trajectory
from tuneyard.training.data.records import CHAT_ROLES

MAX_BATCH = 100
"""Trajectories in one request; the JSON body limit (1 MiB) bounds their size together."""
MAX_LLM_CALLS = 500
MAX_MESSAGES = 500
MAX_CONTENT = 200_000
"""Characters in one message or response: far past any context window we train on."""
MAX_ACCESSES = 1000
MAX_IMPORT_LINES = 10_000
STATUSES = ("completed", "failed", "running")
ROLES = (*CHAT_ROLES, "developer")  # 'developer' is OpenAI's newer name for 'system'

Content = Annotated[str, Field(max_length=MAX_CONTENT)]
Role = Literal["system", "user", "assistant", "tool", "developer"]
def _integral(value: Any) -> Any:
    # JSON has one number type: 1718000000000.0 is the integer a JSON Schema `integer` allows, and
    # what a JavaScript client may send; strict validation then refuses anything else not an int.
    return int(value) if isinstance(value, float) and value.is_integer() else value


EpochMs = Annotated[int, Field(ge=0, le=2**53)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _integral_floats(cls, value: Any) -> Any:
        return _integral(value)


class Message(_Strict):
    role: Role = Field(description=f"One of {', '.join(ROLES)}.")
    content: Content


class LlmCall(_Strict):
    """One call the agent made: what it sent, what came back."""

    model: Name
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    response: Content = Field(description="The model's answer: the assistant turn a dataset trains on.")
    purpose: Name | None = None
    timestamp: EpochMs | None = None
    tokens: Annotated[int, Field(ge=0)] | None = None


class TrajectoryIn(_Strict):
    """A trajectory as an agent reports it (document 003's words)."""

    id: Ident | None = Field(None, description="The caller's id (a UUID is made when absent); a retry "
                                               "with the same id and content changes nothing.")
    source: Label = Field("api", description="What reported it (an agent, an import).")
    status: Literal["completed", "failed", "running"] = "completed"
    task: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")] | None = None
    start_time: EpochMs = Field(alias="startTime")
    end_time: EpochMs | None = Field(None, alias="endTime")
    llm_calls: list[LlmCall] = Field(alias="llmCalls", max_length=MAX_LLM_CALLS)
    provider_accesses: list[dict[str, Any]] = Field(default_factory=list, alias="providerAccesses",
                                                    max_length=MAX_ACCESSES)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ends_after_start(self) -> TrajectoryIn:
        if self.end_time is not None and self.end_time < self.start_time:
            raise ValueError("endTime is before startTime")
        return self


@dataclass(frozen=True)
class IngestResult:
    created: list[str]
    existing: list[str]
    tasks: list[str]  # tasks that got a new completed trajectory: what auto-training looks at


def parse_body(body: Any) -> list[TrajectoryIn]:
    """One trajectory, or `{"trajectories": [...]}`: checked whole, every problem reported (422)."""
    if isinstance(body, Mapping) and "trajectories" in body:
        items = body["trajectories"]
        extra = sorted(set(body) - {"trajectories"})
        problems = [{"field": k, "message": "unknown field"} for k in extra]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            problems.append({"field": "trajectories", "message": f"give a list of 1 to {MAX_BATCH} trajectories"})
            raise InvalidRequest(problems)
        parsed = _parse_each(items, lambda i: f"trajectories.{i}", problems)
    else:
        problems = []
        parsed = _parse_each([body], lambda _i: "", problems)
    if problems:
        raise InvalidRequest(problems)
    return parsed


def _parse_each(items: list[Any], where: Callable[[int], str], problems: list[dict[str, Any]]) -> list[TrajectoryIn]:
    parsed = []
    for i, item in enumerate(items):
        try:
            parsed.append(TrajectoryIn.model_validate(item))
        except ValidationError as exc:
            problems.extend(_problems(exc, where(i)))
    return parsed


def _problems(exc: ValidationError, prefix: str) -> list[dict[str, Any]]:
    out = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"])
        field = ".".join(p for p in (prefix, loc) if p) or "(body)"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
        out.append({"field": field, "message": message})
    return out


def ingest(db: Database, org_id: str, trajectories: list[TrajectoryIn]) -> IngestResult:
    """Store them all or none; ids already stored with the same content are retries."""
    ids = [t.id for t in trajectories if t.id is not None]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InvalidRequest([{"field": "trajectories", "message": f"id {i} appears twice"} for i in duplicates])
    done = store.ingest(db, org_id, [_new(t) for t in trajectories])
    return IngestResult(done.created, done.existing, done.tasks)


def _new(t: TrajectoryIn) -> store.NewTrajectory:
    body = {"llmCalls": [c.model_dump(exclude_none=True) for c in t.llm_calls],
            "providerAccesses": t.provider_accesses, "metadata": t.metadata}
    canonical = {"source": t.source, "status": t.status, "task": t.task, "startTime": t.start_time,
                 "endTime": t.end_time, **body}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return store.NewTrajectory(
        id=t.id or str(uuid.uuid4()), source=t.source, status=t.status, task=t.task or NO_TASK,
        start_time=t.start_time, end_time=t.end_time, llm_call_count=len(t.llm_calls),
        models=sorted({c.model for c in t.llm_calls}), body=body, content_sha256=digest,
    )


def parse_import(text: str, *, source: str = "import", task: str | None = None) -> list[TrajectoryIn]:
    """OpenAI-style chat logs, one JSON object a line, each becoming a one-call trajectory.

    A line is either a chat example `{"messages": [..., {"role": "assistant", ...}], "model"?}` or a
    logged request `{"request": {"model", "messages"}, "response": {"choices": [{"message"}]}}`;
    optional `id`, `task`, `created` (epoch s). Every bad line is reported as `lines.N...` (1-based);
    one bad line refuses the whole import. An id made from the line's content makes importing the
    same file twice a no-op.
    """
    lines = text.splitlines()
    problems: list[dict[str, Any]] = []
    if len(lines) > MAX_IMPORT_LINES:
        raise InvalidRequest([{"field": "file", "message": f"more than {MAX_IMPORT_LINES} lines"}])
    parsed = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"lines.{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append({"field": where, "message": f"not JSON: {exc.msg}"})
            continue
        try:
            candidate = _from_log_line(row, line, source, task)
        except ValueError as exc:
            problems.append({"field": where, "message": str(exc)})
            continue
        parsed.extend(_parse_each([candidate], _at(where), problems))
    if not parsed and not problems:
        problems.append({"field": "file", "message": "no lines"})
    if problems:
        raise InvalidRequest(problems)
    return parsed


def _at(where: str) -> Callable[[int], str]:
    return lambda _index: where


def _from_log_line(row: Any, line: str, source: str, task: str | None) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ValueError("each line must be a JSON object")
    if "request" in row:
        request, response = row.get("request"), row.get("response")
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise ValueError("request and response must be objects")
        messages, model = request.get("messages"), request.get("model", "unknown")
        choices = response.get("choices")
        if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)
                and isinstance(choices[0].get("message"), dict)):
            raise ValueError("response.choices[0].message is missing")
        answer = choices[0]["message"].get("content")
    else:
        turns = row.get("messages")
        if not isinstance(turns, list) or not turns or not isinstance(turns[-1], dict) \
                or turns[-1].get("role") != "assistant":
            raise ValueError("messages must be a list ending with the assistant's answer")
        messages, answer, model = turns[:-1], turns[-1].get("content"), row.get("model", "unknown")
    created = row.get("created", 0)
    start = created * 1000 if isinstance(created, int) and not isinstance(created, bool) else created
    made_id = "imp-" + hashlib.sha256(line.strip().encode()).hexdigest()[:40]
    return {"id": row.get("id", made_id), "source": source, "status": "completed", "task": row.get("task", task),
            "startTime": start, "llmCalls": [{"model": model, "messages": messages, "response": answer}]}


def list_page(db: Database, org_id: str, *, limit: int, offset: int, task: str | None = None,
              status: str | None = None, source: str | None = None) -> store.TrajectoryPage:
    return store.list_page(db, org_id, limit=limit, offset=offset, task=task, status=status, source=source)


def get(db: Database, org_id: str, trajectory_id: str) -> Trajectory:
    return store.get(db, org_id, trajectory_id)


def delete(db: Database, org_id: str, trajectory_id: str) -> None:
    """Forget it; datasets already built from it keep its examples and list its id in their lineage."""
    store.delete_one(db, org_id, trajectory_id)


def summary(row: Trajectory) -> dict[str, Any]:
    """A listing's item, in document 003's words."""
    return {"id": row.id, "source": row.source, "status": row.status, "task": row.task or None,
            "llmCallCount": row.llm_call_count, "startTime": row.start_time, "endTime": row.end_time,
            "models": row.models, "createdAt": row.created_at.isoformat()}


def detail(row: Trajectory) -> dict[str, Any]:
    return {**summary(row), "llmCalls": row.body["llmCalls"], "providerAccesses": row.body["providerAccesses"],
            "metadata": row.body["metadata"]}
