// Under the header while a box is down: what still works (everything stored on the gateway:
// reading, search, export), why in a few words (the box's whole error, which can be long, is
// in the box's details and this line's tooltip; a reply's error may already show it), and a
// Run doctor link. It goes by itself when /api/health says the box is connected again.
import { html } from "../ui.js";
import { DoctorLink } from "./doctor_link.js";

const WHY = {
  box_unreachable: "it cannot be reached", host_key_rejected: "its host key is not trusted",
  auth_failed: "the login was refused", timeout: "it did not answer in time",
  wrapper_unavailable: "our programs cannot run on it", protocol_mismatch: "its wrapper is another version",
};

function Why({ box, several }) {
  const error = box.error;
  const said = error ? WHY[error.code] ?? error.code ?? "" : "";
  const words = several ? said : said.charAt(0).toUpperCase() + said.slice(1); // a sentence
  return html`<span class="box-down-why" title=${[error?.message, error?.hint].filter(Boolean).join("\n")}>
    ${several ? `${box.name}: ` : ""}${words}${words ? " · " : ""}<${DoctorLink} box=${several ? box.name : null} />
  </span>`;
}

export function BoxDown({ boxes }) {
  const down = boxes.filter((box) => box.state === "down");
  if (down.length === 0) return null;
  const several = boxes.length > 1;
  const others = several && down.length < boxes.length;
  return html`<div class="box-down" role="status" aria-live="polite">
    <span class="dot bad" aria-hidden="true"></span>
    <p class="box-down-text">
      <strong>${several ? `Box ${down.map((box) => box.name).join(", ")} down` : "Box down"}:</strong>
      ${" "}reading, search and export still work${others ? "; the other boxes still answer" : ""}.
      ${down.map((box) => html` <${Why} key=${box.name} box=${box} several=${several} />`)}
    </p>
  </div>`;
}
