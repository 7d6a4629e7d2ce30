// Text from the box or the gateway (an error, a hint, a doctor's finding) with its
// `backticks` shown as code: set as text, never parsed as markup.
import { html } from "../ui.js";

export function CodeText({ text }) {
  return String(text ?? "").split("`").map((part, i) => (i % 2 ? html`<code>${part}</code>` : part));
}
