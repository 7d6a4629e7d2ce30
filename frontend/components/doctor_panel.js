// The doctor (#/doctor): the same ordered checks as `lfgate doctor`, streamed as they run
// (GET /api/doctor/stream). Checks grouped by section, a mark per check as in `flutter
// doctor` (✓ pass, ! warn, ✗ fail, – skip, each with its word for screen readers), what it
// found, and for a failure or a warning its fix, copyable; while a slow part runs, what it
// waits for; the summary line at the end. Everything from the box is set as text.
import { html, useEffect, useState } from "../ui.js";
import { copyText } from "../clipboard.js";
import { seconds } from "../format.js";
import { Icon } from "./icons.js";
import { CodeText } from "./code_text.js";

const MARK = { pass: ["✓", "passed"], warn: ["!", "warning"], fail: ["✗", "failed"],
  skip: ["–", "skipped"] };
const SECTIONS = ["Configuration", "SSH", "Remote shell", "LlamaFactory", "Models", "Smoke chat"];

function Ticker({ since }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(timer);
  }, []);
  return html`<span class="doctor-elapsed">${Math.floor((now - since) / 1000)} s</span>`;
}

function CopyFix({ text, label }) {
  const [said, setSaid] = useState("");
  const copy = async () => {
    setSaid((await copyText(text)) ? "Copied" : "Copy failed");
    setTimeout(() => setSaid(""), 1500);
  };
  return html`<button type="button" class="act small doctor-copy" aria-label=${label} title=${label}
    onClick=${copy}><${Icon} name=${said === "Copied" ? "check" : "copy"} /></button>
    <span class="act-said" aria-live="polite">${said}</span>`;
}

function Check({ finding }) {
  const [mark, word] = MARK[finding.status] ?? ["?", finding.status];
  const fix = (finding.status === "fail" || finding.status === "warn") && finding.fix;
  return html`<li class=${`doctor-check status-${finding.status}`} data-status=${finding.status}
    data-name=${finding.name}>
    <span class=${`doctor-mark mark-${finding.status}`} role="img" aria-label=${word}>${mark}</span>
    <div class="doctor-body">
      <p class="doctor-line"><strong class="doctor-name">${finding.name}</strong>
        ${" "}<span class="doctor-found"><${CodeText} text=${finding.found} /></span>
        ${finding.seconds != null && html` <span class="doctor-seconds">${seconds(finding.seconds)}</span>`}</p>
      ${fix && html`<div class="doctor-fix">
        <span class="doctor-fix-label">Fix</span>
        <pre><code>${fix}</code></pre>
        <span class="act-wrap"><${CopyFix} text=${fix} label=${`Copy the fix for ${finding.name}`} /></span>
      </div>`}
    </div>
  </li>`;
}

/** The report as plain text, to paste in an issue or a chat with a colleague. */
function reportText(run) {
  const lines = [];
  for (const section of run.sections) {
    lines.push(section.name);
    for (const f of section.findings) {
      lines.push(`  ${MARK[f.status]?.[0] ?? "?"} ${f.name}: ${f.found}`);
      if ((f.status === "fail" || f.status === "warn") && f.fix) lines.push(`      fix: ${f.fix}`);
    }
  }
  if (run.report) lines.push("", run.report.line);
  return lines.join("\n");
}

function Summary({ report }) {
  const { pass = 0, warn = 0, fail = 0, skip = 0 } = report.summary ?? {};
  return html`<div class=${`doctor-summary ${report.ok ? "ok" : "failed"}`} role="status">
    <span class=${`doctor-mark mark-${report.ok ? (warn ? "warn" : "pass") : "fail"}`} aria-hidden="true">
      ${report.ok ? (warn ? "!" : "✓") : "✗"}</span>
    <p class="doctor-summary-line">${report.line}</p>
    <span class="doctor-counts">
      <span class="count-pass">${pass} passed</span><span class="count-warn">${warn} warning${warn === 1 ? "" : "s"}</span>
      <span class="count-fail">${fail} failed</span><span class="count-skip">${skip} skipped</span>
    </span>
  </div>`;
}

export function DoctorPanel({ doctor, boxes }) {
  const { run, start, stop } = doctor;
  const several = boxes.length > 1;
  const [chosen, setChosen] = useState(null); // a box picked here, until the next run starts
  useEffect(() => { setChosen(null); }, [run.since]);
  const fallback = boxes.find((b) => b.state !== "connected")?.name ?? boxes[0]?.name ?? null;
  const box = several ? (chosen ?? run.box ?? fallback) : null;
  const running = run.status === "running";
  const ran = run.status !== "idle";
  // The sections so far, and the one a slow part is in even before its first finding.
  const sections = [...run.sections];
  if (run.waiting && !sections.some((s) => s.name === run.waiting.section)) {
    sections.push({ name: run.waiting.section, findings: [] });
  }
  const [copied, setCopied] = useState("");
  const copyAll = async () => {
    setCopied((await copyText(reportText(run))) ? "Copied" : "Copy failed");
    setTimeout(() => setCopied(""), 1500);
  };
  return html`<main class="board doctor" aria-label="Doctor" aria-busy=${running ? "true" : "false"}>
    <div class="board-inner">
      <div class="board-head">
        <h1>Doctor</h1>
        ${several && html`<label class="doctor-box">Box
          <select aria-label="Box to check" value=${box ?? ""} disabled=${running}
            onChange=${(e) => setChosen(e.target.value)}>
            ${boxes.map((b) => html`<option value=${b.name}>${b.name} · ${b.host}</option>`)}
          </select></label>`}
        <span class="spacer"></span>
        ${running ? html`<button type="button" class="btn small" aria-label="Stop the doctor"
          onClick=${stop}>Stop</button>`
          : html`<button type="button" class="btn primary doctor-run" onClick=${() => start(box)}>
            ${ran ? "Run again" : "Run doctor"}</button>`}
        ${run.sections.length > 0 && !running && html`<span class="act-wrap">
          <button type="button" class="btn small has-icon" onClick=${copyAll}
            aria-label="Copy the report as text"><${Icon} name="copy" />Copy</button>
          <span class="act-said" aria-live="polite">${copied}</span></span>`}
      </div>
      <p class="muted board-about">Checks everything between this gateway and a reply, in order:
        the configuration, SSH (name, port, host key, login, round trip), the box's shell as the
        wrapper's command sees it, LlamaFactory and its GPUs, the models, then a short chat. Each
        failure says how to fix it. The same as <code>lfgate doctor</code> in a terminal.</p>
      ${!ran && html`<ol class="doctor-plan muted" aria-label="What it checks">
        ${SECTIONS.map((name) => html`<li>${name}</li>`)}</ol>`}
      ${ran && html`<p class="doctor-for muted">
        ${running ? "Checking" : "Checked"} ${run.box ? `the box ${run.box}` : "the box"}${
          running ? html` · <${Ticker} since=${run.since} />` : ""}</p>`}
      <div class="doctor-sections" aria-live="polite">
        ${sections.map((section) => html`<section class="doctor-section" key=${section.name}
          aria-label=${section.name}>
          <h2>${section.name}</h2>
          <ul class="doctor-checks">
            ${section.findings.map((f, i) => html`<${Check} key=${`${f.name}-${i}`} finding=${f} />`)}
          </ul>
          ${run.waiting?.section === section.name && html`<p class="doctor-waiting">
            <span class="spinner" aria-hidden="true"></span>
            <span class="doctor-waiting-what">Waiting: ${run.waiting.what}</span>
            <${Ticker} since=${run.waiting.since} /></p>`}
        </section>`)}
      </div>
      ${running && !run.waiting && html`<p class="doctor-waiting muted">
        <span class="spinner" aria-hidden="true"></span> Checking…</p>`}
      ${run.report && html`<${Summary} report=${run.report} />`}
      ${run.status === "stopped" && html`<p class="notice info">Stopped before the end: the
        checks above are the ones that ran.</p>`}
      ${run.error && html`<p class="notice error" role="alert">${run.error}</p>`}
    </div>
  </main>`;
}
