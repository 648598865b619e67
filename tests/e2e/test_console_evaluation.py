"""The model page's evaluation section in a real headless Chromium against a real `tuneyard serve`:
a trained tiny-llama LoRA's page, an evaluation started from its form, the page following it until
it completes, and the figures of the model beside its base shown (loss, perplexity, token accuracy,
exact match, ROUGE-L, the three scores, sample answers), as the API reports them."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from tests.e2e.console_browser import browser_context, needs_browser, no_horizontal_scroll, screenshots, sign_in
from tests.e2e.test_service_jobs import submit
from tests.support.service import Service
from tuneyard.client import find_api_key

pytestmark = [needs_browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
              pytest.mark.timeout(900)]

FIGURES = ("Loss", "Perplexity", "Token accuracy", "Exact match", "ROUGE-L", "Coherence", "Consistency",
           "Helpfulness")


def test_an_evaluation_started_on_the_model_page_completes_with_its_figures(service: Service,
                                                                           tmp_path: Path) -> None:
    service.start_serve()
    with service.client() as client:
        done = client.wait(submit(client)["id"], timeout=300)
    assert done["status"] == "completed", (done, service.log("serve.log"))
    model_id = done["output_model_id"]
    key = find_api_key(service.data_dir)
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        sign_in(page, service.url, key)
        page.goto(f"{service.url}/models/{model_id}")
        section = page.locator("#evaluations")
        assert "No evaluations yet" in section.inner_text()
        section.get_by_label("Dataset").fill("no-such-dataset")  # the API's own check answers, naming it
        section.get_by_role("button", name="Evaluate").click()
        page.locator("#evaluation-status[data-error]").wait_for(timeout=30_000)
        assert "dataset: no dataset 'no-such-dataset'" in page.locator("#evaluation-status").inner_text()
        assert page.locator("#evaluations article.evaluation").count() == 0

        section.get_by_label("Dataset").fill("")  # what its training job held out
        section.get_by_label("Max examples").fill("8")
        section.get_by_label("Samples").fill("2")
        section.get_by_label("Max new tokens").fill("8")
        section.get_by_role("button", name="Evaluate").click()
        article = page.locator("#evaluations article.evaluation")
        article.wait_for(timeout=30_000)  # queued: the page reloaded and shows it unfinished
        figures = page.locator("#evaluations table.evaluation-figures")
        figures.wait_for(timeout=600_000)  # the page polls and reloads itself once it completes
        assert article.count() == 1 and article.locator(".badge").inner_text() == "completed"

        evaluation_id = article.get_attribute("id").removeprefix("evaluation-")  # type: ignore[union-attr]
        api = httpx.get(f"{service.url}/v1/evaluations/{evaluation_id}", headers={"Authorization": f"Bearer {key}"},
                        timeout=30).json()
        assert api["status"] == "completed" and api["model_id"] == model_id
        rows = {row.locator("th").inner_text(): [cell.inner_text() for cell in row.locator("td").all()]
                for row in figures.locator("tbody tr").all()}
        assert list(rows) == list(FIGURES)
        for side, column in (("base", 0), ("trained", 1)):
            shown = float(rows["Loss"][column])
            assert math.isclose(shown, api[side]["loss"], rel_tol=1e-3), (side, shown, api[side])
            assert all(rows[f][column] != "—" for f in FIGURES), (side, rows)
        assert page.locator("#evaluations table.evaluation-samples tbody tr").count() == len(api["samples"]) == 2
        screenshots(page, "model-evaluation")
        assert no_horizontal_scroll(page)
        assert not refused, refused
