// The compare view's state: its columns (the models the next message goes to, one per
// column), the compare turn streaming now, the mode the gateway chose for it, and the chat's
// votes. As in app.js for a chat's turn, the streaming turn is an overlay over the stored chat;
// when every column has ended the chat is read again and the overlay dropped, so what is
// shown after a turn is what is stored. A compare chat's stored turns come from its message
// tree: one branch per column (docs/api.md#compare). A compare turn outlives the page's
// connection as a reply does (reattach.js): a dropped stream is opened again, and a turn
// found still streaming (a reload, another tab) is followed column by column.
import { useEffect, useRef, useState } from "../ui.js";
import { ApiError, chats, compares, followCompare, followTurn, openTurn, stopTurn } from "../api.js";
import { lasting } from "../reattach.js";
import { indexTree, pathTo } from "../tree.js";
import { writeDraft } from "../components/composer.js";

export const LETTERS = ["A", "B", "C", "D"];
export const MIN_COLUMNS = 2;
export const MAX_COLUMNS = 4;
export const NEW_COMPARE = "compare"; // the new compare's draft (localStorage) and its URL

/** What each mode means, in a line (the gateway chooses it: docs/api.md#compare). */
export const MODES = {
  batch: "One generate call on the loaded base answers every column, an adapter per row.",
  parallel: "Each model runs in a process of its own on the box, side by side.",
  sequential: "The models share a process that cannot batch (CLI mode, or one model twice): the columns take turns.",
};

/** A compare chat's stored turns, oldest first: each its compare id, the user's text and
 *  every column's reply (null where a column has none). */
export function compareTurns(chat) {
  if (!chat?.compare) return [];
  const tree = indexTree(chat.messages);
  const columns = chat.compare.slots.map((slot) =>
    pathTo(tree, slot.leaf_id).filter((m) => m.role === "assistant"));
  const count = Math.max(0, ...columns.map((replies) => replies.length));
  const turns = [];
  for (let k = 0; k < count; k++) {
    const replies = columns.map((column) => column[k] ?? null);
    const first = replies.find(Boolean);
    turns.push({ compareId: first.provenance?.compare_id ?? first.id,
      userText: tree.byId.get(first.parent_id)?.content ?? "", replies });
  }
  return turns;
}

/** The mode a stored turn ran in, where its replies say (a batch is recorded on each). */
const storedMode = (turn) => {
  const said = turn?.replies.find((r) => r?.provenance?.compare_mode)?.provenance.compare_mode;
  return said ?? (turn?.replies.some((r) => r?.provenance?.batch) ? "batch" : null);
};

/** A stored turn that is the one streaming here (read mid-way: its replies still streaming,
 *  their provenance not written yet): the overlay shows it instead. */
const isRunning = (turn, run) => turn.compareId === run.compareId
  || turn.replies.some((reply) => reply && run.slots.some((slot) => slot.turnId === reply.id));

const newSlot = () => ({ model: null, turnId: null, text: "", infos: [], status: "waiting",
  error: null, end: null, stopping: false, reconnecting: false });
/** A column still to hear its end from. */
const live = (slot) => slot.status === "waiting" || slot.status === "streaming";

/** A column of a stored turn, as the overlay shows it: still streaming, or already ended. */
const storedSlot = (reply, model) => (reply ? {
  ...newSlot(), model: reply.provenance?.model ?? model, turnId: reply.id, text: reply.content,
  infos: reply.provenance?.notices ?? [], status: reply.status, end: reply.provenance ?? null,
  error: reply.provenance?.error ?? null,
} : { ...newSlot(), status: "complete" });

/** One column's event (those of /api/chat: docs/api.md). A `meta` here is its reply's first
 *  event, so its text starts over (a column followed from the start; a `replayed` end). */
function onSlotEvent(slot, event, data) {
  if (event === "meta") {
    Object.assign(slot, { text: "", infos: [], model: data.model ?? slot.model });
  } else if (event === "delta") {
    slot.text += data.text;
  } else if (event === "info") {
    slot.infos = [...slot.infos, data];
  } else if (event === "done") {
    Object.assign(slot, { text: data.content, end: data,
      status: data.finish_reason === "stopped" ? "stopped" : "complete" });
  } else if (event === "error") {
    Object.assign(slot, { status: "error", error: data, text: data.content ?? slot.text });
  }
}

/** `app`: {chatId, chat, settings, modelList, openChat(id), reloadChat(id), refreshList(),
 *  setBanner(banner), restoreText(key, text)} from app.js. */
export function useCompare({ chatId, chat, settings, modelList, openChat, reloadChat, refreshList,
  setBanner, restoreText }) {
  const [run, setRun] = useState(null);
  const runRef = useRef(null);
  const [picked, setPicked] = useState({ key: null, models: null }); // columns changed by hand
  const [blind, setBlind] = useState(false); // for a new compare
  const [votes, setVotes] = useState({ chatId: null, votes: [], tally: {} });
  const [voteError, setVoteError] = useState(null);
  const modes = useRef(new Map()); // chat id -> the mode of its last turn streamed here
  const followed = useRef(new Set()); // ids of stored streaming replies this page followed
  const here = useRef(null);
  here.current = chatId;

  const compareChat = chat?.compare && chat.id === chatId ? chat : null;
  const key = compareChat ? compareChat.id : NEW_COMPARE;
  const stored = compareChat ? compareChat.compare.slots.map((slot) => slot.model) : null;
  const usable = modelList.filter((m) => m.usable).map((m) => m.id);
  const defaults = [settings.model, usable.find((id) => id !== settings.model) ?? settings.model];
  const columns = (picked.key === key && picked.models) || stored || defaults;
  const storedKey = stored?.join("\n");
  useEffect(() => { setPicked({ key: null, models: null }); }, [key, storedKey]);

  const setColumns = (models) => setPicked({ key, models });
  const setColumn = (index, id) => setColumns(columns.map((m, i) => (i === index ? id : m)));
  const addColumn = () => {
    if (compareChat || columns.length >= MAX_COLUMNS) return;
    setColumns([...columns, usable.find((id) => !columns.includes(id)) ?? columns.at(-1)]);
  };
  const removeColumn = (index) => {
    if (compareChat || columns.length <= MIN_COLUMNS) return;
    setColumns(columns.filter((_, i) => i !== index));
  };

  // ---- a compare turn
  const show = (local) => {
    if (runRef.current === local) setRun({ ...local, slots: local.slots.map((s) => ({ ...s })) });
  };
  /** Renders `local` now (`commit`) or at the next animation frame (`soon`: deltas). */
  const renderer = (local) => {
    let queued = false;
    const commit = () => show(local);
    const soon = () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => { queued = false; commit(); });
    };
    return { commit, soon };
  };
  /** `onLink` for `slots` (reattach.js): their Reconnecting state, and the stops pressed while
   *  the link was down, sent now. */
  const linkOf = (local, slots, soon) => (up) => {
    if (up) for (const stop of local.unsent.splice(0)) stop();
    for (const slot of slots) slot.reconnecting = !up && live(slot);
    soon();
  };
  /** After every column has ended: the chat read again and the overlay dropped, unless a
   *  column was cut off for good (what arrived stays on screen, marked interrupted). */
  const finish = async (local, gone, text = null) => {
    local.running = false;
    for (const slot of local.slots) {
      slot.reconnecting = false;
      // a compare the gateway forgot ended long ago: the chat, read again, says how
      if (live(slot)) slot.status = gone ? "complete" : "interrupted";
    }
    if (runRef.current !== local) return;
    if (text !== null && local.slots.every((s) => s.status === "error" && !s.text)) {
      restoreText(local.chatId, text);
    }
    if (local.slots.some((s) => s.status === "interrupted")) {
      show(local); // keep what arrived on screen, marked interrupted
    } else {
      await reloadChat(local.chatId);
      if (runRef.current === local) { runRef.current = null; setRun(null); }
    }
    refreshList();
  };
  const start = async (text) => {
    if (runRef.current?.running) return;
    const existing = compareChat;
    const models = columns;
    const draftKey = existing ? existing.id : NEW_COMPARE;
    const params = { ...(settings.params ?? {}) };
    if (!existing && settings.system) params.system = settings.system; // a chat's: on the chat
    const body = { message: text, models, params,
      ...(existing ? { chat_id: existing.id } : { blind }) };
    const local = { chatId: existing?.id ?? null, compareId: null, mode: null,
      blind: existing ? Boolean(existing.compare.blind) : blind, userText: text,
      slots: models.map(newSlot), running: true, unsent: [], controller: new AbortController() };
    runRef.current = local;
    const { commit, soon } = renderer(local);
    commit();
    setBanner(null);
    // The compare's own stream, then (once the gateway has named the compare) its reattach.
    const open = (lastId, signal) => (local.compareId === null
      ? openTurn("api/compare", body, signal) : followCompare(local.compareId, lastId, signal));
    let gone = false; // the gateway has forgotten the compare (ended long ago): read the chat
    try {
      for await (const { event, data } of lasting(open, { signal: local.controller.signal,
        resumable: () => local.compareId !== null,
        ended: () => local.compareId !== null && !local.slots.some(live),
        onLink: linkOf(local, local.slots, soon) })) {
        if (event === "meta") { // sent again on every reattach: only the first one is news
          if (local.compareId !== null) continue;
          Object.assign(local, { chatId: data.chat_id, compareId: data.compare_id, mode: data.mode,
            blind: data.blind });
          for (const slot of data.slots) {
            Object.assign(local.slots[slot.slot], { turnId: slot.turn_id, model: slot.model ?? null,
              status: "streaming" });
          }
          modes.current.set(data.chat_id, data.mode);
          writeDraft(draftKey, ""); // stored on the gateway now
          if (!existing) {
            keepDraftSettings(data.chat_id);
            openChat(data.chat_id);
          }
          commit();
          refreshList();
          continue;
        }
        const slot = local.slots[data.slot];
        if (!slot) continue;
        onSlotEvent(slot, event, data);
        soon();
      }
    } catch (error) {
      if (!local.compareId) { // refused, or never reached the gateway: nothing is stored
        local.running = false;
        if (error.name !== "AbortError") {
          setBanner({ message: error.message, hint: error.hint, code: error.code });
        }
        restoreText(draftKey, text);
        if (runRef.current === local) { runRef.current = null; setRun(null); }
        return;
      }
      gone = error instanceof ApiError && error.status === 404;
    }
    await finish(local, gone, text);
  };
  /** A compare chat whose last turn is stored as still streaming and that this page is not
   *  streaming (a reload, another tab, the chat opened again from the list): each column
   *  still streaming follows its reply live from its first event (GET /api/chat/{turn_id}/
   *  stream: its replies name their compare only once stored), with Stop. */
  const follow = async (chatRecord) => {
    const tree = indexTree(chatRecord.messages);
    const replies = chatRecord.compare.slots.map((slot) => tree.byId.get(slot.leaf_id) ?? null);
    const local = { chatId: chatRecord.id, compareId: null, mode: null,
      blind: Boolean(chatRecord.compare.blind),
      userText: tree.byId.get(replies.find(Boolean)?.parent_id)?.content ?? "",
      slots: replies.map((reply, i) => storedSlot(reply, chatRecord.compare.slots[i].model)),
      running: true, unsent: [], controller: new AbortController() };
    runRef.current = local;
    const { commit, soon } = renderer(local);
    commit();
    const one = async (slot) => {
      try {
        for await (const { event, data } of lasting(
          (lastId, signal) => followTurn(slot.turnId, lastId, signal),
          { signal: local.controller.signal, resumable: () => true, ended: () => !live(slot),
            onLink: linkOf(local, [slot], soon) })) {
          onSlotEvent(slot, event, data);
          soon();
        }
      } catch (error) { // gone (404): the stored chat says how it ended; else cut off for good
        if (error instanceof ApiError && error.status === 404) slot.status = "complete";
      }
    };
    await Promise.all(local.slots.filter(live).map(one));
    await finish(local, false);
  };
  /** A new compare's settings (the Parameters drawer's) are saved on the chat it made, so the
   *  next turns use them too: the compare call itself only takes them for this turn. */
  const keepDraftSettings = (id) => {
    if (!settings.system && !Object.keys(settings.params ?? {}).length) return;
    chats.patch(id, { system: settings.system, params: settings.params })
      .catch((error) => setBanner({ message: `The settings were not saved on the chat: ${error.message}` }));
  };
  /** A stop; one that cannot reach the gateway is sent again once the stream is back. */
  const quietly404 = async (local, call) => {
    try {
      await call();
    } catch (error) {
      if (error instanceof ApiError && error.status === 0) local.unsent.push(() => quietly404(local, call));
      else if (!(error instanceof ApiError && error.status === 404)) setBanner({ message: error.message });
    }
  };
  // A stopped column says "stopping" from the click until its own `done` (in a batch too:
  // the box ends that row at once while the others go on).
  const stopping = (local, slots) => {
    for (const slot of slots) if (slot.status === "streaming") slot.stopping = true;
    show(local);
  };
  const stopSlot = (index) => {
    const local = runRef.current;
    const slot = local?.slots[index];
    if (!local?.running || !slot?.turnId) return undefined;
    stopping(local, [slot]);
    return quietly404(local, () => stopTurn(slot.turnId));
  };
  const stopAll = () => {
    const local = runRef.current;
    if (!local?.running) return undefined;
    if (local.compareId) {
      stopping(local, local.slots);
      return quietly404(local, () => compares.stop(local.compareId));
    }
    const going = local.slots.filter((slot) => slot.turnId && live(slot));
    if (!going.length) { local.controller.abort(); return undefined; } // not taken yet
    stopping(local, going); // a turn followed column by column: each column's own stop
    return Promise.all(going.map((slot) => quietly404(local, () => stopTurn(slot.turnId))));
  };
  useEffect(() => {
    const onKey = (event) => { // Esc stops every column, as it stops a chat's reply
      if (event.key !== "Escape" || !runRef.current?.running) return;
      event.preventDefault();
      stopAll();
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, []);

  // ---- votes
  const loadVotes = async (id) => {
    try {
      const data = await compares.votes(id);
      if (here.current === id) setVotes({ chatId: id, ...data });
    } catch (error) {
      if (here.current === id) setVoteError({ compareId: null, message: error.message });
    }
  };
  useEffect(() => {
    setVoteError(null);
    if (compareChat) loadVotes(compareChat.id);
  }, [compareChat?.id]);
  const vote = async (compareId, winner, reason) => {
    const id = compareChat.id;
    setVoteError(null);
    try {
      const record = await compares.vote(id, { compare_id: compareId, winner,
        ...(reason ? { reason } : {}) });
      setVotes((now) => (now.chatId === id ? { ...now, votes: [
        ...now.votes.filter((v) => v.compare_id !== compareId), record] } : now));
      await loadVotes(id); // and the tally
      return record;
    } catch (error) {
      setVoteError({ compareId, message: error.message, hint: error.hint });
      return null;
    }
  };
  const chatVotes = compareChat && votes.chatId === compareChat.id ? votes
    : { votes: [], tally: {} };

  const runHere = run !== null && run.chatId === chatId ? run : null;
  // The chat's last turn stored as still streaming, and not this page's: followed (once: a
  // turn that ended and still reads as streaming is not followed again).
  const streaming = compareChat && !runHere ? compareChat.compare.slots
    .map((slot) => compareChat.messages.find((m) => m.id === slot.leaf_id))
    .filter((m) => m?.status === "streaming" && !followed.current.has(m.id)) : [];
  const unfollowed = streaming.map((m) => m.id).join(" ");
  useEffect(() => {
    if (!unfollowed || runRef.current?.running) return;
    for (const id of unfollowed.split(" ")) followed.current.add(id);
    follow(compareChat);
  }, [unfollowed, run?.running === true]);
  const turns = compareTurns(compareChat);
  const blindChat = runHere ? runHere.blind : Boolean(compareChat?.compare.blind);
  return {
    run: runHere, running: run?.running === true, columns, setColumn, addColumn, removeColumn,
    fixed: Boolean(compareChat), blind, setBlind, blindChat,
    // names hidden until the chat's first vote (then every column's name is known)
    hidden: blindChat && chatVotes.votes.length === 0,
    turns: runHere ? turns.filter((t) => !isRunning(t, runHere)) : turns,
    mode: runHere?.mode ?? modes.current.get(chatId) ?? storedMode(turns.at(-1)),
    start, stopSlot, stopAll, votes: chatVotes, vote, voteError,
  };
}
