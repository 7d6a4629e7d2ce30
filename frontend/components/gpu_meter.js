// One GPU as two small bars, its utilisation over its memory in use, for the header's box
// status and its details. Decorative: what it shows is in its title and in the words beside.
import { html } from "../ui.js";
import { gpuBusy } from "../state/box_status.js";

const pct = (value) => Math.max(0, Math.min(100, value));

/** "71.7 / 80.0 GiB" from MiB (nvidia-smi's unit); null parts are unknown ("[N/A]"). */
export function gpuMemory(gpu) {
  const gib = (mib) => (mib == null ? "?" : (mib / 1024).toFixed(1));
  if (gpu.memory_total_mib == null && gpu.memory_used_mib == null) return "memory unknown";
  return `${gib(gpu.memory_used_mib)} / ${gib(gpu.memory_total_mib)} GiB`;
}

/** What one GPU is doing, in words: its title, and what screen readers say. */
export function gpuWords(gpu) {
  const util = gpu.utilization_pct == null ? "utilisation unknown" : `${gpu.utilization_pct}% busy`;
  return `GPU ${gpu.index}${gpu.name ? ` (${gpu.name})` : ""}: ${util}${gpuBusy(gpu) ? " (in use)" : ""}, ${gpuMemory(gpu)}`;
}

export function GpuMeter({ gpu }) {
  const util = gpu.utilization_pct;
  const memory = gpu.memory_used_mib != null && gpu.memory_total_mib
    ? (gpu.memory_used_mib / gpu.memory_total_mib) * 100 : null;
  const classes = ["gpu-meter", gpuBusy(gpu) && "busy", memory != null && memory >= 90 && "full"]
    .filter(Boolean).join(" ");
  return html`<span class=${classes} title=${gpuWords(gpu)} aria-hidden="true">
    <span class=${`gpu-bar util${util == null ? " unknown" : ""}`}><span style=${`width: ${pct(util ?? 0)}%`}></span></span>
    <span class=${`gpu-bar mem${memory == null ? " unknown" : ""}`}><span style=${`width: ${pct(memory ?? 0)}%`}></span></span>
  </span>`;
}
