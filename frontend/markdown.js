// Model output to safe HTML. Markdown by marked (+ KaTeX for math), code by highlight.js, and
// every result through DOMPurify before it reaches the DOM. Raw HTML in model output is shown
// as text, not rendered: a model's `<img onerror>` is something it said, not page markup.
// Rendering never throws and never takes the page down with it: text nested deeper than the
// renderers' stacks take (a model stuck in a loop writes 3,000 `>`), too long, slow to render,
// or that makes them throw at all is shown as plain text under a note saying why.
import { Marked } from "marked";
import markedKatex from "marked-katex-extension";
import DOMPurify from "dompurify";
import hljs from "highlight.js";

const purify = DOMPurify(window);
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

function codeBlock(highlight) {
  return ({ text, lang }) => {
    const language = (lang || "").trim().split(/\s+/)[0];
    let body = escapeHtml(text);
    if (highlight && language && hljs.getLanguage(language)) {
      body = hljs.highlight(text, { language, ignoreIllegals: true }).value;
    } else if (highlight && text.length < 20000) {
      body = hljs.highlightAuto(text).value;
    }
    const label = escapeHtml(language || "text");
    return `<pre data-lang="${label}"><code class="hljs">${body}</code></pre>\n`;
  };
}

function makeMarked(highlight) {
  const marked = new Marked({ gfm: true, breaks: true });
  marked.use(markedKatex({ throwOnError: false, nonStandard: true, output: "htmlAndMathml" }));
  marked.use({ renderer: { html: ({ text, block }) => (block ? `<p>${escapeHtml(text)}</p>` : escapeHtml(text)), code: codeBlock(highlight) } });
  return marked;
}

const streaming = makeMarked(false); // cheap while text arrives; highlighting once it is done
const finished = makeMarked(true);

const THINK_OPEN = "<think>";
const THINK_CLOSE = "</think>";

/** Split a reply into its `<think>` part and its answer. `thinking` is null when there is
 *  none; `open` says the model is still thinking. A trailing partial tag is held back while
 *  streaming so the page never flashes "<thi". */
export function splitThinking(text, { final = true } = {}) {
  if (!final) {
    for (const tag of [THINK_OPEN, THINK_CLOSE]) {
      for (let n = tag.length - 1; n > 0; n--) {
        if (text.endsWith(tag.slice(0, n))) { text = text.slice(0, -n); break; }
      }
    }
  }
  const start = text.indexOf(THINK_OPEN);
  const end = text.indexOf(THINK_CLOSE);
  if (start === -1 && end === -1) return { thinking: null, answer: text, open: false };
  if (start === -1) { // the template opened the block in the prompt (Qwen3 style)
    return { thinking: text.slice(0, end), answer: text.slice(end + THINK_CLOSE.length), open: false };
  }
  const before = text.slice(0, start);
  if (end === -1 || end < start) {
    return { thinking: text.slice(start + THINK_OPEN.length), answer: before, open: true };
  }
  return {
    thinking: text.slice(start + THINK_OPEN.length, end),
    answer: before + text.slice(end + THINK_CLOSE.length),
    open: false,
  };
}

/** What the page renders as Markdown; past these, a reply is shown as plain text. Tests
 *  tighten them (`budgetMs = -1` makes every render count as slow). */
export const renderLimits = {
  maxDepth: 100, // quotes or lists nested in each other, braces nested in math
  maxChars: 200_000, // about 1 s to render on a laptop
  budgetMs: 300, // a render slower than this: the rest of that growing text stays plain
  // Only texts this long are remembered as slow: a short one that took long met a pause of
  // the page (a garbage collection), and all replies begin like some short text.
  slowMinChars: 2_000,
};

const count = (n) => n.toLocaleString("en-US");

/** The deepest nesting of block quotes and lists, in one linear pass over the line starts:
 *  markers on one line (`> > - 1.`) count each, and a list item indented past the items open
 *  above it counts one more for each. Over-counts rather than misses (a fenced block's lines
 *  count too); text people write stays far below the limit. */
function blockDepth(text) {
  const open = []; // columns of the list markers above that this line may sit inside
  let worst = 0;
  for (let start = 0; start <= text.length;) {
    let end = text.indexOf("\n", start);
    if (end === -1) end = text.length;
    let i = start;
    let column = 0;
    let markers = 0;
    let firstItem = -1;
    const items = [];
    for (;;) {
      while (i < end && (text[i] === " " || text[i] === "\t")) {
        column += text[i] === "\t" ? 4 - (column % 4) : 1;
        i += 1;
      }
      if (i >= end) break;
      if (text[i] === ">") { markers += 1; i += 1; column += 1; continue; }
      let j = i;
      if (text[i] === "-" || text[i] === "*" || text[i] === "+") j = i + 1;
      else {
        while (j < end && j - i < 9 && text[j] >= "0" && text[j] <= "9") j += 1;
        j = j > i && (text[j] === "." || text[j] === ")") ? j + 1 : i;
      }
      if (j === i || (j < end && text[j] !== " " && text[j] !== "\t")) break;
      if (firstItem === -1) firstItem = column;
      items.push(column);
      markers += 1;
      column += j - i;
      i = j;
    }
    if (firstItem !== -1) {
      while (open.length && open[open.length - 1] >= firstItem) open.pop();
      worst = Math.max(worst, open.length + markers);
      open.push(...items);
    } else {
      worst = Math.max(worst, markers);
    }
    start = end + 1;
  }
  return worst;
}

/** The deepest nesting of braces between `$` signs (KaTeX recurses on each), linear. */
function mathBraceDepth(text) {
  let inMath = false;
  let depth = 0;
  let worst = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 92) { i += 1; continue; } // a backslash: `\{`, `\$` and `\\` are one character
    if (c === 36) { // `$` or `$$` opens or closes math
      if (text.charCodeAt(i + 1) === 36) i += 1;
      inMath = !inMath;
      depth = 0;
    } else if (inMath && c === 123) {
      depth += 1;
      if (depth > worst) worst = depth;
    } else if (inMath && c === 125 && depth > 0) {
      depth -= 1;
    }
  }
  return worst;
}

/** Why `text` is not to be rendered at all (the renderers overflow their stack or take
 *  seconds on it), or null. */
function tooDeep(text) {
  const most = renderLimits.maxDepth;
  const blocks = blockDepth(text);
  if (blocks > most) return `${count(blocks)} levels of quotes or lists; the page renders up to ${most}`;
  const braces = mathBraceDepth(text);
  if (braces > most) return `${count(braces)} levels of braces in math; the page renders up to ${most}`;
  return null;
}

const sanitize = (markup) => purify.sanitize(markup, { USE_PROFILES: { html: true, mathMl: true } });

/** `text` as it is, under a note saying why; `retry` offers to render it all the same. */
function plain(text, note, { retry = false } = {}) {
  const button = retry ? ' <button type="button" class="render-anyway">Render anyway</button>' : "";
  const markup = `<p class="render-note" role="note">Shown as plain text: ${escapeHtml(note)}${button}</p>`
    + `<div class="plain-text">${escapeHtml(text)}</div>`;
  try {
    return sanitize(markup);
  } catch {
    return markup; // nothing in it but escaped text and the note
  }
}

// Texts whose render took longer than the budget: a text that begins with one (the same reply,
// grown by the pieces streamed since) is shown plain rather than stall the page at each piece.
// The renders that were slow are kept, so the same text shown again looks the same.
const slow = []; // { text, ms }, the newest last
const slowRendered = new Map(); // `${final}:${text}` -> its markup, the few newest
const SLOW_KEPT = 16;
const SLOW_RENDERED_KEPT = 4;

function rememberSlow(text, ms, key, markup) {
  slow.push({ text, ms });
  if (slow.length > SLOW_KEPT) slow.shift();
  if (markup !== null) {
    slowRendered.set(key, markup);
    if (slowRendered.size > SLOW_RENDERED_KEPT) slowRendered.delete(slowRendered.keys().next().value);
  }
}

const firstLine = (error) => String(error?.message ?? error).split("\n")[0].slice(0, 160);

/** Markdown to sanitised HTML; `final` adds code highlighting. A fence still open while
 *  the reply streams already renders as a code block (CommonMark: it runs to the end).
 *  Never throws: what cannot be rendered, or is too deep, too long or too slow to, comes back
 *  as its plain text under a note (class `render-note`). `force` renders a text refused for
 *  its length or its time all the same (the note's "Render anyway" button); never one
 *  refused for its depth, which can crash the tab. */
export function renderMarkdown(text, { final = true, force = false } = {}) {
  text = String(text ?? "");
  try {
    const deep = tooDeep(text);
    if (deep) return plain(text, `this reply is nested too deeply to render as Markdown (${deep}).`);
    const key = `${final}:${text}`;
    if (slowRendered.has(key)) return slowRendered.get(key);
    if (!force) {
      const grown = slow.find((seen) => text.startsWith(seen.text));
      if (grown) {
        return plain(text, `rendering this reply as Markdown took too long (${count(Math.round(grown.ms))} ms).`,
          { retry: true });
      }
      if (text.length > renderLimits.maxChars) {
        return plain(text, `this reply is too long to render as Markdown (${count(text.length)} characters; `
          + `the page renders up to ${count(renderLimits.maxChars)}).`, { retry: true });
      }
    }
    const started = performance.now();
    let markup = null;
    let failure = null;
    try {
      markup = sanitize((final ? finished : streaming).parse(text));
    } catch (error) {
      failure = error;
    }
    const ms = performance.now() - started;
    if (ms > renderLimits.budgetMs && text.length >= Math.max(1, renderLimits.slowMinChars)) {
      rememberSlow(text, ms, key, markup);
    }
    if (failure === null) return markup;
    console.warn("LF Gate: a reply could not be rendered as Markdown", failure);
    return plain(text, `this reply could not be rendered as Markdown (${firstLine(failure)}).`);
  } catch (error) { // the guards themselves: never the page's render
    console.warn("LF Gate: a reply could not be rendered as Markdown", error);
    return `<div class="plain-text">${escapeHtml(text)}</div>`;
  }
}
