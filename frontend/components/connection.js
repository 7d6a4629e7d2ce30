// Whether the box can be reached, and the chat mode, from /api/health (polled).
import { html } from "../ui.js";

export function Connection({ health, gatewayError }) {
  let state = "ok";
  let text = "";
  let detail = "";
  if (gatewayError) {
    state = "warn";
    text = "Gateway unreachable · reconnecting…";
    detail = gatewayError;
  } else if (!health) {
    state = "idle";
    text = "Connecting…";
  } else if (health.remote.connected) {
    text = `Box reachable · ${health.remote.host}`;
    detail = `Connected to ${health.remote.host}`;
  } else if (health.remote.error) {
    state = "bad"; // the reason is long (a host key, a stderr tail): in the tooltip, not the header
    text = "Box down";
    detail = health.remote.error;
  } else {
    state = "idle";
    text = `Box idle · ${health.remote.host} (connects on first use)`;
  }
  return html`<div class="connection" role="status" aria-live="polite" title=${detail || text}>
    <span class=${`dot ${state}`} aria-hidden="true"></span>
    <span class="connection-text">${text}</span>
    ${health && html`<span class="badge" title="CHAT_MODE">${health.mode}</span>`}
  </div>`;
}
