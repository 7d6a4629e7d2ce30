// LF Gate's page: the chat list, the conversation with the model on the box, and the
// composer; a compare chat's columns, the leaderboard, prompt sets and their runs, the doctor.
// The open chat and its running turn live here, the box's status, the chat list, the compare
// view's, the prompt runs' and the doctor's state in state/; components/ only render and report.
import { html, render, useEffect, useMemo, useRef, useState } from "./ui.js";
import { ApiError, chats, followTurn, onLoginNeeded, openTurn, session, stopTurn } from "./api.js";
import { lasting } from "./reattach.js";
import { boxesOf, useHealth, useLostWithBox, useModels } from "./state/box_status.js";
import { useDoctor } from "./state/doctor.js";
import { useChatList } from "./state/chat_list.js";
import { useCompare } from "./state/compare.js";
import { indexTree, newestLeaf, pathTo, siblingsOf } from "./tree.js";
import { basename, contextUse, lossText } from "./format.js";
import { Sidebar } from "./components/sidebar.js";
import { Message } from "./components/message.js";
import { Composer, writeDraft } from "./components/composer.js";
import { ModelPicker } from "./components/model_picker.js";
import { ParamsDrawer } from "./components/params_drawer.js";
import { Connection } from "./components/connection.js";
import { LoadError } from "./components/load_error.js";
import { ExportMenu } from "./components/export_menu.js";
import { Icon } from "./components/icons.js";
import { CompareTitle, CompareView } from "./components/compare_view.js";
import { Leaderboard } from "./components/leaderboard.js";
import { SetsPage } from "./components/prompt_sets.js";
import { RunView } from "./components/run_view.js";
import { DoctorPanel } from "./components/doctor_panel.js";
import { BoxDown } from "./components/box_down.js";
import { DoctorLink, isBoxError } from "./components/doctor_link.js";
import { Login } from "./components/login.js";

/** What the URL shows: a chat (#/chat/<id>, a compare chat too), a new compare (#/compare),
 *  the leaderboard (#/leaderboard), the prompt sets (#/sets) or one run (#/run/<id>), the
 *  doctor (#/doctor; #/doctor/run[/<box>] opens it and starts a run), or a new chat. */
const routeFromHash = () => {
  const doctor = /^#\/doctor(\/run(?:\/([^/]+))?)?$/.exec(location.hash);
  if (doctor) {
    return { page: "doctor", chatId: null, runId: null, runDoctor: Boolean(doctor[1]),
      doctorBox: doctor[2] ? decodeURIComponent(doctor[2]) : null };
  }
  const match = /^#\/(chat|run)\/([\w-]+)$/.exec(location.hash);
  if (match) return { page: match[1], chatId: match[1] === "chat" ? match[2] : null,
    runId: match[1] === "run" ? match[2] : null };
  return { page: { "#/compare": "compare", "#/leaderboard": "leaderboard", "#/sets": "sets" }[
    location.hash] ?? "chat", chatId: null, runId: null };
};
/** The pages with no chat (no model picker, parameters or export in the header): their title. */
const NO_CHAT = { leaderboard: "Leaderboard", sets: "Prompt sets", run: "Prompt sets",
  doctor: "Doctor" };

function EmptyState({ model, boxes }) {
  const box = boxes.find((b) => b.name === model?.box) ?? boxes[0];
  const losses = model && [model.train_loss != null && `train ${lossText(model.train_loss)}`,
    model.eval_loss != null && `eval ${lossText(model.eval_loss)}`].filter(Boolean).join(" · ");
  return html`<div class="empty-state">
    <h1>Chat with your model on the box</h1>
    ${model && html`<dl class="model-facts">
      <dt>Model</dt><dd>${model.id}</dd>
      <dt>Base</dt><dd title=${model.base_model_path}>${basename(model.base_model_path)}</dd>
      <dt>Adapter</dt><dd title=${model.adapter_path ?? ""}>${model.adapter_path ? basename(model.adapter_path) : "none"}</dd>
      ${model.run && html`<dt>Run</dt><dd>${model.run_path ?? model.run} · ${model.step != null ? `step ${model.step}` : "final adapter"}</dd>`}
      ${losses && html`<dt>Loss</dt><dd>${losses}</dd>`}
      <dt>Template</dt><dd>${model.template}</dd>
      ${model.warnings?.length > 0 && html`<dt>Warnings</dt><dd>${model.warnings.join("; ")}</dd>`}
      ${!model.usable && html`<dt>Unusable</dt><dd>${model.problems.join("; ")}</dd>`}
      ${box && html`<dt>Box</dt><dd>${boxes.length > 1 ? `${box.name} · ` : ""}${box.host} · ${box.mode} mode</dd>`}
    </dl>`}
    <p class="muted">Pick a base model or adapter above. Replies stream from LlamaFactory on the box; every turn is saved with the exact model, adapter and settings that produced it.</p>
  </div>`;
}

function App({ onLogout }) {
  const { health: healthInfo, gatewayError } = useHealth();
  const boxes = useMemo(() => boxesOf(healthInfo), [healthInfo]);
  const doctor = useDoctor();
  const boxesNow = useRef(boxes);
  boxesNow.current = boxes;
  /** A run of the doctor asked for by a link (#/doctor/run[/<box>]): started, and the URL
   *  left at #/doctor so the same link starts the next one. With several boxes and none
   *  named, the first that is not connected (else the first). */
  const runDoctorFrom = (route) => {
    if (!route.runDoctor) return;
    const known = boxesNow.current;
    const box = route.doctorBox ?? (known.length > 1
      ? (known.find((b) => b.state !== "connected") ?? known[0]).name : null);
    doctor.start(box);
    history.replaceState(null, "", "#/doctor");
  };
  const { chatList, listError, dismissError, setActionError, query, setQuery, archived,
    setArchived, refreshList } = useChatList();
  const [chatId, setChatId] = useState(() => routeFromHash().chatId);
  const [page, setPage] = useState(() => routeFromHash().page);
  const [runId, setRunId] = useState(() => routeFromHash().runId);
  // The chat last fetched: shown only while it is still the open one. Between choosing
  // another chat (or a new one) and the effect that fetches it, the old chat must not lend
  // its settings, branch or id to what is typed next.
  const [fetchedChat, setChat] = useState(null);
  const [chatError, setChatError] = useState(null);
  const chat = fetchedChat !== null && fetchedChat.id === chatId ? fetchedChat : null;
  const [draft, setDraft] = useState({ model: "default", system: null, params: {} });
  const [turn, setTurn] = useState(null);
  const [banner, setBanner] = useState(null);
  const [restore, setRestore] = useState(null);
  const [drawer, setDrawer] = useState(false);
  const [drawerError, setDrawerError] = useState(null);
  const [sidebarOpen, setSidebarOpen] = useState(false);
  const now = useRef({});
  now.current = { chatId, chat };
  const turnRef = useRef(null);
  const followed = useRef(new Set()); // ids of stored streaming replies this page followed
  const scroller = useRef(null);

  // The same object until the chat or the draft changes: the drawer resets its form on a new one.
  const settings = useMemo(
    () => (chat ? { model: chat.model, system: chat.system, params: chat.params ?? {} } : draft),
    [chat, draft]);
  const { modelList, current, load, startLoad, unload, turnStarted, runs, scan, serving, listed,
    rescan, rescanning, rescanError } = useModels(settings.model);
  // The chat's model is no longer on the box (its folder went) or cannot be used: the chat
  // stays readable, and the composer asks for another model.
  const modelGone = listed && !current;
  // Its wrapper went with the box, or never started on a box never reached (not a failed
  // load): it loads again with the next message.
  const lost = useLostWithBox(modelList, boxes);
  const modelLost = Boolean(current && lost.has(current.id));
  const modelBox = boxes.find((b) => b.name === current?.box) ?? boxes[0];
  const modelUnusable = current?.usable === false;
  const tree = useMemo(() => indexTree(chat?.messages ?? []), [chat]);
  const visited = useRef(new Map()); // message id -> the leaf last shown below it
  useEffect(() => {
    if (!chat?.active_leaf_id) return;
    for (const m of pathTo(tree, chat.active_leaf_id)) visited.current.set(m.id, chat.active_leaf_id);
  }, [tree, chat?.active_leaf_id]);

  // ---- the open chat, kept in the URL so a reload comes back to it
  useEffect(() => {
    const onHash = () => {
      const route = routeFromHash();
      setPage(route.page);
      setChatId(route.chatId);
      setRunId(route.runId);
      setSidebarOpen(false);
      runDoctorFrom(route);
    };
    runDoctorFrom(routeFromHash()); // a page opened on #/doctor/run
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  useEffect(() => {
    const hash = chatId ? `#/chat/${chatId}` : page === "run" ? `#/run/${runId}`
      : page === "chat" ? "" : `#/${page}`;
    if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname);
    setChatError(null);
    if (!chatId) { setChat(null); return undefined; }
    if (now.current.chat?.id === chatId) return undefined;
    let live = true;
    chats.get(chatId).then((data) => { if (live) setChat(data); }).catch((error) => {
      if (!live) return;
      setChat(null);
      setChatError(error.status === 404 ? "This chat does not exist any more." : error.message);
    });
    return () => { live = false; };
  }, [chatId, page, runId]);
  const reloadChat = async (id) => {
    try {
      const data = await chats.get(id);
      if (now.current.chatId === id) setChat(data);
    } catch (error) {
      if (now.current.chatId === id) setBanner({ message: error.message });
    }
  };

  // ---- turns
  const running = turn?.running === true;
  /** A send that came to nothing puts the text back in the composer (and its saved draft). */
  const restoreText = (key, text) => {
    writeDraft(key, text);
    setRestore({ text });
  };
  const compare = useCompare({ chatId, chat, settings, modelList, reloadChat, refreshList,
    setBanner, restoreText, openChat: (id) => { setPage("chat"); setChatId(id); } });
  const isCompare = page === "compare" || Boolean(chat?.compare && chat.id === chatId)
    || (chatId !== null && compare.run !== null);
  /** A turn on screen, from its first event to its end, across dropped connections (the
   *  reply goes on on the box: reattach.js opens its stream again from the last event seen).
   *  `open` opens its stream; `draftKey` is the composer draft it clears once stored. */
  const playTurn = async (local, open, draftKey = null) => {
    turnRef.current = local;
    setTurn({ ...local });
    setBanner(null);
    let queued = false;
    const show = () => {
      if (queued) return;
      queued = true;
      // A frame that comes after the turn ended draws nothing: the end is drawn once, with
      // the chat reloaded, so Send never comes back over a chat still shown as it was.
      requestAnimationFrame(() => {
        queued = false;
        if (turnRef.current === local && local.running) setTurn({ ...local });
      });
    };
    const onLink = (up) => {
      if (up && local.stopWanted) sendStop(local); // Stop was pressed while it was away
      if (local.reconnecting === !up) return;
      local.reconnecting = !up;
      show();
    };
    let ended = false;
    let gone = false; // the gateway no longer knows the turn: what is stored is the truth
    try {
      for await (const { event, data } of lasting(open, { signal: local.controller.signal,
        resumable: () => local.turnId !== null, ended: () => ended, onLink })) {
        if (event === "meta") {
          // The reply's first event: its text starts here (a page that attaches to a reply
          // under way hears it from the start; a `replayed` one, its stored end).
          local.text = "";
          local.infos = [];
          local.model = data.model ?? local.model;
          if (local.turnId !== null) { show(); continue; }
          local.turnId = data.turn_id;
          writeDraft(draftKey, ""); // stored on the gateway now
          if (local.chatId !== data.chat_id) {
            local.chatId = data.chat_id;
            setChatId(data.chat_id);
          }
          // Now, not at the next frame: the new chat id and its running turn render
          // together, so the page never shows the chat without its turn (and Send enabled).
          setTurn({ ...local });
          refreshList();
          turnStarted(local.model); // a model not loaded is loading for it from now on
        } else if (event === "delta") {
          local.text += data.text;
          show();
        } else if (event === "info") {
          local.infos = [...local.infos, data];
          show();
        } else if (event === "done") {
          ended = true;
          local.text = data.content;
          local.status = data.finish_reason === "stopped" ? "stopped" : "complete";
        } else if (event === "error") {
          ended = true;
          local.status = "error";
          local.error = data;
          local.text = data.content ?? local.text; // a stored end's error keeps what arrived
          if (local.userText && !local.text) restoreText(local.chatId, local.userText); // nothing came back
        }
      }
      if (!ended) local.status = "interrupted";
    } catch (error) {
      if (local.turnId && error instanceof ApiError && error.status === 404) {
        gone = true;
      } else if (local.turnId) {
        local.status = "interrupted";
      } else {
        local.status = "failed";
        if (error.name !== "AbortError") {
          setBanner({ message: error.message, hint: error.hint, code: error.code });
        }
        if (local.userText) restoreText(draftKey, local.userText);
      }
    }
    local.running = false;
    local.reconnecting = false;
    if (turnRef.current !== local) return;
    if (local.status === "interrupted" && !gone) {
      setTurn({ ...local }); // keep what arrived on screen, with Retry
    } else {
      if (local.chatId) await reloadChat(local.chatId);
      // Unless the next turn began while the chat reloaded (Send comes back with the frame
      // that shows this turn ended): that one is on screen now, and stays.
      if (turnRef.current !== local) return;
      turnRef.current = null;
      setTurn(null);
    }
    refreshList();
  };
  const newTurn = (fields) => ({ chatId: null, anchorId: null, userText: null, text: "",
    infos: [], status: "streaming", turnId: null, error: null, model: null, running: true,
    reconnecting: false, stopWanted: false, controller: new AbortController(), ...fields });
  const runTurn = ({ path, body, anchorId, userText, chatKey, draftKey = chatKey }) => {
    const local = newTurn({ chatId: chatKey, anchorId, userText, model: body.model });
    return playTurn(local, (lastId, signal) => (local.turnId === null
      ? openTurn(path, body, signal) : followTurn(local.turnId, lastId, signal)), draftKey);
  };
  /** A reply stored as still streaming that this page is not streaming (a reload, another
   *  tab, the chat opened again from the list): followed live from its first event, with
   *  Stop, as if it had been sent here. */
  const followReply = (chatKey, reply, model) => {
    const local = newTurn({ chatId: chatKey, anchorId: reply.parent_id, text: reply.content,
      turnId: reply.id, model });
    return playTurn(local, (lastId, signal) => followTurn(reply.id, lastId, signal));
  };

  const send = async (text, { toolResult = false } = {}) => {
    if (turnRef.current?.running) return;
    let id = chatId;
    let open = chat;
    if (id !== null && open === null) { // chosen a moment ago, not fetched yet: its own settings
      try {
        open = await chats.get(id);
      } catch (error) {
        setBanner({ message: error.message, hint: error.hint });
        restoreText(chatId, text);
        return;
      }
    }
    let model = open ? open.model : settings.model;
    let anchor = open?.active_leaf_id ?? null;
    if (id === null && (settings.system || Object.keys(settings.params).length)) {
      try { // a new chat with its own settings: create it first so they are saved on it
        const created = await chats.create({ model: settings.model, system: settings.system,
          params: settings.params });
        now.current.chat = created;
        setChat(created);
        setChatId(created.id);
        id = created.id;
        model = created.model;
        anchor = null;
      } catch (error) {
        setBanner({ message: error.message, hint: error.hint });
        restoreText(chatId, text);
        return;
      }
    }
    await runTurn({ path: "api/chat",
      body: { message: text, chat_id: id, model, ...(toolResult ? { tool_result: true } : {}) },
      anchorId: anchor, userText: text, chatKey: id, draftKey: chatId });
  };
  const regenerate = (message) => runTurn({
    path: `api/chats/${encodeURIComponent(chat.id)}/regenerate`,
    body: { message_id: message.id, model: settings.model },
    anchorId: message.parent_id, userText: null, chatKey: chat.id,
  });
  const editAndSend = (message, text) => runTurn({
    path: `api/chats/${encodeURIComponent(chat.id)}/edit`,
    body: { message_id: message.id, content: text, model: settings.model },
    anchorId: message.parent_id, userText: text, chatKey: chat.id,
  });
  /** POST the turn's stop. One that cannot reach the gateway is kept and sent again as soon
   *  as the turn's stream is back (playTurn's onLink): only Stop stops a reply. */
  const sendStop = async (t) => {
    t.stopWanted = true;
    try {
      await stopTurn(t.turnId);
      t.stopWanted = false;
    } catch (error) {
      if (error instanceof ApiError && error.status === 0) return;
      t.stopWanted = false;
      if (!(error instanceof ApiError && error.status === 404)) setBanner({ message: error.message });
    }
  };
  const stop = async () => {
    const t = turnRef.current;
    if (!t?.running) return;
    if (!t.turnId) { t.controller.abort(); return; }
    await sendStop(t);
  };
  const keys = useRef({});
  useEffect(() => {
    const onKey = (event) => {
      if (event.key === "Escape" && turnRef.current?.running) { event.preventDefault(); stop(); }
      const mod = event.ctrlKey || event.metaKey;
      if (mod && event.shiftKey && event.key.toLowerCase() === "o") { // as in ChatGPT
        event.preventDefault();
        keys.current.newChat();
      }
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, []);

  // ---- chat settings, model, branches
  const saveSettings = async (changes) => {
    setDrawerError(null);
    if (!chat) { setDraft({ ...draft, ...changes }); return true; }
    try {
      setChat(await chats.patch(chat.id, changes));
      return true;
    } catch (error) {
      setDrawerError(error.message);
      return false;
    }
  };
  const pickModel = async (id) => {
    await saveSettings({ model: id });
    const model = modelList.find((m) => m.id === id);
    if (model && (model.status === "unloaded" || model.status === "error")) startLoad(id);
  };
  const setThinking = (on) => saveSettings({ params: { ...settings.params, enable_thinking: on } });
  const goBranch = async (message, index) => {
    const target = siblingsOf(tree, message)[index];
    if (!target || !chat) return;
    const remembered = visited.current.get(target.id);
    const leaf = remembered && pathTo(tree, remembered).includes(target)
      ? tree.byId.get(remembered) : newestLeaf(tree, target);
    setChat({ ...chat, active_leaf_id: leaf.id });
    try {
      setChat(await chats.patch(chat.id, { active_leaf_id: leaf.id }));
    } catch (error) {
      setBanner({ message: error.message });
      reloadChat(chat.id);
    }
  };

  // ---- sidebar actions
  const selectChat = (item) => {
    setPage("chat");
    setChatId(item.id);
    setSidebarOpen(false);
    setBanner(null);
  };
  const openPage = (name) => {
    setDraft({ model: settings.model, system: null, params: {} });
    setPage(name);
    setChatId(null);
    setSidebarOpen(false);
    setBanner(null);
  };
  const newChat = () => openPage("chat");
  keys.current.newChat = newChat;
  const importChat = async (file) => {
    let data;
    try {
      data = JSON.parse(await file.text());
    } catch {
      setActionError(`${file.name} is not JSON; export a chat as .json to import it`);
      return;
    }
    try {
      const created = await chats.importJson(data);
      setActionError(null);
      await refreshList();
      selectChat(created);
    } catch (error) {
      setActionError(`${file.name}: ${error.message}`);
    }
  };
  const sidebarAction = (fn) => async (item, ...args) => {
    try {
      await fn(item, ...args);
      setActionError(null);
    } catch (error) {
      setActionError(error.message);
    }
    refreshList();
  };
  const renameChat = sidebarAction(async (item, title) => {
    const updated = await chats.patch(item.id, { title });
    if (item.id === chatId) setChat(updated);
  });
  const archiveChat = sidebarAction(async (item) => {
    const updated = await chats.patch(item.id, { archived: !item.archived });
    if (item.id === chatId) setChat(updated);
  });
  const deleteChat = sidebarAction(async (item) => {
    await chats.remove(item.id);
    if (item.id === chatId) setChatId(null);
  });

  // ---- what is on screen
  const shown = [];
  const turnHere = turn && turn.chatId === chatId;
  if (turnHere) {
    for (const m of pathTo(tree, turn.anchorId)) shown.push({ message: m });
    if (turn.userText !== null) shown.push({ message: { role: "user", content: turn.userText, id: null } });
    shown.push({
      message: { id: turn.turnId, role: "assistant", content: turn.text, model: turn.model,
        status: turn.running ? "streaming" : turn.status, error: turn.error },
      streaming: turn.running, reconnecting: turn.reconnecting, infos: turn.infos,
    });
  } else {
    for (const m of pathTo(tree, chat?.active_leaf_id)) shown.push({ message: m });
  }
  // The last reply failed: it says why, so no notice beside it says the same again.
  const lastReplyFailed = shown.at(-1)?.message.status === "error";
  // The last reply called tools: the next message is their result (the composer says so).
  const lastCalls = shown.at(-1)?.message.provenance?.tool_calls;
  const toolCalled = !shown.at(-1)?.streaming && Array.isArray(lastCalls) && lastCalls.length > 0;
  // How full the model's window was at the last reply (its prompt and its own tokens).
  const context = contextUse([...shown].reverse()
    .find((item) => item.message.role === "assistant" && item.message.provenance?.usage)
    ?.message.provenance);
  // A reply stored as still streaming that this page is not streaming (a reload, another
  // tab, the chat opened again from the list): the page follows it (once: one that ended and
  // still reads as streaming is not followed again), as soon as no turn of its own runs.
  const unfollowed = !isCompare && !turnHere && chat?.id === chatId
    ? shown.findLast(({ message }) => message.status === "streaming"
      && !followed.current.has(message.id))?.message : undefined;
  useEffect(() => {
    if (!unfollowed || turnRef.current?.running) return;
    followed.current.add(unfollowed.id);
    followReply(chat.id, unfollowed, chat.model);
  }, [unfollowed?.id, running]);
  const [away, setAway] = useState(false); // scrolled up, away from the latest message
  useEffect(() => {
    const box = scroller.current;
    if (box && box.scrollHeight - box.scrollTop - box.clientHeight < 160) box.scrollTop = box.scrollHeight;
  });
  const onScroll = () => {
    const box = scroller.current;
    setAway(box.scrollHeight - box.scrollTop - box.clientHeight > 320);
  };
  useEffect(() => {
    if (scroller.current) scroller.current.scrollTop = scroller.current.scrollHeight;
  }, [chat?.id]);

  const branchOf = (message) => {
    if (!message.id || !tree.byId.has(message.id)) return null;
    const siblings = siblingsOf(tree, message);
    return { index: siblings.findIndex((m) => m.id === message.id), count: siblings.length,
      go: (index) => goBranch(message, index) };
  };
  useEffect(() => {
    const title = NO_CHAT[page] ?? chat?.title ?? (isCompare ? "Compare" : null);
    document.title = title ? `${title} · LF Gate` : "LF Gate";
  }, [chat?.title, page, isCompare]);
  // Not for a blind compare before its vote: the export names the models.
  const exportBase = chat && !NO_CHAT[page] && !(isCompare && compare.hidden)
    ? `api/chats/${encodeURIComponent(chat.id)}/export` : null;

  const picker = { models: modelList, runs, load, health: healthInfo, scan, serving, listed, lost,
    onOpen: rescan, rescanning, rescanError,
    onUnload: (id) => unload(id).catch((error) => setBanner({ message: error.message, code: error.code })) };
  const bannerBox = banner && html`<div class="banner" role="alert">
    <span>${banner.message}${banner.hint ? html` <span class="hint">${banner.hint}</span>` : ""}${
      isBoxError(banner.code) ? html` <${DoctorLink} />` : ""}</span>
    <button type="button" class="icon-btn" aria-label="Dismiss" onClick=${() => setBanner(null)}>✕</button>
  </div>`;

  return html`<div class="app">
    <a class="skip" href="#message" onClick=${(e) => {
      e.preventDefault();
      document.getElementById("message")?.focus();
    }}>Skip to the message box</a>
    <${Sidebar} chats=${chatList} currentId=${chatId} page=${page} query=${query} onQuery=${setQuery}
      archived=${archived} onShowArchived=${setArchived} onNew=${newChat} open=${sidebarOpen}
      onCompare=${() => openPage("compare")} onLeaderboard=${() => openPage("leaderboard")}
      onSets=${() => openPage("sets")} onDoctor=${() => openPage("doctor")}
      listError=${listError} onDismissError=${dismissError} onSelect=${selectChat} onRename=${renameChat}
      onArchive=${archiveChat} onDelete=${deleteChat} onImport=${importChat}
      onLogout=${healthInfo?.auth ? onLogout : null} />
    ${sidebarOpen && html`<div class="scrim" onClick=${() => setSidebarOpen(false)}></div>`}
    <div class="main">
      <header class="topbar">
        <button type="button" class="icon-btn menu" aria-label="Show chats"
          aria-expanded=${sidebarOpen ? "true" : "false"} onClick=${() => setSidebarOpen(!sidebarOpen)}>☰</button>
        ${NO_CHAT[page] ? html`<span class="bar-title"><strong>${NO_CHAT[page]}</strong></span>`
          : isCompare ? html`<${CompareTitle} compare=${compare} />`
          : html`<${ModelPicker} ...${picker} value=${settings.model} onChange=${pickModel}
            disabled=${running} />`}
        <span class="spacer"></span>
        ${!NO_CHAT[page] && html`<button type="button" class="btn has-icon" aria-expanded=${drawer ? "true" : "false"}
          aria-label="Parameters" title="Generation settings for this chat"
          onClick=${() => { setDrawerError(null); setDrawer(!drawer); }}>
          <${Icon} name="sliders" /><span class="wide-only">Parameters</span></button>`}
        ${exportBase && html`<${ExportMenu} exportBase=${exportBase} />`}
        <${Connection} health=${healthInfo} boxes=${boxes} gatewayError=${gatewayError} />
      </header>
      ${!gatewayError && html`<${BoxDown} boxes=${boxes} />`}
      ${page === "leaderboard" ? html`<${Leaderboard} />`
        : page === "doctor" ? html`<${DoctorPanel} doctor=${doctor} boxes=${boxes} />`
        : page === "sets" ? html`<${SetsPage} picker=${picker} />`
        : page === "run" ? html`<${RunView} runId=${runId} />`
        : isCompare ? html`<${CompareView} compare=${compare} chatId=${chatId} picker=${picker}
          busy=${running} gatewayError=${gatewayError} banner=${bannerBox} restore=${restore}
          thinking=${settings.params?.enable_thinking === true} onThinking=${setThinking} />`
        : html`
        <main class="conversation" ref=${scroller} aria-label="Conversation" onScroll=${onScroll}>
          ${chatError && html`<p class="notice error" role="alert">${chatError}</p>`}
          ${current?.status === "error" && load?.model === current.id && load.error && !modelLost
            && !lastReplyFailed
            && html`<${LoadError} load=${load} onRetry=${startLoad} />`}
          ${modelLost && html`<p class="notice info lost-with-box" role="status">
            ${lost.get(current.id).reached ? html`${current.id} stopped when the box went away: ${
              modelBox?.state === "connected"
                ? "the box is back, and the model loads again with your next message."
                : "it loads again with your next message once the box is back."}`
              : html`${current.id} could not load: the box has not been reached since the gateway
                started${lost.get(current.id).why && !lastReplyFailed
                  ? ` (${lost.get(current.id).why})` : ""}. ${
                modelBox?.state === "connected" ? "It answers now: the model loads with your next message."
                  : "The model loads with your next message once the box answers; Run doctor says what is wrong."}`}
            ${modelBox?.state === "connected" && html` <button type="button" class="btn small"
              onClick=${() => startLoad(current.id)}>Load now</button>`}</p>`}
          ${!chatError && shown.length === 0 && html`<${EmptyState} model=${current} boxes=${boxes} />`}
          <div class="messages">
            ${shown.map(({ message, streaming, reconnecting, infos }, i) => html`<${Message}
              key=${message.id ?? `pending-${i}`} message=${message} streaming=${streaming}
              reconnecting=${reconnecting} infos=${infos} busy=${running}
              branch=${streaming ? null : branchOf(message)}
              onEdit=${(text) => editAndSend(message, text)}
              onRegenerate=${() => regenerate(message)} onRetry=${() => regenerate(message)} />`)}
          </div>
          ${(modelGone || modelUnusable) && !running && html`<p class="notice error model-gone" role="status">
            ${modelGone ? html`This chat's model, <code>${settings.model}</code>, is no longer on the box (its folder was moved or deleted).`
              : html`This chat's model, <code>${settings.model}</code>, cannot be used: ${current.problems.join("; ")}.`}
            ${shown.length > 0 ? " The conversation stays readable; pick" : " Pick"} another model above to send.</p>`}
        </main>
        ${away && html`<button type="button" class="to-bottom" aria-label="Scroll to the latest message"
          onClick=${() => scroller.current.scrollTo({ top: scroller.current.scrollHeight, behavior: "smooth" })}>↓</button>`}
        ${bannerBox}
        <${Composer} chatId=${chatId} generating=${running && turnHere} disabled=${running || compare.running}
          unavailable=${gatewayError ? "The gateway cannot be reached: your text is kept, and Send comes back when it reconnects."
            : modelGone ? `The model ${settings.model} is gone: pick another model above to send.`
            : modelUnusable ? `The model ${settings.model} cannot be used: pick another model above to send.` : null}
          thinking=${settings.params?.enable_thinking === true} onThinking=${setThinking}
          onSend=${send} onStop=${stop} restore=${restore} toolCalled=${toolCalled}
          context=${context} />`}
    </div>
    ${drawer && html`<${ParamsDrawer} settings=${settings} error=${drawerError}
      onClose=${() => setDrawer(false)}
      onSave=${async (changes) => { if (await saveSettings(changes)) setDrawer(false); }} />`}
  </div>`;
}

/** The app, or the login form while the gateway answers 401 (GATEWAY_TOKEN set, no session
 *  cookie yet): the app unmounts, so its polling stops, and mounts again after the login. */
function Root() {
  const [loggedOut, setLoggedOut] = useState(false);
  useEffect(() => onLoginNeeded(() => setLoggedOut(true)), []);
  const logout = async () => {
    try { await session.logout(); } catch { /* the form comes up all the same */ }
    setLoggedOut(true);
  };
  return loggedOut ? html`<${Login} onLoggedIn=${() => setLoggedOut(false)} />`
    : html`<${App} onLogout=${logout} />`;
}

render(html`<${Root} />`, document.getElementById("app"));
