"""Issue 14's figure: a compare of four models on one loaded base, batched.

Run by tests/bench/run.py (section 9 of docs/benchmarks.md). On a script-mode gateway whose
shared slot holds the tiny base, with the demo saves/ tree's real tiny adapters under
ADAPTER_DIRS (section 6's set-up), rounds of, interleaved:

- `alone`: one reply alone, `/api/chat` on one model (an adapter), streamed;
- `compare K` for K slots (4, and 2 and 3 when asked): `/api/compare` with the first K of
  base + three adapters, which the gateway answers as one batch (`meta.mode` "batch": one
  `chat_batch`, one `generate` call); timed until the last slot's `done`, with each slot's
  time to first token;
- `same`: `/api/compare` with the alone model four times (allowed, to see sampling
  variance): a batch of four rows with one adapter, which tells what the rows cost from what
  the different adapters cost (peft's mixed-adapter forward runs each adapter on its rows);
- `sequential`: the same four models asked one after the other through `/api/chat`, each a
  new chat (what a user does without compare); the first K of them are the K-slot baseline.

Every reply is greedy with the same prompt and settings, so every slot of a batch must equal
the same model asked alone; the harness counts the identical ones and checks that every
slot's `done` names the same batch with K rows (one command for the whole compare). Times
are at the client, from just before the request to the event's arrival, the same reader for
every path; the wrapper's own clock of the same turns (`box_timing`) rides along.
"""

from __future__ import annotations

import time
from typing import Any

from tests.bench.adapters import _check_one_base_load, _shared_held, check_on_shared_base
from tests.bench.run import PROMPTS
from tests.gateway_process import GatewayProcess

# Greedy, and long enough that generation dominates the path's fixed costs.
COMPARE_PARAMS = {"temperature": 0, "max_new_tokens": 128}
# A prompt that none of the four models ends early (the tiny adapter `sft-a` ends "Tell me
# about LoRA adapters." after 60 tokens): a batch runs until its longest row, so the replies
# must all be as long for one reply alone to compare with it. Checked at warm-up.
PROMPT = PROMPTS[0]
# The base and three adapters of the demo tree with different weights (tests/rig/saves_tree.py:
# sft-a is the tiny model's `adapter`, its checkpoint-10 `adapter2`, checkpoint-20 `adapter3`).
MODELS = ("base", "tiny--lora--sft-a", "tiny--lora--sft-a--checkpoint-10",
          "tiny--lora--sft-a--checkpoint-20")
ALONE = MODELS[1]  # one reply alone: an adapter, as most slots of a compare are


def _timed_stream(gateway: GatewayProcess, path: str, body: dict[str, Any]
                  ) -> list[tuple[str, dict[str, Any], float]]:
    """Every event of one streamed request with its arrival in seconds from just before
    the request."""
    started = time.monotonic()
    return [(name, data, at - started) for name, data, at in gateway.stream(body, path)]


def _chat(gateway: GatewayProcess, model: str, params: dict[str, Any]) -> dict[str, Any]:
    """One reply alone through /api/chat (a new chat)."""
    events = _timed_stream(gateway, "/api/chat", {"message": PROMPT, "model": model,
                                                  "params": params})
    deltas = [at for name, data, at in events if name == "delta" and data.get("text")]
    end = [(name, data, at) for name, data, at in events if name in ("done", "error")]
    if not end or end[-1][0] != "done":
        raise RuntimeError(f"/api/chat on {model} failed: {end}")
    _, done, total = end[-1]
    box = done.get("box_timing") or {}
    return {"model": model, "ttft_s": deltas[0] if deltas else total, "total_s": total,
            "content": done["content"],
            "tokens": (done.get("usage") or {}).get("completion_tokens"),
            "box_total_s": box["total_ms"] / 1000 if box.get("total_ms") is not None else None,
            "adapter_load_s": box.get("adapter_load_s")}


def _sequential(gateway: GatewayProcess, models: tuple[str, ...], params: dict[str, Any]
                ) -> dict[str, Any]:
    """The models asked one after the other: each reply and the wall clock at its end."""
    started = time.monotonic()
    replies, ends = [], []
    for model in models:
        replies.append(_chat(gateway, model, params))
        ends.append(time.monotonic() - started)
    return {"replies": replies, "ends_s": ends}


def _compare(gateway: GatewayProcess, models: tuple[str, ...], params: dict[str, Any]
             ) -> dict[str, Any]:
    """One /api/compare, streamed: total until the last slot's `done`, each slot's first
    token, and the checks that it ran as one batch."""
    events = _timed_stream(gateway, "/api/compare", {"message": PROMPT, "models": list(models),
                                                     "params": params})
    name, meta, _ = events[0]
    if name != "meta" or meta.get("mode") != "batch":
        raise RuntimeError(f"compare of {models} did not run as one batch: {name} {meta}")
    first: dict[int, float] = {}
    done: dict[int, tuple[dict[str, Any], float]] = {}
    for name, data, at in events[1:]:
        if name == "delta" and data.get("text"):
            first.setdefault(data["slot"], at)
        elif name == "done":
            done[data["slot"]] = (data, at)
        elif name == "error":
            raise RuntimeError(f"compare slot {data.get('slot')} failed: {data}")
    if sorted(done) != list(range(len(models))):
        raise RuntimeError(f"compare of {models}: slots {sorted(done)} ended")
    batches = {(d.get("batch") or {}).get("id") for d, _ in done.values()}
    rows = {(d.get("batch") or {}).get("rows") for d, _ in done.values()}
    if len(batches) != 1 or None in batches or rows != {len(models)}:
        raise RuntimeError(f"compare of {models}: expected one batch of {len(models)} rows, "
                           f"got batches {batches}, rows {rows}")
    slots = []
    for slot, model in enumerate(models):
        data, at = done[slot]
        if data["model"] != model:
            raise RuntimeError(f"slot {slot} answered {data['model']}, not {model}")
        box = data.get("box_timing") or {}
        slots.append({"model": model, "ttft_s": first.get(slot, at), "done_s": at,
                      "content": data["content"],
                      "tokens": (data.get("usage") or {}).get("completion_tokens"),
                      "box_total_s": box["total_ms"] / 1000
                      if box.get("total_ms") is not None else None,
                      "adapter_load_s": box.get("adapter_load_s")})
    box_totals = [s["box_total_s"] for s in slots if s["box_total_s"] is not None]
    return {"total_s": max(at for _, at in done.values()), "slots": slots,
            "batch_rows": rows.pop(), "batch_ids": len(batches),
            "box_total_s": max(box_totals) if box_totals else None}


def bench_compare(gateway: GatewayProcess, rounds: int, slot_counts: tuple[int, ...] = (2, 3, 4),
                  params: dict[str, Any] | None = None) -> dict[str, Any]:
    """`gateway`: script mode, the demo tree under ADAPTER_DIRS, MAX_LOADED_ADAPTERS >= 3 (the
    three adapters stay resident beside whatever else is). Warms everything (the base, each
    adapter, a compare of each kind), then `rounds` rounds of one `alone`, one `compare K`
    per slot count, one `same` and one `sequential`, the order rotating every round."""
    params = COMPARE_PARAMS if params is None else params
    check_on_shared_base(gateway.http.post("/api/models/refresh").json()["models"], MODELS)
    # Warm: loads the base (if not yet) and brings each adapter onto it, then a compare of
    # each kind (a batch's first run), so no timed turn loads anything.
    warm = {model: _chat(gateway, model, params) for model in MODELS}
    reference = {model: reply["content"] for model, reply in warm.items()}
    lengths = {model: reply["tokens"] for model, reply in warm.items()}
    if set(lengths.values()) != {params["max_new_tokens"]}:
        raise RuntimeError(f"every reply must run to max_new_tokens for the times to compare "
                           f"(a batch lasts as long as its longest row); completion tokens "
                           f"{lengths} for {PROMPT!r}: choose another prompt")
    for count in slot_counts:
        _compare(gateway, MODELS[:count], params)
    _compare(gateway, (ALONE,) * len(MODELS), params)
    _chat(gateway, ALONE, params)
    held = _shared_held(gateway)
    _check_one_base_load(held, "compare, after warming")

    kinds = ["alone", *(f"compare{count}" for count in slot_counts), "same", "sequential"]
    alone: list[dict[str, Any]] = []
    same_adapter: list[dict[str, Any]] = []
    compares: dict[int, list[dict[str, Any]]] = {count: [] for count in slot_counts}
    sequential: list[dict[str, Any]] = []
    for index in range(rounds):
        shift = index % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            if kind == "alone":
                alone.append(_chat(gateway, ALONE, params))
            elif kind == "sequential":
                sequential.append(_sequential(gateway, MODELS, params))
            elif kind == "same":
                same_adapter.append(_compare(gateway, (ALONE,) * len(MODELS), params))
            else:
                count = int(kind.removeprefix("compare"))
                compares[count].append(_compare(gateway, MODELS[:count], params))
    loaded = [r["model"] for r in alone + [r for run in sequential for r in run["replies"]]
              + [s for runs in [*compares.values(), same_adapter] for run in runs
                 for s in run["slots"]]
              if r["adapter_load_s"] is not None]
    if loaded:
        raise RuntimeError(f"timed turns loaded adapters (they should be resident): {loaded}")
    held_end = _shared_held(gateway)
    _check_one_base_load(held_end, "compare, at the end")
    # Greedy: every slot of every batch, and every reply asked alone, as the warm-up's
    # reply of the same model alone.
    batches = [run for runs in [*compares.values(), same_adapter] for run in runs]
    same = sum(slot["content"] == reference[slot["model"]]
               for run in batches for slot in run["slots"])
    slots_total = sum(len(run["slots"]) for run in batches)
    same_alone = sum(reply["content"] == reference[reply["model"]]
                     for run in sequential for reply in run["replies"])
    same_alone += sum(reply["content"] == reference[ALONE] for reply in alone)
    alone_total = len(alone) + sum(len(run["replies"]) for run in sequential)
    return {"params": params, "prompt": PROMPT, "models": list(MODELS), "alone_model": ALONE,
            "rounds": rounds, "slot_counts": list(slot_counts), "alone": alone,
            "compare": {str(count): runs for count, runs in compares.items()},
            "same_adapter": same_adapter,
            "sequential": sequential, "same_in_batch": same, "slots_total": slots_total,
            "same_alone": same_alone, "alone_total": alone_total,
            "tokens_alone": {model: reply["tokens"] for model, reply in warm.items()},
            "distinct_replies": len(set(reference.values())),
            "adapters_resident": len(held["adapters"]), "base_loads": held_end["base_loads"]}
