"""Issue 15's figure: a prompt set run across four models on one base, batched, against the
same cells asked one at a time.

Run by tests/bench/run.py (section 10 of docs/benchmarks.md). On section 9's gateway (script
mode, the tiny base in the shared slot, the demo saves/ tree's real tiny adapters under
ADAPTER_DIRS) and with section 9's four models (the base and three adapters), a set of N
distinct prompts is imported once (POST /api/prompt-sets), then rounds of, interleaved (the
order alternating every round):

- `batched`: one run of the set over the four models (POST /api/prompt-sets/{id}/runs), which
  the gateway asks chunk by chunk, as many prompts as fit in one batch (MAX_BATCH_ROWS rows,
  a row a (prompt, model) cell); timed from just before the POST until the run's event
  stream (GET /api/runs/{id}/events) says `end`;
- `one at a time`: the same N x 4 (prompt, model) cells asked one after the other through
  /api/chat (`stream: false`, each a new chat): what a user does without prompt sets; timed
  from just before the first request to the last reply.

Every reply is greedy with the same settings, so every batched cell must equal the same model
asked alone for that prompt; the harness counts the identical ones (as section 9 does) and
the cells sent to the box once (`attempts` 1) and in a batch (their provenance's
`batch.rows` > 1), and fails unless every cell ended `complete` and the event stream told
every cell's end before `end`. The wrapper's own clock rides along: a batch's slowest row
(`box_timing.total_ms`) per batch, summed over the run, against the sum of the single
replies' (read back from the stored chats after the round, outside the timing).
"""

from __future__ import annotations

import json
import time
from typing import Any

from lfgate.remote.wrapper_protocol import MAX_BATCH_ROWS
from tests.bench.adapters import _check_one_base_load, _shared_held, check_on_shared_base
from tests.bench.compare import MODELS
from tests.bench.run import PROMPTS
from tests.gateway_process import GatewayProcess, sse_events

# Greedy, as section 9 (a batched cell must equal its model asked alone).
PROMPT_SET_PARAMS = {"temperature": 0, "max_new_tokens": 128}


def bench_prompts(count: int) -> list[str]:
    """`count` distinct prompts: the bench's PROMPTS in turn, each numbered."""
    return [f"Question {n + 1}: {PROMPTS[n % len(PROMPTS)]}" for n in range(count)]


def import_set(gateway: GatewayProcess, prompts: list[str], name: str) -> dict[str, Any]:
    """A JSONL prompt set (no references: nothing to score)."""
    content = "".join(json.dumps({"prompt": p}) + "\n" for p in prompts)
    response = gateway.http.post("/api/prompt-sets", json={
        "content": content, "filename": f"{name}.jsonl", "name": name})
    if response.status_code != 201:
        raise RuntimeError(f"importing the prompt set failed: {response.status_code} "
                           f"{response.text}")
    made = response.json()
    if made["count"] != len(prompts):
        raise RuntimeError(f"the set holds {made['count']} prompts, not {len(prompts)}")
    return made


def _batched(gateway: GatewayProcess, set_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """One run of the set over MODELS: timed from just before the POST to the `end` event;
    then the whole run read back (outside the timing) and checked."""
    started = time.monotonic()
    response = gateway.http.post(f"/api/prompt-sets/{set_id}/runs",
                                 json={"models": list(MODELS), "params": params})
    if response.status_code != 201:
        raise RuntimeError(f"starting the run failed: {response.status_code} {response.text}")
    run = response.json()
    if run["mode"] != "batch":
        raise RuntimeError(f"the run did not go batched: mode {run['mode']!r}")
    end: dict[str, Any] | None = None
    cell_events = 0
    with gateway.http.stream("GET", f"/api/runs/{run['id']}/events") as events:
        if events.status_code != 200:
            raise RuntimeError(f"following the run failed: {events.status_code} "
                               f"{events.read()!r}")
        for name, data, at in sse_events(events):
            if name == "cell" and data["cell"]["status"] != "running":
                cell_events += 1
            elif name == "end":
                end = data | {"at": at}
                break
    if end is None:
        raise RuntimeError(f"run {run['id']}: the event stream closed without `end`")
    wall = end["at"] - started
    got = gateway.http.get(f"/api/runs/{run['id']}").json()
    if end["status"] != "complete" or got["status"] != "complete":
        raise RuntimeError(f"run {run['id']} ended {end['status']}: {end.get('error')}")
    progress = got["progress"]
    if progress["done"] != progress["total"] or progress["errors"]:
        raise RuntimeError(f"run {run['id']}: progress {progress}")
    cells, batches = {}, {}
    for row in got["rows"]:
        if [c["model"] for c in row["cells"]] != list(MODELS):
            raise RuntimeError(f"prompt {row['index']}: cells {row['cells']}")
        for cell in row["cells"]:
            provenance = cell["provenance"] or {}
            batch = provenance.get("batch") or {}
            box = provenance.get("box_timing") or {}
            if cell["status"] != "complete":
                raise RuntimeError(f"prompt {row['index']} on {cell['model']}: {cell}")
            cells[(row["index"], cell["model"])] = {
                "content": cell["content"], "attempts": cell["attempts"],
                "batch_id": batch.get("id"), "batch_rows": batch.get("rows"),
                "tokens": (provenance.get("usage") or {}).get("completion_tokens"),
                "box_total_s": box["total_ms"] / 1000 if box.get("total_ms") is not None
                else None, "adapter_load_s": box.get("adapter_load_s")}
            if batch.get("id") is not None and box.get("total_ms") is not None:
                batches[batch["id"]] = max(batches.get(batch["id"], 0.0), box["total_ms"] / 1000)
    if cell_events != len(cells):
        raise RuntimeError(f"run {run['id']}: the event stream told {cell_events} cells' ends "
                           f"before `end`, of {len(cells)}")
    return {"run_id": run["id"], "wall_s": wall, "cells": cells,
            "tokens": sum(c["tokens"] or 0 for c in cells.values()),
            "cell_events": cell_events, "elapsed_s": progress["elapsed_s"],
            "batches": len({c["batch_id"] for c in cells.values()}),
            "box_total_s": sum(batches.values())}


def _one_at_a_time(gateway: GatewayProcess, prompts: list[str], params: dict[str, Any]
                   ) -> dict[str, Any]:
    """Every (prompt, model) cell through /api/chat, one after the other, each a new chat
    (`stream: false`: the whole reply as JSON); the wrapper's clock read back afterwards."""
    chats: dict[tuple[int, str], dict[str, Any]] = {}
    started = time.monotonic()
    for index, prompt in enumerate(prompts):
        for model in MODELS:
            response = gateway.http.post("/api/chat", json={
                "message": prompt, "model": model, "params": params, "stream": False})
            if response.status_code != 200:
                raise RuntimeError(f"/api/chat on {model} failed: {response.status_code} "
                                   f"{response.text}")
            chats[(index, model)] = response.json()
    wall = time.monotonic() - started
    replies = {}
    for key, reply in chats.items():
        messages = gateway.http.get(f"/api/chats/{reply['chat_id']}").json()["messages"]
        provenance = messages[-1]["provenance"] or {}
        box = provenance.get("box_timing") or {}
        replies[key] = {
            "content": reply["content"],
            "tokens": (provenance.get("usage") or {}).get("completion_tokens"),
            "box_total_s": box["total_ms"] / 1000 if box.get("total_ms") is not None else None,
            "adapter_load_s": box.get("adapter_load_s")}
    return {"wall_s": wall, "replies": replies,
            "tokens": sum(r["tokens"] or 0 for r in replies.values()),
            "box_total_s": sum(r["box_total_s"] or 0.0 for r in replies.values())}


def bench_prompt_sets(gateway: GatewayProcess, rounds: int, count: int,
                      params: dict[str, Any] | None = None) -> dict[str, Any]:
    """`gateway`: section 9's (script mode, the demo tree under ADAPTER_DIRS,
    MAX_LOADED_ADAPTERS >= 3). Warms every model and the batch path (a run of a small set),
    imports a set of `count` prompts, then `rounds` rounds of one batched run and the same
    cells one at a time, the order alternating every round."""
    params = PROMPT_SET_PARAMS if params is None else params
    check_on_shared_base(gateway.http.post("/api/models/refresh").json()["models"],
                         list(MODELS))
    prompts = bench_prompts(count)
    # Warm: the base loaded and each adapter brought onto it (a reply alone each), then a
    # run of a small set (the batch path's first run), so no timed cell loads anything.
    for model in MODELS:
        reply = gateway.http.post("/api/chat", json={"message": prompts[0], "model": model,
                                                      "params": params, "stream": False})
        if reply.status_code != 200:
            raise RuntimeError(f"warming {model} failed: {reply.status_code} {reply.text}")
    warm = import_set(gateway, bench_prompts(2), "bench warm-up")
    _batched(gateway, warm["id"], params)
    _check_one_base_load(_shared_held(gateway), "prompt sets, after warming")
    made = import_set(gateway, prompts, "bench")

    batched: list[dict[str, Any]] = []
    alone: list[dict[str, Any]] = []
    for index in range(rounds):
        kinds = ("batched", "alone") if index % 2 == 0 else ("alone", "batched")
        for kind in kinds:
            if kind == "batched":
                batched.append(_batched(gateway, made["id"], params))
            else:
                alone.append(_one_at_a_time(gateway, prompts, params))
    loaded = sorted({model for runs in (batched, alone) for run in runs
                     for (_, model), cell in (run.get("cells") or run["replies"]).items()
                     if cell["adapter_load_s"] is not None})
    if loaded:
        raise RuntimeError(f"timed cells loaded adapters (they should be resident): {loaded}")
    held_end = _shared_held(gateway)
    _check_one_base_load(held_end, "prompt sets, at the end")
    # Greedy: each batched cell against the same model asked alone for that prompt in the
    # same round; and the replies asked alone against the first round's.
    same = sum(cell["content"] == a["replies"][key]["content"]
               for b, a in zip(batched, alone, strict=True) for key, cell in b["cells"].items())
    cells_total = sum(len(b["cells"]) for b in batched)
    reference = alone[0]["replies"]
    same_alone = sum(reply["content"] == reference[key]["content"]
                     for a in alone[1:] for key, reply in a["replies"].items())
    once = sum(cell["attempts"] == 1 for b in batched for cell in b["cells"].values())
    in_batch = sum((cell["batch_rows"] or 0) > 1
                   for b in batched for cell in b["cells"].values())
    rows = sorted({cell["batch_rows"] for b in batched for cell in b["cells"].values()
                   if cell["batch_rows"] is not None})
    return {"params": params, "models": list(MODELS), "prompts": count, "rounds": rounds,
            "sample_prompts": prompts[:len(PROMPTS) + 1],
            "cells_per_run": len(prompts) * len(MODELS), "max_batch_rows": MAX_BATCH_ROWS,
            "batched": [{k: v for k, v in b.items() if k != "cells"} for b in batched],
            "alone": [{k: v for k, v in a.items() if k != "replies"} for a in alone],
            "same_in_batch": same, "cells_total": cells_total,
            "same_alone": same_alone, "alone_total": sum(len(a["replies"]) for a in alone[1:]),
            "asked_once": once, "in_batch": in_batch, "batch_rows": rows,
            "distinct_replies": len({r["content"] for r in reference.values()}),
            "differing": _differing(batched, alone),
            "base_loads": held_end["base_loads"]}


def _differing(batched: list[dict[str, Any]], alone: list[dict[str, Any]]
               ) -> dict[str, int]:
    """Batched cells unlike their model asked alone, counted by model."""
    out: dict[str, int] = {}
    for b, a in zip(batched, alone, strict=True):
        for (index, model), cell in b["cells"].items():
            if cell["content"] != a["replies"][(index, model)]["content"]:
                out[model] = out.get(model, 0) + 1
    return out
