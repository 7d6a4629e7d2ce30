// The prompt sets page (#/sets): add a set (a file, or text pasted with its format), the
// sets with their prompts and references, delete after a confirm, and Run: one to four
// models (a model picker each) and a few parameters; under each set its runs with their
// status and progress, each opening its run (#/run/<id>). State: state/prompt_runs.js.
import { html, useEffect, useRef, useState } from "../ui.js";
import { FORMATS, MAX_MODELS, usePromptSets } from "../state/prompt_runs.js";
import { dateTime } from "../format.js";
import { ModelPicker } from "./model_picker.js";
import { Icon } from "./icons.js";

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** A file chosen or text pasted, sent as a set; the server's word on a bad one (its line). */
function AddSet({ onAdd }) {
  const [name, setName] = useState("");
  const [format, setFormat] = useState("auto");
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [added, setAdded] = useState(null);
  const fileInput = useRef(null);
  const send = async (content, filename) => {
    setBusy(true);
    setError(null);
    setAdded(null);
    try {
      const created = await onAdd({ name: name.trim() || null, content,
        format: format === "auto" ? null : format, filename });
      setAdded(created);
      setName("");
      if (!filename) setText("");
    } catch (failure) {
      setError(filename ? `${filename}: ${failure.message}` : failure.message);
    } finally {
      setBusy(false);
    }
  };
  const readFile = (file) => {
    const reader = new FileReader();
    reader.onload = () => send(String(reader.result), file.name);
    reader.onerror = () => setError(`${file.name} could not be read (${reader.error?.message ?? "unknown error"})`);
    reader.readAsText(file);
  };
  return html`<section class="set-add" aria-label="Add a prompt set">
    <h2>Add a prompt set</h2>
    <p class="muted set-formats">JSONL or a JSON array of <code>{"prompt", "system", "reference"}</code> (LlamaFactory's
      alpaca <code>instruction</code>, <code>input</code>, <code>output</code> too), CSV with a header row
      (<code>prompt</code>, optional <code>system</code> and <code>reference</code>), or plain text, one prompt a
      line. With references, each reply is scored (BLEU, chrF, ROUGE-L).</p>
    <div class="set-add-row">
      <label class="field">Name (optional)
        <input type="text" maxlength="200" value=${name} placeholder="from the file's name"
          onInput=${(e) => setName(e.target.value)} /></label>
      <label class="field">Format
        <select value=${format} onChange=${(e) => setFormat(e.target.value)}>
          ${FORMATS.map(([value, label]) => html`<option value=${value}>${label}</option>`)}
        </select></label>
      <button type="button" class="btn has-icon set-file-btn" disabled=${busy}
        onClick=${() => fileInput.current?.click()}><${Icon} name="upload" />Choose a file…</button>
      <input ref=${fileInput} type="file" hidden aria-label="Prompt set file"
        accept=".jsonl,.ndjson,.json,.csv,.txt,.text,text/plain,text/csv,application/json"
        onChange=${(e) => { const [file] = e.target.files; e.target.value = ""; if (file) readFile(file); }} />
    </div>
    <label class="field set-paste">Or paste the prompts
      <textarea rows="4" value=${text} placeholder="One prompt a line, or JSONL, JSON, CSV (pick its format above)"
        onInput=${(e) => setText(e.target.value)}></textarea></label>
    <div class="set-add-actions">
      <button type="button" class="btn primary" disabled=${busy || !text.trim()}
        onClick=${() => send(text, null)}>Add the pasted prompts</button>
      ${busy && html`<span class="spinner" aria-hidden="true"></span>`}
    </div>
    <div class="set-alert" role="alert">${error && html`<p class="notice error">${error}</p>`}</div>
    ${added && html`<div class="notice info set-added" role="status">
      <p>Added “${added.name}”: ${plural(added.count, "prompt")}, ${added.references} with a reference.</p>
      ${added.warnings.map((warning) => html`<p>⚠ ${warning}</p>`)}
    </div>`}
  </section>`;
}

/** The models a run asks (one to four, a picker each) and its parameters. */
function RunChooser({ set, picker, onStart, onCancel }) {
  const usable = picker.models.filter((m) => m.usable).map((m) => m.id);
  const first = () => {
    const one = usable.includes("default") ? "default" : usable[0];
    const two = usable.find((id) => id !== one);
    return [one, two].filter(Boolean);
  };
  const [models, setModels] = useState(first);
  const [maxTokens, setMaxTokens] = useState("");
  const [temperature, setTemperature] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  useEffect(() => { if (!models.length && usable.length) setModels(first()); }, [usable.length]);
  const pick = (index, id) => setModels(models.map((m, i) => (i === index ? id : m)));
  const add = () => setModels([...models, usable.find((id) => !models.includes(id)) ?? models.at(-1)]);
  const start = async (event) => {
    event.preventDefault();
    const params = {};
    if (maxTokens !== "") params.max_new_tokens = Number(maxTokens);
    if (temperature !== "") params.temperature = Number(temperature);
    setBusy(true);
    setError(null);
    try {
      await onStart({ models, params });
    } catch (failure) {
      setError(failure.message);
      setBusy(false);
    }
  };
  return html`<form class="run-chooser" aria-label=${`Run ${set.name}`} onSubmit=${start}>
    <div class="run-picks" role="group" aria-label="Models to ask">
      ${models.map((id, index) => html`<div class="run-pick" key=${index} data-slot=${index}
          role="group" aria-label=${`Model ${index + 1}`}>
        <span class="cmp-letter" aria-hidden="true">${index + 1}</span>
        <${ModelPicker} ...${picker} value=${id} disabled=${busy} onChange=${(next) => pick(index, next)} />
        ${models.length > 1 && html`<button type="button" class="icon-btn" disabled=${busy}
          aria-label=${`Remove model ${index + 1}`} title="Remove this model"
          onClick=${() => setModels(models.filter((_, i) => i !== index))}>✕</button>`}
      </div>`)}
      ${models.length === 0 && html`<p class="muted">Waiting for the box's models…</p>`}
    </div>
    <div class="run-chooser-row">
      <button type="button" class="btn small" disabled=${busy || models.length >= MAX_MODELS || !usable.length}
        title=${models.length >= MAX_MODELS ? `At most ${MAX_MODELS} models` : "Ask one more model"}
        onClick=${add}>+ Model</button>
      <label class="field inline">Max new tokens
        <input type="number" min="1" step="1" placeholder="default" value=${maxTokens}
          onInput=${(e) => setMaxTokens(e.target.value)} /></label>
      <label class="field inline">Temperature
        <input type="number" min="0" max="2" step="0.05" placeholder="default" value=${temperature}
          onInput=${(e) => setTemperature(e.target.value)} /></label>
      <span class="spacer"></span>
      <button type="button" class="btn" onClick=${onCancel}>Cancel</button>
      <button type="submit" class="btn primary" disabled=${busy || !models.length}>Start the run</button>
    </div>
    <div role="alert">${error && html`<p class="notice error">${error}</p>`}</div>
  </form>`;
}

function RunLink({ run }) {
  const { done, total, errors } = run.progress;
  return html`<li class="set-run" data-run=${run.id}>
    <a href=${`#/run/${encodeURIComponent(run.id)}`} title="Open this run">
      <span class=${`badge run-status ${run.status}`}>${run.status}</span>
      <span class="set-run-count">${done} / ${total}${errors ? ` · ${plural(errors, "error")}` : ""}</span>
      <span class="set-run-models">${run.models.join(", ")}</span>
      <span class="muted set-run-when">${dateTime(run.created_at)}</span>
    </a>
  </li>`;
}

function SetItem({ set, runs, picker, onDelete, onStart }) {
  const [mode, setMode] = useState("view"); // view | run | confirm
  return html`<li class="set-item" data-set=${set.id}>
    <div class="set-line">
      <span class="set-name">${set.name}</span>
      <span class="set-facts">
        <span class="set-count">${plural(set.count, "prompt")}</span>
        <span class="set-refs">${set.references} with a reference</span>
        <span class="badge">${set.format}</span>
        <span class="muted">${dateTime(set.created_at)}</span>
      </span>
      <span class="spacer"></span>
      <button type="button" class="btn small primary" aria-expanded=${mode === "run" ? "true" : "false"}
        aria-label=${`Run ${set.name}`} onClick=${() => setMode(mode === "run" ? "view" : "run")}>Run…</button>
      <button type="button" class="icon-btn" aria-label=${`Delete ${set.name}`} title="Delete this set and its runs"
        onClick=${() => setMode("confirm")}>✕</button>
    </div>
    ${mode === "confirm" && html`<div class="set-confirm" role="alertdialog" aria-label="Confirm delete">
      <span>Delete “${set.name}”${runs.length ? ` and its ${plural(runs.length, "run")}` : ""}?</span>
      <button type="button" class="btn danger" onClick=${() => { setMode("view"); onDelete(set.id); }}>Delete</button>
      <button type="button" class="btn" onClick=${() => setMode("view")}>Cancel</button>
    </div>`}
    ${mode === "run" && html`<${RunChooser} set=${set} picker=${picker}
      onStart=${(body) => onStart(set.id, body)} onCancel=${() => setMode("view")} />`}
    ${runs.length > 0 && html`<ul class="set-runs" aria-label=${`Runs of ${set.name}`}>
      ${runs.map((run) => html`<${RunLink} key=${run.id} run=${run} />`)}
    </ul>`}
  </li>`;
}

export function SetsPage({ picker }) {
  const { sets, runs, error, add, remove, start } = usePromptSets();
  const startRun = async (setId, body) => {
    const run = await start(setId, body);
    location.hash = `#/run/${encodeURIComponent(run.id)}`;
  };
  return html`<main class="board sets" aria-label="Prompt sets" aria-busy=${sets === null ? "true" : "false"}>
    <div class="board-inner">
      <div class="board-head"><h1>Prompt sets</h1>
        ${sets && html`<span class="muted">${plural(sets.length, "set")}</span>`}</div>
      <p class="muted board-about">A prompt set is a file of prompts (and, if you have them,
        reference answers) that you ask of one to four models at once: a table of their
        replies, scored against the references, to vote on and export.</p>
      <${AddSet} onAdd=${add} />
      ${error && html`<p class="notice error">${error}</p>`}
      ${sets?.length === 0 && html`<p class="board-empty">No prompt sets yet: add a file above.</p>`}
      ${sets?.length > 0 && html`<ul class="set-list" aria-label="Your prompt sets">
        ${sets.map((set) => html`<${SetItem} key=${set.id} set=${set} picker=${picker}
          runs=${runs.filter((run) => run.set_id === set.id)} onDelete=${remove} onStart=${startRun} />`)}
      </ul>`}
    </div>
  </main>`;
}
