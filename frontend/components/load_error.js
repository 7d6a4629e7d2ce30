// Why a model did not load, in the box's own words: the error, the hint, and the last lines
// the wrapper wrote to stderr on the box (folded); Retry, and Run doctor to check the box.
import { html } from "../ui.js";
import { DoctorLink } from "./doctor_link.js";

export function LoadError({ load, onRetry }) {
  return html`<div class="notice error load-failure" role="alert">
    <p><strong>${load.model} did not load:</strong> ${load.error}</p>
    ${load.hint && html`<p class="hint">${load.hint}</p>`}
    ${load.stderr && html`<details><summary>The box's last stderr lines</summary>
      <pre class="stderr">${load.stderr}</pre></details>`}
    <p class="load-actions">
      <button type="button" class="btn small" onClick=${() => onRetry(load.model)}>Retry loading</button>
      <${DoctorLink} />
    </p>
  </div>`;
}
