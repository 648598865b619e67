"""What dialects share on the wire (api/dialects/http.py): a JSON body whatever its Content-Type, the
whole body checked at once in the dialect's words, 400 INVALID_REQUEST where the native API says
422, dates in each document's form, and list answers named after their resource."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from tuneyard.api.dialects.http import epoch_ms, iso_z, listing, parse, render_envelope_400
from tuneyard.api.errors import install_error_handlers
from tuneyard.store.errors import NotFound


class Resume(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: str
    steps: int = 1


def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app, lambda _path: render_envelope_400)

    @app.post("/resume")
    async def resume(request: Request) -> dict[str, object]:
        body = await parse(request, Resume, {"steps": "max_steps"})
        return body.model_dump()

    @app.get("/missing")
    def missing() -> None:
        raise NotFound("job", "job_x")

    return TestClient(app)


def test_a_json_body_sent_as_a_form_is_read_as_json() -> None:
    # curl -d '{"checkpoint": "checkpoint-500"}' sends application/x-www-form-urlencoded
    sent = client().post("/resume", content=b'{"checkpoint": "checkpoint-500"}',
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert sent.status_code == 200 and sent.json() == {"checkpoint": "checkpoint-500", "steps": 1}
    untyped = client().post("/resume", content=b'{"checkpoint": "c"}')
    assert untyped.status_code == 200


def test_a_bad_body_is_400_invalid_request_with_every_problem_in_the_dialects_words() -> None:
    answer = client().post("/resume", json={"steps": "many", "extra": 1})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    problems = {p["field"]: p["message"] for p in error["details"]["problems"]}
    assert problems.keys() == {"checkpoint", "max_steps", "extra"}
    assert problems["checkpoint"] == "required" and problems["extra"] == "unknown field"
    for body in (b"{not json", b"[1, 2", "\u00ff".encode("latin-1")):
        broken = client().post("/resume", content=body, headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and broken.json()["error"]["code"] == "INVALID_REQUEST", body
        assert broken.json()["error"]["details"]["problems"][0]["field"] == "(body)"
    not_an_object = client().post("/resume", json=[1])
    assert not_an_object.status_code == 400


def test_other_failures_keep_their_status_and_code() -> None:
    missing = client().get("/missing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    assert client().get("/nowhere").status_code == 404


def test_dates_in_each_documents_form() -> None:
    when = datetime(2026, 4, 27, 14, 32, 18, 421000, tzinfo=UTC)
    assert iso_z(when) == "2026-04-27T14:32:18.421000Z"
    assert iso_z(when.astimezone(timezone(timedelta(hours=2)))) == "2026-04-27T14:32:18.421000Z"
    assert iso_z(None) is None and epoch_ms(None) is None
    assert epoch_ms(datetime(2024, 6, 10, 7, 43, 20, tzinfo=UTC)) == 1718005400000


def test_a_list_answer_is_named_after_its_resource() -> None:
    assert listing("training_jobs", iter([{"id": 2}, {"id": 1}])) == {"training_jobs": [{"id": 2}, {"id": 1}]}
