// Prompt sets and their runs (docs/api.md#prompt-sets). The sets page's list: every set and
// every run, read again every second and a half while a run is going (its progress). A run
// on screen: read once, then followed through its event stream while it runs, its cells and
// progress changed in place (one render per animation frame); when the stream ends the run
// is read again, so what is shown after a run is what is stored.
import { useEffect, useRef, useState } from "../ui.js";
import { promptSets, runs as runsApi } from "../api.js";

const LIST_EVERY_MS = 1500; // the sets page, while one of its runs is going
const FOLLOW_AGAIN_MS = 1000; // a run's stream that dropped while the run still goes

export const MAX_MODELS = 4;
export const FORMATS = [["auto", "Auto (from the file)"], ["jsonl", "JSONL"], ["json", "JSON array"],
  ["csv", "CSV with a header"], ["lines", "One prompt a line"]];
export const METRICS = [["bleu", "BLEU"], ["chrf", "chrF"], ["rouge_l", "ROUGE-L"]];
export const ENDED = ["complete", "error", "stopped"]; // a cell no longer asked
/** Scores (0-100) as the page shows them, one decimal. */
export const scoreText = (value) => (value == null ? "–" : value.toFixed(1));

/** The sets and every run, and what the sets page does with them. */
export function usePromptSets() {
  const [sets, setSets] = useState(null); // null until the first answer
  const [runs, setRuns] = useState([]);
  // The lists' own error (the next load that works clears it) apart from a refused delete's
  // (it stays until the next delete): the reload after a refused delete, and the reloads
  // while a run goes, wiped a shared one before it could be read.
  const [loadError, setLoadError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const live = useRef(true);
  const refresh = async () => {
    try {
      const [setList, runList] = await Promise.all([promptSets.list(), runsApi.list()]);
      if (!live.current) return;
      setSets(setList.sets);
      setRuns(runList.runs);
      setLoadError(null);
    } catch (failure) {
      if (live.current) setLoadError(failure.message);
    }
  };
  useEffect(() => {
    live.current = true;
    refresh();
    return () => { live.current = false; };
  }, []);
  useEffect(() => { // a run going: its progress on the list
    if (!runs.some((run) => run.status === "running")) return undefined;
    const timer = setTimeout(refresh, LIST_EVERY_MS);
    return () => clearTimeout(timer);
  }, [runs]);

  /** Store a set ({name, content, format, filename}); an ApiError names a bad line. */
  const add = async (body) => {
    const created = await promptSets.create(body);
    await refresh();
    return created;
  };
  const remove = async (setId) => {
    try {
      await promptSets.remove(setId);
      setActionError(null);
    } catch (failure) {
      setActionError(failure.message);
    }
    await refresh();
  };
  /** Start a run: {models, params}; the run it made. */
  const start = (setId, body) => promptSets.start(setId, body);
  return { sets, runs, error: actionError || loadError, add, remove, start, refresh };
}

/** A cell event's cell into the run: `running` events carry only the cell's status. */
function withCell(run, { index, slot, cell }) {
  if (!run) return run;
  return { ...run, rows: run.rows.map((row) => (row.index !== index ? row : {
    ...row, cells: row.cells.map((old) => (old.slot !== slot ? old
      : { ...old, ...(cell.status === "running" ? { content: "", scores: null, error: null } : {}),
        ...cell })),
  })) };
}

function applyEvent(run, { event, data }) {
  if (!run) return run;
  if (event === "progress") return { ...run, status: data.status, progress: data.progress };
  if (event === "cell") return withCell(run, data);
  if (event === "end") return { ...run, status: data.status, error: data.error };
  return run;
}

/** One run (#/run/<id>): the run as stored and as it goes, and its actions. */
export function useRun(runId) {
  const [run, setRun] = useState(null);
  const [loadError, setLoadError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [busy, setBusy] = useState(false); // a stop or resume on its way
  const [following, setFollowing] = useState(false);
  const [attempt, setAttempt] = useState(0); // a new stream for the same run
  const current = useRef(null); // the run as last shown, for the stream's changes
  const here = useRef(runId);
  here.current = runId;
  const gone = useRef(false);

  const show = (data) => {
    current.current = data;
    setRun(data);
  };
  const reload = async () => {
    try {
      const data = await runsApi.get(runId);
      if (here.current !== runId) return null;
      show(data);
      setLoadError(null);
      return data;
    } catch (failure) {
      if (here.current !== runId) return null;
      gone.current = failure.status === 404;
      setLoadError(gone.current ? "This run does not exist any more." : failure.message);
      return null;
    }
  };

  useEffect(() => {
    show(null);
    setLoadError(null);
    setActionError(null);
    setFollowing(false);
    gone.current = false;
    reload().then((data) => { if (data?.status === "running") setFollowing(true); });
  }, [runId]);

  useEffect(() => {
    if (!following) return undefined;
    const controller = new AbortController();
    const { signal } = controller;
    let queued = false;
    const soon = () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        if (!signal.aborted) setRun(current.current);
      });
    };
    (async () => {
      // The stream's first event says it is subscribed: the run is read again then, and the
      // events that come meanwhile are replayed on what it says, so no change falls between.
      let held = null;
      let reread = null;
      try {
        for await (const item of runsApi.events(runId, signal)) {
          if (reread === null) {
            held = [item];
            reread = runsApi.get(runId).catch(() => current.current).then((data) => {
              if (signal.aborted) return;
              current.current = held.reduce(applyEvent, data);
              held = null;
              soon();
            });
          } else if (held !== null) {
            held.push(item);
          } else {
            current.current = applyEvent(current.current, item);
            soon();
          }
        }
        await reread;
      } catch {
        if (signal.aborted) return;
      }
      if (signal.aborted) return;
      const data = await reload();
      if (signal.aborted) return;
      if (data?.status === "running" || (data === null && !gone.current)) {
        setTimeout(() => { if (!signal.aborted) setAttempt((n) => n + 1); }, FOLLOW_AGAIN_MS);
      } else {
        setFollowing(false);
      }
    })();
    return () => controller.abort();
  }, [runId, following, attempt]);

  const act = async (call) => {
    setActionError(null);
    setBusy(true);
    try {
      const summary = await call();
      if (here.current === runId) show({ ...current.current, ...summary });
      return summary;
    } catch (failure) {
      if (here.current === runId) setActionError(failure);
      return null;
    } finally {
      setBusy(false);
    }
  };
  /** Stop asking; the stream's `end` brings the run as stored. */
  const stop = () => act(() => runsApi.stop(runId));
  /** Ask what is left (pending, stopped and failed cells), and follow it. */
  const resume = async () => {
    const summary = await act(() => runsApi.resume(runId));
    if (summary?.status === "running") {
      setFollowing(true);
      setAttempt((n) => n + 1);
    }
  };
  const vote = async (index, winner) => {
    setActionError(null);
    try {
      const saved = await runsApi.vote(runId, { index, winner, reason: null });
      const now = current.current;
      if (here.current !== runId || !now) return;
      show({ ...now, rows: now.rows.map((row) => (row.index === index
        ? { ...row, vote: saved } : row)) });
    } catch (failure) {
      if (here.current === runId) setActionError(failure);
    }
  };
  return { run, loadError, actionError, busy, following, stop, resume, vote,
    exportBase: runsApi.exportBase(runId) };
}
