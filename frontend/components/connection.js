// The header's status: whether the gateway answers (/api/health, polled) and, when it does, a
// pill per box (components/box_pill.js) and the chat mode. Screen readers hear a box's state
// when it changes, not every new round trip.
import { html } from "../ui.js";
import { BoxPill } from "./box_pill.js";

const SAID = { connected: "reachable", reconnecting: "reconnecting", down: "down",
  idle: "idle (connects on first use)" };

/** What the live region says: "Box reachable · root@gpu:22", "Box down", "Box a reachable,
 *  Box b down". Only state, so it changes only when a state does. */
function spoken(boxes) {
  if (boxes.length === 1) {
    const [box] = boxes;
    return box.state === "down" ? "Box down" : `Box ${SAID[box.state] ?? box.state} · ${box.host}`;
  }
  return boxes.map((box) => `Box ${box.name} ${SAID[box.state] ?? box.state}`).join(", ");
}

export function Connection({ health, boxes, gatewayError }) {
  if (gatewayError || !health) {
    const text = gatewayError ? "Gateway unreachable · reconnecting…" : "Connecting…";
    return html`<div class="connection" role="status" aria-live="polite" title=${gatewayError || text}>
      <span class=${`dot ${gatewayError ? "warn" : "idle"}`} aria-hidden="true"></span>
      <span class="connection-text">${text}</span>
    </div>`;
  }
  const several = boxes.length > 1;
  return html`<div class=${`connection${several ? " several" : ""}`}>
    <span class="pick-sr" role="status" aria-live="polite">${spoken(boxes)}</span>
    ${boxes.map((box) => html`<${BoxPill} key=${box.name} box=${box} several=${several} />`)}
    <span class="badge" title="CHAT_MODE">${health.mode}</span>
  </div>`;
}
