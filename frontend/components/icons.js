// Small line icons drawn inline (nothing fetched, no icon font), sized by CSS and coloured
// by `currentColor`; always decorative: the button that holds one carries its name.
import { html } from "../ui.js";

const PATHS = {
  copy: html`<rect x="9" y="9" width="11" height="11" rx="2" /><path d="M5 15V6a2 2 0 0 1 2-2h9" />`,
  check: html`<path d="M5 12.5l4.5 4.5L19 7" />`,
  edit: html`<path d="M4 20h4L19.5 8.5a2.1 2.1 0 0 0-3-3L5 17z" /><path d="M14.5 7.5l3 3" />`,
  regenerate: html`<path d="M20 12a8 8 0 1 1-2.4-5.7" /><path d="M20 4v5h-5" />`,
  left: html`<path d="M15 5l-7 7 7 7" />`,
  right: html`<path d="M9 5l7 7-7 7" />`,
  download: html`<path d="M12 4v11" /><path d="M7 10.5l5 5 5-5" /><path d="M5 20h14" />`,
  sliders: html`<path d="M4 7h9M17 7h3M4 12h3M11 12h9M4 17h11M19 17h1" /><circle cx="15" cy="7" r="2" />
    <circle cx="9" cy="12" r="2" /><circle cx="17" cy="17" r="2" />`,
  reset: html`<path d="M4 12a8 8 0 1 0 2.4-5.7" /><path d="M4 4v5h5" />`,
  columns: html`<rect x="3" y="4" width="7.5" height="16" rx="1.5" /><rect x="13.5" y="4" width="7.5" height="16" rx="1.5" />`,
  sets: html`<path d="M9 6h11M9 12h11M9 18h11" /><path d="M4.5 6h.01M4.5 12h.01M4.5 18h.01" stroke-width="3" />`,
  upload: html`<path d="M12 16V5" /><path d="M7 9.5l5-5 5 5" /><path d="M5 20h14" />`,
  doctor: html`<path d="M3 12h4l2.5-6 4 12 2.5-6H21" />`,
  ranking: html`<path d="M4 20h16" /><rect x="5" y="11" width="4" height="9" /><rect x="10" y="5" width="4" height="15" />
    <rect x="15" y="14" width="4" height="6" />`,
};

export function Icon({ name }) {
  return html`<svg class="icon" viewBox="0 0 24 24" fill="none" stroke="currentColor"
    stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"
    focusable="false">${PATHS[name]}</svg>`;
}
