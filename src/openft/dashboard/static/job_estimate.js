// A job page's estimate (trained tokens, steps, peak memory, time) and, once it has succeeded, the
// download of its model as `openft models export` writes it. Uses h(), api(), kv() and showError()
// from app.js.
"use strict";

const ESTIMATE_POLL_MS = 2000;
const GIB = 1024 ** 3;

function estimateRows(est) {
  const seconds = est.estimated_seconds === null ? "unknown (no throughput measured here yet)"
    : `about ${Math.round(est.estimated_seconds)} s (from ${est.estimated_seconds_source.replace("_", " ")})`;
  const tf = est.training_file;
  return [
    ["training examples", `${tf.n_trained_examples} of ${tf.n_examples} trained on, ${tf.n_truncated} truncated`],
    ["trained tokens", `${est.trained_tokens_exact ? "" : "at most "}${est.trained_tokens.toLocaleString()}`],
    ["steps", est.n_steps],
    ["peak memory", `${(est.peak_memory_bytes / GIB).toFixed(2)} GiB of ${(est.memory_limit_bytes / GIB).toFixed(1)} GiB (${est.device})`],
    ["fits", est.fits ? "yes" : `no: ${est.reason}`],
    ["time", seconds],
  ];
}

// The estimate the worker recorded when the job started, or, before that, one asked of the server.
async function findEstimate(job) {
  const page = await api(`/fine_tuning/jobs/${job.id}/events?limit=100`);
  const recorded = page.data.find((e) => e.data && e.data.estimate);
  if (recorded) return recorded.data.estimate;
  if (!["validating_files", "queued", "paused"].includes(job.status)) return null;
  const body = { model: job.model, training_file: job.training_file, method: job.method };
  if (job.validation_file) body.validation_file = job.validation_file;
  return api("/fine_tuning/jobs/estimate", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

async function downloadExport(jobId, format, button) {
  button.disabled = true;
  button.textContent = "Exporting…";
  try {
    const response = await fetch(`/v1/fine_tuning/jobs/${jobId}/export?format=${format}`,
      { headers: { Authorization: `Bearer ${apiKey()}` } });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || `${response.status} ${response.statusText}`);
    }
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: `${jobId}-${format}.tar.gz` });
    document.body.append(link);
    link.click();
    link.remove();
    URL.revokeObjectURL(url);
  } catch (err) {
    showError(err.message);
  }
  button.disabled = false;
  button.textContent = `Export (${format})`;
}

async function addJobEstimate(root, jobId) {
  const box = h("div", { class: "panel", id: "estimate" }, h("p", { class: "muted" }, "estimating…"));
  const actions = h("div", { id: "export" });
  root.append(h("section", { class: "estimate" }, h("h2", {}, "Estimate"), box, actions));
  let estimate = null;
  let exportShown = false;
  async function refresh() {
    let job = null;
    try {
      job = await api(`/fine_tuning/jobs/${jobId}`);
      estimate = estimate || await findEstimate(job);
      box.replaceChildren(estimate ? kv(estimateRows(estimate)) : h("p", { class: "muted" }, "no estimate"));
      if (job.status === "succeeded" && !exportShown) {
        exportShown = true;
        for (const format of ["peft", "merged", "gguf"]) {
          const button = h("button", { type: "button", id: `export-${format}` }, `Export (${format})`);
          button.addEventListener("click", () => downloadExport(jobId, format, button));
          actions.append(button, " ");
        }
      }
    } catch (err) {
      box.replaceChildren(h("p", { class: "muted" }, `no estimate: ${err.message}`));
    }
    if (!job || !["succeeded", "failed", "cancelled"].includes(job.status)) setTimeout(refresh, ESTIMATE_POLL_MS);
  }
  await refresh();
}
