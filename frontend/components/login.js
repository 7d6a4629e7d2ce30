// The login form, shown instead of the app while the gateway answers 401 (GATEWAY_TOKEN is
// set and this browser has no session cookie). A login sets the cookie; the app then loads.
import { html, useEffect, useRef, useState } from "../ui.js";
import { session } from "../api.js";

export function Login({ onLoggedIn }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const field = useRef(null);
  useEffect(() => { document.title = "Log in · LF Gate"; field.current?.focus(); }, []);
  const submit = async (event) => {
    event.preventDefault();
    if (!token || busy) return;
    setBusy(true);
    setError(null);
    try {
      await session.login(token);
      onLoggedIn();
    } catch (failure) {
      setError(failure.status === 401 ? "That is not this gateway's token. Check GATEWAY_TOKEN in its .env."
        : failure.message); // 429: too many failed logins, with the wait
      setBusy(false);
      field.current?.select();
    }
  };
  return html`<main class="login">
    <form class="login-card" onSubmit=${submit} aria-labelledby="login-title" novalidate>
      <h1 id="login-title">LF Gate</h1>
      <p class="muted">This gateway asks for its token (<code>GATEWAY_TOKEN</code>). This browser stays logged in for 30 days.</p>
      <label for="gateway-token">Gateway token</label>
      <input id="gateway-token" ref=${field} type="password" autocomplete="current-password"
        value=${token} onInput=${(e) => setToken(e.target.value)}
        aria-invalid=${error ? "true" : "false"} aria-describedby=${error ? "login-error" : undefined} />
      ${error && html`<p id="login-error" class="notice error" role="alert">${error}</p>`}
      <button type="submit" class="btn primary" disabled=${busy || !token}>${busy ? "Logging in…" : "Log in"}</button>
    </form>
  </main>`;
}
