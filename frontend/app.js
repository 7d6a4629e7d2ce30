// A minimal page: pick a model, send a message, watch the reply stream in.
// Model output is only ever set with textContent, never parsed as HTML.
import { streamChat } from "./sse.js";

const $ = (id) => document.getElementById(id);
let chatId = null;
let turnId = null;

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  $("log").append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

async function refreshStatus() {
  try {
    const health = await (await fetch("api/health")).json();
    const remote = health.remote;
    $("status").textContent = `${health.mode} mode · box ${remote.host}: ` +
      (remote.connected ? "connected" : `down${remote.error ? ` (${remote.error})` : ""}`);
    const { models } = await (await fetch("api/models")).json();
    const select = $("model");
    const chosen = select.value || "default";
    select.replaceChildren(...models.map((m) => {
      const option = new Option(`${m.id} (${m.status})`, m.id);
      option.title = [m.base_model_path, m.adapter_path].filter(Boolean).join(" + ");
      return option;
    }));
    select.value = chosen;
  } catch (error) {
    $("status").textContent = `gateway unreachable: ${error.message}`;
  }
}

async function send(message) {
  bubble("user", message);
  const reply = bubble("assistant", "");
  const text = document.createTextNode("");
  const meta = document.createElement("div");
  meta.className = "meta";
  reply.append(text, meta);
  $("send").disabled = true;
  $("stop").disabled = false;
  try {
    for await (const { event, data } of streamChat({ message, chat_id: chatId, model: $("model").value })) {
      if (event === "meta") { chatId = data.chat_id; turnId = data.turn_id; meta.textContent = "waiting for the model…"; }
      else if (event === "delta") { text.data += data.text; meta.textContent = "…"; }
      else if (event === "info") { meta.textContent = data.message; }
      else if (event === "done") {
        const t = data.timing;
        meta.textContent = `${data.finish_reason} · first token ${t.ttft_ms ?? "–"} ms · ${t.total_ms} ms · ${t.chunks} chunks`;
      } else if (event === "error") {
        reply.classList.add("error");
        meta.textContent = `${data.code}: ${data.message}${data.hint ? ` — ${data.hint}` : ""}`;
      }
    }
  } catch (error) {
    reply.classList.add("error");
    meta.textContent = `failed: ${error.message}`;
  } finally {
    turnId = null;
    $("send").disabled = false;
    $("stop").disabled = true;
    refreshStatus();
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const message = $("message").value;
  if (!message.trim()) return;
  $("message").value = "";
  send(message);
});
$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => {
  if (turnId) fetch(`api/chat/${turnId}/stop`, { method: "POST" });
});
$("model").addEventListener("change", () => { chatId = null; });

refreshStatus();
setInterval(refreshStatus, 5000);
