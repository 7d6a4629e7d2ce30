// The generation settings of a chat (system prompt, temperature, top_p, top_k,
// max_new_tokens, repetition penalty). Saved on the chat, so every turn of it uses them;
// an empty field means the model's default.
import { html, useEffect, useState } from "../ui.js";

const FIELDS = [
  { key: "temperature", label: "Temperature", step: "0.05", min: "0", max: "10" },
  { key: "top_p", label: "Top p", step: "0.01", min: "0.01", max: "1" },
  { key: "top_k", label: "Top k", step: "1", min: "0", integer: true },
  { key: "max_new_tokens", label: "Max new tokens", step: "1", min: "1", integer: true },
  { key: "repetition_penalty", label: "Repetition penalty", step: "0.01", min: "0.01", max: "10" },
];

function toForm(settings) {
  const form = { system: settings.system ?? "" };
  for (const field of FIELDS) form[field.key] = settings.params?.[field.key] ?? "";
  return form;
}

export function ParamsDrawer({ settings, onSave, onClose, error }) {
  const [form, setForm] = useState(() => toForm(settings));
  const [problem, setProblem] = useState(null);
  useEffect(() => setForm(toForm(settings)), [settings]);
  const set = (key, value) => setForm({ ...form, [key]: value });
  const save = (event) => {
    event.preventDefault();
    const params = { ...(settings.params ?? {}) };
    for (const field of FIELDS) {
      const raw = String(form[field.key]).trim();
      if (raw === "") { delete params[field.key]; continue; }
      const value = Number(raw);
      if (!Number.isFinite(value) || (field.integer && !Number.isInteger(value))) {
        setProblem(`${field.label}: ${field.integer ? "a whole number" : "a number"}, please`);
        return;
      }
      params[field.key] = value;
    }
    setProblem(null);
    onSave({ system: form.system.trim() ? form.system : null, params });
  };
  return html`<aside class="drawer" role="dialog" aria-label="Generation settings"
      onKeyDown=${(e) => { if (e.key === "Escape") { e.stopPropagation(); onClose(); } }}>
    <form onSubmit=${save} novalidate>
      <div class="drawer-head">
        <h2>Settings for this chat</h2>
        <button type="button" class="icon-btn" aria-label="Close settings" onClick=${onClose}>✕</button>
      </div>
      <label class="field">System prompt
        <textarea rows="4" value=${form.system} placeholder="(none)"
          onInput=${(e) => set("system", e.target.value)}></textarea>
      </label>
      ${FIELDS.map((field) => html`<label class="field" key=${field.key}>${field.label}
        <input type="number" inputmode="decimal" step=${field.step} min=${field.min} max=${field.max}
          placeholder="default" value=${form[field.key]} aria-label=${field.label}
          onInput=${(e) => set(field.key, e.target.value)} />
      </label>`)}
      ${(problem || error) && html`<p class="notice error" role="alert">${problem || error}</p>`}
      <div class="drawer-actions">
        <button type="button" class="btn" onClick=${() => setForm(toForm({}))}>Reset to defaults</button>
        <button type="submit" class="btn primary">Save</button>
      </div>
    </form>
  </aside>`;
}
