// One message of the branch on screen: a user's text, or a reply rendered as Markdown while
// it streams, with its Thinking block, branch arrows, actions and provenance line. Each
// message, and each reply's text, renders on its own: one that throws shows its text as plain
// text with a note, and the others show as ever.
import { Component } from "preact";
import { html, useEffect, useLayoutEffect, useMemo, useRef, useState } from "../ui.js";
import { renderMarkdown, splitThinking } from "../markdown.js";
import { copyText } from "../clipboard.js";
import { leftOutText, provenanceText, replySummary } from "../format.js";
import { Icon } from "./icons.js";
import { DoctorLink } from "./doctor_link.js";

/** An action under a message: an icon with its name as tooltip and for screen readers. */
function Action({ icon, label, onClick, disabled = false }) {
  return html`<button type="button" class="act" aria-label=${label} title=${label}
    disabled=${disabled} onClick=${onClick}><${Icon} name=${icon} /></button>`;
}

function CopyButton({ text, label = "Copy" }) {
  const [said, setSaid] = useState(""); // "Copied" or "Copy failed", for a moment
  const copy = async () => {
    setSaid((await copyText(text())) ? "Copied" : "Copy failed");
    setTimeout(() => setSaid(""), 1500);
  };
  return html`<span class="act-wrap">
    <${Action} icon=${said === "Copied" ? "check" : "copy"} label=${label} onClick=${copy} />
    <span class="act-said" aria-live="polite">${said}</span>
  </span>`;
}

/** Renders its children, or `fallback(error)` once rendering them threw, so that one
 *  message the page cannot show never takes the others with it. Tries its children again
 *  when an entry of `retry` changes (the reply grew, its status changed). */
class Isolated extends Component {
  constructor(props) {
    super(props);
    this.state = { error: null };
  }

  static getDerivedStateFromError(error) {
    return { error: error ?? new Error("unknown error") };
  }

  componentDidCatch(error) {
    console.warn("LF Gate: a message could not be shown as usual", error);
  }

  componentDidUpdate(previous) {
    const was = previous.retry ?? [];
    if (this.state.error && (this.props.retry ?? []).some((value, i) => value !== was[i])) {
      this.setState({ error: null });
    }
  }

  render({ children, fallback }, { error }) {
    return error ? fallback(error) : children;
  }
}

function why(error) {
  try {
    return String(error?.message ?? error).split("\n")[0].slice(0, 160);
  } catch {
    return "unknown error";
  }
}

/** What a message that could not be shown shows instead: its text as it is, and a note. */
function PlainText({ text, error, what = "reply" }) {
  const note = `Shown as plain text: this ${what} could not be shown as usual (${why(error)}).`;
  return html`<p class="render-note" role="note">${note}</p>
    <div class="plain-text">${String(text ?? "")}</div>`;
}

/** Sanitised Markdown, with a language label and a copy button on each code block. A reply
 *  shown as plain text for its length or render time renders on "Render anyway". */
function Markdown({ text, final, className = "markdown" }) {
  const ref = useRef(null);
  const [force, setForce] = useState(false);
  const markup = useMemo(() => renderMarkdown(text, { final, force }), [text, final, force]);
  useLayoutEffect(() => { // before paint, so the header never blinks while text streams
    for (const pre of ref.current?.querySelectorAll("pre") ?? []) {
      if (pre.previousElementSibling?.classList.contains("code-head")) continue;
      const head = document.createElement("div");
      head.className = "code-head";
      const lang = document.createElement("span");
      lang.textContent = pre.dataset.lang || "text";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = "Copy code";
      button.setAttribute("aria-label", `Copy ${lang.textContent} code`);
      head.append(lang, button);
      pre.before(head);
    }
  }, [markup]);
  const onClick = async (event) => {
    if (event.target.closest?.(".render-anyway")) { setForce(true); return; }
    const button = event.target.closest?.(".copy-code");
    if (!button) return;
    const code = button.parentElement.nextElementSibling?.textContent ?? "";
    button.textContent = (await copyText(code)) ? "Copied" : "Copy failed";
    setTimeout(() => { button.textContent = "Copy code"; }, 1500);
  };
  return html`<div class=${className} ref=${ref} onClick=${onClick}
    dangerouslySetInnerHTML=${{ __html: markup }}></div>`;
}

function Thinking({ text, open, final }) {
  return html`<details class="thinking" open=${open}>
    <summary>${open ? "Thinking…" : "Thinking"}</summary>
    <${Markdown} text=${text} final=${final} className="markdown thinking-body" />
  </details>`;
}

function BranchArrows({ branch }) {
  if (!branch || branch.count < 2) return null;
  return html`<span class="branch" role="group" aria-label="Versions">
    <${Action} icon="left" label="Previous version" disabled=${branch.index === 0}
      onClick=${() => branch.go(branch.index - 1)} />
    <span class="branch-pos">${branch.index + 1}/${branch.count}</span>
    <${Action} icon="right" label="Next version" disabled=${branch.index === branch.count - 1}
      onClick=${() => branch.go(branch.index + 1)} />
  </span>`;
}

const STATUS_TEXT = {
  stopped: "Stopped",
  interrupted: "Interrupted: the reply was cut off before it finished; what arrived is kept.",
  streaming: "Still being written on the gateway…", // stored so, and not streaming here
};

/** While a streaming reply's connection is down and being reattached (reattach.js): small,
 *  as the reply goes on on the box and nothing needs doing. */
export const RECONNECTING = "Reconnecting…";
export const RECONNECTING_WHY = "The connection to the gateway dropped: the reply goes on on the box, and the page picks it up where it left off.";

/** Text from the box (errors, hints) with its `backticks` shown as code, never as markup. */
function withCode(text) {
  return String(text ?? "").split("`").map((part, i) => (i % 2 ? html`<code>${part}</code>` : part));
}

function EditBox({ initial, onSubmit, onCancel }) {
  const [text, setText] = useState(initial);
  const ref = useRef(null);
  useEffect(() => { ref.current?.focus(); }, []);
  const submit = () => { if (text.trim()) onSubmit(text); };
  const onKeyDown = (event) => {
    if (event.key === "Escape") { event.stopPropagation(); onCancel(); }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  };
  return html`<div class="edit-box">
    <textarea ref=${ref} aria-label="Edit message" value=${text} rows="3"
      onInput=${(e) => setText(e.target.value)} onKeyDown=${onKeyDown}></textarea>
    <div class="edit-actions">
      <button type="button" class="btn" onClick=${onCancel}>Cancel</button>
      <button type="button" class="btn primary" onClick=${submit}>Send</button>
    </div>
  </div>`;
}

/** A reply's text: its Thinking block, its Markdown answer, and typing dots until the first
 *  words arrive (also the compare view's columns and the prompt runs' cells). Isolated: if
 *  showing it throws, the reply's text shows as plain text with a note. */
export function ReplyBody({ content, streaming = false }) {
  return html`<${Isolated} retry=${[content, streaming]}
    fallback=${(error) => html`<div class="reply"><${PlainText} text=${content} error=${error} /></div>`}>
    <${ReplyParts} content=${content} streaming=${streaming} />
  </${Isolated}>`;
}

function ReplyParts({ content, streaming = false }) {
  const final = !streaming;
  const parts = useMemo(() => splitThinking(content, { final }), [content, final]);
  return html`<div class="reply">
    ${parts.thinking !== null && html`<${Thinking} text=${parts.thinking}
      open=${streaming && parts.open} final=${final} />`}
    ${(parts.answer || !streaming) && html`<${Markdown} text=${parts.answer} final=${final} />`}
    ${streaming && !content && html`<span class="typing" aria-label="Waiting for the model">
      <i></i><i></i><i></i></span>`}
  </div>`;
}

/** One message of the conversation, isolated: if showing it throws (a stored reply in a shape
 *  this page does not expect, say), its text shows as plain text with a note, and the
 *  messages around it show as ever. */
export function Message(props) {
  const { message, streaming = false } = props;
  return html`<${Isolated} retry=${[message, message?.content, message?.status, message?.provenance, streaming]}
    fallback=${(error) => html`<${UnshownMessage} message=${message} streaming=${streaming} error=${error} />`}>
    <${MessageParts} ...${props} />
  </${Isolated}>`;
}

function UnshownMessage({ message, streaming, error }) {
  const isUser = message?.role === "user";
  return html`<article class=${`msg ${isUser ? "msg-user" : "msg-assistant"} msg-unshown`}
      aria-label=${isUser ? "Your message" : "Reply"} aria-busy=${streaming ? "true" : "false"}
      data-message-id=${message?.id ?? ""}>
    <${PlainText} text=${message?.content} error=${error} what="message" />
  </article>`;
}

/** The tool calls a reply made (its provenance's tool_calls), each as its name and its
 *  arguments, pretty when they are JSON. Anything else there shows nothing. */
function ToolCalls({ calls }) {
  if (!Array.isArray(calls) || calls.length === 0) return null;
  const pretty = (text) => {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return String(text ?? ""); }
  };
  return html`<div class="tool-calls" role="group" aria-label="Tool calls">
    ${calls.filter((call) => call && typeof call.name === "string").map((call) => html`
      <div class="tool-call"><span class="tool-label">Calls</span> <code>${call.name}</code>
        <pre>${pretty(call.arguments)}</pre></div>`)}
    <p class="tool-hint">Send the tool's result as your next message: the model reads it as
      the answer to this call.</p>
  </div>`;
}

function MessageParts({ message, streaming = false, reconnecting = false, busy = false, branch,
  infos = [], onEdit, onRegenerate, onRetry }) {
  const [editing, setEditing] = useState(false);
  const isUser = message.role === "user";
  const summary = replySummary(message.provenance);
  const error = message.error ?? message.provenance?.error;
  const retryable = !streaming && !busy && (message.status === "interrupted" || message.status === "error");
  // The box's notices about this reply (CLI restarted, context reset): live while it
  // streams, from its provenance once stored, so they stay after a reload.
  const notices = streaming || infos.length ? infos : (message.provenance?.notices ?? []);
  const elsewhere = !streaming && message.status === "streaming";
  const leftOut = leftOutText(message.provenance);
  return html`<article class=${`msg ${isUser ? "msg-user" : "msg-assistant"} status-${message.status ?? "complete"}`}
      aria-label=${isUser ? "Your message" : "Reply"} aria-busy=${streaming || elsewhere ? "true" : "false"}
      data-message-id=${message.id ?? ""}>
    ${isUser && editing
      ? html`<${EditBox} initial=${message.content} onCancel=${() => setEditing(false)}
          onSubmit=${(text) => { setEditing(false); onEdit(text); }} />`
      : isUser
        ? (message.provenance?.tool_result === true
          ? html`<div class="user-text tool-result" aria-label="Tool result">
              <span class="tool-label">Tool result</span><pre>${message.content}</pre></div>`
          : html`<div class="user-text">${message.content}</div>`)
        : html`<${ReplyBody} content=${message.content} streaming=${streaming} />`}
    ${!isUser && !streaming && html`<${ToolCalls} calls=${message.provenance?.tool_calls} />`}
    ${notices.map((notice) => html`<p class="notice info" title=${notice.code}>${notice.message}</p>`)}
    ${!isUser && !streaming && leftOut && html`<p class="notice info left-out" role="note">${leftOut}</p>`}
    ${!streaming && STATUS_TEXT[message.status] && html`<p class=${`notice ${message.status}`}>${STATUS_TEXT[message.status]}</p>`}
    ${error && html`<div class="notice error" role="alert">
      <p><strong>${error.code ?? "error"}</strong>: ${withCode(error.message)}</p>
      ${error.hint && html`<p class="hint">${withCode(error.hint)}</p>`}
      <p class="doctor-line-link"><${DoctorLink} /></p>
    </div>`}
    ${!editing && html`<div class="msg-actions">
      <${BranchArrows} branch=${branch} />
      ${!streaming && html`<${CopyButton} text=${() => message.content}
        label=${isUser ? "Copy message" : "Copy reply"} />`}
      ${isUser && !busy && message.id && html`<${Action} icon="edit" label="Edit message"
        onClick=${() => setEditing(true)} />`}
      ${!isUser && !busy && !streaming && !retryable && message.id && html`<${Action}
        icon="regenerate" label="Regenerate reply" onClick=${onRegenerate} />`}
      ${retryable && html`<button type="button" class="btn retry" onClick=${onRetry}>Retry</button>`}
      ${!isUser && (summary.length > 0 || streaming) && html`<span class="reply-meta" tabindex="0"
        title=${provenanceText(message.provenance)}>
        ${streaming ? `${message.model ?? ""} · generating…` : summary.join(" · ")}</span>`}
      ${streaming && reconnecting && html`<span class="reconnecting" role="status"
        title=${RECONNECTING_WHY}>${RECONNECTING}</span>`}
    </div>`}
  </article>`;
}
