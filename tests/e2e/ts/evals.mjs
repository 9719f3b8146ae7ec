// An eval with the official `openai` npm client: node evals.mjs BASE_URL
// Creates an eval, starts a completions run on tiny-chat, polls it to completion and lists its output
// items (two per page, so pagination is used). Prints one JSON line with what it saw.
import OpenAI from "openai";

const [baseURL] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "sk-local", maxRetries: 0 });
const items = ["France", "Italy", "Spain", "Peru", "Chile"].map((country) => ({ item: { country } }));

const ev = await client.evals.create({
  name: "ts eval",
  data_source_config: {
    type: "custom",
    item_schema: { type: "object", properties: { country: { type: "string" } }, required: ["country"] },
    include_sample_schema: true,
  },
  testing_criteria: [
    { type: "string_check", name: "answered", input: "{{sample.output_text}}", reference: "", operation: "ne" },
  ],
});
let run = await client.evals.runs.create(ev.id, {
  name: "tiny",
  data_source: {
    type: "completions",
    model: "openft/tiny-chat",
    input_messages: { type: "template", template: [{ role: "user", content: "Capital of {{item.country}}?" }] },
    sampling_params: { temperature: 0, max_completion_tokens: 8 },
    source: { type: "file_content", content: items },
  },
});
const statuses = [run.status];
const deadline = Date.now() + 240_000;
while (["queued", "in_progress"].includes(run.status)) {
  if (Date.now() > deadline) throw new Error(`run ${run.id} still ${run.status}`);
  await new Promise((r) => setTimeout(r, 200));
  run = await client.evals.runs.retrieve(run.id, { eval_id: ev.id });
  if (statuses[statuses.length - 1] !== run.status) statuses.push(run.status);
}
const outputItems = [];
for await (const item of client.evals.runs.outputItems.list(run.id, { eval_id: ev.id, limit: 2 })) {
  outputItems.push(item);
}
const one = await client.evals.runs.outputItems.retrieve(outputItems[0].id, { eval_id: ev.id, run_id: run.id });
let notFound = null;
try {
  await client.evals.retrieve("eval_doesnotexist");
} catch (err) {
  notFound = { status: err.status, type: err.type, code: err.code };
}
console.log(JSON.stringify({
  eval: ev, run, statuses,
  items: outputItems.map((i) => ({ id: i.datasource_item_id, status: i.status, item: i.datasource_item,
    input: i.sample.input, results: i.results })),
  retrieved: one.id === outputItems[0].id, notFound,
}));
