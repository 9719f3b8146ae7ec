// The Responses API with the official `openai` npm client: node responses.mjs BASE_URL MODEL
// MODEL is a tiny-chat fine-tuned to call the `weather` tool and to answer in words to its output;
// plain answers come from the base model. Prints one JSON line with what it saw; exits non-zero on any failure.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const base = "openft/tiny-chat";
const client = new OpenAI({ baseURL, apiKey: "sk-local", maxRetries: 0 });
const tools = [{ type: "function", name: "weather", parameters: {} }];
const greedy = { model, tools, temperature: 0, max_output_tokens: 60 };

const plain = await client.responses.create({ ...greedy, input: "Rain?" });
const messages = await client.responses.create({
  model: base, instructions: "Be kind.", max_output_tokens: 4, seed: 1,
  input: [
    { role: "developer", content: "Answer." },
    { role: "user", content: [{ type: "input_text", text: "Snow?" }] },
  ],
});
const schema = {
  type: "object",
  properties: { color: { type: "string", enum: ["red", "blue"] }, size: { type: "integer", minimum: 1 } },
  required: ["color", "size"],
  additionalProperties: false,
};
const structured = await client.responses.create({
  model: base, input: "Pick one.", max_output_tokens: 60, seed: 2,
  text: { format: { type: "json_schema", name: "pick", schema, strict: true } },
});

// A function tool round trip over three stored turns.
const asked = await client.responses.create({ ...greedy, input: "Weather?" });
const call = asked.output.find((item) => item.type === "function_call");
const answered = await client.responses.create({
  ...greedy, previous_response_id: asked.id,
  input: [{ type: "function_call_output", call_id: call.call_id, output: "sunny" }],
});
const chat = await client.chat.completions.create({
  model, temperature: 0, max_tokens: 60,
  tools: [{ type: "function", function: { name: "weather", parameters: {} } }],
  messages: [
    { role: "user", content: "Weather?" },
    { role: "assistant", content: null, tool_calls: [{ id: call.call_id, type: "function", function: { name: "weather", arguments: "{}" } }] },
    { role: "tool", tool_call_id: call.call_id, content: "sunny" },
  ],
});
const third = await client.responses.create({ ...greedy, previous_response_id: answered.id, input: "Tomorrow?" });
const items = [];
for await (const item of client.responses.inputItems.list(third.id, { order: "asc", limit: 2 })) items.push(item);

const stream = client.responses.stream({ ...greedy, input: "Sun?" });
const kinds = [];
for await (const event of stream) kinds.push(event.type);
const streamed = await stream.finalResponse();
const retrieved = await client.responses.retrieve(streamed.id);
await client.responses.delete(streamed.id);
let deleted = null;
try {
  await client.responses.retrieve(streamed.id);
} catch (err) {
  deleted = { status: err.status, code: err.code };
}

function callFields(item) {
  return [item.type, item.id, item.call_id, item.name, item.arguments];
}

console.log(JSON.stringify({
  plain: { status: plain.status, output: plain.output.map((i) => i.type) },
  messages: { text: messages.output_text, instructions: messages.instructions, input: messages.usage.input_tokens },
  structured: structured.output_text,
  call: call && { name: call.name, arguments: call.arguments, call_id: call.call_id },
  answered: answered.output_text,
  chat: chat.choices[0].message.content,
  previous: [answered.previous_response_id === asked.id, third.previous_response_id === answered.id],
  items: items.map((i) => [i.type, i.role ?? null]),
  stream: { kinds, output: streamed.output.map(callFields), status: streamed.status },
  retrieved: retrieved.output.map(callFields),
  deleted,
}));
