// The openft dashboard: a single-page app over the /v1 API, with the user's own API key.
"use strict";

const KEY_STORAGE = "openft.apiKey";
const POLL_MS = 2000;
const TERMINAL = ["succeeded", "failed", "cancelled"];
const COLORS = { train: "#2563eb", valid: "#f97316", full: "#16a34a" };
let pollTimer = null;

// -- helpers ----------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return node;
}

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "local";
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}`, ...(options.headers || {}) };
  const response = await fetch(`/v1${path}`, { ...options, headers });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body.error && body.error.message) message = body.error.message;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response.json();
}

function age(ts) {
  const s = Math.max(0, Math.floor(Date.now() / 1000 - ts));
  if (s >= 86400) return `${Math.floor(s / 86400)}d ago`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h ago`;
  if (s >= 60) return `${Math.floor(s / 60)}m ago`;
  return `${s}s ago`;
}

function when(ts) {
  return ts ? new Date(ts * 1000).toLocaleString() : "-";
}

function badge(status) {
  return h("span", { class: `badge status-${status}` }, status.replace("_", " "));
}

function num(v, digits = 3) {
  return typeof v === "number" ? v.toFixed(digits) : "-";
}

function schedule(fn) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(fn, POLL_MS);
}

// -- jobs list --------------------------------------------------------------------------------
async function jobsPage(root) {
  const table = h("table", { class: "list", id: "jobs-table" },
    h("thead", {}, h("tr", {}, ["Job", "Status", "Model", "Fine-tuned model", "Created"].map((t) => h("th", {}, t)))),
    h("tbody"));
  root.append(h("h1", {}, "Fine-tuning jobs"), table);
  async function refresh() {
    try {
      const page = await api("/fine_tuning/jobs?limit=100");
      const body = table.querySelector("tbody");
      body.replaceChildren(...page.data.map((job) =>
        h("tr", { "data-job-id": job.id },
          h("td", {}, h("a", { href: `/jobs/${job.id}` }, job.id)),
          h("td", {}, badge(job.status)),
          h("td", {}, job.model),
          h("td", { class: "mono" }, job.fine_tuned_model || ""),
          h("td", { title: when(job.created_at) }, age(job.created_at)))));
      if (page.data.length === 0) {
        body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" },
          "No jobs yet: upload a file and create one with the CLI or any OpenAI client.")));
      }
      showError("");
    } catch (err) {
      showError(err.message);
    }
    schedule(refresh);
  }
  await refresh();
}

// -- one job ----------------------------------------------------------------------------------
async function allEvents(jobId, known) {
  // Newest first; page back until an event we already have (or the first event).
  const fresh = [];
  let after = null;
  for (;;) {
    const page = await api(`/fine_tuning/jobs/${jobId}/events?limit=100${after ? `&after=${after}` : ""}`);
    let reachedKnown = false;
    for (const e of page.data) {
      if (known.has(e.id)) { reachedKnown = true; break; }
      fresh.push(e);
    }
    if (reachedKnown || !page.has_more || page.data.length === 0) break;
    after = page.data[page.data.length - 1].id;
  }
  return fresh.reverse();
}

function kv(rows) {
  return h("table", { class: "kv" },
    rows.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) =>
      h("tr", {}, h("th", {}, k), h("td", {}, typeof v === "object" && !(v instanceof Node) ? JSON.stringify(v) : v))));
}

// A job started from a fine-tuned model or checkpoint: that model, the job that made it (found in the
// jobs list) and the root base model, which every fine-tuned model is named after (ft:{base}:...).
async function lineage(job) {
  if (!job.model.startsWith("ft:")) return { base: job.model };
  const parentModel = job.model.replace(/:ckpt-step-\d+$/, "");
  let parentJob = null;
  for (let after = null, pages = 0; !parentJob && pages < 20; pages++) {
    const page = await api(`/fine_tuning/jobs?limit=100${after ? `&after=${after}` : ""}`);
    parentJob = page.data.find((j) => j.fine_tuned_model === parentModel) || null;
    if (!page.has_more || page.data.length === 0) break;
    after = page.data[page.data.length - 1].id;
  }
  return { parent: job.model, parentJob: parentJob && parentJob.id, base: parentModel.slice(3).split(":")[0] };
}

function lineageRows(line) {
  const link = (href, text) => h("a", { href, class: "mono" }, text);
  return [
    ["parent model", line.parent ? link(`/playground?model=${encodeURIComponent(line.parent)}`, line.parent) : null],
    ["parent job", line.parentJob ? link(`/jobs/${line.parentJob}`, line.parentJob) : null],  // another organization's: none
    ["base model", line.base],
  ];
}

async function jobPage(root, jobId) {
  let line = null;
  const events = [];
  const known = new Set();
  const header = h("div", { class: "job-header" });
  const progress = h("div", { class: "progress" }, h("div", { class: "bar" }), h("span", { class: "label" }));
  const lossChart = h("div", { class: "chart-box", id: "loss-chart" });
  const accChart = h("div", { class: "chart-box", id: "accuracy-chart" });
  const details = h("div", { class: "panel", id: "details" });
  const checkpoints = h("div", { class: "panel", id: "checkpoints" });
  const eventList = h("ol", { class: "events", id: "events" });
  root.append(
    h("p", {}, h("a", { href: "/" }, "← all jobs")),
    header, progress,
    h("div", { class: "charts" }, lossChart, accChart),
    h("div", { class: "columns" },
      h("section", {}, h("h2", {}, "Details"), details, h("h2", {}, "Checkpoints"), checkpoints),
      h("section", {}, h("h2", {}, "Events"), eventList)));

  async function refresh() {
    let job;
    try {
      job = await api(`/fine_tuning/jobs/${jobId}`);
      line = line || await lineage(job);
      const fresh = await allEvents(jobId, known);
      for (const e of fresh) { known.add(e.id); events.push(e); }
      const ckpts = await api(`/fine_tuning/jobs/${jobId}/checkpoints?limit=100`);
      render(job, ckpts.data, line);
      showError("");
    } catch (err) {
      showError(err.message);
    }
    if (!job || !TERMINAL.includes(job.status)) schedule(refresh);
  }

  function render(job, ckpts, line) {
    header.replaceChildren(
      h("h1", {}, job.id, " ", badge(job.status)),
      h("p", { class: "muted" }, `${job.model} · created ${age(job.created_at)}`,
        job.fine_tuned_model ? " · " : "", job.fine_tuned_model ? h("a", {
          href: `/playground?model=${encodeURIComponent(job.fine_tuned_model)}`, class: "mono" }, job.fine_tuned_model) : ""),
      job.error ? h("p", { class: "error-box" }, `${job.error.code}: ${job.error.message}`) : "");

    const metrics = events.filter((e) => e.type === "metrics" && e.data);
    const last = metrics.length ? metrics[metrics.length - 1].data : null;
    const total = last ? last.total_steps : 0;
    const step = last ? last.step : 0;
    const pct = job.status === "succeeded" ? 100 : total ? (100 * step) / total : 0;
    progress.querySelector(".bar").style.width = `${pct}%`;
    let label = total ? `step ${step} / ${total}` : job.status;
    if (last) label += ` · train loss ${num(last.train_loss)}`;
    if (last && typeof last.tokens_per_second === "number") label += ` · ${Math.round(last.tokens_per_second)} tok/s`;
    if (job.estimated_finish) {
      const left = Math.max(0, job.estimated_finish - Math.floor(Date.now() / 1000));
      label += ` · ETA ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    }
    progress.querySelector(".label").textContent = label;

    const points = (key) => metrics.filter((e) => typeof e.data[key] === "number").map((e) => [e.data.step, e.data[key]]);
    // Early stopping: its event names the step it stopped at and the best step the job serves.
    const stop = events.find((e) => e.data && typeof e.data.stopped_early_at_step === "number");
    const markers = stop ? [
      { x: stop.data.best_step, label: `best ${stop.data.best_step}`, color: COLORS.full },
      { x: stop.data.stopped_early_at_step, label: "stopped early", color: "#b91c1c" },
    ] : [];
    lineChart(lossChart, { title: "Loss", markers, series: [
      { name: "train", color: COLORS.train, points: points("train_loss") },
      { name: "valid", color: COLORS.valid, points: points("valid_loss") },
      { name: "full valid", color: COLORS.full, points: points("full_valid_loss"), dots: true },
    ] });
    lineChart(accChart, { title: "Token accuracy", series: [
      { name: "train", color: COLORS.train, points: points("train_mean_token_accuracy") },
      { name: "valid", color: COLORS.valid, points: points("valid_mean_token_accuracy") },
      { name: "full valid", color: COLORS.full, points: points("full_valid_mean_token_accuracy"), dots: true },
    ] });

    const hp = job.hyperparameters || {};
    details.replaceChildren(kv([
      ["status", job.status],
      ...lineageRows(line),
      ["method", job.method ? job.method.type : "supervised"],
      ["n_epochs", hp.n_epochs], ["batch_size", hp.batch_size],
      ["learning_rate_multiplier", hp.learning_rate_multiplier],
      ["seed", job.seed],
      ["training file", job.training_file], ["validation file", job.validation_file],
      ["trained tokens", job.trained_tokens !== null && job.trained_tokens !== undefined
        ? job.trained_tokens.toLocaleString() : null],
      ["created", when(job.created_at)], ["finished", job.finished_at ? when(job.finished_at) : null],
      ["estimated finish", job.estimated_finish ? when(job.estimated_finish) : null],
      ["suffix", job.user_provided_suffix],
      ["metadata", job.metadata && Object.keys(job.metadata).length ? job.metadata : null],
      ["integrations", job.integrations && job.integrations.length ? job.integrations.map((i) => i.type).join(", ") : null],
      ["result files", job.result_files && job.result_files.length ? job.result_files.join(", ") : null],
    ]));

    checkpoints.replaceChildren(ckpts.length === 0 ? h("p", { class: "muted" }, "none yet") :
      h("table", { class: "list" },
        h("thead", {}, h("tr", {}, ["Step", "Train loss", "Valid loss", "Model"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ckpts.map((c) => h("tr", {},
          h("td", {}, c.step_number),
          h("td", {}, num(c.metrics.train_loss)),
          h("td", {}, num(c.metrics.full_valid_loss ?? c.metrics.valid_loss)),
          h("td", { class: "mono" }, h("a", {
            href: `/playground?model=${encodeURIComponent(c.fine_tuned_model_checkpoint)}` },
          c.fine_tuned_model_checkpoint)))))));

    eventList.replaceChildren(...events.slice().reverse().map((e) =>
      h("li", { class: `level-${e.level}` },
        h("time", {}, new Date(e.created_at * 1000).toLocaleTimeString()), " ", e.message)));
  }
  await refresh();
}

// -- files ------------------------------------------------------------------------------------
async function filesPage(root) {
  const input = h("input", { type: "file", id: "file-input", accept: ".jsonl" });
  const purpose = h("select", { id: "file-purpose" }, ["fine-tune", "batch", "user_data"].map((p) => h("option", {}, p)));
  const table = h("table", { class: "list", id: "files-table" },
    h("thead", {}, h("tr", {}, ["File", "Name", "Purpose", "Bytes", "Created"].map((t) => h("th", {}, t)))),
    h("tbody"));
  async function upload(ev) {
    ev.preventDefault();
    if (!input.files.length) return;
    const form = new FormData();
    form.append("purpose", purpose.value);
    form.append("file", input.files[0]);
    try {
      await api("/files", { method: "POST", body: form });
      input.value = "";
      await refresh();
    } catch (err) {
      showError(err.message);
    }
  }
  async function refresh() {
    try {
      const page = await api("/files?limit=1000");
      table.querySelector("tbody").replaceChildren(...page.data.map((f) => h("tr", {},
        h("td", { class: "mono" }, f.id), h("td", {}, f.filename), h("td", {}, f.purpose),
        h("td", {}, f.bytes.toLocaleString()), h("td", { title: when(f.created_at) }, age(f.created_at)))));
      showError("");
    } catch (err) {
      showError(err.message);
    }
  }
  root.append(h("h1", {}, "Files"),
    h("form", { class: "upload", onsubmit: upload }, input, purpose, h("button", { type: "submit" }, "Upload")),
    table);
  await refresh();
}

// -- routing ----------------------------------------------------------------------------------
async function route() {
  clearTimeout(pollTimer);
  const root = document.getElementById("app");
  root.replaceChildren();
  const path = location.pathname;
  const page = path.startsWith("/jobs/") ? "jobs" : path.slice(1) || "jobs";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === page);
  if (path.startsWith("/jobs/")) addCompareWithBase(root, decodeURIComponent(path.slice(6)));  // evals.js
  if (path.startsWith("/jobs/")) addJobEstimate(root, decodeURIComponent(path.slice(6)));  // job_estimate.js
  if (path.startsWith("/jobs/")) return jobPage(root, decodeURIComponent(path.slice(6)));
  const run = path.match(/^\/evals\/([^/]+)\/runs\/([^/]+)$/);
  if (run) return runPage(root, decodeURIComponent(run[1]), decodeURIComponent(run[2]));
  if (path === "/evals") return evalsPage(root);
  if (path === "/files") return filesPage(root);
  if (path === "/playground") return playgroundPage(root);
  return jobsPage(root);
}

document.addEventListener("DOMContentLoaded", () => {
  const key = document.getElementById("api-key");
  key.value = localStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    localStorage.setItem(KEY_STORAGE, key.value.trim());
    route();
  });
  route();
});
