"""POST /v1/recommend: Fusion's shape, from names or from raw figures, every value inside its window."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, ready_dataset

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

FUSION_KEYS = {"turns", "lr", "cycles", "steps_per_cycle", "seq_len"}
FINETUNE_KEYS = {"lora_rank", "epochs", "batch_size"}


def recommend(client: TestClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/recommend", headers=tenant.headers, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_inside_windows(answer: dict[str, Any]) -> None:
    for name, value in answer["recommended"].items():
        window = answer["windows"][name]
        assert window["min"] <= value <= window["max"], (name, value, window)


def test_raw_figures_need_no_ids(client: TestClient, tenant: Tenant) -> None:
    answer = recommend(client, tenant, {"params": 7_000_000_000, "dataset_tokens": 2_100_000})
    assert answer["model_params"] == 7_000_000_000 and answer["dataset_tokens_est"] == 2_100_000
    assert set(answer["recommended"]) >= FUSION_KEYS | FINETUNE_KEYS
    assert answer["recommended"]["lr"] == 2e-4 and answer["recommended"]["turns"] == 2
    assert answer["notes"] and answer["disclaimer"].startswith("Recommended starting points")
    assert_inside_windows(answer)
    by_bytes = recommend(client, tenant, {"params": 7_000_000_000, "dataset_bytes": 8_400_000, "method": "full"})
    assert by_bytes["dataset_tokens_est"] == 2_100_000 and by_bytes["recommended"]["lr"] == 1e-5
    assert "lora_rank" not in by_bytes["recommended"]
    assert_inside_windows(by_bytes)


def test_named_model_and_dataset_take_seq_len_from_the_lengths(client: TestClient, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant, name="lengths", examples=40)
    answer = recommend(client, tenant, {"base_model": "tiny-llama", "dataset": "lengths"})
    assert answer["model_params"] == 1_049_728
    assert answer["recommended"]["lr"] == 1e-3  # a 1M model takes large steps
    assert answer["recommended"]["seq_len"] == 64  # short chats: the 95th percentile, rounded up to 64
    assert any("95 %" in note for note in answer["notes"])
    assert_inside_windows(answer)
    assert recommend(client, tenant, {"base_model": "tiny-llama", "dataset": dataset["id"]}) == answer


def test_what_is_missing_or_unknown_is_named(client: TestClient, tenant: Tenant) -> None:
    response = client.post("/v1/recommend", headers=tenant.headers, json={})
    assert response.status_code == 422
    assert {p["field"] for p in response.json()["error"]["details"]["problems"]} == {"base_model", "dataset"}
    response = client.post("/v1/recommend", headers=tenant.headers,
                           json={"base_model": "nope", "dataset": "nope", "params": 0})
    assert response.status_code == 422
    assert {p["field"] for p in response.json()["error"]["details"]["problems"]} == {"params"}
    response = client.post("/v1/recommend", headers=tenant.headers, json={"base_model": "nope", "dataset": "nope"})
    assert {p["field"] for p in response.json()["error"]["details"]["problems"]} == {"base_model", "dataset"}
