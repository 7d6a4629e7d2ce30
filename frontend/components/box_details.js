// The header's box status opened: one box in full. Its host, mode and state (with the error,
// its hint and a Run doctor link), round trip, each GPU (name, utilisation, memory), the load
// average, what is loaded (model, kind, memory), the running wrapper and any warnings. Every
// value is set as text: host names and error messages come from the box.
import { html } from "../ui.js";
import { age, bytes } from "../format.js";
import { gpuBusy } from "../state/box_status.js";
import { GpuMeter, gpuMemory } from "./gpu_meter.js";
import { DoctorLink } from "./doctor_link.js";
import { CodeText } from "./code_text.js";

export const BOX_STATE = {
  connected: ["ok", "connected"], reconnecting: ["warn", "reconnecting…"],
  down: ["bad", "down"], idle: ["idle", "not connected yet (connects on first use)"],
};

/** A round trip: "0.4 ms", "12 ms", "1.3 s"; "" when not measured. */
export function rttText(ms) {
  if (ms == null) return "";
  if (ms >= 1000) return `${(ms / 1000).toFixed(1)} s`;
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

function Gpus({ box }) {
  if (box.gpus == null) return null;
  return html`<section class="box-section" aria-label="GPUs">
    <h3>GPUs</h3>
    ${box.gpus.length === 0 && !box.gpu_error && html`<p class="muted box-none">${box.state === "connected"
      ? "No GPU (nvidia-smi is not on the box): CPU only." : `Not known while the box is ${box.state}.`}</p>`}
    ${box.gpus.length > 0 && html`<ul class="box-gpus-list">${box.gpus.map((gpu) => html`
      <li class="box-gpu" key=${gpu.index} data-gpu=${gpu.index}>
        <span class="box-gpu-name"><span class="box-gpu-index">${gpu.index}</span> ${gpu.name ?? "GPU"}
          ${gpuBusy(gpu) && html`<span class="box-tag busy">busy</span>`}</span>
        <${GpuMeter} gpu=${gpu} />
        <span class="box-gpu-nums">
          <span class="box-gpu-util">${gpu.utilization_pct == null ? "util n/a" : `${gpu.utilization_pct}% util`}</span>
          <span class="box-gpu-mem">${gpuMemory(gpu)}</span>
        </span>
      </li>`)}</ul>`}
    ${box.gpu_error && html`<p class="box-note warning">nvidia-smi: ${box.gpu_error}</p>`}
  </section>`;
}

function Loaded({ loaded }) {
  if (loaded == null) return null;
  return html`<section class="box-section" aria-label="Loaded models">
    <h3>Loaded</h3>
    ${loaded.length === 0 ? html`<p class="muted box-none">Nothing loaded.</p>`
      : html`<ul class="box-loaded">${loaded.map((m) => html`<li key=${m.model_id}>
        <span class="box-loaded-id">${m.model_id}</span>
        <span class="muted">${m.kind}${m.status && m.status !== "ready" ? ` · ${m.status}` : ""}</span>
        <span class="box-loaded-mem">${m.memory_bytes != null ? bytes(m.memory_bytes) : ""}</span>
      </li>`)}</ul>`}
  </section>`;
}

export function BoxDetails({ box, several, onClose }) {
  const [dot, word] = BOX_STATE[box.state] ?? ["idle", box.state];
  const facts = [
    ["Host", box.host],
    ["Mode", box.mode],
    ["State", `${word}${box.checked_at ? ` · checked ${age(box.checked_at)}` : ""}`],
    box.rtt_ms != null && ["Round trip", rttText(box.rtt_ms)],
    box.load_avg && ["Load (1, 5, 15 min)", box.load_avg.map((n) => (n == null ? "?" : n.toFixed(2))).join("  ")],
    !box.legacy && ["Box wrapper", box.wrapper ? `${box.wrapper.version ?? "?"} · protocol ${box.wrapper.protocol ?? "?"}`
      : "none running"],
  ].filter(Boolean);
  return html`<div class="box-pop" role="dialog" aria-label=${`Box ${box.name}`} tabindex="-1">
    <div class="box-pop-head">
      ${box.state === "reconnecting" ? html`<span class="spinner" aria-hidden="true"></span>`
        : html`<span class=${`dot ${dot}`} aria-hidden="true"></span>`}
      <strong class="box-pop-name">Box ${box.name}</strong>
      <span class=${`box-state ${dot}`}>${word}</span>
      <span class="spacer"></span>
      ${!box.error && html`<${DoctorLink} box=${several ? box.name : null} onClick=${onClose} />`}
    </div>
    <dl class="box-facts">${facts.map(([term, value]) => html`<dt>${term}</dt><dd>${value}</dd>`)}</dl>
    ${box.error && html`<div class="notice error box-error">
      <p>${box.error.code && html`<strong>${box.error.code}</strong>: `}<${CodeText} text=${box.error.message} /></p>
      ${box.error.hint && html`<p class="hint"><${CodeText} text=${box.error.hint} /></p>`}
      <p><${DoctorLink} box=${several ? box.name : null} onClick=${onClose} /> to find out why, check by check.</p>
    </div>`}
    ${box.status_error && box.state === "connected" && html`<p class="box-note warning">
      The last status reading failed: <${CodeText} text=${box.status_error} /></p>`}
    <${Gpus} box=${box} />
    <${Loaded} loaded=${box.loaded} />
    ${box.warnings?.length > 0 && html`<ul class="box-warnings">${box.warnings.map((text) => html`
      <li class="box-note warning">⚠ ${text}</li>`)}</ul>`}
  </div>`;
}
