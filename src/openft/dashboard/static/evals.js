// The dashboard's evals: each eval's runs side by side, a run's output items (failed first), and a
// job page's "compare with base". Uses h(), api(), badge(), age(), when(), schedule() and showError()
// from app.js.
"use strict";

const RUN_ACTIVE = ["queued", "in_progress"];

function passRate(passed, total) {
  return total ? `${Math.round((100 * passed) / total)}%` : "-";
}

function runTokens(run) {
  return (run.per_model_usage || []).reduce((sum, u) => sum + (u.total_tokens || 0), 0);
}

function runDuration(run) {
  if (!run.started_at) return "-";
  const end = run.completed_at || Math.floor(Date.now() / 1000);
  return `${Math.max(0, end - run.started_at)} s`;
}

async function allPages(path) {
  const rows = [];
  let after = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(`${path}${sep}limit=100${after ? `&after=${after}` : ""}`);
    rows.push(...page.data);
    if (!page.has_more || page.data.length === 0) return rows;
    after = page.data[page.data.length - 1].id;
  }
}

// -- evals and their runs side by side ----------------------------------------------------------
function runsTable(ev, runs) {
  const criteria = ev.testing_criteria.map((c) => c.name);
  const rows = [
    ["Model", (r) => h("a", { href: `/evals/${ev.id}/runs/${r.id}`, class: "mono" }, r.model || r.name)],
    ["Status", (r) => badge(r.status)],
    ["Passed", (r) => `${passRate(r.result_counts.passed, r.result_counts.total)} (${r.result_counts.passed}/${r.result_counts.total}, ${r.result_counts.errored} errored)`],
    ...criteria.map((name) => [name, (r) => {
      const c = (r.per_testing_criteria_results || []).find((x) => x.testing_criteria === name);
      return c ? passRate(c.passed, c.passed + c.failed) : "-";
    }]),
    ["Tokens", (r) => String(runTokens(r))],
    ["Duration", (r) => runDuration(r)],
    ["Created", (r) => age(r.created_at)],
  ];
  return h("table", { class: "list runs-side-by-side", "data-eval-id": ev.id },
    h("thead", {}, h("tr", {}, h("th", {}, ""), runs.map((r) => h("th", { "data-run-id": r.id }, r.name)))),
    h("tbody", {}, rows.map(([label, cell]) =>
      h("tr", {}, h("th", {}, label), runs.map((r) => h("td", {}, cell(r)))))));
}

async function evalsPage(root) {
  const list = h("div", { id: "evals" });
  root.append(h("h1", {}, "Evals"), list);
  async function refresh() {
    let active = false;
    try {
      const evals = await allPages("/evals?order=desc");
      const sections = [];
      for (const ev of evals) {
        const runs = await allPages(`/evals/${ev.id}/runs?order=asc`);
        active = active || runs.some((r) => RUN_ACTIVE.includes(r.status));
        sections.push(h("section", { class: "panel eval", "data-eval-id": ev.id },
          h("h2", {}, ev.name || ev.id, " ", h("span", { class: "muted mono" }, ev.id)),
          h("p", { class: "muted" }, `criteria: ${ev.testing_criteria.map((c) => `${c.name} (${c.type})`).join(", ")}`),
          runs.length ? runsTable(ev, runs) : h("p", { class: "muted" }, "No runs yet.")));
      }
      list.replaceChildren(...sections);
      if (!evals.length) list.append(h("p", { class: "muted" }, "No evals yet: create one with client.evals.create."));
      showError("");
    } catch (err) {
      showError(err.message);
    }
    if (active) schedule(refresh);
  }
  await refresh();
}

// -- one run: its output items, failed first ------------------------------------------------------
function sampleText(item) {
  const out = (item.sample.output || []).map((m) => m.content).join("\n");
  return item.sample.error ? `error: ${item.sample.error.message}` : out;
}

function itemRow(item) {
  const input = (item.sample.input || []).map((m) => `${m.role}: ${m.content}`).join("\n");
  return h("tr", { "data-item-id": item.id, "data-status": item.status },
    h("td", {}, String(item.datasource_item_id)),
    h("td", {}, badge(item.status)),
    h("td", { class: "mono pre" }, input || JSON.stringify(item.datasource_item)),
    h("td", { class: "mono pre" }, sampleText(item)),
    h("td", {}, h("ul", { class: "grades" }, item.results.map((r) =>
      h("li", { class: r.passed ? "pass" : "fail" },
        `${r.name}: ${r.passed ? "pass" : "fail"} (${typeof r.score === "number" ? r.score.toFixed(2) : r.score})`,
        r.label ? ` label ${r.label}` : "", r.error ? ` error: ${r.error}` : "")))));
}

async function runPage(root, evalId, runId) {
  const header = h("div", { class: "run-header" });
  const table = h("table", { class: "list", id: "output-items" },
    h("thead", {}, h("tr", {}, ["#", "Status", "Input", "Output", "Grades"].map((t) => h("th", {}, t)))),
    h("tbody"));
  root.append(h("p", {}, h("a", { href: "/evals" }, "← all evals")), header, table);
  async function refresh() {
    let run;
    try {
      run = await api(`/evals/${evalId}/runs/${runId}`);
      const c = run.result_counts;
      header.replaceChildren(
        h("h1", {}, run.name, " ", badge(run.status)),
        h("p", { class: "muted" }, `${run.model} · ${c.passed} passed, ${c.failed} failed, ${c.errored} errored of ${c.total}`,
          ` · ${runTokens(run)} tokens · ${runDuration(run)}`),
        run.error ? h("p", { class: "error-box" }, `${run.error.code}: ${run.error.message}`) : "");
      const items = [];
      for (const status of ["fail", "error", "pass"]) {
        items.push(...await allPages(`/evals/${evalId}/runs/${runId}/output_items?status=${status}`));
      }
      table.querySelector("tbody").replaceChildren(...items.map(itemRow));
      showError("");
    } catch (err) {
      showError(err.message);
    }
    if (!run || RUN_ACTIVE.includes(run.status)) schedule(refresh);
  }
  await refresh();
}

// -- a job page's "compare with base" --------------------------------------------------------------
async function compareRunSource(evalId) {
  // The data source of the eval's latest completions run, so the comparison answers the same items.
  const runs = await api(`/evals/${evalId}/runs?order=desc&limit=100`);
  const template = runs.data.find((r) => r.data_source && r.data_source.type === "completions");
  if (!template) throw new Error("This eval has no completions run yet to take its items and prompt from.");
  return template.data_source;
}

async function addCompareWithBase(root, jobId) {
  // Below the job page: pick an eval, then one click runs it on the fine-tuned model and on its base.
  const select = h("select", { id: "compare-eval" });
  const button = h("button", { id: "compare-run", type: "button", disabled: true }, "Compare with base");
  root.append(h("section", { class: "panel compare", id: "compare-with-base" },
    h("h2", {}, "Evaluate against the base model"), select, " ", button));
  try {
    const page = await api("/evals?order=desc&limit=100");
    select.replaceChildren(...page.data.map((ev) => h("option", { value: ev.id }, ev.name || ev.id)));
    button.disabled = !page.data.length;
  } catch (err) {
    showError(err.message);
  }
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const job = await api(`/fine_tuning/jobs/${jobId}`);
      if (!job.fine_tuned_model) throw new Error("The job has no fine-tuned model yet.");
      const evalId = select.value;
      const source = await compareRunSource(evalId);
      for (const model of [job.fine_tuned_model, job.model]) {
        await api(`/evals/${evalId}/runs`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ name: model, data_source: { ...source, model } }),
        });
      }
      location.href = "/evals";
    } catch (err) {
      showError(err.message);
      button.disabled = false;
    }
  });
}
