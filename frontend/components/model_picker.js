// The header's model picker: the base and every adapter the gateway serves, with each one's
// load status; picking an unloaded model loads it, showing a spinner and the seconds so far.
import { html, useEffect, useState } from "../ui.js";
import { basename, seconds } from "../format.js";

const STATUS_LABEL = { ready: "loaded", loading: "loading…", unloaded: "not loaded", error: "failed" };

function optionLabel(model) {
  const what = model.adapter_path ? basename(model.adapter_path) : basename(model.base_model_path);
  return `${model.id} — ${what} (${STATUS_LABEL[model.status] ?? model.status})`;
}

function Elapsed({ since }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(timer);
  }, []);
  return html`<span class="elapsed">${Math.floor((now - since) / 1000)} s</span>`;
}

export function ModelPicker({ models, value, onChange, load, onUnload, disabled }) {
  const bases = models.filter((m) => !m.adapter_path);
  const adapters = models.filter((m) => m.adapter_path);
  const current = models.find((m) => m.id === value);
  return html`<div class="model-picker">
    <select aria-label="Model" value=${value} disabled=${disabled}
      onChange=${(e) => onChange(e.target.value)}>
      ${current === undefined && html`<option value=${value}>${value}</option>`}
      ${adapters.length > 0 && html`<optgroup label="Adapters">
        ${adapters.map((m) => html`<option key=${m.id} value=${m.id}>${optionLabel(m)}</option>`)}
      </optgroup>`}
      ${bases.length > 0 && html`<optgroup label="Base models">
        ${bases.map((m) => html`<option key=${m.id} value=${m.id}>${optionLabel(m)}</option>`)}
      </optgroup>`}
    </select>
    <span class="model-status" role="status" aria-live="polite">
      ${current?.status === "loading" && html`<span class="spinner" aria-hidden="true"></span>
        <span class="status-text">Loading ${current.id}… </span>
        ${load?.model === current.id ? html`<${Elapsed} since=${load.since} />` : ""}`}
      ${current?.status === "ready" && html`<span class="dot ok" aria-hidden="true"></span>
        <span class="status-text">${load?.model === current.id && load.seconds != null
          ? `Ready · loaded in ${seconds(load.seconds)}` : "Ready"}</span>
        ${!disabled && html`<button type="button" class="btn small unload" aria-label=${`Unload ${current.id}`}
          title="Stop its wrapper and free the box's memory" onClick=${() => onUnload(current.id)}>Unload</button>`}`}
      ${current?.status === "unloaded" && html`<span class="dot idle" aria-hidden="true"></span>
        <span class="status-text">Not loaded (loads on first message)</span>`}
      ${current?.status === "error" && html`<span class="dot bad" aria-hidden="true"></span>
        <span class="load-error" title=${[load?.error, load?.hint].filter(Boolean).join("\n")}>Load failed</span>`}
    </span>
  </div>`;
}
