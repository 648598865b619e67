"""The trajectories pages in a real headless Chromium against a real `tuneyard serve`: browse with a
filter, read a trajectory as a chat, count and build a dataset, and see auto-training's history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.e2e.console_browser import browser_context, needs_browser, no_horizontal_scroll, screenshots, sign_in
from tests.support.api import trajectory_body
from tests.support.service import Service
from tuneyard.client import find_api_key

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [needs_browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


def test_browse_build_and_see_the_auto_training_history(service: Service, tmp_path: Path) -> None:
    service.start_serve()
    key = find_api_key(service.data_dir)
    headers = {"Authorization": f"Bearer {key}"}
    template = {"base_model": "tiny-llama", "hyperparams": {"max_steps": 2}}
    configured = httpx.put(f"{service.url}/v1/auto-training", headers=headers, timeout=30,
                           json={"enabled": True, "threshold": 2, "cooldownHours": 0, "jobTemplate": template})
    assert configured.status_code == 200, configured.text
    with service.client() as client:
        done = client.ingest_trajectories([trajectory_body("qa-1", task="qa", calls=2),
                                           trajectory_body("qa-2", task="qa"), trajectory_body("ops-1", task="ops")])
    assert len(done["autoTraining"]) == 1
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        sign_in(page, service.url, key)
        page.get_by_role("link", name="Trajectories").click()
        page.get_by_label("Task").fill("qa")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(f"{service.url}/trajectories?task=qa*")
        ids = page.locator("table tbody tr td:first-child").all_inner_texts()
        assert sorted(ids) == ["qa-1", "qa-2"]
        screenshots(page, "trajectories")
        assert no_horizontal_scroll(page)

        page.get_by_role("link", name="qa-1").click()
        assert page.get_by_role("region", name="LLM call 2").locator("pre").all_inner_texts() == [
            "What is 1 plus 1?", "2."]
        screenshots(page, "trajectory")
        page.go_back()

        build(page)
        page.goto(f"{service.url}/auto-training")
        history = page.locator("table tbody tr")
        assert history.count() == 1 and "submitted" in history.inner_text()
        assert history.locator("a[href^='/jobs/job_']").count() == 1
        assert history.locator("a[href^='/datasets/ds_']").count() == 1
        screenshots(page, "auto-training")


def build(page: Page) -> None:
    box = page.get_by_role("region", name="Build a dataset")
    box.get_by_role("button", name="Count").click()
    status = box.locator("[data-build-status]")
    status.filter(has_text="trajectories").wait_for()
    assert status.inner_text() == "2 trajectories, 2 examples"  # qa-2 repeats qa-1's first call: one example
    box.get_by_label("Dataset name").fill("qa-from-the-console")
    box.get_by_role("button", name="Build dataset").click()
    page.wait_for_url("**/datasets/ds_*")
    assert "qa-from-the-console" in page.locator("h1").inner_text()
