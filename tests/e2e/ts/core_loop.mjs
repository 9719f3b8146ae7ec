// The core loop with the official `openai` npm client: node core_loop.mjs BASE_URL TRAIN.jsonl
// Prints one JSON line with what it saw; exits non-zero on any failure.
import fs from "node:fs";
import OpenAI, { toFile } from "openai";

const [baseURL, trainPath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "sk-local", maxRetries: 0 });

const file = await client.files.create({
  file: await toFile(fs.createReadStream(trainPath), "train.jsonl"),
  purpose: "fine-tune",
});
let job = await client.fineTuning.jobs.create({
  model: "openft/tiny-chat", training_file: file.id, suffix: "ts", seed: 11,
  method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 2 } } },
});
const deadline = Date.now() + 240_000;
while (!["succeeded", "failed", "cancelled"].includes(job.status)) {
  if (Date.now() > deadline) throw new Error(`job ${job.id} still ${job.status}`);
  await new Promise((r) => setTimeout(r, 200));
  job = await client.fineTuning.jobs.retrieve(job.id);
}
const events = [];
for await (const event of client.fineTuning.jobs.listEvents(job.id, { limit: 10 })) events.push(event);
const checkpoints = [];
for await (const c of client.fineTuning.jobs.checkpoints.list(job.id)) checkpoints.push(c);
const reply = job.fine_tuned_model
  ? await client.chat.completions.create({
      model: job.fine_tuned_model, messages: [{ role: "user", content: "Hello!" }], max_tokens: 20, temperature: 0,
    })
  : null;
let notFound = null;
try {
  await client.fineTuning.jobs.retrieve("ftjob-doesnotexist");
} catch (err) {
  notFound = { status: err.status, type: err.type, code: err.code };
}
console.log(JSON.stringify({
  job, events: events.map((e) => ({ type: e.type, message: e.message })),
  checkpoints: checkpoints.map((c) => c.fine_tuned_model_checkpoint),
  reply: reply && { content: reply.choices[0].message.content, usage: reply.usage }, notFound,
}));
