// The chat list: newest first, grouped by day, searched on the server as the user types;
// each chat can be renamed inline, archived, or deleted after a confirm.
import { html, useEffect, useRef, useState } from "../ui.js";
import { groupByDay } from "../format.js";
import { Icon } from "./icons.js";

function RenameBox({ title, onDone }) {
  const [value, setValue] = useState(title);
  const ref = useRef(null);
  const finished = useRef(false);
  useEffect(() => { ref.current?.focus(); ref.current?.select(); }, []);
  const finish = (save) => {
    if (finished.current) return;
    finished.current = true;
    onDone(save && value.trim() && value.trim() !== title ? value.trim() : null);
  };
  return html`<input ref=${ref} class="rename" aria-label="Chat title" value=${value} maxlength="200"
    onInput=${(e) => setValue(e.target.value)} onBlur=${() => finish(true)}
    onKeyDown=${(e) => {
      if (e.key === "Enter") { e.preventDefault(); finish(true); }
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); finish(false); }
    }} />`;
}

function ChatItem({ chat, current, onSelect, onRename, onArchive, onDelete }) {
  const [mode, setMode] = useState("view"); // view | rename | confirm
  if (mode === "rename") {
    return html`<li class="chat-item current-edit">
      <${RenameBox} title=${chat.title} onDone=${(title) => {
        setMode("view");
        if (title) onRename(chat, title);
      }} />
    </li>`;
  }
  if (mode === "confirm") {
    return html`<li class="chat-item confirm" role="alertdialog" aria-label="Confirm delete">
      <span class="confirm-text">Delete “${chat.title}”?</span>
      <button type="button" class="btn danger" onClick=${() => onDelete(chat)}>Delete</button>
      <button type="button" class="btn" onClick=${() => setMode("view")}>Cancel</button>
    </li>`;
  }
  return html`<li class=${`chat-item${current ? " current" : ""}`}>
    <button type="button" class="chat-link" aria-current=${current ? "page" : undefined}
      onClick=${() => onSelect(chat)} onDblClick=${() => setMode("rename")}
      title=${chat.source === "api" ? `${chat.title} (a conversation of the OpenAI API, /v1)`
        : chat.compare ? `${chat.title} (a${chat.compare.blind ? " blind" : ""} compare of ${chat.compare.slots.length} models)`
        : chat.title}
      >${chat.source === "api" ? html`<span class="source-tag" aria-label="From the API">API</span>` : null}${
        chat.compare ? html`<span class="source-tag compare-tag" aria-label=${chat.compare.blind ? "Blind compare" : "Compare"}
          >${chat.compare.blind ? "Blind" : "Compare"}</span>` : null}${chat.title}</button>
    <span class="chat-actions">
      <button type="button" class="icon-btn" aria-label=${`Rename ${chat.title}`} title="Rename"
        onClick=${() => setMode("rename")}>✎</button>
      <button type="button" class="icon-btn" aria-label=${`${chat.archived ? "Unarchive" : "Archive"} ${chat.title}`}
        title=${chat.archived ? "Unarchive" : "Archive"} onClick=${() => onArchive(chat)}>${chat.archived ? "⇡" : "⇣"}</button>
      <button type="button" class="icon-btn" aria-label=${`Delete ${chat.title}`} title="Delete"
        onClick=${() => setMode("confirm")}>✕</button>
    </span>
  </li>`;
}

export function Sidebar({ chats, currentId, page, query, onQuery, archived, onShowArchived, onNew,
  onCompare, onLeaderboard, onSets, onDoctor, onImport, onLogout, open, listError, onDismissError, ...actions }) {
  const picker = useRef(null);
  const groups = groupByDay(chats);
  const empty = query ? "No chat matches your search." : archived ? "No archived chats." : "No chats yet.";
  return html`<nav class=${`sidebar${open ? " open" : ""}`} aria-label="Chats">
    <div class="side-head">
      <span class="brand" aria-hidden="true">LF Gate</span>
      <button type="button" class="btn primary new-chat" onClick=${onNew}>+ New chat</button>
    </div>
    <div class="side-modes">
      <button type="button" class="btn has-icon" onClick=${onCompare}
        aria-current=${page === "compare" ? "page" : undefined}
        title="One message to two to four models, side by side"><${Icon} name="columns" />Compare</button>
      <button type="button" class="btn has-icon" onClick=${onLeaderboard}
        aria-current=${page === "leaderboard" ? "page" : undefined}
        title="The models' ratings from every vote"><${Icon} name="ranking" />Leaderboard</button>
      <button type="button" class="btn has-icon" onClick=${onSets}
        aria-current=${page === "sets" || page === "run" ? "page" : undefined}
        title="A file of prompts asked of one to four models: a table of replies, scored"><${Icon} name="sets" />Prompt sets</button>
      <button type="button" class="btn has-icon" onClick=${onDoctor}
        aria-current=${page === "doctor" ? "page" : undefined}
        title="Check the box step by step, each failure with its fix"><${Icon} name="doctor" />Doctor</button>
    </div>
    <input type="search" class="search" placeholder="Search chats…" aria-label="Search chats"
      value=${query} onInput=${(e) => onQuery(e.target.value)} />
    <button type="button" class="link-btn" aria-pressed=${archived ? "true" : "false"}
      onClick=${() => onShowArchived(!archived)}>${archived ? "← All chats" : "Archived chats"}</button>
    <div class="chat-list">
      ${listError && html`<p class="notice error list-error" role="alert">${listError}
        ${onDismissError && html`<button type="button" class="link-btn dismiss"
          aria-label="Dismiss this error" onClick=${onDismissError}>✕</button>`}</p>`}
      ${!listError && chats.length === 0 && html`<p class="empty-list">${empty}</p>`}
      ${groups.map(([label, items]) => html`<section key=${label} class="day">
        <h2>${label}</h2>
        <ul>${items.map((chat) => html`<${ChatItem} key=${chat.id} chat=${chat}
          current=${chat.id === currentId} ...${actions} />`)}</ul>
      </section>`)}
    </div>
    <div class="side-foot">
      <button type="button" class="link-btn" onClick=${() => picker.current?.click()}
        title="A chat exported as JSON, from this or another LF Gate">Import a chat (.json)</button>
      <input ref=${picker} type="file" accept=".json,application/json" hidden
        aria-label="Chat file to import"
        onChange=${(e) => { const [file] = e.target.files; e.target.value = ""; if (file) onImport(file); }} />
      ${onLogout && html`<button type="button" class="link-btn log-out" onClick=${onLogout}
        title="Forget this browser's login (GATEWAY_TOKEN)">Log out</button>`}
    </div>
  </nav>`;
}
