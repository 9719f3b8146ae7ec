// The dashboard's playground: chat with a model and, side by side, its base model (streaming).
// Uses h(), api(), apiKey() and showError() from app.js.
"use strict";

// -- playground -------------------------------------------------------------------------------
async function streamChat(model, messages, maxTokens, onText) {
  const response = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: { Authorization: `Bearer ${apiKey()}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model, messages, stream: true, max_tokens: maxTokens, temperature: 0 }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error((body.error && body.error.message) || `${response.status}`);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return text;
        const chunk = JSON.parse(data);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
        if (delta) { text += delta; onText(text); }
      }
    }
  }
  return text;
}

function baseOf(model, models) {
  const entry = models.find((m) => m.id === model);
  if (entry && entry.root && entry.root !== model) return entry.root;
  const match = /^ft:(.+?):[^:]*:[^:]*:[A-Za-z0-9]+(?::ckpt-step-\d+)?$/.exec(model);
  return match ? match[1] : null;
}

async function playgroundPage(root) {
  let models = [];
  try {
    models = (await api("/models")).data;
  } catch (err) {
    showError(err.message);
  }
  const wanted = new URLSearchParams(location.search).get("model");
  const select = h("select", { id: "model-select" }, models.map((m) =>
    h("option", { value: m.id, selected: m.id === wanted }, m.id)));
  const compare = h("input", { type: "checkbox", id: "compare", checked: true });
  const maxTokens = h("input", { type: "number", id: "max-tokens", value: 64, min: 1, max: 4096, class: "narrow" });
  const panes = h("div", { class: "panes" });
  const prompt = h("textarea", { id: "prompt", rows: 2, placeholder: "Ask something…" });
  const send = h("button", { type: "submit", id: "send" }, "Send");
  const history = new Map();

  function setup() {
    const model = select.value;
    const base = baseOf(model, models);
    const sides = [model];
    if (compare.checked && base && base !== model) sides.push(base);
    history.clear();
    panes.replaceChildren(...sides.map((m, i) => {
      history.set(m, []);
      return h("div", { class: "pane", "data-model": m },
        h("h3", {}, i === 0 ? "Model" : "Base", " ", h("span", { class: "mono" }, m)),
        h("div", { class: "messages" }));
    }));
  }

  async function ask(ev) {
    ev.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
    prompt.value = "";
    send.disabled = true;
    await Promise.all([...panes.querySelectorAll(".pane")].map(async (pane) => {
      const model = pane.dataset.model;
      const messages = history.get(model);
      messages.push({ role: "user", content: text });
      const box = pane.querySelector(".messages");
      box.append(h("div", { class: "msg user" }, text));
      const answer = h("div", { class: "msg assistant streaming" }, "…");
      box.append(answer);
      try {
        const reply = await streamChat(model, messages, +maxTokens.value || 64, (t) => { answer.textContent = t; });
        answer.textContent = reply || "(empty answer)";
        messages.push({ role: "assistant", content: reply });
      } catch (err) {
        answer.textContent = `error: ${err.message}`;
        answer.classList.add("failed");
      }
      answer.classList.remove("streaming");
      answer.classList.add("done");
    }));
    send.disabled = false;
  }

  select.addEventListener("change", setup);
  compare.addEventListener("change", setup);
  root.append(h("h1", {}, "Playground"),
    h("div", { class: "toolbar" }, h("label", {}, "Model ", select),
      h("label", {}, compare, " side by side with its base"),
      h("label", {}, "max tokens ", maxTokens)),
    panes,
    h("form", { class: "ask", onsubmit: ask }, prompt, send));
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) ask(e);
  });
  setup();
}
