/* New-job form: builds the API request from the form and submits it with the idempotency key the
   server put in this rendered form, so a double click or a retry makes one job, not two. */
"use strict";

function hyperparams(form) {
  const out = {};
  const method = form.elements.method.value;
  for (const input of form.querySelectorAll("[data-hyperparam]")) {
    if (input.value === "") continue;
    const owner = input.closest("[data-methods]");
    if (owner && !owner.dataset.methods.split(" ").includes(method)) continue;
    out[input.name] = input.tagName === "SELECT" ? input.value
      : (input.hasAttribute("data-integer") ? parseInt(input.value, 10) : parseFloat(input.value));
  }
  return out;
}

function jobRequest(form) {
  const body = { base_model: form.elements.base_model.value, method: form.elements.method.value,
                 hyperparams: hyperparams(form) };
  if (form.elements.dataset.value) body.datasets = [{ id: form.elements.dataset.value }];
  if (form.elements.name.value.trim()) body.name = form.elements.name.value.trim();
  if (form.elements.project_id.value) body.project_id = form.elements.project_id.value;
  return body;
}

function showProblems(box, error) {
  box.replaceChildren(el("p", { text: error.message }));
  if (error.problems.length) {
    box.append(el("ul", {}, ...error.problems.map((p) => el("li", { text: `${p.field}: ${p.message}` }))));
  }
  box.hidden = false;
  box.focus();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("new-job");
  const button = document.getElementById("submit-job");
  const errors = document.getElementById("new-job-errors");
  errors.tabIndex = -1;
  const showMethodFields = () => {  // a method's own fields show only while it is chosen
    const method = form.elements.method.value;
    for (const f of form.querySelectorAll("[data-methods]")) f.hidden = !f.dataset.methods.split(" ").includes(method);
  };
  form.elements.method.addEventListener("change", showMethodFields);
  showMethodFields();

  const zone = document.getElementById("inline-upload");
  const status = zone.querySelector("[data-upload-status]");
  dropzone(zone, document.getElementById("inline-file"), async (file) => {
    try {
      const dataset = await uploadDataset(file, "", (text) => { status.textContent = text; });
      const select = form.elements.dataset;
      select.append(el("option", { value: dataset.id, disabled: dataset.status !== "ready",
        text: `${dataset.name} · ${dataset.status}` }));
      if (dataset.status === "ready") { select.value = dataset.id; status.textContent = `${dataset.name} is ready and selected.`; }
      else status.textContent = `${dataset.name} is invalid: ${dataset.errors.slice(0, 3).map((e) => `line ${e.line}: ${e.message}`).join("; ")}`;
    } catch (error) { status.textContent = `Upload failed: ${error.message}`; }
  });

  let leaving = false;  // a second answer (same job, thanks to the key) must not restart the navigation
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    errors.hidden = true;
    try {
      const job = await api("POST", "/v1/jobs", { json: jobRequest(form),
        headers: { "Idempotency-Key": form.dataset.idempotencyKey } });
      if (!leaving) { leaving = true; location.assign(`/jobs/${job.id}`); }
    } catch (error) {
      showProblems(errors, error);
      button.disabled = false;
    }
  });
});
