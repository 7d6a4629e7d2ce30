// The compare view: two to four columns answering one message per turn (stacked on a
// phone), a model picker per column, the mode the gateway chose, each column's timing and
// stop, a vote per turn and the chat's tally, blind mode (names hidden until the vote), a
// word diff between two columns and scroll that can be synced. State: state/compare.js.
import { html, useEffect, useLayoutEffect, useMemo, useRef, useState } from "../ui.js";
import { LETTERS, MAX_COLUMNS, MIN_COLUMNS, MODES, NEW_COMPARE } from "../state/compare.js";
import { wordDiff } from "../diff.js";
import { leftOutText, provenanceText, timingParts } from "../format.js";
import { splitThinking } from "../markdown.js";
import { Composer } from "./composer.js";
import { ModelPicker } from "./model_picker.js";
import { RECONNECTING, RECONNECTING_WHY, ReplyBody } from "./message.js";
import { DoctorLink } from "./doctor_link.js";

const FOLLOW_PX = 60; // a column this close to its end keeps following the text that streams in
const AT_END_PX = 160; // the turns this close to their end follow what arrives below
const ABOVE_TURN_PX = 8; // room left above the latest turn when a chat opens on it

/** A compare chat opens on its latest turn: the user's message at the top, under the sticky
 *  column heads, and the start of each reply below it (the end of the chat is the vote and
 *  the tally, and scrolled there a tall turn hid both the message and short replies). */
function showLatestTurn(box) {
  const latest = [...box.querySelectorAll(":scope > .cmp-turn")].at(-1);
  if (!latest) return;
  const heads = box.querySelector(":scope > .cmp-heads");
  const covered = heads && getComputedStyle(heads).position === "sticky" ? heads.offsetHeight : 0;
  box.scrollTop += latest.getBoundingClientRect().top - box.getBoundingClientRect().top - covered
    - ABOVE_TURN_PX;
  box.placedAt = box.scrollTop; // its scroll event is ours, not the reader's
}

/** The turns' scroll. A chat's turns, when they first show: on the latest turn, and kept
 *  there while what loads after them (votes, the tally) grows the page, until the reader
 *  scrolls. A new turn: the end. Else the end follows what arrives while the reader is at
 *  it; a render that grew nothing never moves the reader. */
function useTurnsScroll(scroller, chatId, turnCount) {
  const seen = useRef({ chatId: undefined, turnCount: 0, height: 0, anchored: false });
  useEffect(() => {
    const box = scroller.current;
    const onScroll = () => {
      if (Math.abs(box.scrollTop - (box.placedAt ?? -1)) > 1) seen.current.anchored = false;
    };
    box.addEventListener("scroll", onScroll, { passive: true });
    return () => box.removeEventListener("scroll", onScroll);
  }, []);
  useLayoutEffect(() => {
    const box = scroller.current;
    const was = seen.current;
    const height = box.scrollHeight;
    let anchored = was.anchored;
    if (turnCount > 0 && was.chatId !== chatId) {
      anchored = true;
      showLatestTurn(box);
    } else if (turnCount > was.turnCount) {
      anchored = false;
      box.scrollTop = height;
    } else if (anchored) {
      if (height !== was.height) showLatestTurn(box);
    } else if (height > was.height && was.height - box.scrollTop - box.clientHeight < AT_END_PX) {
      box.scrollTop = height;
    }
    seen.current = { chatId: turnCount > 0 ? chatId : was.chatId, turnCount, height, anchored };
  });
}

const STATUS_TEXT = {
  stopped: "Stopped",
  interrupted: "Interrupted: this column was cut off before it finished; what arrived is kept.",
  streaming: "Still being written on the gateway…",
};

/** The title bar's words for a compare (app.js puts it where a chat has its model picker). */
export function CompareTitle({ compare }) {
  const count = compare.run?.slots.length ?? compare.columns.length;
  return html`<span class="bar-title">
    <strong>Compare</strong><span class="muted"> · ${count} columns</span>
    ${compare.blindChat && html`<span class="badge blind-badge">${compare.hidden ? "blind" : "blind · revealed"}</span>`}
  </span>`;
}

function ColumnHead({ index, count, model, hidden, removable, disabled, picker, onPick, onRemove }) {
  const letter = LETTERS[index];
  return html`<div class=${`cmp-head${index > 0 && index >= count / 2 ? " end" : ""}`}
      role="group" aria-label=${`Column ${letter}`} data-slot=${index}>
    <span class="cmp-letter" aria-hidden="true">${letter}</span>
    ${hidden
      ? html`<span class="cmp-hidden-name" title="Hidden until you vote">Model ${letter}
          <span class="muted"> · hidden until you vote</span></span>`
      : html`<${ModelPicker} ...${picker} value=${model} disabled=${disabled}
          onChange=${(id) => onPick(index, id)} />`}
    ${removable && html`<button type="button" class="icon-btn cmp-remove" disabled=${disabled}
      aria-label=${`Remove column ${letter}`} title="Remove this column" onClick=${() => onRemove(index)}>✕</button>`}
  </div>`;
}

/** One column's reply in a turn: stored (`message`) or streaming now (`slot`). */
function Cell({ index, message, slot, hidden, diff, diffSide, diffWhole, scrollRef, onScroll, onStop,
  verdict }) {
  const letter = LETTERS[index];
  const live = slot != null;
  const status = live ? slot.status : message?.status ?? "complete";
  const streaming = live && (status === "streaming" || status === "waiting");
  const content = live ? slot.text : message?.content ?? "";
  const provenance = live ? slot.end : message?.provenance;
  const error = live ? slot.error : provenance?.error;
  const notices = live ? slot.infos : provenance?.notices ?? [];
  const model = live ? slot.model : provenance?.model;
  const box = useRef(null);
  useLayoutEffect(() => { // follow the text while it streams, unless the reader scrolled up
    const el = box.current;
    if (!el || !streaming) return;
    const end = el.scrollHeight - el.clientHeight;
    if (end - el.scrollTop < FOLLOW_PX + 40 && el.scrollTop !== end) {
      el.syncedTo = end;
      el.scrollTop = end;
    }
  }, [content, streaming]);
  const setBox = (el) => { box.current = el; scrollRef(el); };
  const timing = timingParts(provenance);
  const leftOut = leftOutText(provenance);
  const classes = ["cmp-cell", `status-${status}`, verdict && `verdict-${verdict}`].filter(Boolean).join(" ");
  return html`<article class=${classes} aria-label=${`Column ${letter}`} data-slot=${index}
      aria-busy=${streaming ? "true" : "false"} data-message-id=${message?.id ?? slot?.turnId ?? ""}>
    <div class="cmp-scroll" ref=${setBox} onScroll=${onScroll} tabindex="0" role="region"
      aria-label=${`Reply ${letter}`}>
      ${diff && !streaming
        ? html`<div class="diff-text" aria-label=${`Reply ${letter}, words that differ marked`}>${diff.map((part) => (
          !part.changed ? part.text : diffSide === "left"
            ? html`<del class="diff-del">${part.text}</del>` : html`<ins class="diff-ins">${part.text}</ins>`))}</div>`
        : status === "waiting" && !content
          ? html`<span class="typing" aria-label="Waiting for the gateway"><i></i><i></i><i></i></span>`
          : html`<${ReplyBody} content=${content} streaming=${streaming} />`}
    </div>
    ${diff && diffWhole && !streaming && html`<p class="notice info">Too long to compare word by word:
      the part that differs is marked whole.</p>`}
    ${notices.map((notice) => html`<p class="notice info" title=${notice.code}>${notice.message}</p>`)}
    ${!streaming && leftOut && html`<p class="notice info left-out" role="note">${leftOut}</p>`}
    ${!streaming && STATUS_TEXT[status] && html`<p class=${`notice ${status}`}>${STATUS_TEXT[status]}</p>`}
    ${error && html`<div class="notice error" role="alert">
      <p><strong>${error.code ?? "error"}</strong>: ${error.message}</p>
      ${error.hint && html`<p class="hint">${error.hint}</p>`}
      <p class="doctor-line-link"><${DoctorLink} /></p>
    </div>`}
    <div class="cmp-foot">
      <span class="cmp-letter small" aria-hidden="true">${letter}</span>
      <span class="cmp-model" tabindex=${hidden || !provenance ? undefined : "0"}
        title=${hidden ? "Hidden until you vote" : provenanceText(provenance)}>${hidden || !model ? `Model ${letter}` : model}</span>
      ${verdict === "best" && html`<span class="cmp-verdict best">★ best</span>`}
      ${verdict === "tie" && html`<span class="cmp-verdict">tie</span>`}
      ${verdict === "bad" && html`<span class="cmp-verdict bad">bad</span>`}
      ${streaming && html`<span class="cmp-generating">${slot.stopping ? "stopping…" : "generating…"}</span>`}
      ${streaming && slot.reconnecting && html`<span class="reconnecting" role="status"
        title=${RECONNECTING_WHY}>${RECONNECTING}</span>`}
      <span class="cmp-timing">${timing.map(([kind, text]) => html`<span class=${`t-${kind}`}>${text}</span>`)}</span>
      ${streaming && onStop && !slot.stopping && html`<button type="button" class="btn small stop-col"
        aria-label=${`Stop column ${letter}`} title="Stop this column; the others go on" onClick=${onStop}>■ Stop</button>`}
    </div>
  </article>`;
}

function verdictText(record, count) {
  if (record.winner === "tie") return "Tie";
  if (record.winner === "both_bad") return count === 2 ? "Both bad" : "All bad";
  const index = Number(record.winner);
  return `${LETTERS[index]} is ${count === 2 ? "better" : "best"} (${record.models[index]})`;
}

function VoteBar({ turnNumber, count, record, error, onVote }) {
  const [editing, setEditing] = useState(false);
  const [reason, setReason] = useState(record?.reason ?? "");
  const [busy, setBusy] = useState(false);
  useEffect(() => { setReason(record?.reason ?? ""); }, [record?.id, record?.reason]);
  if (record && !editing) {
    return html`<div class="vote voted" role="status" aria-label=${`Your vote on turn ${turnNumber}`}>
      <span>Voted: <strong>${verdictText(record, count)}</strong>${record.reason ? html` · “${record.reason}”` : ""}</span>
      <button type="button" class="link-btn" onClick=${() => setEditing(true)}>Change vote</button>
    </div>`;
  }
  const choices = [
    ...LETTERS.slice(0, count).map((letter, i) => [String(i), `${letter} is ${count === 2 ? "better" : "best"}`]),
    ["tie", "Tie"], ["both_bad", count === 2 ? "Both bad" : "All bad"],
  ];
  const choose = async (winner) => {
    setBusy(true);
    const saved = await onVote(winner, reason.trim());
    setBusy(false);
    if (saved) setEditing(false);
  };
  return html`<div class="vote" role="group" aria-label=${`Vote on turn ${turnNumber}`}>
    <span class="vote-ask">${count === 2 ? "Which is better?" : "Which is best?"}</span>
    ${choices.map(([winner, label]) => html`<button type="button" class="btn small vote-choice"
      aria-pressed=${record?.winner === winner ? "true" : "false"} disabled=${busy}
      onClick=${() => choose(winner)}>${label}</button>`)}
    <input type="text" class="vote-reason" maxlength="2000" placeholder="Why? (optional)"
      aria-label=${`Reason for the vote on turn ${turnNumber} (optional)`} value=${reason}
      onInput=${(e) => setReason(e.target.value)} />
    ${record && html`<button type="button" class="link-btn" onClick=${() => setEditing(false)}>Cancel</button>`}
    ${error && html`<p class="notice error" role="alert">${error.message}</p>`}
  </div>`;
}

/** Scroll boxes that follow each other (the same share of their height) while `on`. */
function useSyncedScroll(on) {
  const boxes = useRef([]);
  const refFor = (index) => (el) => { boxes.current[index] = el; };
  const onScroll = (event) => {
    const el = event.currentTarget;
    if (el.syncedTo != null && Math.abs(el.scrollTop - el.syncedTo) <= 1) { // our own move
      el.syncedTo = null;
      return;
    }
    el.syncedTo = null;
    if (!on) return;
    const range = el.scrollHeight - el.clientHeight;
    const share = range > 0 ? el.scrollTop / range : 0;
    for (const other of boxes.current) {
      if (!other || other === el) continue;
      const to = Math.round(share * (other.scrollHeight - other.clientHeight));
      if (Math.abs(other.scrollTop - to) > 1) {
        other.syncedTo = to;
        other.scrollTop = to;
      }
    }
  };
  return { refFor, onScroll };
}

function Turn({ number, userText, cells, count, hidden, diffPair, sync, record, voteError,
  onVote, onStop }) {
  const { refFor, onScroll } = useSyncedScroll(sync);
  const texts = cells.map((cell) => (cell.slot ? cell.slot.text : cell.message?.content ?? ""));
  const finals = cells.every((cell) => !cell.slot || !cell.slot.running);
  const [a, b] = diffPair ?? [0, 0];
  const diff = useMemo(() => {
    if (!diffPair || !finals || a === b || a >= count || b >= count) return null;
    const answer = (text) => splitThinking(text, { final: true }).answer;
    const { left, right, complete } = wordDiff(answer(texts[a]), answer(texts[b]));
    return { [a]: ["left", left, complete], [b]: ["right", right, complete] };
  }, [Boolean(diffPair), a, b, count, finals, texts[a], texts[b]]);
  const verdict = (index) => {
    if (!record) return null;
    if (record.winner === "tie") return "tie";
    if (record.winner === "both_bad") return "bad";
    return record.winner === String(index) ? "best" : null;
  };
  // a vote once every column is stored and ended (not still written, here or elsewhere)
  const stored = cells.every((cell) => !cell.slot && cell.message?.status !== "streaming");
  return html`<section class="cmp-turn" aria-label=${`Turn ${number}`}>
    <div class="cmp-prompt"><div class="user-text">${userText}</div></div>
    <div class="cmp-row" style=${`--cols: ${count}`}>
      ${cells.map((cell, index) => html`<${Cell} key=${index} index=${index} message=${cell.message}
        slot=${cell.slot} hidden=${hidden} diff=${diff?.[index]?.[1]} diffSide=${diff?.[index]?.[0]}
        diffWhole=${diff?.[index]?.[2] === false}
        scrollRef=${refFor(index)} onScroll=${onScroll} verdict=${verdict(index)}
        onStop=${cell.slot ? () => onStop(index) : null} />`)}
    </div>
    ${stored && onVote && html`<${VoteBar} turnNumber=${number} count=${count} record=${record}
      error=${voteError} onVote=${onVote} />`}
  </section>`;
}

function Tally({ tally }) {
  const rows = Object.entries(tally ?? {}).sort((a, b) => b[1].wins - a[1].wins
    || a[1].losses - b[1].losses || a[0].localeCompare(b[0]));
  if (!rows.length) return null;
  return html`<section class="cmp-tally" aria-label="Votes in this chat">
    <table>
      <caption>This chat's votes</caption>
      <thead><tr><th scope="col">Model</th><th scope="col">Wins</th><th scope="col">Losses</th><th scope="col">Ties</th></tr></thead>
      <tbody>${rows.map(([model, t]) => html`<tr key=${model}><th scope="row">${model}</th>
        <td>${t.wins}</td><td>${t.losses}</td><td>${t.ties}</td></tr>`)}</tbody>
    </table>
  </section>`;
}

function Options({ compare, count, diffOn, setDiffOn, pair, setPair, sync, setSync, busy }) {
  const { mode, fixed } = compare;
  const letters = LETTERS.slice(0, count);
  const choosePair = (side, value) => {
    const next = [...pair];
    next[side] = Number(value);
    setPair(next);
  };
  return html`<div class="cmp-bar" role="group" aria-label="Compare options">
    <span class="cmp-mode" role="status" aria-live="polite">
      ${mode ? html`<span class="badge cmp-mode-name" title=${MODES[mode]}>${mode}</span>
          <span class="cmp-mode-why">${MODES[mode]}</span>`
        : !fixed ? html`<span class="cmp-mode-why">One message to every column. Models on one loaded base answer in one batch.</span>` : null}
    </span>
    <span class="spacer"></span>
    ${!fixed && html`<label class="toggle" title="Shuffle the columns and hide the models' names until you vote">
      <input type="checkbox" checked=${compare.blind} disabled=${busy}
        onChange=${(e) => compare.setBlind(e.target.checked)} /> Blind</label>`}
    <label class="toggle" title="Mark the words that differ between two columns">
      <input type="checkbox" checked=${diffOn} onChange=${(e) => setDiffOn(e.target.checked)} /> Word diff</label>
    ${diffOn && count > 2 && html`<span class="cmp-pair">
      <select aria-label="Diff: first column" value=${String(pair[0])} onChange=${(e) => choosePair(0, e.target.value)}>
        ${letters.map((l, i) => html`<option value=${String(i)}>${l}</option>`)}</select>
      <span aria-hidden="true">↔</span>
      <select aria-label="Diff: second column" value=${String(pair[1])} onChange=${(e) => choosePair(1, e.target.value)}>
        ${letters.map((l, i) => html`<option value=${String(i)}>${l}</option>`)}</select>
    </span>`}
    <label class="toggle" title="Scrolling one column of a turn scrolls the others">
      <input type="checkbox" checked=${sync} onChange=${(e) => setSync(e.target.checked)} /> Sync scroll</label>
    ${!fixed && html`<button type="button" class="btn small" aria-label="Add a column"
      disabled=${busy || count >= MAX_COLUMNS} title=${count >= MAX_COLUMNS ? `At most ${MAX_COLUMNS} columns` : "Add a column"}
      onClick=${compare.addColumn}>+ Column</button>`}
  </div>`;
}

export function CompareView({ compare, chatId, picker, busy, gatewayError, banner, restore,
  thinking, onThinking }) {
  const [diffOn, setDiffOn] = useState(false);
  const [pair, setPair] = useState([0, 1]);
  const [sync, setSync] = useState(true);
  const scroller = useRef(null);
  const { run, columns, fixed, hidden, turns, votes } = compare;
  const count = run ? run.slots.length : columns.length;
  const running = compare.running;
  const generating = run?.running === true;
  const listed = picker.listed;
  const known = (id) => picker.models.some((m) => m.id === id && m.usable);
  const missing = listed ? columns.findIndex((id) => !known(id)) : -1;

  const byCompare = new Map(votes.votes.map((v) => [v.compare_id, v]));
  const shown = turns.map((turn) => ({ turn, cells: turn.replies.map((message) => ({ message })) }));
  if (run) {
    shown.push({ turn: { compareId: run.compareId ?? "pending", userText: run.userText },
      cells: run.slots.map((slot) => ({ slot: { ...slot, running: run.running } })) });
  }
  useTurnsScroll(scroller, chatId, shown.length);
  const unavailable = gatewayError
    ? "The gateway cannot be reached: your text is kept, and Send comes back when it reconnects."
    : missing >= 0 ? (hidden ? "One of this compare's models is no longer on the box."
      : `Column ${LETTERS[missing]}'s model, ${columns[missing]}, is not on the box: pick another.`)
      : null;
  return html`<div class="cmp">
    <${Options} compare=${compare} count=${count} diffOn=${diffOn} setDiffOn=${setDiffOn}
      pair=${pair} setPair=${setPair} sync=${sync} setSync=${setSync} busy=${running} />
    <main class="cmp-turns" ref=${scroller} aria-label="Compare">
      <div class="cmp-heads" style=${`--cols: ${count}`}>
        ${Array.from({ length: count }, (_, index) => html`<${ColumnHead} key=${index} index=${index}
          count=${count} model=${columns[index]} hidden=${hidden} picker=${picker}
          removable=${!fixed && !run && count > MIN_COLUMNS} disabled=${running || busy}
          onPick=${compare.setColumn} onRemove=${compare.removeColumn} />`)}
      </div>
      ${shown.length === 0 && html`<div class="empty-state cmp-empty">
        <h1>Compare models side by side</h1>
        <p class="muted">Pick a model for each column (two to four; the same one twice shows how
          much sampling varies), then send one message: every column answers it, and each keeps
          its own history for the next. Vote on each turn; <strong>Blind</strong> hides the names
          until you vote. The votes make the <a href="#/leaderboard">leaderboard</a>.</p>
      </div>`}
      ${shown.map(({ turn, cells }, i) => html`<${Turn} key=${turn.compareId} number=${i + 1}
        userText=${turn.userText} cells=${cells} count=${count} hidden=${hidden}
        diffPair=${diffOn ? pair : null} sync=${sync} record=${byCompare.get(turn.compareId)}
        voteError=${compare.voteError?.compareId === turn.compareId ? compare.voteError : null}
        onVote=${fixed ? (winner, reason) => compare.vote(turn.compareId, winner, reason) : null}
        onStop=${compare.stopSlot} />`)}
      ${compare.voteError && !compare.voteError.compareId && html`<p class="notice error" role="alert">${compare.voteError.message}</p>`}
      <${Tally} tally=${votes.tally} />
    </main>
    ${banner}
    <${Composer} chatId=${chatId ?? NEW_COMPARE} generating=${generating} disabled=${running || busy}
      unavailable=${unavailable} thinking=${thinking} onThinking=${onThinking}
      onSend=${compare.start} onStop=${compare.stopAll} restore=${restore}
      placeholder=${`Message all ${count} columns (Enter sends, Shift+Enter adds a line)`}
      stopLabel="Stop all columns" />
  </div>`;
}
