// The generation settings of a chat (system prompt, temperature, top_p, top_k,
// max_new_tokens, repetition penalty) and its tools (a JSON list of functions, as LlamaBoard's
// chat tab takes them). Saved on the chat, so every turn of it uses them.
// Each number has a slider and a field that edit the same value, LlamaFactory's default
// beside it and a reset; an empty value means the default (the chat then omits it).
// A dialog beside the chat, never over its composer: focus goes into it when it opens, Esc
// closes it from anywhere on the page, and focus goes back to the button that opened it.
import { html, useEffect, useLayoutEffect, useRef, useState } from "../ui.js";
import { Icon } from "./icons.js";

// Defaults: LlamaFactory 0.9.5's GeneratingArguments. Slider ranges are the useful ones; the
// field takes anything the API does (min..max).
const FIELDS = [
  { key: "temperature", label: "Temperature", def: 0.95, from: 0, to: 2, step: 0.05, min: 0, max: 10,
    help: "Higher is more varied; 0 is greedy" },
  { key: "top_p", label: "Top p", def: 0.7, from: 0.01, to: 1, step: 0.01, min: 0.01, max: 1,
    help: "Sample from the smallest set of tokens this likely" },
  { key: "top_k", label: "Top k", def: 50, from: 0, to: 200, step: 1, min: 0, integer: true,
    help: "Sample from this many most likely tokens (0: all)" },
  { key: "max_new_tokens", label: "Max new tokens", def: 1024, from: 1, to: 8192, step: 1, min: 1,
    max: 1000000, integer: true, help: "The longest reply" },
  { key: "repetition_penalty", label: "Repetition penalty", def: 1.0, from: 0.5, to: 2, step: 0.01,
    min: 0.01, max: 10, help: "Above 1 discourages repeating" },
];

function toForm(settings) {
  const tools = settings.params?.tools;
  const form = { system: settings.system ?? "", tools: tools ? JSON.stringify(tools, null, 2) : "" };
  for (const field of FIELDS) form[field.key] = String(settings.params?.[field.key] ?? "");
  return form;
}

const TOOLS_EXAMPLE = '[{"name": "get_weather", "description": "The weather in a city",\n'
  + '  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]';

/** The tools field's text as the chat keeps it: a list of functions, each with a name; or a
 *  sentence saying what is wrong with it. */
function parseTools(text) {
  if (!text.trim()) return { tools: null };
  let tools;
  try {
    tools = JSON.parse(text);
  } catch (error) {
    return { problem: `Tools: not JSON (${String(error.message).split("\n")[0]})` };
  }
  if (!Array.isArray(tools)) tools = [tools];
  // OpenAI's wrapping ({"type": "function", "function": {...}}) is taken too.
  tools = tools.map((tool) => (tool?.type === "function" && tool.function ? tool.function : tool));
  const bad = tools.findIndex((tool) => !tool || typeof tool !== "object" || Array.isArray(tool)
    || typeof tool.name !== "string" || !tool.name);
  if (bad >= 0) return { problem: `Tools: function ${bad + 1} needs a "name"` };
  return { tools };
}

/** 1.0 for a float default (not "1"), so it reads as the setting's kind of number. */
const defaultText = (field) => (field.integer || !Number.isInteger(field.def)
  ? String(field.def) : field.def.toFixed(1));

function NumberSetting({ field, value, onChange }) {
  const id = `param-${field.key}`;
  const def = defaultText(field);
  const number = useRef(null);
  // The reset button disables itself: focus goes on to the field instead of the page's top.
  const reset = () => { onChange(""); number.current?.focus(); };
  const shown = value === "" ? field.def : Number(value);
  const clamped = Math.min(field.to, Math.max(field.from, Number.isFinite(shown) ? shown : field.def));
  return html`<div class=${`setting${value === "" ? " is-default" : ""}`}>
    <div class="setting-head">
      <label for=${id}>${field.label}</label>
      <span class="setting-default">default ${def}</span>
      <button type="button" class="act small" aria-label=${`Reset ${field.label} to default`}
        title=${`Reset to ${def}`} disabled=${value === ""} onClick=${reset}>
        <${Icon} name="reset" /></button>
    </div>
    <div class="setting-row">
      <input type="range" min=${field.from} max=${field.to} step=${field.step} value=${clamped}
        aria-label=${`${field.label} slider`} onInput=${(e) => onChange(e.target.value)} />
      <input id=${id} ref=${number} type="number" inputmode="decimal" step=${field.step} min=${field.min}
        max=${field.max} placeholder=${def} value=${value} aria-label=${field.label}
        title=${field.help} onInput=${(e) => onChange(e.target.value)} />
    </div>
  </div>`;
}

/** Where the composer starts, as `--composer-top` on the drawer: on a phone the drawer ends
 *  there (style.css), so Send and Stop stay in reach while it is open, whatever the
 *  composer's height (its text grows it). */
function useComposerTop(panel) {
  useLayoutEffect(() => {
    const composer = document.querySelector(".composer");
    if (!composer) return undefined;
    const place = () => panel.current?.style.setProperty("--composer-top",
      `${Math.max(0, composer.getBoundingClientRect().top)}px`);
    place();
    const watch = new ResizeObserver(place);
    watch.observe(composer);
    addEventListener("resize", place);
    return () => {
      watch.disconnect();
      removeEventListener("resize", place);
    };
  }, []);
}

/** Esc closes the drawer from anywhere, focus back on `opener`. On the document's bubbling,
 *  so a menu or picker open above it (they take Esc on the way down) closes first, and the
 *  page's own Esc (stop the reply) waits for the next press. */
function useEscapeCloses(panel, opener, onClose) {
  const close = useRef(onClose);
  close.current = onClose;
  // A layout effect: the focus moves, and Esc is heard, in the same task that shows the
  // drawer. After paint (useEffect), a click or key in between lost to the drawer's focus.
  useLayoutEffect(() => {
    panel.current?.focus({ preventScroll: true }); // Tab goes on through its fields
    const onKey = (event) => {
      if (event.key !== "Escape" || event.defaultPrevented) return;
      event.stopPropagation();
      close.current();
    };
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("keydown", onKey);
      const focus = document.activeElement;
      const lost = !focus || focus === document.body || panel.current?.contains(focus);
      if (lost && opener?.isConnected) opener.focus();
    };
  }, []);
}

export function ParamsDrawer({ settings, onSave, onClose, error }) {
  const [form, setForm] = useState(() => toForm(settings));
  const [problem, setProblem] = useState(null);
  const panel = useRef(null);
  const [opener] = useState(() => document.activeElement); // the Parameters button
  useComposerTop(panel);
  useEscapeCloses(panel, opener, onClose);
  useEffect(() => setForm(toForm(settings)), [settings]);
  const set = (key, value) => setForm((now) => ({ ...now, [key]: value }));
  const save = (event) => {
    event.preventDefault();
    const params = { ...(settings.params ?? {}) };
    const { tools, problem: toolsProblem } = parseTools(form.tools);
    if (toolsProblem) { setProblem(toolsProblem); return; }
    if (tools) params.tools = tools; else delete params.tools;
    for (const field of FIELDS) {
      const raw = String(form[field.key]).trim();
      if (raw === "") { delete params[field.key]; continue; }
      const value = Number(raw);
      if (!Number.isFinite(value) || (field.integer && !Number.isInteger(value))) {
        setProblem(`${field.label}: ${field.integer ? "a whole number" : "a number"}, please`);
        return;
      }
      params[field.key] = value;
    }
    setProblem(null);
    onSave({ system: form.system.trim() ? form.system : null, params });
  };
  return html`<aside class="drawer" role="dialog" aria-label="Generation settings" ref=${panel}
      tabindex="-1">
    <form onSubmit=${save} novalidate>
      <div class="drawer-head">
        <h2>Settings for this chat</h2>
        <button type="button" class="act" aria-label="Close settings" title="Close" onClick=${onClose}>✕</button>
      </div>
      <label class="field">System prompt
        <textarea rows="4" value=${form.system} placeholder="(none)"
          onInput=${(e) => set("system", e.target.value)}></textarea>
      </label>
      ${FIELDS.map((field) => html`<${NumberSetting} key=${field.key} field=${field}
        value=${form[field.key]} onChange=${(value) => set(field.key, value)} />`)}
      <label class="field">Tools
        <textarea rows="5" class="code-input" value=${form.tools} placeholder=${TOOLS_EXAMPLE}
          spellcheck="false" aria-describedby="tools-help"
          onInput=${(e) => set("tools", e.target.value)}></textarea>
      </label>
      <p class="drawer-note" id="tools-help">Functions the model may call, as LlamaFactory's
        function-call data has them (script mode). A reply that calls one shows the call; send
        the tool's result back as the next message.</p>
      <p class="drawer-note">Defaults are LlamaFactory's; an empty field keeps the default.</p>
      ${(problem || error) && html`<p class="notice error" role="alert">${problem || error}</p>`}
      <div class="drawer-actions">
        <button type="button" class="btn" onClick=${() => setForm(toForm({}))}>Reset to defaults</button>
        <button type="submit" class="btn primary">Save</button>
      </div>
    </form>
  </aside>`;
}
