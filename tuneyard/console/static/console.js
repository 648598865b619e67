/* The console's shared helpers: API calls with the session's CSRF token, messages, uploads,
   and the jobs list's live refresh. Plain JS, no build step. */
"use strict";

const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content || "";

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code;
    this.problems = (err.details && err.details.problems) || [];
  }
}

/* Calls the /v1 API as the signed-in user: the session cookie goes along (same origin) and the
   server turns it into the user's key; writes carry the CSRF token the page was rendered with. */
async function api(method, path, { json, form, headers } = {}) {
  const init = { method, credentials: "same-origin", headers: { ...(headers || {}) } };
  if (method !== "GET") init.headers["X-CSRF-Token"] = csrfToken;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  const response = await fetch(path, init);
  if (response.status === 401) { location.assign(`/sign-in?next=${encodeURIComponent(location.pathname)}`); }
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/* A GET that sends `etag` back as If-None-Match: null when the answer is unchanged (304), else
   { body, etag }. The API's job reads answer 304 from the job's row alone. */
async function apiIfChanged(path, etag) {
  const headers = etag ? { "If-None-Match": etag } : {};
  const response = await fetch(path, { credentials: "same-origin", headers });
  if (response.status === 304) return null;
  if (response.status === 401) { location.assign(`/sign-in?next=${encodeURIComponent(location.pathname)}`); }
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, body);
  return { body, etag: response.headers.get("ETag") };
}

function toast(message, isError = false) {
  const box = document.getElementById("toast");
  if (!box) return;
  box.textContent = message;
  box.className = isError ? "show error" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.className = ""; }, 6000);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value; else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

/* Upload one file and make a dataset of it; resolves to the dataset once validation has a verdict. */
async function uploadDataset(file, name, report) {
  const form = new FormData();
  form.append("file", file);
  report(`Uploading ${file.name}…`);
  const uploaded = await api("POST", "/v1/files", { form });
  report("Validating…");
  let dataset = await api("POST", "/v1/datasets", { json: { name: name || datasetName(file.name), file_ids: [uploaded.id] } });
  while (dataset.status === "validating") {
    await new Promise((r) => setTimeout(r, 1000));
    dataset = await api("GET", `/v1/datasets/${dataset.id}`);
  }
  return dataset;
}

function datasetName(filename) {
  const stem = filename.replace(/\.[^.]+$/, "");
  return `${stem}-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "")}`;
}

/* A drop target: files dropped on `zone` (or chosen with its file input) go to `onFile`. */
function dropzone(zone, input, onFile) {
  const over = (on) => (event) => { event.preventDefault(); zone.classList.toggle("over", on); };
  zone.addEventListener("dragenter", over(true));
  zone.addEventListener("dragover", over(true));
  zone.addEventListener("dragleave", over(false));
  zone.addEventListener("drop", (event) => {
    over(false)(event);
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) onFile(file);
  });
  input.addEventListener("change", () => { if (input.files[0]) onFile(input.files[0]); });
}

/* The jobs list: status, progress and queue position follow the jobs without reloading. Each poll
   sends the last answer's ETag: while none of the rows moved the server answers 304 from the jobs'
   revisions alone, and the rows are left as they are. (A fetch that sets If-None-Match itself is
   not answered from the browser's cache: the 304 reaches this script as it is, per the Fetch spec.) */
function liveJobList(list) {
  const ids = [...list.querySelectorAll("[data-job]")].map((row) => row.dataset.job);
  if (!ids.length) return;
  const query = ids.map((id) => `ids=${encodeURIComponent(id)}`).join("&");
  let etag = null;
  const refresh = async () => {
    try {
      const changed = await apiIfChanged(`${list.dataset.live}?${query}`, etag);
      if (!changed) return;
      etag = changed.etag;
      for (const job of changed.body.data) {
        updateJobRow(list.querySelector(`[data-job="${CSS.escape(job.id)}"]`), job);
      }
    } catch (error) { /* the next round tries again; a dropped network is not worth a message */ }
  };
  setInterval(refresh, 2000);
}

function updateJobRow(row, job) {
  if (!row) return;
  const field = (name) => row.querySelector(`[data-field="${name}"]`);
  field("status").textContent = job.status;
  field("status").dataset.status = job.status;
  field("queue").textContent = (job.queue_position ? `#${job.queue_position} in queue` : "")
    + (job.waiting ? ` · ${job.waiting}` : "");
  field("cost").textContent = typeof job.cost_usd === "number" ? `$${job.cost_usd.toFixed(4)}` : "";
  const bar = field("progress");
  bar.hidden = job.percent === null || job.percent === undefined;
  bar.value = job.percent || 0;
  const loss = job.loss === null || job.loss === undefined ? "" : ` · loss ${job.loss.toFixed(4)}`;
  field("steps").textContent = job.step ? `step ${job.step}/${job.total_steps}${loss}` : "";
}

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("jobs");
  if (list) liveJobList(list);
});
