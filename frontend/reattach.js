// Streams that survive: a reply goes on on the box whatever happens to the page's connection
// (only Stop stops it), so a stream that drops mid-reply is opened again with the last event
// id it gave, and the gateway sends what came after it: every event once, none missed.
import { ApiError } from "./api.js";

/** Waits before each new try: soon after a blip, then every few seconds while the gateway
 *  stays away (a try is one GET). */
export const BACKOFF_MS = [500, 1000, 2000, 5000];

/** Worth another try: the gateway could not be reached (or a proxy before it failed). A 4xx
 *  is an answer: the stream is gone (404), or this browser must log in (401). */
const passing = (error) => error instanceof ApiError && (error.status === 0 || error.status >= 500);

/** Resolves after `ms`, or at once when the browser comes back online or the tab is shown
 *  (a laptop that wakes up); rejects when `signal` aborts. */
function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    let timer = null;
    const shown = () => { if (document.visibilityState === "visible") wake(); };
    const settle = () => {
      clearTimeout(timer);
      removeEventListener("online", wake);
      document.removeEventListener("visibilitychange", shown);
      signal?.removeEventListener("abort", abort);
    };
    function wake() { settle(); resolve(); }
    function abort() { settle(); reject(signal.reason); }
    if (signal?.aborted) { abort(); return; }
    timer = setTimeout(wake, ms);
    addEventListener("online", wake);
    document.addEventListener("visibilitychange", shown);
    signal?.addEventListener("abort", abort);
  });
}

/** The events ({event, data, id}) of `open(lastId, signal)` (a promise of an async iterable:
 *  api.js's openTurn or followTurn/followCompare), opened again after every drop with the
 *  last id it gave (null: none yet), until `ended()` says the caller has its end.
 *  Throws what the first open throws (a send that came to nothing), and what a later one
 *  throws unless it is `passing` (tried again after BACKOFF_MS). A stream that drops while
 *  `resumable()` is false (the gateway never named the turn) just ends. `onLink(up)` says
 *  when the connection is lost and when a new one is open. */
export async function* lasting(open, { signal, resumable, ended, onLink }) {
  let lastId = null;
  let failures = 0;
  for (;;) {
    try {
      const events = await open(lastId, signal);
      onLink(true);
      for await (const item of events) {
        if (item.id !== null) lastId = item.id;
        failures = 0;
        yield item;
        if (ended()) return;
      }
    } catch (error) {
      if (error.name === "AbortError" || !resumable() || !passing(error)) throw error;
    }
    if (ended() || !resumable()) return;
    onLink(false);
    await pause(BACKOFF_MS[Math.min(failures++, BACKOFF_MS.length - 1)], signal);
  }
}
