"""The new-job form in a real headless Chromium against a real `tuneyard serve`: it starts from a
template, offers each job type with its own fields, shows the estimate before Start, and each
type's job page shows its own result card (issues 11 and 13). Screenshots in test-artifacts/console/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.console_browser import browser_context, needs_browser, no_horizontal_scroll, screenshots, sign_in
from tests.support.runs import REPO
from tests.support.service import Service
from tuneyard.client import find_api_key

if TYPE_CHECKING:  # the tests skip, rather than fail to import, where playwright is missing
    from playwright.sync_api import Page

pytestmark = [needs_browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

EXAMPLES = REPO / "examples" / "tiny-chat.jsonl"
SLOW = 300_000  # ms: training on two busy cores can be slow; the test waits on what it sees


def facts(page: Page, selector: str) -> dict[str, str]:
    """A definition list's terms and their values."""
    terms = page.locator(f"{selector} dt").all_inner_texts()
    values = page.locator(f"{selector} dd").all_inner_texts()
    return dict(zip(terms, values, strict=True))


def submit_and_see_the_result(page: Page, base_url: str, shot: str) -> dict[str, str]:
    page.get_by_role("button", name="Start job").click()
    page.wait_for_url(f"{base_url}/jobs/job_*")
    page.wait_for_selector('#status[data-status="completed"]', timeout=SLOW)
    page.locator("#result").wait_for(state="visible", timeout=30_000)
    screenshots(page, shot)
    return facts(page, "#result-facts")


def test_each_job_type_from_the_form_with_its_estimate_and_result_card(service: Service, tmp_path: Path) -> None:
    service.start_serve(TUNEYARD_PRICE_PER_CPU_HOUR="3.6")
    client = service.client()
    dataset = client.wait_dataset(client.create_dataset("chats", [client.upload_file(EXAMPLES)["id"]])["id"])
    from playwright.sync_api import expect  # here: the module imports where playwright is missing

    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        sign_in(page, service.url, find_api_key(service.data_dir))

        # A LoRA fine-tune started from the lora-chat template, its estimate shown before Start.
        page.goto(f"{service.url}/jobs/new?dataset={dataset['id']}&template=lora-chat")
        assert page.get_by_label("Job type").input_value() == "finetune"
        assert page.get_by_label("Method").input_value() == "lora"
        assert page.locator("#hp-learning_rate").input_value() == "0.0002"  # the template's, filled in
        assert page.locator("#hp-lora_alpha").input_value() == "32"
        page.locator("#hp-max_steps").fill("2")
        # the answer to the form as it is now: max_steps 2, beside an epoch's steps
        steps = re.compile(r"Steps\s*2 \(\d+ an epoch\)")
        expect(page.locator("#estimate-facts")).to_contain_text(steps, timeout=30_000)
        estimate = facts(page, "#estimate-facts")
        assert "GB on cpu (± 20 %)" in estimate["Peak memory"]
        assert estimate["Steps"].startswith("2 (")  # max_steps, beside an epoch's steps
        assert "examples an optimizer step" in estimate["Batch"]
        assert estimate["Time"].startswith("not known yet")  # no job has finished to measure by
        screenshots(page, "new-job-lora-chat")
        assert no_horizontal_scroll(page)
        key = page.locator("#new-job").get_attribute("data-idempotency-key")
        sent: list[str | None] = []
        page.on("request", lambda r: sent.append(r.headers.get("idempotency-key")) if r.method == "POST"
                and r.url.endswith("/v1/jobs") else None)
        lora = submit_and_see_the_result(page, service.url, "result-finetune")
        assert key and key.startswith("console-") and sent == [key]  # the rendered form's own key
        assert "→" in lora["Perplexity"] and lora["Cost"].startswith("$") and "at $3.6/h" in lora["Cost"]
        [lora_model] = client.list_models()

        # The same form for a contraction: its own fields, no hyperparameters, data as calibration text.
        page.goto(f"{service.url}/jobs/new?dataset={dataset['id']}")
        page.get_by_label("Start from a template").select_option("contraction")
        assert page.get_by_label("Job type").input_value() == "contract"
        assert page.locator("#hp-learning_rate").is_hidden() and page.get_by_label("Method").is_hidden()
        assert page.locator("#data-legend").inner_text().startswith("Calibration text")
        page.get_by_label("contraction ratio").fill("0.5")
        page.get_by_label("Calibration dataset").select_option(dataset["id"])
        expect(page.locator("#estimate-status")).to_contain_text("No estimate", timeout=30_000)
        screenshots(page, "new-job-contract")
        contract = submit_and_see_the_result(page, service.url, "result-contract")
        before, after = (int(n.replace(",", "")) for n in contract["Parameters"].split(" (")[0].split(" → "))
        assert after < before and contract["Channel importance"].startswith("activation")
        assert "Function preservation (KL)" in contract and contract["Cost"].startswith("$")
        assert contract["Calibration text"].startswith(f"calibration_dataset ({dataset['id']})")
        contract_job = client.get_job(page.url.rsplit("/", 1)[-1])
        assert contract_job["spec"]["calibration_dataset"] == {"id": dataset["id"]}
        assert contract_job["config"]["calibration"]["source_id"] == dataset["id"]

        # A merge of the LoRA model: a trained model picked as the adapter, no data asked for.
        page.goto(f"{service.url}/jobs/new")
        page.get_by_label("Job type").select_option("merge")
        assert page.locator("#data-fieldset").is_hidden()
        page.locator("#base_model").select_option(lora_model["id"])
        screenshots(page, "new-job-merge")
        merged = submit_and_see_the_result(page, service.url, "result-merge")
        assert float(merged["Max |Δlogit| (merged vs adapter)"].split(" ")[0]) < 1e-3
        assert "Perplexity" not in merged

        # Growth from the growth template, with its own knobs.
        page.goto(f"{service.url}/jobs/new?dataset={dataset['id']}")
        page.get_by_label("Start from a template").select_option("growth")
        assert page.get_by_label("Job type").input_value() == "train"
        page.get_by_label("depth factor").fill("2")
        page.get_by_label("cycles", exact=True).fill("1")
        page.get_by_label("steps per cycle").fill("2")
        screenshots(page, "new-job-train")
        grown = submit_and_see_the_result(page, service.url, "result-train")
        before, after = (int(n.replace(",", "")) for n in grown["Parameters"].split(" (")[0].split(" → "))
        assert after > before and float(grown["Function preservation (KL)"]) <= 1e-6
