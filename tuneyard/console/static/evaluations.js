/* A model's evaluations: the form queues one through POST /v1/models/{id}/evaluations (the API's own
   checks answer for its fields), and while any evaluation on the page is unfinished its status is
   polled; when one finishes the page is loaded again, so its figures are the server's own rendering. */
"use strict";

const EVALUATION_POLL_MS = 3000;
const SETTLED = ["completed", "failed", "cancelled", "stopped"];  // nothing changes until a user acts

document.addEventListener("DOMContentLoaded", () => {
  const section = document.getElementById("evaluations");
  const form = document.getElementById("evaluation-form");
  if (!section || !form) return;
  const status = document.getElementById("evaluation-status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      max_examples: Number(data.get("max_examples")),
      samples: Number(data.get("samples")),
      max_new_tokens: Number(data.get("max_new_tokens")),
    };
    const dataset = String(data.get("dataset") || "").trim();
    if (dataset) body.dataset = dataset;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const created = await api("POST", `/v1/models/${encodeURIComponent(section.dataset.model)}/evaluations`,
        { json: body });
      status.textContent = `Evaluation ${created.id} queued.`;
      location.reload();
    } catch (error) {
      status.textContent = `Failed: ${error.message}`;
      status.setAttribute("data-error", error.code || "");
      button.disabled = false;
    }
  });
  const unfinished = [...section.querySelectorAll("[data-unfinished]")].map((n) => n.dataset.unfinished);
  if (unfinished.length) setTimeout(() => poll(unfinished), EVALUATION_POLL_MS);
});

async function poll(ids) {
  try {
    const now = await Promise.all(ids.map((id) => api("GET", `/v1/evaluations/${encodeURIComponent(id)}`)));
    if (now.some((e) => SETTLED.includes(e.status))) {
      location.reload();
      return;
    }
  } catch (error) {
    toast(`Could not read the evaluation: ${error.message}`, true);
  }
  setTimeout(() => poll(ids), EVALUATION_POLL_MS);
}
