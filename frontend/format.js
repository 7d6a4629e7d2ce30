// Small display formats: dates for the chat list, numbers for the per-reply line.

/** Timestamps from SQLite come without a zone; they are UTC. */
export function parseTime(iso) {
  return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);
}

export function dayLabel(iso, now = new Date()) {
  const date = parseTime(iso);
  const start = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((start(now) - start(date)) / 86_400_000);
  if (days <= 0) return "Today";
  if (days === 1) return "Yesterday";
  return date.toLocaleDateString(undefined, {
    weekday: days < 7 ? "long" : undefined,
    day: "numeric",
    month: "short",
    year: date.getFullYear() === now.getFullYear() ? undefined : "numeric",
  });
}

/** Chats (newest first) grouped by the day of their last change, keeping the order. */
export function groupByDay(chats, now = new Date()) {
  const groups = [];
  for (const chat of chats) {
    const label = dayLabel(chat.updated_at, now);
    if (groups.at(-1)?.[0] !== label) groups.push([label, []]);
    groups.at(-1)[1].push(chat);
  }
  return groups;
}

export const basename = (path) => (path ? path.replace(/\/+$/, "").split("/").pop() : "");

export function seconds(value) {
  if (value == null) return "";
  return value < 10 ? `${value.toFixed(1)} s` : `${Math.round(value)} s`;
}

/** How long ago an epoch time (seconds) was: "just now", "12 min ago", "3 d ago", a date. */
export function age(epochSeconds, now = Date.now()) {
  if (epochSeconds == null) return "";
  const s = Math.max(0, Math.round(now / 1000 - epochSeconds));
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  if (s < 30 * 86_400) return `${Math.floor(s / 86_400)} d ago`;
  return new Date(epochSeconds * 1000).toLocaleDateString(undefined,
    { day: "numeric", month: "short", year: "numeric" });
}

/** A loss with three significant digits: 2.80, 0.123, 1.05e-4. */
export function lossText(value) {
  if (value == null || !Number.isFinite(value)) return "";
  if (value !== 0 && Math.abs(value) < 0.001) return value.toExponential(2);
  return Math.abs(value) >= 1000 ? value.toFixed(0) : value.toPrecision(3);
}

export function bytes(value) {
  if (value == null) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let n = value;
  let unit = 0;
  while (n >= 1000 && unit < units.length - 1) { n /= 1000; unit += 1; }
  return unit === 0 ? `${n} B` : `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[unit]}`;
}

/** The reply's streaming rate as the box measured it: tokens (or, in CLI mode, chunks) after
 *  the first over the time from the first to the last; none below two, and a stopped reply
 *  counts only what arrived. Replies stored before the box measured it show none. */
export function replyRate(provenance) {
  const box = provenance?.box_timing ?? {};
  if (box.tokens_per_s != null) return `${box.tokens_per_s.toFixed(1)} tok/s`;
  if (box.chunks_per_s != null) return `${box.chunks_per_s.toFixed(1)} chunks/s`;
  return null;
}

/** The small line under a reply: model, adapter, time to first token, speed. */
export function replySummary(provenance) {
  if (!provenance) return [];
  const parts = [provenance.model];
  parts.push(provenance.adapter_path ? basename(provenance.adapter_path) : "no adapter");
  const timing = provenance.timing ?? {};
  if (timing.ttft_ms != null) {
    parts.push(timing.ttft_ms < 1000 ? `${Math.round(timing.ttft_ms)} ms to first token`
      : `${(timing.ttft_ms / 1000).toFixed(1)} s to first token`);
  }
  const rate = replyRate(provenance);
  if (rate) parts.push(rate);
  return parts;
}

export function provenanceText(provenance) {
  if (!provenance) return "";
  const lines = [];
  const add = (label, value) => {
    if (value != null && value !== "") lines.push(`${label}: ${value}`);
  };
  add("Model", provenance.model);
  add("Mode", provenance.mode);
  add("Box", provenance.host);
  add("Base", provenance.base_model_path);
  add("Adapter", provenance.adapter_path ?? "none");
  add("Template", provenance.template);
  add("Backend", provenance.infer_backend);
  add("Finish", provenance.finish_reason);
  add("Box wrapper", provenance.wrapper_version && `${provenance.wrapper_version} (protocol ${provenance.protocol})`);
  const params = Object.entries(provenance.params ?? {})
    .filter(([key]) => key !== "system").map(([k, v]) => `${k}=${v}`).join(", ");
  add("Parameters", params || "defaults");
  if (provenance.params?.system) add("System prompt", provenance.params.system.slice(0, 200));
  const timing = provenance.timing;
  if (timing) add("Timing", `first token ${timing.ttft_ms ?? "–"} ms, total ${timing.total_ms} ms, ${timing.chunks} chunks`);
  if (provenance.usage?.completion_tokens) add("Tokens", provenance.usage.completion_tokens);
  if (provenance.error) add("Error", `${provenance.error.code}: ${provenance.error.message}`);
  return lines.join("\n");
}

/** How much of the model's context window a reply used: {used, window} from its usage
 *  (prompt and reply tokens, protocol 6's context_window), or null where the box did not
 *  count (CLI mode, an older reply). */
export function contextUse(provenance) {
  const usage = provenance?.usage;
  const window = usage?.context_window;
  if (!Number.isInteger(window) || window <= 0 || !Number.isInteger(usage.prompt_tokens)) return null;
  return { used: usage.prompt_tokens + (usage.completion_tokens ?? 0), window };
}

/** The note under a reply whose prompt left out the chat's earliest messages. */
export function leftOutText(provenance) {
  const count = provenance?.left_out;
  if (!Number.isInteger(count) || count <= 0) return "";
  const window = provenance.usage?.context_window;
  return `The first ${count} message${count === 1 ? " was" : "s were"} left out of this reply's `
    + `prompt: the chat is longer than the model's window${window ? ` (${window} tokens)` : ""}.`;
}

/** A duration in milliseconds: "120 ms", "1.4 s". */
export function millis(value) {
  if (value == null) return "";
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(1)} s`;
}

/** A compare column's timing under its reply: time to first token, speed, tokens, total
 *  (from a `done` event or a stored reply's provenance: the same fields). */
export function timingParts(provenance) {
  if (!provenance) return [];
  const timing = provenance.timing ?? {};
  const parts = [];
  if (timing.ttft_ms != null) parts.push(["ttft", `TTFT ${millis(timing.ttft_ms)}`]);
  const rate = replyRate(provenance);
  if (rate) parts.push(["rate", rate]);
  const tokens = provenance.usage?.completion_tokens;
  if (tokens != null) parts.push(["tokens", `${tokens} token${tokens === 1 ? "" : "s"}`]);
  if (timing.total_ms != null) parts.push(["total", `${millis(timing.total_ms)} total`]);
  return parts;
}

/** A run's running time or estimate: "8.2 s", "42 s", "3 min 05 s", "1 h 02 min". */
export function duration(value) {
  if (value == null) return "";
  if (value < 60) return seconds(value);
  const s = Math.round(value);
  const two = (n) => String(n).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)} min ${two(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${two(Math.floor((s % 3600) / 60))} min`;
}

/** A stored time (ISO, UTC) as a short local date and time. */
export const dateTime = (iso) => parseTime(iso).toLocaleString(undefined,
  { dateStyle: "medium", timeStyle: "short" });
