// The message box. Enter sends, Shift+Enter adds a line, Ctrl/Cmd+Enter also sends; while a
// reply runs the button stops it. Unsent text is kept in localStorage per chat, so a reload,
// a crash or a failed send never loses what the user typed.
import { html, useEffect, useRef, useState } from "../ui.js";

/** How full the model's window was at the last reply: a bar and "1.2k / 32k". Past it, the
 *  next prompt leaves out the chat's earliest messages (the reply then says so). */
function ContextMeter({ used, window }) {
  const short = (n) => (n >= 1000 ? `${(n / 1000).toFixed(n >= 10000 ? 0 : 1)}k` : String(n));
  const share = Math.min(1, used / window);
  return html`<span class=${`context-meter${share >= 0.9 ? " full" : ""}`}
      title=${`The last reply's prompt and reply used ${used} of the model's ${window}-token context window. A chat longer than that leaves its earliest messages out of the prompt.`}>
    <meter min="0" max=${window} value=${Math.min(used, window)} aria-label="Context used"></meter>
    <span class="context-text">${short(used)} / ${short(window)}</span>
  </span>`;
}

const draftKey = (chatId) => `lfgate:draft:${chatId ?? "new"}`;

export function readDraft(chatId) {
  try { return localStorage.getItem(draftKey(chatId)) ?? ""; } catch { return ""; }
}

export function writeDraft(chatId, text) {
  try {
    if (text) localStorage.setItem(draftKey(chatId), text);
    else localStorage.removeItem(draftKey(chatId));
  } catch { /* storage full or disabled: the text stays in the box */ }
}

export function Composer({ chatId, generating, disabled, unavailable, thinking, onThinking,
  onSend, onStop, restore, placeholder = "Message the model (Enter sends, Shift+Enter adds a line)",
  stopLabel = "Stop generating", toolCalled = false, context = null }) {
  const [text, setText] = useState(() => readDraft(chatId));
  // The reply before made tool calls: what is sent next is their result, unless unticked.
  const [asResult, setAsResult] = useState(toolCalled);
  useEffect(() => setAsResult(toolCalled), [toolCalled, chatId]);
  const ref = useRef(null);
  useEffect(() => { setText(readDraft(chatId)); }, [chatId]);
  useEffect(() => { if (restore) setText(restore.text); }, [restore]);
  useEffect(() => {
    const area = ref.current;
    if (!area) return;
    area.style.height = "auto";
    area.style.height = `${Math.min(area.scrollHeight, 240)}px`;
  }, [text]);
  useEffect(() => { if (!generating) ref.current?.focus(); }, [generating, chatId]);

  const update = (value) => {
    setText(value);
    writeDraft(chatId, value);
  };
  const send = () => {
    if (generating || disabled || unavailable || !text.trim()) return;
    onSend(text, { toolResult: toolCalled && asResult });
    setText("");
  };
  const onKeyDown = (event) => {
    if (event.key !== "Enter" || event.isComposing) return;
    if (event.shiftKey && !(event.ctrlKey || event.metaKey)) return;
    event.preventDefault();
    send();
  };
  return html`<form class="composer" onSubmit=${(e) => { e.preventDefault(); send(); }}>
    <textarea ref=${ref} id="message" rows="1" value=${text} aria-label="Message"
      placeholder=${placeholder}
      onInput=${(e) => update(e.target.value)} onKeyDown=${onKeyDown}></textarea>
    <div class="composer-row">
      <label class="toggle" title="Ask the model to think first (templates that support it)">
        <input type="checkbox" checked=${thinking} onChange=${(e) => onThinking(e.target.checked)} />
        Thinking
      </label>
      ${toolCalled && html`<label class="toggle tool-result-toggle"
          title="The model sees this message as the result of the tool calls above">
        <input type="checkbox" checked=${asResult} onChange=${(e) => setAsResult(e.target.checked)} />
        Tool's result
      </label>`}
      <span class="spacer"></span>
      ${context && html`<${ContextMeter} used=${context.used} window=${context.window} />`}
      ${unavailable && !generating && html`<span class="composer-why" id="send-why" role="status">${unavailable}</span>`}
      ${generating
        ? html`<button type="button" class="btn stop" onClick=${onStop}
            aria-label=${stopLabel} title="Stop (Esc)">■ Stop</button>`
        : html`<button type="submit" class="btn primary send" aria-label="Send message"
            aria-describedby=${unavailable ? "send-why" : undefined} title=${unavailable ?? ""}
            disabled=${disabled || Boolean(unavailable) || !text.trim()}>Send ↵</button>`}
    </div>
  </form>`;
}
