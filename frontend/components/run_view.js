// A run of a prompt set (#/run/<id>): its progress (done / total, elapsed, ETA), Stop while
// it runs and Resume once it stopped; the average scores per model as a bar chart (inline
// SVG) with the numbers beside it; and the table: a row a prompt (its reference, its vote),
// a column a model, each cell the reply as sanitised Markdown (clamped, with Show all), its
// timing and its scores. Export as Markdown, JSONL or CSV. State: state/prompt_runs.js.
import { html, useLayoutEffect, useRef, useState } from "../ui.js";
import { ENDED, METRICS, scoreText, useRun } from "../state/prompt_runs.js";
import { MODES } from "../state/compare.js";
import { dateTime, duration, millis } from "../format.js";
import { ReplyBody } from "./message.js";
import { ExportMenu } from "./export_menu.js";
import { DoctorLink, isBoxError } from "./doctor_link.js";
import { ScrollX } from "./scroll_x.js";

const EXPORTS = [["markdown", "Markdown (.md)"], ["jsonl", "JSONL, a line a prompt (.jsonl)"],
  ["csv", "CSV, a row a reply (.csv)"]];
const RESUMABLE = ["stopped", "interrupted", "error"];

/** Long text folded to a few lines, with Show all / Show less when it does not fit. */
function Clamp({ children, kind = "reply" }) {
  const box = useRef(null);
  const [open, setOpen] = useState(false);
  const [over, setOver] = useState(false);
  useLayoutEffect(() => {
    const el = box.current;
    if (!el || open) return;
    const now = el.scrollHeight > el.clientHeight + 1;
    if (now !== over) setOver(now);
  });
  return html`<div class=${`clamp clamp-${kind}${open ? " open" : ""}`}>
    <div class="clamp-box" ref=${box}>${children}</div>
    ${(over || open) && html`<button type="button" class="link-btn clamp-toggle"
      aria-expanded=${open ? "true" : "false"} onClick=${() => setOpen(!open)}>${open ? "Show less" : "Show all"}</button>`}
  </div>`;
}

function Progress({ status, progress }) {
  const { done, total, errors, elapsed_s: elapsed, eta_s: eta } = progress;
  const share = total ? Math.min(1, done / total) : 0;
  return html`<div class="run-progress">
    <div class=${`progress ${status}`} role="progressbar" aria-label="Replies done"
      aria-valuemin="0" aria-valuemax=${total} aria-valuenow=${done}
      aria-valuetext=${`${done} of ${total} replies`}>
      <span class="progress-fill" style=${`width: ${(share * 100).toFixed(2)}%`}></span>
    </div>
    <span class="progress-text">
      <span class="progress-count">${done} / ${total}</span>
      ${errors > 0 && html`<span class="progress-errors">${errors} failed</span>`}
      <span class="progress-elapsed">${duration(elapsed)} elapsed</span>
      ${status === "running" && html`<span class="progress-eta">ETA ${eta == null ? "…" : duration(eta)}</span>`}
    </span>
  </div>`;
}

/** Average BLEU, chrF and ROUGE-L per model as grouped bars (0-100), a series per model. */
function ScoreChart({ models, averages }) {
  const [bar, gap, groupGap, left, top, plot, bottom] = [26, 5, 34, 30, 16, 120, 22];
  const group = models.length * bar + (models.length - 1) * gap;
  const width = left + METRICS.length * (group + groupGap);
  const height = top + plot + bottom;
  const y = (value) => top + plot - (Math.max(0, Math.min(100, value)) / 100) * plot;
  return html`<svg class="score-chart" viewBox=${`0 0 ${width} ${height}`} style=${`max-width: ${width}px`}
      role="img" aria-label="Average BLEU, chrF and ROUGE-L per model (the table beside has the numbers)">
    ${[0, 50, 100].map((tick) => html`<g class="tick" key=${tick}>
      <line x1=${left - 4} x2=${width} y1=${y(tick)} y2=${y(tick)} />
      <text x=${left - 7} y=${y(tick) + 3.5} text-anchor="end">${tick}</text>
    </g>`)}
    ${METRICS.map(([key, label], g) => {
      const x0 = left + groupGap / 2 + g * (group + groupGap);
      return html`<g class="metric" key=${key} data-metric=${key}>
        ${models.map((model, i) => {
          const value = averages[model]?.[key];
          const x = x0 + i * (bar + gap);
          return html`<g class=${`series-${i}`} key=${i}>
            ${value != null && html`<rect x=${x} y=${y(value)} width=${bar} height=${y(0) - y(value)} rx="2">
              <title>${model}: ${label} ${scoreText(value)}</title></rect>`}
            <text class="bar-value" x=${x + bar / 2} y=${y(value ?? 0) - 4} text-anchor="middle">${scoreText(value)}</text>
          </g>`;
        })}
        <text class="metric-label" x=${x0 + group / 2} y=${height - 6} text-anchor="middle">${label}</text>
      </g>`;
    })}
  </svg>`;
}

/** Per model: its average scores (where the prompts have references) and timings. */
function Averages({ run }) {
  const referenced = run.rows.some((row) => row.reference != null);
  const averages = run.averages ?? {};
  const models = run.models;
  return html`<section class="run-scores" aria-label="Averages per model">
    ${referenced && html`<${ScoreChart} models=${models} averages=${averages} />`}
    <${ScrollX} className="table-scroll" label="Averages table">
      <table class="score-table">
        <caption>${referenced ? "Average scores against the references (0–100) and timings" : "Average timings"}</caption>
        <thead><tr>
          <th scope="col">Model</th>
          ${referenced && METRICS.map(([key, label]) => html`<th scope="col" key=${key}>${label}</th>`)}
          ${referenced && html`<th scope="col" title="Replies scored">Scored</th>`}
          <th scope="col" title="Time to first token">TTFT</th><th scope="col">Total</th>
        </tr></thead>
        <tbody>${models.map((model, i) => {
          const a = averages[model] ?? {};
          return html`<tr key=${i} data-model=${model}>
            <th scope="row"><span class=${`swatch series-${i}`} aria-hidden="true"></span>${model}</th>
            ${referenced && METRICS.map(([key]) => html`<td class=${`score-${key}`} key=${key}>${scoreText(a[key])}</td>`)}
            ${referenced && html`<td class="scored">${a.scored ?? 0}</td>`}
            <td class="ttft">${a.ttft_ms == null ? "–" : millis(a.ttft_ms)}</td>
            <td class="total">${a.total_ms == null ? "–" : millis(a.total_ms)}</td>
          </tr>`;
        })}</tbody>
      </table>
    </${ScrollX}>
  </section>`;
}

function voteText(vote, models) {
  if (vote.winner === "tie") return "Tie";
  if (vote.winner === "both_bad") return models.length === 2 ? "Both bad" : "All bad";
  return `${models[Number(vote.winner)] ?? vote.winner} is best`;
}

function Cell({ cell, number, verdict, canVote, pressed, onBest }) {
  const { status } = cell;
  const classes = ["run-cell", `status-${status}`, verdict && `verdict-${verdict}`].filter(Boolean).join(" ");
  return html`<td class=${classes} data-slot=${cell.slot} aria-busy=${status === "running" ? "true" : "false"}>
    ${status === "pending" ? html`<span class="cell-pending">Not asked yet</span>`
      : status === "running" && !cell.content
        ? html`<span class="typing" aria-label="Generating"><i></i><i></i><i></i></span>`
        : cell.content && html`<${Clamp}><${ReplyBody} content=${cell.content}
          streaming=${status === "running"} /></${Clamp}>`}
    ${status === "stopped" && html`<p class="notice stopped">Stopped: asked again on Resume</p>`}
    ${cell.finish_reason === "length" && html`<p class="notice info">Cut at the max new tokens</p>`}
    ${cell.error && html`<div class="notice error">
      <p><strong>${cell.error.code ?? "error"}</strong>: ${cell.error.message}</p>
      ${cell.error.hint && html`<p class="hint">${cell.error.hint}</p>`}
      ${isBoxError(cell.error.code) && html`<p class="doctor-line-link"><${DoctorLink} /></p>`}
    </div>`}
    <div class="cell-foot">
      ${(cell.ttft_ms != null || cell.total_ms != null) && html`<span class="cell-timing">
        ${cell.ttft_ms != null && html`<span class="t-ttft">TTFT ${millis(cell.ttft_ms)}</span>`}
        ${cell.total_ms != null && html`<span class="t-total">${millis(cell.total_ms)} total</span>`}
      </span>`}
      ${cell.scores && html`<span class="cell-scores">${METRICS.map(([key, label]) => html`<span
        key=${key} class=${`score-${key}`}>${label} ${scoreText(cell.scores[key])}</span>`)}</span>`}
      ${canVote && html`<button type="button" class="btn small vote-best" aria-pressed=${pressed ? "true" : "false"}
        aria-label=${`${cell.model} is best on prompt ${number}`} title="This reply is the best of the row"
        onClick=${onBest}>★ Best</button>`}
    </div>
  </td>`;
}

function Row({ row, models, onVote }) {
  const number = row.index + 1;
  const votable = row.cells.length > 0 && row.cells.every((cell) => cell.status === "complete");
  const winner = row.vote?.winner ?? null;
  const verdict = (slot) => (winner === "tie" ? "tie" : winner === "both_bad" ? "bad"
    : winner === String(slot) ? "best" : null);
  const [busy, setBusy] = useState(false);
  const choose = async (choice) => {
    setBusy(true);
    await onVote(row.index, choice);
    setBusy(false);
  };
  return html`<tr data-index=${row.index} aria-label=${`Prompt ${number}`}>
    <td class="run-prompt">
      <span class="row-number">#${number}</span>
      <${Clamp} kind="prompt"><div class="prompt-text">${row.prompt}</div></${Clamp}>
      ${row.system && html`<p class="row-system"><span class="row-label">System</span> ${row.system}</p>`}
      ${row.reference != null && html`<div class="row-reference"><span class="row-label">Reference</span>
        <${Clamp} kind="prompt"><div class="reference-text">${row.reference}</div></${Clamp}></div>`}
      <div class="row-vote" role="group" aria-label=${`Vote on prompt ${number}`}>
        ${row.vote && html`<span class="row-voted" role="status">Voted: <strong>${voteText(row.vote, models)}</strong></span>`}
        ${votable && [["tie", "Tie"], ["both_bad", models.length === 2 ? "Both bad" : "All bad"]].map(
          ([choice, label]) => html`<button type="button" class="btn small vote-choice" key=${choice}
            aria-pressed=${winner === choice ? "true" : "false"} disabled=${busy}
            aria-label=${`${label} on prompt ${number}`} onClick=${() => choose(choice)}>${label}</button>`)}
      </div>
    </td>
    ${row.cells.map((cell) => html`<${Cell} key=${cell.slot} cell=${cell} number=${number}
      verdict=${verdict(cell.slot)} canVote=${votable && models.length > 1 && !busy}
      pressed=${winner === String(cell.slot)} onBest=${() => choose(String(cell.slot))} />`)}
  </tr>`;
}

function Results({ run, onVote }) {
  return html`<${ScrollX} className="run-table-wrap" label="Replies">
    <table class="run-table" style=${`--models: ${run.models.length}`}>
      <thead><tr>
        <th scope="col" class="col-prompt">Prompt</th>
        ${run.models.map((model, i) => html`<th scope="col" class="col-model" key=${i} data-slot=${i}>
          <span class=${`swatch series-${i}`} aria-hidden="true"></span>${model}</th>`)}
      </tr></thead>
      <tbody>${run.rows.map((row) => html`<${Row} key=${row.index} row=${row} models=${run.models}
        onVote=${onVote} />`)}</tbody>
    </table>
  </${ScrollX}>`;
}

export function RunView({ runId }) {
  const { run, loadError, actionError, busy, stop, resume, vote, exportBase } = useRun(runId);
  if (!run) {
    return html`<main class="board run" aria-label="Run" aria-busy=${loadError ? "false" : "true"}>
      <div class="board-inner">
        ${loadError ? html`<p class="notice error" role="alert">${loadError}</p>`
          : html`<p class="muted"><span class="spinner" aria-hidden="true"></span> Loading the run…</p>`}
        <p><a class="back" href="#/sets">← Prompt sets</a></p>
      </div>
    </main>`;
  }
  const running = run.status === "running";
  const asked = run.rows.flatMap((row) => row.cells).filter((cell) => ENDED.includes(cell.status)).length;
  const params = Object.entries(run.params ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");
  const failure = typeof run.error === "string" ? { message: run.error } : run.error;
  return html`<main class="board run" aria-label="Run" aria-busy=${running ? "true" : "false"}>
    <div class="board-inner run-inner">
      <p class="run-back"><a class="back" href="#/sets">← Prompt sets</a></p>
      <div class="board-head run-head">
        <h1>${run.set_name}</h1>
        <span class=${`badge run-status ${run.status}`} role="status">${run.status}</span>
        <span class="spacer"></span>
        ${running && html`<button type="button" class="btn small stop" disabled=${busy}
          aria-label="Stop the run" onClick=${stop} title="Stop asking; the replies so far are kept">■ Stop</button>`}
        ${RESUMABLE.includes(run.status) && html`<button type="button" class="btn small primary"
          disabled=${busy} aria-label="Resume the run" onClick=${resume} title="Ask what is not answered yet">Resume</button>`}
        <${ExportMenu} exportBase=${exportBase} items=${EXPORTS} label="Export run"
          title=${asked ? "Export this run" : "Export this run (nothing answered yet)"} />
      </div>
      <p class="muted run-about">${[
        run.models.length === 1 ? "1 model" : `${run.models.length} models`,
        html`<span title=${MODES[run.mode] ?? ""}>${run.mode}</span>`,
        params ? html`<span class="run-params">${params}</span>` : "default parameters",
        `started ${dateTime(run.created_at)}`,
      ].flatMap((part, i) => (i ? [" · ", part] : [part]))}</p>
      <${Progress} status=${run.status} progress=${run.progress} />
      ${failure && !running && html`<div class="notice error run-error" role="alert">
        <p><strong>${failure.code ?? "error"}</strong>: ${failure.message}</p>
        ${failure.hint && html`<p class="hint">${failure.hint}</p>`}
        ${isBoxError(failure.code) && html`<p class="doctor-line-link"><${DoctorLink} /></p>`}
      </div>`}
      ${actionError && html`<div class="notice error" role="alert">
        <p>${actionError.message}</p>${actionError.hint && html`<p class="hint">${actionError.hint}</p>`}
        ${isBoxError(actionError.code) && html`<p class="doctor-line-link"><${DoctorLink} /></p>`}
      </div>`}
      <${Averages} run=${run} />
      <${Results} run=${run} onVote=${vote} />
    </div>
  </main>`;
}
