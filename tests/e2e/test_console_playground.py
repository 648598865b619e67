"""The model page's playground in a real headless Chromium against a real `tuneyard serve`: from
the models list to a trained tiny-llama LoRA's page, one message sent with the page's generation
settings, and an answer from the trained model and from its base side by side (the page's own
script activates the model and calls /v1/chat/completions through the session, under the console's
CSP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.console_browser import browser_context, needs_browser, no_horizontal_scroll, screenshots, sign_in
from tests.e2e.test_service_jobs import submit
from tests.support.service import Service
from tuneyard.client import find_api_key

pytestmark = [needs_browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
              pytest.mark.timeout(900)]


def test_playground_answers_from_the_trained_model_and_its_base(service: Service, tmp_path: Path) -> None:
    service.start_serve()
    with service.client() as client:
        done = client.wait(submit(client)["id"], timeout=300)
    assert done["status"] == "completed", (done, service.log("serve.log"))
    model_id = done["output_model_id"]
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        sign_in(page, service.url, find_api_key(service.data_dir))
        page.get_by_role("link", name="Models").click()
        page.get_by_role("link", name=model_id).click()
        page.wait_for_url(f"{service.url}/models/{model_id}")
        page.get_by_label("Max tokens").fill("8")
        page.get_by_label("Temperature").fill("0")
        page.get_by_label("Message").fill("What is 2 plus 3?")
        page.get_by_role("button", name="Send").click()
        trained = page.locator("#transcript-trained [data-answer]")
        base = page.locator("#transcript-base [data-answer]")
        trained.wait_for(timeout=240_000)
        base.wait_for(timeout=240_000)
        assert page.locator("#playground [data-error]").count() == 0
        assert trained.inner_text().startswith("Model: ") and base.inner_text().startswith("Model: ")
        assert trained.inner_text().removeprefix("Model: ").strip()  # the LoRA answers words; the untrained
        # base may answer only tokens that decode to nothing
        assert "What is 2 plus 3?" in page.locator("#transcript-trained").inner_text()
        screenshots(page, "model-playground")
        assert no_horizontal_scroll(page)
        assert not refused, refused
    shown = client_activation(service, model_id)
    assert shown["active"] and shown["backend"] == "transformers"


def client_activation(service: Service, model_id: str) -> dict[str, object]:
    import httpx

    key = find_api_key(service.data_dir)
    answer: dict[str, object] = httpx.get(f"{service.url}/v1/models/{model_id}/activation",
                                          headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    return answer
