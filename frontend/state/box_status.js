// What the page knows about the box: reachability and mode (/api/health), each box's live
// status (its `boxes`: state, round trip, GPUs, what is loaded), the models with their
// status (/api/models), and the load the user is waiting for, timed to the second.
import { useCallback, useEffect, useRef, useState } from "../ui.js";
import { health as fetchHealth, models } from "../api.js";

const HEALTH_EVERY_MS = 5000;
const HEALTH_WHILE_DOWN_MS = 1000; // notice a gateway that is back within a second
const HEALTH_WHILE_BOX_DOWN_MS = 2000; // and a box that is back within a couple
const MODELS_EVERY_MS = 4000;
const LOAD_POLL_MS = 500;
// A poll that hangs (a gateway busy with a dead box) is given up, so the next one runs.
const HEALTH_TIMEOUT_MS = 10_000;
const MODELS_TIMEOUT_MS = 15_000;
export const BUSY_PCT = 50; // a GPU this busy is working for someone (training, say)

/** Call `fn` now and then every `ms` while mounted (never two at once). */
export function usePoll(fn, ms) {
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => {
    let timer;
    let live = true;
    const tick = async () => {
      await latest.current();
      if (live) timer = setTimeout(tick, ms);
    };
    tick();
    return () => { live = false; clearTimeout(timer); };
  }, [ms]);
}

export function useHealth() {
  const [health, setHealth] = useState(null);
  const [gatewayError, setGatewayError] = useState(null);
  usePoll(async () => {
    try {
      setHealth(await fetchHealth({ timeoutMs: HEALTH_TIMEOUT_MS }));
      setGatewayError(null);
    } catch (error) {
      setGatewayError(error.message);
    }
  }, gatewayError ? HEALTH_WHILE_DOWN_MS
    : boxesOf(health).some((box) => box.state === "down" || box.state === "reconnecting")
      ? HEALTH_WHILE_BOX_DOWN_MS : HEALTH_EVERY_MS);
  return { health, gatewayError };
}

/** The boxes /api/health describes: its `boxes` list, or (from a gateway without it) the one
 *  box of `remote`, with what that does not say left null. `state` is connected,
 *  reconnecting or down; `idle` for a box not connected yet with nothing wrong (it connects on
 *  first use). */
export function boxesOf(health) {
  if (!health) return [];
  if (Array.isArray(health.boxes) && health.boxes.length) {
    return health.boxes.map((box) => ({ ...box, mode: box.mode ?? health.mode,
      error: typeof box.error === "string" ? { message: box.error } : box.error ?? null }));
  }
  const remote = health.remote ?? {};
  return [{
    name: "main", host: remote.host ?? "", mode: health.mode, legacy: true,
    state: remote.connected ? "connected" : remote.error ? "down" : "idle",
    error: remote.error ? { message: remote.error } : null,
    rtt_ms: null, checked_at: null, gpus: null, gpu_error: null, load_avg: null, loaded: null,
    wrapper: null, warnings: [],
  }];
}

/** The models whose wrapper went with their box, or never started because the box was not
 *  there (`error` while that box was not connected): not a failed load; the next message
 *  loads them again. A Map from model id to {reached, why}: `reached` false when the box had
 *  never been reached since the gateway started (it did not "go away"), `why` the box's error
 *  then. Forgotten once they leave `error`. */
export function useLostWithBox(modelList, boxes) {
  const [lost, setLost] = useState(() => new Map());
  useEffect(() => {
    const byName = new Map(boxes.map((box) => [box.name, box]));
    const next = new Map();
    for (const model of modelList) {
      if (model.status !== "error") continue;
      const box = model.box ? byName.get(model.box) : boxes[0];
      if (lost.has(model.id)) next.set(model.id, lost.get(model.id));
      else if (box?.state === "down" || box?.state === "reconnecting") {
        next.set(model.id, { reached: box.reached !== false, why: box.error?.message ?? null });
      }
    }
    if (next.size !== lost.size || [...next.keys()].some((id) => !lost.has(id))) setLost(next);
  }, [modelList, boxes]);
  return lost;
}

/** Whether a GPU is busy: its utilisation at BUSY_PCT or more. */
export const gpuBusy = (gpu) => gpu.utilization_pct != null && gpu.utilization_pct >= BUSY_PCT;

/** When a load the gateway says has run `loadingSeconds` began, on this page's clock: a page
 *  that first sees a load mid-way (a poll, another tab) counts from its real start. */
const startedAgo = (loadingSeconds) => Date.now() - (loadingSeconds ?? 0) * 1000;

/** The model list, and `load`: {model, since, pending, seconds, baseReady, error, hint} for
 *  the model on screen, whoever started its load (the picker, a first message, another tab);
 *  `seconds` is the whole wait (its base's load included), or with `baseReady` an adapter's
 *  own load onto a base that was loaded already. `turnStarted(id)`: a turn on `id` has begun
 *  (its `meta` came), so a model that was not ready is loading for it now: the listing is read
 *  at once, not at the next poll, and the header shows the load from its start.
 *  Also the rest of the listing (`runs`: loss curves, `scan`, `serving`), `listed` once a
 *  listing came, and `rescan()`: the box's folders scanned again now (the picker opening),
 *  with `rescanning` meanwhile and `rescanError` if it failed; the list on screen stays. */
export function useModels(currentId) {
  const [modelList, setModelList] = useState([]);
  const listNow = useRef(modelList);
  listNow.current = modelList;
  const [listing, setListing] = useState({ runs: {}, scan: null, serving: [], listed: false });
  const [load, setLoad] = useState(null);
  const [rescans, setRescans] = useState(0); // running now
  const [rescanError, setRescanError] = useState(null);
  // A listing is shown only if it is newer than the one on screen: a poll's is numbered when
  // it starts, a rescan's when it ends, so a poll that began before a rescan ended never
  // puts back the list from before the rescan.
  const counter = useRef(0);
  const shown = useRef(0);
  const show = (number, data) => {
    if (number <= shown.current) return;
    shown.current = number;
    setModelList(data.models);
    setListing({ runs: data.runs ?? {}, scan: data.scan ?? null, serving: data.serving ?? [],
      listed: true });
  };
  const refresh = useCallback(async () => {
    const number = ++counter.current;
    try {
      show(number, await models.list({ timeoutMs: MODELS_TIMEOUT_MS }));
    } catch { /* the health poll says why; the list on screen stays */ }
  }, []);
  usePoll(refresh, MODELS_EVERY_MS);
  const rescan = useCallback(async () => {
    setRescans((n) => n + 1);
    try {
      const data = await models.refresh();
      show(++counter.current, data);
      setRescanError(null);
    } catch (error) {
      setRescanError(error.message);
    } finally {
      setRescans((n) => n - 1);
    }
  }, []);

  const turnStarted = useCallback((id) => {
    if (listNow.current.find((m) => m.id === id)?.status !== "ready") refresh();
  }, []);

  const current = modelList.find((m) => m.id === currentId);
  useEffect(() => {
    const followed = load?.model === current?.id;
    // Loading, and not a load this page follows already (an earlier one of the same model,
    // ended, does not count: its clock would be wrong).
    const loadingElsewhere = current?.status === "loading" && !(followed && load.pending);
    const failedUnexplained = current?.status === "error" && (!followed || !load.error);
    if (loadingElsewhere || failedUnexplained) {
      setLoad({ model: current.id, since: startedAgo(current.loading_seconds), pending: true });
    }
  }, [current?.id, current?.status]);
  useEffect(() => { // follow a load until it is ready or failed
    if (!load?.pending) return undefined;
    let live = true;
    const timer = setInterval(async () => {
      let status;
      try { status = await models.status(load.model); } catch { return; }
      if (!live || status.status === "loading") return;
      clearInterval(timer);
      setLoad({ ...load, pending: false, seconds: status.load_seconds,
        baseReady: status.base_already_loaded, phases: status.load_phases, error: status.error,
        hint: status.hint, stderr: status.stderr_tail });
      refresh();
    }, LOAD_POLL_MS);
    return () => { live = false; clearInterval(timer); };
  }, [load]);

  const startLoad = async (id) => {
    setLoad({ model: id, since: Date.now(), pending: true });
    setModelList((list) => list.map((m) => (m.id === id ? { ...m, status: "loading" } : m)));
    try {
      await models.load(id);
    } catch (error) {
      setLoad({ model: id, since: Date.now(), pending: false, error: error.message, hint: error.hint });
    }
  };
  const unload = async (id) => {
    const status = await models.unload(id); // frees the box's memory: the wrapper exits
    setModelList((list) => list.map((m) => (m.id === id ? { ...m, status: status.status } : m)));
    if (load?.model === id) setLoad(null);
  };
  return { modelList, current, load, startLoad, unload, turnStarted, ...listing, rescan,
    rescanning: rescans > 0, rescanError };
}
