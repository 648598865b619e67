"""The web console in a real headless Chromium against a real `tuneyard serve` on loopback.

Every page is photographed at 1280 and 390 px into test-artifacts/console/.
"""

from __future__ import annotations

import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.console_browser import browser_context, needs_browser, no_horizontal_scroll, screenshots, sign_in
from tests.support.runs import REPO
from tests.support.service import Service
from tuneyard.client import TuneyardClient, find_api_key

if TYPE_CHECKING:  # the tests skip, rather than fail to import, where playwright is missing
    from playwright.sync_api import Page

pytestmark = [needs_browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

EXAMPLES = REPO / "examples" / "tiny-chat.jsonl"
# Long enough that the Stop click lands mid-run even on a quiet machine (a step takes ~0.1 s).
TRAINING = {"max_steps": "150", "save_steps": "2", "eval_steps": "50", "eval_split": "0.1", "batch_size": "8",
            "max_seq_length": "128", "learning_rate": "0.001", "seed": "3"}
SLOW = 300_000  # ms: training on two busy cores can be slow; the test waits on what it sees, not on time


def test_a_wrong_key_is_refused_and_signing_out_ends_the_session(service: Service, tmp_path: Path) -> None:
    service.start_serve()
    key = find_api_key(service.data_dir)
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(f"{service.url}/jobs")
        assert page.url.startswith(f"{service.url}/sign-in")
        page.get_by_label("API key").fill("ty_not-a-key")
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("alert").inner_text() == "That API key is unknown or revoked."
        screenshots(page, "sign-in-refused")

        sign_in(page, service.url, key)
        assert key not in page.url
        assert "tuneyard_session" not in page.evaluate("document.cookie")  # httpOnly: scripts cannot read it
        [cookie] = [c for c in context.cookies() if c["name"] == "tuneyard_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and key not in cookie["value"]
        # The page's own requests are the user's; a write without the page's CSRF token is not.
        status = "(init) => fetch('/v1/jobs/job_x/stop', init).then((r) => r.status)"
        assert page.evaluate(status, {"method": "POST"}) == 403
        token = page.evaluate("document.querySelector('meta[name=csrf-token]').content")
        assert page.evaluate(status, {"method": "POST", "headers": {"X-CSRF-Token": token}}) == 404
        assert page.evaluate("fetch('/v1/stats').then((r) => r.status)") == 200
        screenshots(page, "jobs-empty")

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{service.url}/sign-in")
        page.goto(f"{service.url}/models")
        assert page.url.startswith(f"{service.url}/sign-in")
        assert page.evaluate("fetch('/v1/stats').then((r) => r.status)") == 401


def test_a_malformed_dataset_shows_its_line_numbered_errors(service: Service, tmp_path: Path) -> None:
    service.start_serve()
    bad = tmp_path / "broken.jsonl"
    good = EXAMPLES.read_text().splitlines()[0]
    bad.write_text(f'{good}\n{{"messages": [\n{good}\n{{"messages": [{{"role": "user", "content": "hi"}}]}}\n')
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        sign_in(page, service.url, find_api_key(service.data_dir))
        page.goto(f"{service.url}/datasets")
        page.get_by_label("Dataset name").fill("broken-chats")
        page.get_by_label("File", exact=True).set_input_files(bad)
        page.wait_for_url(f"{service.url}/datasets/ds_*")
        assert page.locator("#dataset-status").inner_text() == "invalid"
        rows = page.locator("#dataset-errors tbody tr")
        lines = [int(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(rows.count())]
        assert lines == [2, 4], page.locator("#dataset-errors").inner_text()
        assert "broken.jsonl" in rows.nth(0).inner_text()
        screenshots(page, "dataset-invalid")
        page.goto(f"{service.url}/datasets")
        assert "broken-chats" in page.locator("table").inner_text()
        screenshots(page, "datasets")


def test_a_job_that_fails_while_watched_shows_the_runners_words_and_each_bad_line(
    service: Service, tmp_path: Path
) -> None:
    """The dataset's file is damaged on disk after it was validated; the job page, open while the
    job waits for a worker, reads nothing but its stream meanwhile, shows the runner's message and
    the offending lines once it fails (the worker, another process, wakes the stream), and shows them
    again when loaded afresh."""
    service.start_serve(workers=0)
    client = service.client()
    upload = client.upload_file(EXAMPLES)
    dataset = client.wait_dataset(client.create_dataset("soon-damaged", [upload["id"]])["id"])
    [stored] = (service.data_dir / "files").glob(f"{upload['id']}*")
    lines = stored.read_text().splitlines()
    lines[1], lines[4] = "{not json", '{"messages": "nope"}'
    stored.write_text("\n".join(lines) + "\n")
    job = client.create_job({"base_model": "tiny-llama", "datasets": [{"id": dataset["id"]}],
                             "hyperparams": {"max_steps": 2}})
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        sign_in(page, service.url, find_api_key(service.data_dir))
        job_reads: list[str] = []
        job_url = f"{service.url}/v1/jobs/{job['id']}"
        page.on("request", lambda request: job_reads.append(request.method) if request.url == job_url else None)
        page.goto(f"{service.url}/jobs/{job['id']}")
        assert page.locator("#job-error").is_hidden()
        wait_for_page(page, "document.getElementById('stream-state').textContent === 'live'", 30_000)
        deadline = time.monotonic() + 30
        while len(job_reads) < 2:  # the page's first read, and the one the stream's first items ask for
            assert time.monotonic() < deadline, job_reads
            page.wait_for_timeout(100)
        job_reads.clear()
        page.wait_for_timeout(3000)
        assert job_reads == []  # the job waits and its stream is open: nothing to poll
        service.start_worker()
        page.wait_for_selector('#status[data-status="failed"]', timeout=SLOW)
        page.wait_for_selector("#job-error:not([hidden])")
        message = page.locator("#job-error-message").inner_text()
        # The runner names the field to change, and the file as it was uploaded, not where the server keeps it.
        first = f"datasets: 2 invalid line(s) in the data; first, tiny-chat.jsonl ({upload['id']}) line 2: invalid JSON"
        assert message.startswith(first) and str(service.data_dir) not in page.content()
        shown = page.locator("#job-error-details li").all_inner_texts()
        assert [line.split(": ")[0].rsplit(" ", 1)[-1] for line in shown] == ["2", "5"], shown
        screenshots(page, "job-failed")
        page.reload()
        assert page.locator("#job-error-details li").all_inner_texts() == shown
        assert page.locator("#job-error-message").inner_text() == message


def test_train_from_the_browser_stop_resume_complete_download(service: Service, tmp_path: Path) -> None:
    service.start_serve()
    client = service.client()
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # every confirmation is answered yes
        sign_in(page, service.url, find_api_key(service.data_dir))
        dataset_id = upload_dataset(page, service.url)
        job_id = submit_job_twice(page, service.url, dataset_id)
        assert [j["id"] for j in client.list_jobs()["data"]] == [job_id]  # one key per form: one job

        watch_it_train(page)
        # Past four checkpoints (every 2 steps) before stopping, so the runner has pruned some (it keeps 3):
        # a stop at step 3 on a busy host left only two and nothing pruned to check.
        wait_for_page(page, "Number(document.querySelector('[data-count=loss]').textContent) >= 8", SLOW)
        page.get_by_role("button", name="Stop", exact=True).click()
        page.wait_for_selector('#status[data-status="stopped"]', timeout=SLOW)
        from playwright.sync_api import expect  # here: the module imports where playwright is missing

        step = client.get_job(job_id)["last_checkpoint_step"]
        assert step >= 2
        checkpoints = page.locator("#checkpoints")
        expect(checkpoints.get_by_role("button", name=f"Resume from step {step}", exact=True)).to_be_enabled()
        # Listed are exactly the checkpoints on disk: those the runner pruned (save_total_limit) are gone.
        on_disk = sorted(int(p.name.split("-")[1]) for p in (service.data_dir / "runs" / job_id / "checkpoints")
                         .glob("step-*"))
        assert [c["step"] for c in client.checkpoints(job_id)] == on_disk and len(on_disk) == 3
        expect(checkpoints.get_by_role("button")).to_have_count(3)
        page.get_by_role("button", name="Resume", exact=True).click()
        page.wait_for_selector('#status[data-status="completed"]', timeout=SLOW)

        see_the_result_and_download(page, tmp_path)
        nothing_missing_nothing_twice(page, client, job_id)
        screenshots(page, "job-completed")
        the_lists_show_it(page, service.url, job_id, client)


def wait_for_page(page: Page, expression: str, timeout_ms: float) -> None:
    """Poll `expression` in the page until it is true. Not page.wait_for_function: its polling evaluates
    the expression with eval inside the page, which the console's CSP (no 'unsafe-eval') refuses."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout_ms / 1000:.0f} s: {expression}")
        page.wait_for_timeout(100)


def upload_dataset(page: Page, base_url: str) -> str:
    page.goto(f"{base_url}/datasets")
    # Drag-and-drop: a drop event carrying the file, as a browser makes it for a dragged file.
    handle = page.evaluate_handle(
        """(text) => { const data = new DataTransfer();
                       data.items.add(new File([text], "tiny-chat.jsonl", { type: "application/jsonl" }));
                       return data; }""", EXAMPLES.read_text())
    page.dispatch_event("#dataset-upload", "drop", {"dataTransfer": handle})
    page.wait_for_url(f"{base_url}/datasets/ds_*")
    assert page.locator("#dataset-status").inner_text() == "ready"
    marked = page.locator("mark.loss")
    assert marked.count() > 0 and "1 plus 2 is 3.<|im_end|>" in marked.all_inner_texts()
    assert "What is 1 plus 2?" not in " ".join(marked.all_inner_texts())  # prompts carry no loss
    screenshots(page, "dataset-ready")
    return page.url.rsplit("/", 1)[1]


def submit_job_twice(page: Page, base_url: str, dataset_id: str) -> str:
    page.goto(f"{base_url}/jobs/new?dataset={dataset_id}")
    assert page.get_by_label("Dataset", exact=True).input_value() == dataset_id
    # the schema's default (exact: a contraction's "heal learning rate" is on the form too, hidden)
    assert page.get_by_label("learning rate", exact=True).get_attribute("placeholder") == "0.0002"
    page.locator("#name").fill("console-e2e")  # by id: "output name" (a growth field, hidden) matches "Name" too
    for name, value in TRAINING.items():
        page.locator(f"#hp-{name}").fill(value)
    screenshots(page, "new-job")
    assert no_horizontal_scroll(page)
    # A double submit: two requests leave before the first answer comes back.
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith("/v1/jobs") else None)
    page.evaluate("const f = document.getElementById('new-job'); f.requestSubmit(); f.requestSubmit();")
    page.wait_for_url(f"{base_url}/jobs/job_*")
    assert len(posts) == 2
    return page.url.rsplit("/", 1)[1]


def watch_it_train(page: Page) -> None:
    wait_for_page(page, "Number(document.querySelector('[data-count=loss]').textContent) >= 2", SLOW)
    wait_for_page(page, "document.getElementById('log').textContent.includes('step 1/')", SLOW)
    assert page.locator("#chart-loss canvas").count() == 1
    # The log follows: its newest line is scrolled into view.
    assert page.evaluate("(l => l.scrollTop + l.clientHeight >= l.scrollHeight - 2)(document.getElementById('log'))")
    screenshots(page, "job-running")


def see_the_result_and_download(page: Page, tmp_path: Path) -> None:
    card = page.locator("#result")
    card.wait_for(state="visible", timeout=30_000)
    text = card.inner_text()
    assert "Perplexity" in text and "→" in text and "Parameters" in text and "Compute time" in text
    with page.expect_download() as download:
        page.get_by_role("link", name="Download model (.tar.gz)").click()
    archive = tmp_path / "model.tar.gz"
    download.value.save_as(archive)
    with tarfile.open(archive) as tar:
        assert any(n.endswith("adapter_model.safetensors") for n in tar.getnames())


def nothing_missing_nothing_twice(page: Page, client: TuneyardClient, job_id: str) -> None:
    """Stopping ended the stream and resuming opened it again from its last position: the page
    shows every point, line and event exactly once."""
    train = [m for m in client.metrics(job_id) if m["kind"] == "train"]
    logs, events = client.logs(job_id), client.events(job_id)
    wait_for_page(page, f"document.getElementById('events').children.length >= {len(events)}", 30_000)
    wait_for_page(page, f"Number(document.querySelector('[data-count=loss]').textContent) >= {len(train)}", 30_000)
    shown_lines = page.evaluate("document.getElementById('log').textContent.trimEnd().split('\\n').length")
    assert shown_lines == len(logs)
    assert page.locator("#events li").count() == len(events)
    assert page.locator("[data-count=loss]").inner_text() == str(len(train))


def the_lists_show_it(page: Page, base_url: str, job_id: str, client: TuneyardClient) -> None:
    page.goto(f"{base_url}/jobs")
    row = page.locator(f'[data-job="{job_id}"]')
    assert row.locator('[data-field="status"]').inner_text() == "completed"
    screenshots(page, "jobs")
    assert no_horizontal_scroll(page)
    model_id = client.get_job(job_id)["output_model_id"]
    page.goto(f"{base_url}/models")
    assert model_id in page.locator("#trained-h + table").inner_text()
    screenshots(page, "models")
    assert no_horizontal_scroll(page)
