/* A model's playground: one message goes to the trained model and to its base at once, through the
   OpenAI-compatible /v1/chat/completions with the page's generation settings; each column keeps its
   own conversation. The trained model is activated first (its serving process loads it). */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const section = document.getElementById("playground");
  const form = document.getElementById("playground-form");
  if (!section || !form) return;
  const sides = [
    { model: section.dataset.model, box: document.getElementById("transcript-trained"), history: [], activate: true },
    { model: section.dataset.base, box: document.getElementById("transcript-base"), history: [], activate: false },
  ];
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const message = String(data.get("message") || "").trim();
    if (!message) return;
    const settings = {
      temperature: Number(data.get("temperature")),
      max_tokens: Number(data.get("max_tokens")),
      top_p: Number(data.get("top_p")),
    };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await Promise.all(sides.map((side) => ask(side, message, settings)));
    } finally {
      button.disabled = false;
    }
  });
});

async function ask(side, message, settings) {
  side.history.push({ role: "user", content: message });
  side.box.append(el("p", { class: "turn user" }, el("strong", { text: "You: " }), message));
  const answer = el("p", { class: "turn assistant", "data-pending": true }, "…");
  side.box.append(answer);
  try {
    if (side.activate && !side.activated) {
      await api("POST", `/v1/models/${encodeURIComponent(side.model)}/activate`, { json: {} });
      side.activated = true;
    }
    const reply = await api("POST", "/v1/chat/completions",
      { json: { model: side.model, messages: side.history, ...settings } });
    const text = reply.choices[0].message.content;
    side.history.push({ role: "assistant", content: text });
    answer.replaceChildren(el("strong", { text: "Model: " }), text);
    answer.setAttribute("data-answer", "");
  } catch (error) {
    side.history.pop();
    answer.replaceChildren(el("span", { class: "error", text: `Failed: ${error.message}` }));
    answer.setAttribute("data-error", error.code || "");
  }
  answer.removeAttribute("data-pending");
}
