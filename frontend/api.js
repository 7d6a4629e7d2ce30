// The gateway's HTTP API (docs/api.md) as small async functions. Paths are relative, so the
// page also works behind a reverse proxy under a sub-path.
import { parseSSE } from "./sse.js";

export class ApiError extends Error {
  constructor(status, code, message, hint = "") {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
  }
}

/** The gateway's error shapes ({detail: {code, message, hint}}, FastAPI's validation list, a
 *  plain string, or nothing at all) as one ApiError with a readable message. */
async function errorFrom(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: use the status line */ }
  const detail = body?.detail;
  if (detail && typeof detail === "object" && !Array.isArray(detail)) {
    return new ApiError(response.status, detail.code ?? "error", detail.message ?? "error",
      detail.hint ?? "");
  }
  if (Array.isArray(detail)) {
    const text = detail.map((e) => {
      const where = (e.loc ?? []).filter((part) => part !== "body").join(".");
      return where ? `${where}: ${e.msg}` : e.msg;
    }).join("; ");
    return new ApiError(response.status, "invalid", text);
  }
  if (typeof detail === "string") return new ApiError(response.status, "error", detail);
  const text = response.status === 429
    ? "Too many requests: the gateway asked to slow down. Try again in a moment."
    : `The gateway answered ${response.status} ${response.statusText}`.trim();
  return new ApiError(response.status, `http_${response.status}`, text);
}

/** With GATEWAY_TOKEN set, a 401 from any call means this browser must log in: the page
 *  listens here (onLoginNeeded) and shows the login form. A 401 to a request sent before the
 *  latest login is old news and says nothing. */
const loginNeeded = new EventTarget();
let loginEpoch = 0;
export function onLoginNeeded(listener) {
  loginNeeded.addEventListener("login-needed", listener);
  return () => loginNeeded.removeEventListener("login-needed", listener);
}

async function request(path, { method = "GET", body, signal, timeoutMs, headersMs, headers } = {}) {
  // A poll gives up after `timeoutMs`: a request that hangs must not stop the polling. A
  // stream's answer must begin within `headersMs` (its body then runs as long as it runs).
  const limit = timeoutMs ? AbortSignal.timeout(timeoutMs) : null;
  const late = headersMs ? new AbortController() : null;
  const signals = [signal, limit, late?.signal].filter(Boolean);
  const init = { method, signal: signals.length > 1 ? AbortSignal.any(signals) : signals[0] };
  const timer = late && setTimeout(() => late.abort(), headersMs);
  if (headers) init.headers = { ...headers };
  if (body !== undefined) {
    init.headers = { ...init.headers, "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const epoch = loginEpoch;
  try {
    // Same-origin fetches send the session cookie (credentials: "same-origin", the default).
    const response = await fetch(path, init);
    if (response.status === 401 && path !== "api/login" && epoch === loginEpoch) {
      loginNeeded.dispatchEvent(new Event("login-needed"));
    }
    return response;
  } catch (error) {
    if (limit?.aborted || late?.signal.aborted) {
      const waited = (limit?.aborted ? timeoutMs : headersMs) / 1000;
      throw new ApiError(0, "timeout", `The gateway did not answer ${path} in ${waited} s.`);
    }
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", `The gateway cannot be reached (${error.message}).`);
  } finally {
    clearTimeout(timer);
  }
}

export async function api(path, options) {
  const response = await request(path, options);
  if (!response.ok) throw await errorFrom(response);
  return response.status === 204 ? null : response.json();
}

/** A turn's stream says something at least every 5 s (the gateway's keep-alives), so this
 *  long without a byte is a connection that died without closing (a laptop that slept, a
 *  NAT that forgot it): it counts as dropped, and the reply is reattached. */
const STALL_MS = 15_000;
/** Woken (the tab shown again, the browser back online) after longer than this without a
 *  byte: the machine most likely slept, and its connection with it; dropped at once. */
const WOKE_MS = 7_000;

/** POST a turn (a chat message, a regenerate, an edit, a compare); once the gateway has
 *  taken it, its SSE events ({event, data, id}) as they arrive. Throws an ApiError when it is
 *  refused or the gateway cannot be reached. The events end when the stream does: with
 *  `done`/`error`, or dropped (the caller tells which, and reattaches: reattach.js). */
export async function openTurn(path, body, signal) {
  const response = await request(path, { method: "POST", body: { ...body, stream: true }, signal });
  if (!response.ok) throw await errorFrom(response);
  return eventsOf(response, STALL_MS);
}

/** A reply's events again (a dropped connection, a reload, another tab): those after
 *  `lastId` (null: from its first event), then live ones until it ends. */
export const followTurn = (turnId, lastId, signal) =>
  follow(`api/chat/${encodeURIComponent(turnId)}/stream`, lastId, signal);

/** A compare's events again: `meta`, then each column's events after its own id in `lastId`
 *  (a compare event's id is every column's last id, dot-joined), then live ones. */
export const followCompare = (compareId, lastId, signal) =>
  follow(`api/compare/${encodeURIComponent(compareId)}/stream`, lastId, signal);

async function follow(path, lastId, signal) {
  const headers = lastId === null ? undefined : { "Last-Event-ID": lastId };
  // The gateway answers at once; a try that hangs went out on a connection that died
  // unseen (a laptop that slept), and the next try takes a new one.
  const response = await request(path, { signal, headers, headersMs: STALL_MS });
  if (!response.ok) throw await errorFrom(response);
  return eventsOf(response, STALL_MS);
}

/** GET an event stream (a run's progress, the doctor) and yield its events, as openTurn's. */
export async function* streamEvents(path, signal) {
  const response = await request(path, { signal });
  if (!response.ok) throw await errorFrom(response);
  yield* eventsOf(response);
}

/** A read that gives up (then the stream counts as dropped) after `ms` without a byte, or
 *  on waking after WOKE_MS without one (`since`: when the last byte came, wall-clock time,
 *  which goes on while a laptop sleeps). */
function readWithin(reader, ms, since) {
  let timer;
  let woke;
  const silence = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`nothing for ${ms / 1000} s`)), ms);
    woke = () => {
      if (document.visibilityState === "visible" && Date.now() - since > WOKE_MS) {
        reject(new Error("woke up after a silence"));
      }
    };
    addEventListener("online", woke);
    document.addEventListener("visibilitychange", woke);
  });
  return Promise.race([reader.read(), silence]).finally(() => {
    clearTimeout(timer);
    removeEventListener("online", woke);
    document.removeEventListener("visibilitychange", woke);
  });
}

async function* eventsOf(response, stallMs = 0) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await (stallMs ? readWithin(reader, stallMs, Date.now()) : reader.read());
      } catch (error) {
        if (error.name === "AbortError") throw error;
        return; // the connection dropped mid-stream (or went silent)
      }
      if (chunk.done) return;
      let events;
      [events, buffer] = parseSSE(buffer + chunk.value);
      yield* events;
    }
  } finally {
    // A reader that stops early (its reply ended, or it went silent) closes the connection:
    // the browser allows only a few at once per gateway.
    reader.cancel().catch(() => {});
  }
}

export const chats = {
  list: (q, archived) => api(`api/chats?${new URLSearchParams({ q, archived, limit: 200 })}`),
  get: (id) => api(`api/chats/${encodeURIComponent(id)}`),
  create: (body) => api("api/chats", { method: "POST", body }),
  patch: (id, body) => api(`api/chats/${encodeURIComponent(id)}`, { method: "PATCH", body }),
  remove: (id) => api(`api/chats/${encodeURIComponent(id)}`, { method: "DELETE" }),
  importJson: (data) => api("api/chats/import", { method: "POST", body: data }),
};

export const models = {
  list: (options) => api("api/models", options),
  refresh: () => api("api/models/refresh", { method: "POST" }), // rescans ADAPTER_DIRS first
  load: (id) => api(`api/models/${encodeURIComponent(id)}/load`, { method: "POST" }),
  status: (id) => api(`api/models/${encodeURIComponent(id)}/status`),
  unload: (id) => api(`api/models/${encodeURIComponent(id)}/unload`, { method: "POST" }),
};

export const compares = {
  stop: (compareId) => api(`api/compare/${encodeURIComponent(compareId)}/stop`, { method: "POST" }),
  votes: (chatId) => api(`api/chats/${encodeURIComponent(chatId)}/votes`),
  vote: (chatId, body) => api(`api/chats/${encodeURIComponent(chatId)}/votes`, { method: "POST", body }),
  leaderboard: () => api("api/leaderboard"),
};

export const promptSets = {
  list: () => api("api/prompt-sets"),
  create: (body) => api("api/prompt-sets", { method: "POST", body }),
  remove: (setId) => api(`api/prompt-sets/${encodeURIComponent(setId)}`, { method: "DELETE" }),
  start: (setId, body) => api(`api/prompt-sets/${encodeURIComponent(setId)}/runs`, { method: "POST", body }),
};

export const runs = {
  list: () => api("api/runs"),
  get: (runId) => api(`api/runs/${encodeURIComponent(runId)}`),
  events: (runId, signal) => streamEvents(`api/runs/${encodeURIComponent(runId)}/events`, signal),
  stop: (runId) => api(`api/runs/${encodeURIComponent(runId)}/stop`, { method: "POST" }),
  resume: (runId) => api(`api/runs/${encodeURIComponent(runId)}/resume`, { method: "POST" }),
  vote: (runId, body) => api(`api/runs/${encodeURIComponent(runId)}/votes`, { method: "POST", body }),
  exportBase: (runId) => `api/runs/${encodeURIComponent(runId)}/export`,
};

export const health = (options) => api("api/health", options);

/** The page's login (GATEWAY_TOKEN -> an HttpOnly session cookie) and logout. */
export const session = {
  login: async (token) => {
    await api("api/login", { method: "POST", body: { token } });
    loginEpoch += 1;
  },
  logout: () => api("api/logout", { method: "POST" }),
};

/** `?box=NAME` for the doctor when the page knows several boxes; none for the only one. */
const boxQuery = (box) => (box ? `?${new URLSearchParams({ box })}` : "");
export const doctor = {
  report: (box) => api(`api/doctor${boxQuery(box)}`),
  stream: (box, signal) => streamEvents(`api/doctor/stream${boxQuery(box)}`, signal),
};
export const stopTurn = (turnId) =>
  api(`api/chat/${encodeURIComponent(turnId)}/stop`, { method: "POST" });
