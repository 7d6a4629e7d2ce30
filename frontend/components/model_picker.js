// The header's model picker: a button naming the chat's model (and its run and step), and a
// searchable popover of every model the box serves, grouped by box, base and run, with each
// checkpoint's step, loss, template, age and whether it is resident; warnings inline, broken
// adapters listed with their reason and not choosable. Opening it rescans the box's folders
// (the list on screen stays meanwhile). Keys as in a quick pick: type to filter, Up/Down,
// Home/End, Enter, Escape. Beside it, the chosen model's load status, timed to the second
// while it loads (its base's load included, however it started), then how long it took.
import { html, useEffect, useLayoutEffect, useMemo, useRef, useState } from "../ui.js";
import { age, basename, bytes, lossText, seconds } from "../format.js";
import { Sparkline } from "./sparkline.js";
import { boxesOf } from "../state/box_status.js";

const STATUS = {
  ready: ["ok", "loaded"], loading: ["loading", "loading…"],
  unloaded: ["idle", "not loaded"], error: ["bad", "failed"],
};
const PAGE = 8; // PageUp/PageDown
const BOX_DOT = { connected: "ok", reconnecting: "warn", down: "bad" };
const WHOLE = "\u0000whole"; // the group of whole fine-tuned models (no base of their own here)

// Ids hold A-Z a-z 0-9 . _ - and, for a model of a BOXES box, `box:`; CSS.escape()d as selectors.
const optionId = (id) => `model-option-${id}`;

function Elapsed({ since }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(timer);
  }, []);
  return html`<span class="elapsed">${Math.floor((now - since) / 1000)} s</span>`;
}

/** A load's length: milliseconds below a second (an adapter's own load often takes a few). */
const loadTime = (s) => (s < 1 ? `${Math.max(1, Math.round(s * 1000))} ms` : seconds(s));
const PHASES = { connect_s: "connect", upload_s: "upload", start_s: "wrapper start",
  load_s: "LlamaFactory load", adapter_s: "adapter" };

/** "Ready · loaded in 16 s": the whole wait, from the load this page followed or else the
 *  listing; an adapter put on a base that was loaded already says its own time was all. */
function readyText(model, load) {
  const followed = load?.model === model.id && !load.pending && load.seconds != null;
  const took = followed ? load.seconds : model.load_seconds;
  if (took == null) return "Ready";
  const baseReady = followed ? load.baseReady : model.base_already_loaded;
  return baseReady ? `Ready · adapter loaded in ${loadTime(took)}; base already loaded`
    : `Ready · loaded in ${loadTime(took)}`;
}

/** Where a followed load's time went (a tooltip): "connect 0 ms · … · LlamaFactory load 15 s". */
function phasesText(model, load) {
  if (load?.model !== model.id || !load.phases) return undefined;
  return Object.entries(PHASES).filter(([key]) => load.phases[key] != null)
    .map(([key, name]) => `${name} ${loadTime(load.phases[key])}`).join(" · ") || undefined;
}

/** "sft-a · step 20", "sft-a · final": where a discovered adapter sits in its run. */
function runStep(model) {
  if (!model?.run) return "";
  return `${basename(model.run_path ?? model.run)} · ${model.step != null ? `step ${model.step}` : "final"}`;
}

/** What the search box matches: every word somewhere in the id, run, base, template, path. */
function matcher(query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  return (model) => {
    const text = [model.id, model.run_path, model.base_model_path, model.adapter_path,
      model.template, model.step != null ? `step ${model.step}` : ""].join(" ").toLowerCase();
    return words.every((word) => text.includes(word));
  };
}

const byStep = (a, b) => (a.step ?? Infinity) - (b.step ?? Infinity) || a.id.localeCompare(b.id);

/** The models in groups: per base (the one `default` sits on first), its own rows (the base
 *  alone, adapters outside a run), then its runs by path, runs with nothing usable last;
 *  a run's checkpoints by step, its final adapter after them. Whole fine-tuned models (a
 *  full or freeze run's checkpoints: bases of their own) come last, in their runs. */
function arrange(models) {
  const bases = new Map();
  for (const model of models) {
    const key = model.kind === "base" && model.run ? WHOLE : model.base_model_path ?? "";
    if (!bases.has(key)) bases.set(key, { key, own: [], runs: new Map() });
    const group = bases.get(key);
    if (!model.run) group.own.push(model);
    else {
      if (!group.runs.has(model.run)) group.runs.set(model.run, []);
      group.runs.get(model.run).push(model);
    }
  }
  const groups = [...bases.values()].map((group) => ({
    key: group.key,
    own: group.own.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "base" ? -1 : 1)),
    runs: [...group.runs.entries()].map(([run, rows]) => ({
      run, path: rows[0].run_path ?? run, rows: rows.sort(byStep),
      usable: rows.some((m) => m.usable),
    })).sort((a, b) => (b.usable - a.usable) || a.path.localeCompare(b.path)),
  }));
  const first = (group) => (group.own.some((m) => m.id === "default") ? 0
    : group.key === WHOLE ? 2 : 1);
  return groups.sort((a, b) => first(a) - first(b) || basename(a.key).localeCompare(basename(b.key)));
}

function Option({ model, selected, active, ownProcess, finalStep, onChoose, onHover }) {
  const [dot, word] = STATUS[model.status] ?? ["idle", model.status];
  const inRun = Boolean(model.run);
  const name = !inRun ? model.id : model.step != null
    ? basename(model.adapter_path ?? model.base_model_path)
    : model.kind === "base" ? "final model" : "final adapter";
  const step = model.step != null ? `step ${model.step}`
    : inRun ? (finalStep != null ? `final · step ${finalStep}` : "final") : null;
  const what = inRun ? null : model.kind === "base" ? "base model alone" : basename(model.adapter_path);
  const facts = [
    model.train_loss != null && `loss ${lossText(model.train_loss)}`,
    model.eval_loss != null && `eval ${lossText(model.eval_loss)}`,
    model.template && `template ${model.template}`,
    model.modified != null && age(model.modified),
  ].filter(Boolean);
  const title = [model.id, model.adapter_path ?? model.base_model_path,
    model.size_bytes != null && bytes(model.size_bytes),
    model.modified != null && new Date(model.modified * 1000).toLocaleString()]
    .filter(Boolean).join("\n");
  const classes = ["pick-option", active && "active", selected && "selected",
    !model.usable && "unusable"].filter(Boolean).join(" ");
  return html`<div role="option" id=${optionId(model.id)} class=${classes} data-model=${model.id}
    aria-selected=${selected ? "true" : "false"} aria-disabled=${model.usable ? undefined : "true"}
    title=${title} onClick=${() => onChoose(model)} onMouseMove=${() => onHover(model.id)}>
    <span class="pick-check" aria-hidden="true">${selected ? "✓" : ""}</span>
    <span class="pick-body">
      <span class="pick-line">
        <span class="pick-name">${name}</span>
        ${step && html`<span class="pick-step">${step}</span>`}
        ${what && html`<span class="pick-what">${what}</span>`}
        <span class=${`pick-status ${dot}`}>
          ${dot === "loading" ? html`<span class="spinner" aria-hidden="true"></span>`
            : html`<span class=${`dot ${dot}`} aria-hidden="true"></span>`}
          ${model.usable ? word : "unusable"}</span>
      </span>
      ${facts.length > 0 && html`<span class="pick-facts">${facts.join(" · ")}</span>`}
      ${model.problems.map((text) => html`<span class="pick-note problem">✕ ${text}</span>`)}
      ${model.warnings.map((text) => html`<span class="pick-note warning">⚠ ${text}</span>`)}
      ${ownProcess && model.usable && html`<span class="pick-note process">Runs in a process of its own: choosing it starts (and loads) another process on the box</span>`}
    </span>
  </div>`;
}

function ScanFacts({ scan, rescanning, rescanError, serving }) {
  const notes = [];
  if (rescanning) {
    notes.push(html`<span class="pick-scan-now"><span class="spinner" aria-hidden="true"></span> Rescanning the box…</span>`);
  } else if (scan?.scanned_at) {
    notes.push(html`<span>Scanned ${age(scan.scanned_at)}${scan.elapsed_s != null ? ` in ${scan.elapsed_s < 1 ? `${Math.round(scan.elapsed_s * 1000)} ms` : seconds(scan.elapsed_s)}` : ""}${scan.dirs?.length ? ` · ${scan.dirs.length} folder${scan.dirs.length === 1 ? "" : "s"}` : ""}</span>`);
  }
  if (rescanError) notes.push(html`<span class="pick-note problem">Rescan failed: ${rescanError}</span>`);
  if (scan?.error) notes.push(html`<span class="pick-note problem">The last scan failed: ${scan.error}</span>`);
  for (const missing of scan?.missing ?? []) {
    notes.push(html`<span class="pick-note warning">⚠ ${missing.dir}: ${missing.reason}</span>`);
  }
  if (scan?.truncated) notes.push(html`<span class="pick-note warning">⚠ Too many folders: the listing is cut short</span>`);
  const processes = (serving ?? []).length;
  if (processes) {
    notes.push(html`<span>${processes} process${processes === 1 ? "" : "es"} on the box: ${
      serving.map((s) => `${basename(s.base_model_path)} (${s.status}${s.shared ? ", shared base" : ""})`).join(", ")}</span>`);
  }
  return notes.length > 0 && html`<div class="pick-foot" aria-live="polite">${notes}</div>`;
}

/** One base's models: its own rows (the base alone, .env's adapter), then its runs, each
 *  with its checkpoints and a loss sparkline. */
function BaseGroup({ group, runs, value, optionProps }) {
  const whole = group.key === WHOLE;
  const baseName = whole ? "Whole fine-tuned models" : basename(group.key) || "base";
  return html`<div class="pick-base-group">
    <div class="pick-base" title=${whole ? "" : group.key} aria-hidden="true">
      <span class="pick-base-name">${baseName}</span>
      <span class="pick-path">${whole ? "each with its own weights" : group.key}</span>
    </div>
    ${group.own.length > 0 && html`<div role="group" aria-label=${`${baseName}: base and .env adapter`}>
      ${group.own.map((m) => html`<${Option} key=${m.id} ...${optionProps(m)} />`)}
    </div>`}
    ${group.runs.map((run) => {
      const curve = runs?.[run.run] ?? {};
      const finalStep = curve.train?.length ? curve.train.at(-1)[0] : null;
      const template = [...new Set(run.rows.map((m) => m.template).filter(Boolean))].join(", ");
      return html`<div role="group" class="pick-run" key=${run.run}
        aria-label=${whole ? `Run ${run.path}` : `Run ${run.path} on ${baseName}`}>
        <div class="pick-run-head">
          <span class="pick-run-name" title=${run.path}>${run.path}</span>
          ${template && html`<span class="pick-run-template">${template}</span>`}
          <${Sparkline} train=${curve.train} evals=${curve.eval}
            marks=${run.rows.map((m) => m.step).filter((s) => s != null)}
            mark=${run.rows.find((m) => m.id === value)?.step ?? null} />
        </div>
        ${run.rows.map((m) => html`<${Option} key=${m.id} ...${optionProps(m, finalStep)} />`)}
      </div>`;
    })}
  </div>`;
}

function Popover({ models, runs, value, health, scan, serving, rescanning, rescanError,
  initialQuery, onChoose }) {
  const [query, setQuery] = useState(initialQuery);
  const [activeId, setActiveId] = useState(initialQuery ? null : value);
  const search = useRef(null);
  const list = useRef(null);
  useLayoutEffect(() => { // at once: the keys typed next go to the search box
    const input = search.current;
    input?.focus();
    input?.setSelectionRange(input.value.length, input.value.length);
  }, []);
  const cli = health?.mode === "cli";
  const boxes = boxesOf(health);
  const visible = useMemo(() => models.filter(matcher(query)), [models, query]);
  // Models bound to boxes (their `box`): a block per box, in the order the boxes come;
  // one box (or a gateway that does not say): one block, as before.
  const boxNames = useMemo(() => {
    const names = [...new Set(models.map((m) => m.box).filter(Boolean))];
    const known = boxes.map((b) => b.name).filter((name) => names.includes(name));
    return [...new Set([...known, ...names])]; // in the order /api/health lists the boxes
  }, [models, health]);
  const byBox = boxNames.length > 1;
  const blocks = useMemo(() => (byBox
    ? boxNames.map((name) => ({ box: name, groups: arrange(visible.filter((m) => m.box === name)) }))
      .filter((block) => block.groups.length > 0)
    : [{ box: null, groups: arrange(visible) }]), [boxNames, visible]);
  const order = blocks.flatMap((b) => b.groups.flatMap((g) => [...g.own,
    ...g.runs.flatMap((r) => r.rows)]));
  const active = order.find((m) => m.id === activeId) ?? order[0];
  useEffect(() => {
    const row = active && list.current?.querySelector(`#${CSS.escape(optionId(active.id))}`);
    row?.scrollIntoView({ block: "nearest" });
  }, [active?.id]);

  const choose = (model) => { if (model.usable) onChoose(model.id); };
  const move = (to) => {
    if (!order.length) return;
    setActiveId(order[Math.max(0, Math.min(order.length - 1, to))].id);
  };
  const onKeyDown = (event) => {
    const at = active ? order.indexOf(active) : -1;
    const keys = {
      ArrowDown: () => move(at + 1 >= order.length ? 0 : at + 1),
      ArrowUp: () => move(at <= 0 ? order.length - 1 : at - 1),
      PageDown: () => move(at + PAGE), PageUp: () => move(at - PAGE),
      Home: () => move(0), End: () => move(order.length - 1),
      Enter: () => { if (active) choose(active); },
    };
    if (event.key in keys && !event.isComposing) {
      event.preventDefault();
      keys[event.key]();
    }
  };
  const onInput = (event) => {
    setQuery(event.target.value);
    setActiveId(null); // the first match
  };
  const host = boxes[0]?.host ?? health?.remote?.host;
  const optionProps = (model, finalStep) => ({
    model, finalStep, selected: model.id === value, active: model.id === active?.id,
    ownProcess: !cli && model.shared_base === false, onChoose: choose, onHover: setActiveId,
  });
  return html`<div class="pick-pop" role="dialog" aria-label="Choose a model">
    <input ref=${search} class="pick-search" type="search" role="combobox" aria-label="Search models"
      aria-expanded="true" aria-controls="model-options" aria-autocomplete="list"
      aria-activedescendant=${active ? optionId(active.id) : undefined} autocomplete="off"
      spellcheck="false" placeholder="Search id, run, base, template…" value=${query}
      onInput=${onInput} onKeyDown=${onKeyDown} />
    <div class="pick-box">
      <span class="pick-box-name">${byBox ? html`<strong>${boxNames.length} boxes</strong>`
        : html`Box <strong>${host ?? "…"}</strong>`}</span>
      ${health && html`<span class="badge">${health.mode}</span>`}
      <span class="pick-count">${query ? `${visible.length} of ${models.length}` : `${models.length}`} models</span>
    </div>
    ${cli && html`<p class="pick-note process pick-cli">CLI mode: each model runs in a process of its own; choosing another starts (and loads) another process on the box.</p>`}
    <div class="pick-list" id="model-options" role="listbox" aria-label="Models" ref=${list}
      onMouseDown=${(e) => e.preventDefault() /* the search box keeps the focus */}>
      ${order.length === 0 && html`<p class="pick-empty">${models.length ? `No model matches “${query}”.` : "No models listed yet."}</p>`}
      ${blocks.map((block) => {
        const inner = block.groups.map((group) => html`<${BaseGroup} key=${group.key} group=${group}
          runs=${runs} value=${value} optionProps=${optionProps} />`);
        if (!byBox) return inner;
        const about = boxes.find((b) => b.name === block.box);
        const state = about?.state ?? "idle";
        return html`<div class="pick-box-group" key=${block.box} data-box=${block.box}>
          <div class="pick-box-head" aria-hidden="true">
            <span class=${`dot ${BOX_DOT[state] ?? "idle"}`}></span>
            <span class="pick-box-title">${block.box}</span>
            ${about && html`<span class="pick-path">${about.host}${state !== "connected" ? ` · ${state}` : ""}</span>`}
          </div>
          ${inner}
        </div>`;
      })}
    </div>
    <${ScanFacts} scan=${scan} rescanning=${rescanning} rescanError=${rescanError} serving=${serving} />
  </div>`;
}

export function ModelPicker({ models, runs, value, onChange, load, onUnload, disabled, health,
  scan, serving, listed = true, lost = null, onOpen, rescanning = false, rescanError = null }) {
  const [open, setOpen] = useState(false);
  const [typed, setTyped] = useState(""); // a key typed on the button: the search's start
  const root = useRef(null);
  const trigger = useRef(null);
  const current = models.find((m) => m.id === value);
  const gone = listed && current === undefined;
  const close = (refocus) => {
    setOpen(false);
    if (refocus) trigger.current?.focus();
  };
  const show = (text = "") => {
    if (disabled) return;
    setTyped(text);
    setOpen(true);
    onOpen?.(); // rescan the box: a run still training has new checkpoints
  };
  useEffect(() => { if (disabled) setOpen(false); }, [disabled]);
  useEffect(() => {
    if (!open) return undefined;
    const onPointer = (event) => { if (!root.current?.contains(event.target)) close(false); };
    const onKey = (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation(); // closes the picker; does not also stop a reply
        close(true);
      } else if (event.key === "Tab") {
        close(false);
      }
    };
    document.addEventListener("pointerdown", onPointer);
    document.addEventListener("keydown", onKey, true);
    return () => {
      document.removeEventListener("pointerdown", onPointer);
      document.removeEventListener("keydown", onKey, true);
    };
  }, [open]);
  const onTriggerKey = (event) => {
    if (open) return;
    const printable = event.key.length === 1 && event.key !== " "
      && !event.ctrlKey && !event.metaKey && !event.altKey;
    if (event.key === "ArrowDown" || event.key === "ArrowUp" || printable) {
      event.preventDefault();
      show(printable ? event.key : ""); // type to filter, as in a quick pick
    }
  };
  const where = runStep(current);
  const triggerTitle = gone ? `${value}: no longer on the box; pick another model`
    : [value, current?.adapter_path ?? current?.base_model_path].filter(Boolean).join("\n");
  return html`<div class="model-picker">
    <div class="pick-wrap" ref=${root}>
      <button type="button" class=${`model-trigger${gone ? " gone" : ""}`} ref=${trigger}
        aria-haspopup="listbox" aria-expanded=${open ? "true" : "false"} disabled=${disabled}
        title=${triggerTitle} onClick=${() => (open ? close(true) : show())} onKeyDown=${onTriggerKey}>
        <span class="pick-sr">Model: </span>
        <span class="trigger-id">${value}</span>
        ${where && html`<span class="trigger-sub">${where}</span>`}
        ${gone && html`<span class="trigger-gone">gone</span>`}
        <span class="trigger-chev" aria-hidden="true">▾</span>
      </button>
      ${open && html`<${Popover} models=${models} runs=${runs} value=${value} health=${health}
        scan=${scan} serving=${serving} rescanning=${rescanning} rescanError=${rescanError}
        initialQuery=${typed} onChoose=${(id) => { close(true); if (id !== value) onChange(id); }} />`}
    </div>
    <span class="model-status" role="status" aria-live="polite">
      ${current?.status === "loading" && html`<span class="spinner" aria-hidden="true"></span>
        <span class="status-text">Loading ${current.id}… </span>
        ${load?.model === current.id && load.pending ? html`<${Elapsed} since=${load.since} />` : ""}`}
      ${current?.status === "ready" && html`<span class="dot ok" aria-hidden="true"></span>
        <span class="status-text" title=${phasesText(current, load)}>${readyText(current, load)}</span>
        ${!disabled && html`<button type="button" class="btn small unload" aria-label=${`Unload ${current.id}`}
          title=${current.shared_base && current.adapter_path
            ? "Put this adapter away; its base stays loaded for the others"
            : current.shared_base ? "Stop this base's wrapper (its adapters go with it) and free the box's memory"
            : "Stop its wrapper and free the box's memory"} onClick=${() => onUnload(current.id)}>Unload</button>`}`}
      ${current?.status === "unloaded" && html`<span class="dot idle" aria-hidden="true"></span>
        <span class="status-text">Not loaded (loads on first message)</span>`}
      ${current?.status === "error" && lost?.has(current.id) && html`<span class="dot idle" aria-hidden="true"></span>
        ${lost.get(current.id).reached
          ? html`<span class="status-text" title="Its wrapper stopped when the box went away">Not loaded (the box went away)</span>`
          : html`<span class="status-text" title=${lost.get(current.id).why ?? "The box has not answered since the gateway started"}>Not loaded (the box was never reached)</span>`}`}
      ${current?.status === "error" && !lost?.has(current.id) && html`<span class="dot bad" aria-hidden="true"></span>
        <span class="load-error" title=${[load?.error, load?.hint].filter(Boolean).join("\n")}>Load failed</span>`}
      ${gone && html`<span class="dot bad" aria-hidden="true"></span>
        <span class="status-text">Not on the box</span>`}
    </span>
  </div>`;
}
