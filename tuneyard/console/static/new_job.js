/* New-job form: a job type (finetune, train, contract, merge) with its own fields, started from a
   template if one is chosen, the job's estimate (memory, time, cost, steps) shown before Start,
   and the request submitted with the idempotency key the server put in this rendered form, so a
   double click or a retry makes one job, not two. */
"use strict";

function inputValue(input) {
  if (input.tagName === "SELECT" || input.type !== "number") return input.value.trim();
  return input.hasAttribute("data-integer") ? parseInt(input.value, 10) : parseFloat(input.value);
}

function setPath(target, path, value) {  // "growth.depth_factor" → target.growth.depth_factor
  const keys = path.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) node = node[key] = node[key] || {};
  node[keys[keys.length - 1]] = value;
}

function chosenType(form) { return form.elements.type.value; }

function takesData(form) { return form.elements.type.selectedOptions[0].dataset.takesData === "yes"; }

function ownedByType(input, type) {
  const owner = input.closest("[data-only-type]");
  return !owner || owner.dataset.onlyType === type;
}

function hyperparams(form) {
  const out = {};
  const method = form.elements.method.value;
  for (const input of form.querySelectorAll("[data-hyperparam]")) {
    if (input.value === "") continue;
    const owner = input.closest("[data-methods]");
    if (owner && !owner.dataset.methods.split(" ").includes(method)) continue;
    out[input.name] = inputValue(input);
  }
  return out;
}

function jobRequest(form) {
  const type = chosenType(form);
  const body = { type, base_model: form.elements.base_model.value };
  if (type === "finetune") {
    body.method = form.elements.method.value;
    body.hyperparams = hyperparams(form);
  }
  for (const input of form.querySelectorAll("[data-type-field]")) {
    if (input.value.trim() === "" || !ownedByType(input, type)) continue;
    setPath(body, input.dataset.typeField, inputValue(input));
  }
  if (takesData(form) && form.elements.dataset.value) body.datasets = [{ id: form.elements.dataset.value }];
  if (form.elements.name.value.trim()) body.name = form.elements.name.value.trim();
  if (form.elements.project_id.value) body.project_id = form.elements.project_id.value;
  return body;
}

/* Show the chosen type's fields only, with its words for the model and the data. */
function showType(form) {
  const option = form.elements.type.selectedOptions[0];
  const type = option.value;
  for (const part of form.querySelectorAll("[data-only-type]")) part.hidden = part.dataset.onlyType !== type;
  for (const help of document.querySelectorAll("[data-for-type]")) help.hidden = help.dataset.forType !== type;
  document.getElementById("base_model-label").textContent = option.dataset.baseLabel;
  document.getElementById("data-fieldset").hidden = option.dataset.takesData !== "yes";
  document.getElementById("data-legend").textContent = option.dataset.dataLabel || "Training data";
  const method = form.elements.method.value;  // a method's own fields show only while it is chosen
  for (const f of form.querySelectorAll("[data-methods]")) f.hidden = !f.dataset.methods.split(" ").includes(method);
}

/* Fill the form from a template's partial spec: its type, method, data and every field it sets;
   the fields it does not set go back to their defaults. */
function applyTemplate(form, spec) {
  for (const input of form.querySelectorAll("[data-hyperparam], [data-type-field]")) input.value = "";
  const type = spec.type || "finetune";
  if ([...form.elements.type.options].some((o) => o.value === type)) form.elements.type.value = type;
  if (spec.method) form.elements.method.value = spec.method;
  if (spec.base_model) form.elements.base_model.value = spec.base_model;
  const dataset = (spec.datasets || []).find((d) => d && d.id);
  if (dataset) form.elements.dataset.value = dataset.id;
  const fill = (path, value) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) fill(`${path}.${key}`, inner);
      return;
    }
    const name = path.replace(/^hyperparams\./, "");
    const input = (type === "finetune" && path.startsWith("hyperparams."))
      ? form.querySelector(`[data-hyperparam][name="${CSS.escape(name)}"]`)
      : form.querySelector(`[data-only-type="${CSS.escape(type)}"] [data-type-field="${CSS.escape(path)}"]`);
    if (input) input.value = String(value);
  };
  for (const [key, value] of Object.entries(spec)) {
    if (!["type", "method", "base_model", "datasets"].includes(key)) fill(key, value);
  }
  showType(form);
}

function showProblems(box, error) {
  box.replaceChildren(el("p", { text: error.message }));
  if (error.problems.length) {
    box.append(el("ul", {}, ...error.problems.map((p) => el("li", { text: `${p.field}: ${p.message}` }))));
  }
  box.hidden = false;
  box.focus();
}

function seconds(s) { return s >= 120 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(1)} s`; }

/* The estimate's answer as facts: memory with its band, time and cost (a band once a worker of this
   device has finished a job to measure it by), an epoch's steps and what batch_size means here. */
function estimateFacts(answer) {
  const memory = answer.memory;
  const facts = [["Peak memory", `${(memory.peak_bytes / 1e9).toFixed(3)} GB on ${memory.device} (± ${memory.band_pct} %)`]];
  const time = answer.time;
  facts.push(["Time", time.seconds === null ? `not known yet: ${time.source}`
    : `${seconds(time.seconds)} (${seconds(time.low)} – ${seconds(time.high)})`]);
  const cost = answer.cost;
  facts.push(["Cost", cost.usd === null ? `$${cost.price_per_device_hour} per device-hour × the time, once known`
    : `$${cost.usd.toFixed(4)} ($${cost.low.toFixed(4)} – $${cost.high.toFixed(4)}) at $${cost.price_per_device_hour}/h`]);
  const run = answer.run;
  if (run.steps !== null) {
    facts.push(["Steps", run.steps_per_epoch ? `${run.steps} (${run.steps_per_epoch} an epoch)` : String(run.steps)]);
  }
  facts.push(["Batch", answer.batch.meaning]);
  return facts;
}

function estimator(form) {
  const status = document.getElementById("estimate-status");
  const list = document.getElementById("estimate-facts");
  let asked = 0;
  let timer = null;
  const run = async () => {
    const mine = ++asked;  // only the newest question's answer is shown
    status.textContent = "Estimating…";
    try {
      const answer = await api("POST", "/v1/estimate", { json: jobRequest(form) });
      if (mine !== asked) return;
      list.replaceChildren(...estimateFacts(answer).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
      list.hidden = false;
      status.textContent = `For ${answer.type} of ${answer.base_model} (${(answer.model_params / 1e6).toFixed(2)} M parameters).`;
    } catch (error) {
      if (mine !== asked) return;
      list.hidden = true;
      const why = error.problems.length ? error.problems.map((p) => `${p.field}: ${p.message}`).join("; ") : error.message;
      status.textContent = `No estimate: ${why}`;
    }
  };
  return () => { clearTimeout(timer); timer = setTimeout(run, 400); };
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("new-job");
  const button = document.getElementById("submit-job");
  const errors = document.getElementById("new-job-errors");
  errors.tabIndex = -1;
  const estimate = estimator(form);
  form.elements.type.addEventListener("change", () => showType(form));
  form.elements.method.addEventListener("change", () => showType(form));
  const template = form.elements.template;
  template.addEventListener("change", () => applyTemplate(form, JSON.parse(template.selectedOptions[0].dataset.spec)));
  if (template.value) applyTemplate(form, JSON.parse(template.selectedOptions[0].dataset.spec));
  else showType(form);
  form.addEventListener("input", estimate);
  form.addEventListener("change", estimate);
  estimate();

  const zone = document.getElementById("inline-upload");
  const status = zone.querySelector("[data-upload-status]");
  dropzone(zone, document.getElementById("inline-file"), async (file) => {
    try {
      const dataset = await uploadDataset(file, "", (text) => { status.textContent = text; });
      const select = form.elements.dataset;
      for (const picker of [select, document.getElementById("calibration_dataset")]) {
        picker.append(el("option", { value: dataset.id, disabled: dataset.status !== "ready",
          text: `${dataset.name} · ${dataset.status}` }));
      }
      if (dataset.status === "ready") { select.value = dataset.id; status.textContent = `${dataset.name} is ready and selected.`; estimate(); }
      else status.textContent = `${dataset.name} is invalid: ${dataset.errors.slice(0, 3).map((e) => `line ${e.line}: ${e.message}`).join("; ")}`;
    } catch (error) { status.textContent = `Upload failed: ${error.message}`; }
  });

  // Not form.dataset: a form's named controls shadow its properties, and the form has a "dataset"
  // select, so form.dataset.idempotencyKey was that select's (undefined) and every job sent "undefined".
  const idempotencyKey = form.getAttribute("data-idempotency-key");
  let leaving = false;  // a second answer (same job, thanks to the key) must not restart the navigation
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    errors.hidden = true;
    try {
      const job = await api("POST", "/v1/jobs", { json: jobRequest(form),
        headers: { "Idempotency-Key": idempotencyKey } });
      if (!leaving) { leaving = true; location.assign(`/jobs/${job.id}`); }
    } catch (error) {
      showProblems(errors, error);
      button.disabled = false;
    }
  });
});
