// Model output to safe HTML. Markdown by marked (+ KaTeX for math), code by highlight.js, and
// every result through DOMPurify before it reaches the DOM. Raw HTML in model output is shown
// as text, not rendered: a model's `<img onerror>` is something it said, not page markup.
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

/** Markdown to sanitised HTML; `final` adds code highlighting. A fence still open while
 *  the reply streams already renders as a code block (CommonMark: it runs to the end). */
export function renderMarkdown(text, { final = true } = {}) {
  const raw = (final ? finished : streaming).parse(text);
  return purify.sanitize(raw, { USE_PROFILES: { html: true, mathMl: true } });
}
