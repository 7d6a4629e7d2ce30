// One box in the header: a pill with its state (a dot; a spinner while it reconnects), its
// round trip and a small bar pair per GPU (utilisation over memory; "CPU" for a box without
// one). Clicking it opens the box's details. On a narrow header only the dot and a short
// label stay.
import { html, useEffect, useLayoutEffect, useRef, useState } from "../ui.js";
import { BoxDetails, BOX_STATE, rttText } from "./box_details.js";
import { GpuMeter, gpuWords } from "./gpu_meter.js";

export function BoxPill({ box, several }) {
  const [open, setOpen] = useState(false);
  const root = useRef(null);
  const button = useRef(null);
  const [dot, word] = BOX_STATE[box.state] ?? ["idle", box.state];
  const close = (refocus) => {
    setOpen(false);
    if (refocus) button.current?.focus();
  };
  useLayoutEffect(() => { if (open) root.current?.querySelector(".box-pop")?.focus(); }, [open]);
  useEffect(() => {
    if (!open) return undefined;
    const onPointer = (event) => { if (!root.current?.contains(event.target)) close(false); };
    const onKey = (event) => {
      if (event.key !== "Escape") return;
      event.preventDefault();
      event.stopPropagation(); // closes the details; does not also stop a reply
      close(true);
    };
    document.addEventListener("pointerdown", onPointer);
    document.addEventListener("keydown", onKey, true);
    return () => {
      document.removeEventListener("pointerdown", onPointer);
      document.removeEventListener("keydown", onKey, true);
    };
  }, [open]);

  const rtt = box.state === "connected" ? rttText(box.rtt_ms) : "";
  const where = several ? box.name : box.host;
  const label = `${where}${rtt ? ` · ${rtt}` : box.state !== "connected" ? ` · ${word}` : ""}`;
  const short = box.state === "down" ? (several ? `${box.name} down` : "Box down")
    : several ? box.name : "Box";
  const gpus = box.gpus ?? [];
  const spoken = [`Box ${box.name}: ${word}`, rtt && `${rtt} round trip`,
    ...gpus.map(gpuWords), box.gpus?.length === 0 && "no GPU"].filter(Boolean).join("; ");
  const title = box.error ? [box.error.message, box.error.hint].filter(Boolean).join("\n")
    : `${box.host} (${box.mode} mode): ${word}`;
  // Tabbing out of the details closes them, as leaving a menu does.
  const onFocusOut = (event) => {
    if (open && event.relatedTarget && !root.current?.contains(event.relatedTarget)) close(false);
  };
  return html`<div class="box-wrap" ref=${root} onFocusOut=${onFocusOut}>
    <button type="button" class=${`box-pill state-${box.state}`} ref=${button}
      aria-haspopup="dialog" aria-expanded=${open ? "true" : "false"}
      aria-label=${`${spoken}. Details`} title=${title} data-box=${box.name}
      onClick=${() => (open ? close(true) : setOpen(true))}>
      ${box.state === "reconnecting" ? html`<span class="spinner" aria-hidden="true"></span>`
        : html`<span class=${`dot ${dot}`} aria-hidden="true"></span>`}
      <span class="connection-text">${label}</span>
      <span class="box-short" aria-hidden="true">${short}</span>
      ${gpus.length > 0 && html`<span class="box-gpus">
        ${gpus.map((gpu) => html`<${GpuMeter} key=${gpu.index} gpu=${gpu} />`)}</span>`}
      ${box.gpus?.length === 0 && !box.gpu_error && box.state === "connected"
        && html`<span class="box-cpu" title="No GPU on this box">CPU</span>`}
    </button>
    ${open && html`<${BoxDetails} box=${box} several=${several} onClose=${() => close(false)} />`}
  </div>`;
}
