"""The jobs list's live refresh (console.js) under Node, its DOM and fetch stubbed: each poll sends the
last answer's ETag as If-None-Match, and a 304 leaves the rows as they are. No browser is needed (the
browser tests, tests/e2e, skip where Chromium is missing); Node is, and the test skips without it."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tuneyard.console.views import STATIC_DIR

NODE = shutil.which("node")

# Three polls: a 200 with an ETag, a 304 (nothing moved), a 200 with a new ETag and the job running.
HARNESS = r"""
const vm = require("vm");
const fs = require("fs");
const sent = [], updates = [];
let tick = null, ready = null;
const answers = [
  { status: 200, etag: 'W/"l-1"', body: { data: [{ id: "job_a", status: "queued" }] } },
  { status: 304, etag: 'W/"l-1"', body: null },
  { status: 200, etag: 'W/"l-2"', body: { data: [{ id: "job_a", status: "running" }] } },
];
const row = { dataset: { job: "job_a" }, querySelector: () => ({ dataset: {} }) };
const list = { dataset: { live: "/console/jobs.json" }, querySelectorAll: () => [row], querySelector: () => row };
const context = {
  document: { querySelector: () => null, getElementById: () => list,
              addEventListener: (_name, handler) => { ready = handler; } },
  CSS: { escape: (s) => s }, location: { assign: () => {} }, console,
  setInterval: (handler) => { tick = handler; }, setTimeout, clearTimeout,
  fetch: async (path, init) => {
    sent.push({ path, inm: (init.headers || {})["If-None-Match"] || null });
    const a = answers.shift();
    return { status: a.status, ok: a.status === 200, headers: { get: () => a.etag },
             text: async () => (a.body ? JSON.stringify(a.body) : "") };
  },
};
vm.createContext(context);
vm.runInContext(fs.readFileSync(process.argv[process.argv.length - 1], "utf8") +
  "\nupdateJobRow = (r, job) => { globalThis.updated.push(job.status); };", context);
context.updated = updates;
(async () => {
  ready();
  for (let i = 0; i < 3; i++) { await tick(); }
  console.log(JSON.stringify({ sent, updates }));
})();
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed here")
def test_the_jobs_list_polls_with_its_last_etag_and_leaves_rows_alone_on_304() -> None:
    assert NODE is not None
    ran = subprocess.run([NODE, "-e", HARNESS, "--", str(STATIC_DIR / "console.js")],
                         capture_output=True, text=True, timeout=30, check=True)
    seen = json.loads(ran.stdout)
    assert [s["inm"] for s in seen["sent"]] == [None, 'W/"l-1"', 'W/"l-1"']
    assert all(s["path"] == "/console/jobs.json?ids=job_a" for s in seen["sent"])
    assert seen["updates"] == ["queued", "running"]  # nothing redrawn for the 304
