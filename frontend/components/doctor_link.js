// "Run doctor": under every box error, a link that opens the doctor's panel and starts a
// run (#/doctor/run, or #/doctor/run/<box> for one of several boxes). A link, so it works
// from anywhere on the page with nothing passed down, and with the keyboard.
import { html } from "../ui.js";

// Codes that come from the box or the way to it (docs/api.md, docs/protocol.md); a reply's
// error is always the box's.
const BOX_CODES = new Set(["box_unreachable", "host_key_rejected", "auth_failed",
  "wrapper_unavailable", "disk_full", "protocol_mismatch", "wrapper_exited", "timeout",
  "cli_not_found", "pexpect_missing", "llamafactory_missing", "model_not_found",
  "adapter_not_found", "adapter_mismatch", "out_of_memory", "load_failed", "generation_failed",
  "cli_exited", "model_unusable"]);

export const isBoxError = (code) => BOX_CODES.has(code);

export const doctorHref = (box = null) =>
  (box ? `#/doctor/run/${encodeURIComponent(box)}` : "#/doctor/run");

export function DoctorLink({ box = null, label = "Run doctor", onClick }) {
  return html`<a class="doctor-link" href=${doctorHref(box)} onClick=${onClick}
    title=${`Check ${box ? `the box ${box}` : "the box"} step by step: SSH, its shell, `
      + "LlamaFactory, the models and a short chat, each failure with its fix"}
    >${label}</a>`;
}
