/* One job, live: status and progress, charts, log tail, events, checkpoints, artifacts, result,
   and the user's actions. The live part reads the API's SSE stream through fetch (so it can send
   Last-Event-ID itself): after a dropped network, a closed stream or a resume, it reconnects from
   the last position it saw, and every item is also checked against that position, so nothing is
   shown twice and nothing is skipped. The job itself is read again only when the stream says it
   changed (an event or a metric point; at most every 2 s), and polled, with If-None-Match, only
   while no stream is open: while it reconnects, or once the job rests and its stream has ended. */
"use strict";

const RESTING = new Set(["completed", "failed", "cancelled", "stopped"]);
const ACTIONS = {  // which statuses each button applies to (the API has the final word)
  stop: new Set(["queued", "starting", "running"]),
  resume: new Set(["stopped", "failed"]),
  cancel: new Set(["queued", "starting", "running", "stopping", "stopped", "finalizing"]),
  delete: new Set(["completed", "failed", "cancelled", "stopped"]),
};
const MAX_LOG_LINES = 5000;
const REREAD_MS = 2000;  // the least time between two reads of the job the stream asked for (as the old poll)
const UNSTREAMED_POLL_MS = 10000;  // how often the job is read while no stream is open

class JobPage {
  constructor(root) {
    this.id = root.dataset.jobId;
    this.base = `/v1/jobs/${encodeURIComponent(this.id)}`;
    this.status = root.dataset.status;
    this.position = { event: 0, log: 0, train: -1, eval: -1 };
    this.lastId = null;
    this.streaming = false;
    this.live = false;  // a stream's answer is being read: it tells every change, no poll is needed
    this.etag = null;
    this.lastRead = 0;
    this.rereading = null;
    this.reading = false;
    this.readAgain = false;
    this.charts = new JobCharts();
    this.lastCheckpointStep = undefined;
  }

  start() {
    document.querySelectorAll("[data-action]").forEach((b) => b.addEventListener("click", () => this.act(b)));
    this.showStatus({ status: this.status });
    this.refresh();
    this.stream();
    setInterval(() => { if (!this.live) this.refresh(); }, UNSTREAMED_POLL_MS);
  }

  /* The stream says the job moved: read it once, soon, however many items say so. */
  changed() {
    if (this.rereading) return;
    const wait = Math.max(0, this.lastRead + REREAD_MS - Date.now());
    this.rereading = setTimeout(() => { this.rereading = null; this.refresh(); }, wait);
  }

  async stream() {
    if (this.streaming) return;
    this.streaming = true;
    let delay = 500;
    while (this.streaming) {
      try {
        const ended = await this.readStream();
        delay = 500;
        if (ended) { this.streaming = false; this.say(""); return; }
      } catch (error) {
        this.say("connection lost, reconnecting…");
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 8000);
    }
  }

  /* Reads the stream until it ends (true) or breaks (throws). */
  async readStream() {
    const headers = { Accept: "text/event-stream" };
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    const response = await fetch(`${this.base}/stream`, { headers, credentials: "same-origin" });
    if (!response.ok) throw new Error(`stream HTTP ${response.status}`);
    this.say("live");
    this.live = true;
    try {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error("stream closed");
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const message = parseSse(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (message && this.apply(message)) { reader.cancel().catch(() => {}); return true; }
        }
      }
    } finally {
      this.live = false;
    }
  }

  /* One SSE message; returns true for the stream's end. */
  apply(message) {
    if (message.event === "end") { this.changed(); return true; }
    const data = JSON.parse(message.data || "{}");
    const p = this.position;
    if (message.event !== "log") this.changed();  // a status, progress or loss to show; a log line is not
    if (message.event === "event" && data.seq > p.event) { p.event = data.seq; this.addEvent(data); }
    else if (message.event === "log" && data.seq > p.log) { p.log = data.seq; this.addLog(data); }
    else if (message.event === "metric" && data.step > p[data.kind === "eval" ? "eval" : "train"]) {
      p[data.kind === "eval" ? "eval" : "train"] = data.step;
      this.charts.add(data);
    }
    if (message.id) this.lastId = message.id;
    return false;
  }

  addLog(line) {
    const log = document.getElementById("log");
    log.append(document.createTextNode(`${line.ts.slice(11, 19)} ${line.level.padEnd(5)} ${line.message}\n`));
    while (log.childNodes.length > MAX_LOG_LINES) log.firstChild.remove();
    if (document.getElementById("follow-log").checked) log.scrollTop = log.scrollHeight;
  }

  addEvent(event) {
    const when = el("time", { datetime: event.created_at, text: event.created_at.slice(11, 19) });
    document.getElementById("events").append(el("li", {}, when, " ", el("strong", { text: event.type }), ` ${event.message}`));
    if (event.type === "checkpoint") this.loadCheckpoints();
  }

  /* Reads the job, one read at a time: a read asked for during another follows it, so an older
     answer never lands after a newer one. */
  async refresh() {
    if (this.reading) { this.readAgain = true; return; }
    this.reading = true;
    try {
      do { this.readAgain = false; await this.readJob(); } while (this.readAgain);
    } finally {
      this.reading = false;
    }
  }

  async readJob() {
    this.lastRead = Date.now();
    try {
      const answer = await apiIfChanged(this.base, this.etag);
      if (!answer) return;  // 304: as shown
      const job = answer.body;
      this.etag = answer.etag;
      const was = this.status;
      this.showStatus(job);
      if (job.last_checkpoint_step !== this.lastCheckpointStep) {
        this.lastCheckpointStep = job.last_checkpoint_step;
        this.loadCheckpoints();
      }
      if (job.status !== was || this.artifactsShown === undefined) { this.loadArtifacts(); this.artifactsShown = true; }
      if (job.status === "completed") this.loadResult();
      if (!RESTING.has(job.status)) this.stream();  // a resumed job streams again from where it left off
    } catch (error) {
      if (error.status === 404) location.assign("/jobs");
    }
  }

  showStatus(job) {
    this.status = job.status;
    const badge = document.getElementById("status");
    badge.textContent = job.status;
    badge.dataset.status = job.status;
    if (job.progress) {
      document.getElementById("progress").value = job.progress.percent || 0;
      const loss = typeof job.loss === "number" ? ` · loss ${job.loss.toFixed(4)}` : "";
      const eta = job.progress.eta_s && !RESTING.has(job.status) ? ` · ETA ${Math.round(job.progress.eta_s)} s` : "";
      document.getElementById("progress-text").textContent =
        job.progress.step ? `step ${job.progress.step}/${job.progress.total_steps}${loss}${eta}` : "";
    }
    for (const button of document.querySelectorAll("[data-action]")) {
      button.disabled = !ACTIONS[button.dataset.action].has(job.status);
    }
    if ("error" in job) this.showError(job.error);
  }

  /* The runner's own words and each offending field or line, as the page first rendered them
     (tuneyard/problems.py words them the same way). */
  showError(error) {
    const box = document.getElementById("job-error");
    box.hidden = !error;
    if (!error) return;
    document.getElementById("job-error-message").textContent = error.message || "no reason recorded";
    const details = error.details || {};
    const lines = [...(details.problems || []), ...(details.errors || [])].map((p) =>
      "field" in p ? `${p.field}: ${p.message}` : `${[p.file, p.line !== undefined ? `line ${p.line}` : ""].filter(Boolean).join(" ")}: ${p.message}`);
    const shown = lines.length > 10 ? [...lines.slice(0, 10), `… and ${lines.length - 10} more`] : lines;
    document.getElementById("job-error-details").replaceChildren(...shown.map((text) => el("li", { text })));
  }

  async act(button, body) {
    if (!window.confirm(button.dataset.confirm)) return;
    const action = button.dataset.action;
    try {
      if (action === "delete") {
        await api("DELETE", this.base);
        location.assign("/jobs");
        return;
      }
      const job = await api("POST", `${this.base}/${action}`, body ? { json: body } : {});
      this.showStatus(job);
      toast(`${action}: the job is ${job.status}`);
      this.stream();
    } catch (error) {
      toast(`${action} failed: ${error.message}`, true);
    }
  }

  async loadCheckpoints() {
    const body = await api("GET", `${this.base}/checkpoints`);
    const rows = body.data.map((c) => {
      const resume = el("button", { type: "button", "data-action": "resume", "data-checkpoint": c.id,
        "data-confirm": `Resume this job from step ${c.step}?`, "aria-label": `Resume from step ${c.step}`,
        text: "Resume from here", disabled: !ACTIONS.resume.has(this.status) });
      resume.addEventListener("click", () => this.act(resume, { checkpoint: c.id }));
      const download = el("a", { href: `/console/jobs/${encodeURIComponent(this.id)}/checkpoints/${encodeURIComponent(c.id)}/download`,
        download: true, "aria-label": `Download checkpoint at step ${c.step}`, text: "Download" });
      const branch = el("a", { href: `/jobs/new?base_model=${encodeURIComponent(c.id)}`, text: "Fine-tune from it" });
      const loss = typeof c.metrics.loss === "number" ? c.metrics.loss.toFixed(4) : "—";
      return el("tr", {}, el("td", { class: "num", "data-label": "Step", text: String(c.step) }), el("td", { class: "num", "data-label": "Loss", text: loss }),
        el("td", { class: "row-actions" }, resume, " ", download, " ", branch));
    });
    const tbody = document.getElementById("checkpoints");
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "3", class: "muted", text: "none yet" }))]));
  }

  async loadArtifacts() {
    const body = await api("GET", `${this.base}/artifacts`);
    const items = body.data.filter((a) => !a.path.startsWith("checkpoints/")).map((a) => el("li", {},
      el("a", { href: `${this.base}/artifacts/${a.path.split("/").map(encodeURIComponent).join("/")}`, download: true, text: a.path }),
      el("span", { class: "muted", text: ` ${formatBytes(a.bytes)}` })));
    document.getElementById("artifacts").replaceChildren(...(items.length ? items : [el("li", { class: "muted", text: "none yet" })]));
  }

  async loadResult() {
    if (this.resultShown) return;
    const result = await api("GET", `${this.base}/result`);
    this.resultShown = true;
    const facts = document.getElementById("result-facts");
    const fmt = (v, digits = 4) => (typeof v === "number" ? (Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(digits)) : "—");
    facts.replaceChildren(...resultRows(result, fmt).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    document.getElementById("result").hidden = false;
  }

  say(text) { document.getElementById("stream-state").textContent = text; }
}

/* The result card's rows: each job type's own figures where its result has them (a merge has no
   perplexity, a growth or contraction its parameters before and after), and every result's cost. */
function resultRows(result, fmt) {
  const has = (...keys) => keys.some((k) => result[k] !== undefined);
  const rows = [];
  if (has("ppl_baseline", "ppl_final")) {
    const delta = typeof result.ppl_delta_pct === "number" ? ` (${result.ppl_delta_pct.toFixed(1)} %)` : "";
    const reason = result.ppl_reason ? ` (${result.ppl_reason})` : "";
    rows.push(["Perplexity", `${fmt(result.ppl_baseline, 3)} → ${fmt(result.ppl_final, 3)}${delta}${reason}`]);
  }
  if (has("eval_loss_baseline")) rows.push(["Eval loss", `${fmt(result.eval_loss_baseline)} → ${fmt(result.eval_loss_final)}`]);
  if (has("loss_final")) rows.push(["Final train loss", fmt(result.loss_final)]);
  if (has("params_before")) {
    rows.push(["Parameters", `${fmt(result.params_before)} → ${fmt(result.params_after)} (${result.params_delta > 0 ? "+" : ""}${fmt(result.params_delta)})`]);
  } else if (has("params_total")) {
    rows.push(["Parameters", `${fmt(result.params_total)} total${has("params_trainable") ? `, ${fmt(result.params_trainable)} trained` : ""}`]);
  }
  if (has("function_preservation")) {
    const why = result.function_preservation_reason ? ` (${result.function_preservation_reason})` : "";
    rows.push(["Function preservation (KL)", `${fmt(result.function_preservation, 8)}${why}`]);
  }
  if (has("importance")) rows.push(["Channel importance", `${result.importance}${has("layers_contracted") ? `, ${fmt(result.layers_contracted)} layers contracted` : ""}`]);
  if (has("calibration")) {
    const source = result.calibration_source ? ` (${result.calibration_source})` : "";
    rows.push(["Calibration text", result.calibration ? `${result.calibration}${source}, ${fmt(result.calibration_examples)} examples` : "none"]);
  }
  if (has("heal_steps")) {
    const rate = typeof result.heal_learning_rate === "number" ? ` at learning rate ${result.heal_learning_rate}` : "";
    rows.push(["Healing", `${fmt(result.heal_steps)} steps${rate}${has("heal_loss_final") ? `, final loss ${fmt(result.heal_loss_final)}` : ""}`]);
  }
  if (has("max_logit_delta")) rows.push(["Max |Δlogit| (merged vs adapter)", `${fmt(result.max_logit_delta, 8)} (bound ${fmt(result.logit_delta_bound, 6)})`]);
  if (has("steps")) rows.push(["Steps", fmt(result.steps)]);
  if (has("tokens_processed")) rows.push(["Tokens", fmt(result.tokens_processed)]);
  const training = has("train_seconds") ? ` (training ${fmt(result.train_seconds, 1)} s)` : "";
  rows.push(["Compute time", `${fmt(result.compute_seconds, 1)} s${training}`]);
  rows.push(["Cost", typeof result.cost_usd === "number"
    ? `$${result.cost_usd.toFixed(4)} at $${result.price_per_device_hour}/h` : "—"]);
  rows.push(["Device", result.device || "—"]);
  return rows;
}

function parseSse(block) {
  const message = { event: "message", data: "", id: null };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") message.event = value;
    else if (field === "data") message.data += (message.data ? "\n" : "") + value;
    else if (field === "id") message.id = value;
  }
  return message.data || message.event !== "message" ? message : null;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

document.addEventListener("DOMContentLoaded", () => new JobPage(document.getElementById("job")).start());
