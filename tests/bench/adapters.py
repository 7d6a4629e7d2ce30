"""Issue 12's figures: adapters on one loaded base, and scanning ADAPTER_DIRS.

Run by tests/bench/run.py (sections 6 and 7 of docs/benchmarks.md):

- `bench_adapters`: on a gateway whose shared slot holds the tiny base (warm), the first chat
  with adapters that are not resident yet (their time to first token against the wrapper's
  own `adapter_load_s`), switching between two resident adapters against asking the same
  one again, and what the base plus four resident adapters hold (the wrapper's `held`).
- `bench_scan`: a generated saves/ tree of N runs x M checkpoints (stand-in adapters, a
  trainer_log.jsonl per run) under ADAPTER_DIRS, timed as POST /api/models/refresh end to end.

Every chat goes through the whole path (HTTP, SSE, gateway, SSH, wrapper); the wrapper's own
timing of the same turns (`box_timing`) is kept beside the client's.
"""

from __future__ import annotations

import asyncio
import json
import random
import shlex
import time
from pathlib import Path
from typing import Any

from tests.bench.run import ROOT, Rig, gateway_turn, median
from tests.gateway_process import GatewayProcess

# Greedy and short: time to first token does not depend on the reply's length, and short
# replies leave room for many turns. The same prompt every turn (the prefill is the same).
ADAPTER_PARAMS = {"temperature": 0, "max_new_tokens": 32}
PROMPT = "Tell me about LoRA adapters."
# Four adapters of the demo tree (tests/rig/saves_tree.py): A and B carry different weights
# (the tiny model's `adapter` and `adapter2`), C and D two more folders. All trained with the
# base's template, so a first chat loads an adapter and nothing else.
ADAPTER_IDS = ("tiny--lora--sft-a", "tiny--lora--sft-a--checkpoint-10",
               "tiny--lora--sft-a--checkpoint-20", "tiny--lora--sft-b--checkpoint-100")
BASE_ID = "base"  # .env's BASE_MODEL_PATH alone (ADAPTER_PATH is `default`)


def bootstrap_diff(a: list[float], b: list[float], rounds: int = 2000,
                   seed: int = 12) -> tuple[float, float]:
    """95% bootstrap interval of median(a) - median(b)."""
    if not a or not b:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    diffs = sorted(median(rng.choices(a, k=len(a))) - median(rng.choices(b, k=len(b)))
                   for _ in range(rounds))
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


# -- 6. adapters on one loaded base -----------------------------------------------------------

def _shared_held(gateway: GatewayProcess) -> dict[str, Any]:
    """What the shared slot's wrapper last said it holds (GET /api/models, `serving`)."""
    serving = [s for s in gateway.http.get("/api/models").json()["serving"] if s["shared"]]
    if len(serving) != 1:
        raise RuntimeError(f"expected one shared slot, got {serving}")
    return serving[0]["held"]


def check_on_shared_base(listing: list[dict[str, Any]], models: list[str]) -> None:
    """Every one of `models` is listed, usable and rides on its base's shared slot."""
    by_id = {m["id"]: m for m in listing}
    for model in models:
        entry = by_id.get(model)
        if entry is None or not entry["usable"] or not entry["shared_base"]:
            raise RuntimeError(f"{model} is not a usable model on the shared base: {entry}")


def _check_one_base_load(held: dict[str, Any], when: str) -> None:
    """A harness check, not a speed check: adapters must never reload the base."""
    if held.get("base_loads") != 1:
        raise RuntimeError(f"{when}: the wrapper loaded the base {held.get('base_loads')} "
                           "times; adapters must ride on the one load")


def _turn(gateway: GatewayProcess, model: str) -> dict[str, Any]:
    turn, done = gateway_turn(gateway, {"message": PROMPT, "model": model,
                                        "params": ADAPTER_PARAMS})
    box = done.get("box_timing") or {}
    return {"model": model, "ttft_s": turn.ttft_s, "total_s": turn.total_s,
            "box_ttft_s": box["ttft_ms"] / 1000, "adapter_load_s": box.get("adapter_load_s")}


def _first_chats(gateway: GatewayProcess, models: tuple[str, ...], round_index: int
                 ) -> list[dict[str, Any]]:
    """The first chat with each of `models`, none resident: the first of them wraps the
    plain base in a PeftModel, the others join it."""
    rows = []
    for index, model in enumerate(models):
        row = _turn(gateway, model)
        if row["adapter_load_s"] is None:
            raise RuntimeError(f"{model} was resident already: {row}")
        rows.append(row | {"round": round_index, "case": "wrap" if index == 0 else "join"})
    return rows


def _switch_sequence(blocks: int, block: int) -> list[int]:
    """Blocks of alternating turns (A,B,A,B...) then the same adapter again (B,B,B... or
    A,A,A...), interleaved so slow drift of the machine hits both kinds alike."""
    order: list[int] = []
    for index in range(blocks):
        order += [(index + i) % 2 for i in range(block)]  # A first, then B first, ...
        order += [order[-1]] * block
    return order


def _unload_all(gateway: GatewayProcess) -> None:
    """Put the four adapters away (the base stays): the wrapper is back to the plain base."""
    for model in ADAPTER_IDS:
        response = gateway.http.post(f"/api/models/{model}/unload")
        if response.status_code != 200 or response.json()["status"] != "unloaded":
            raise RuntimeError(f"unload {model}: {response.status_code} {response.text}")
    if _shared_held(gateway)["adapters"]:
        raise RuntimeError("adapters still resident after unloading them all")


def bench_adapters(gateway: GatewayProcess, rounds: int, blocks: int, block: int
                   ) -> dict[str, Any]:
    """`gateway`: script mode, the demo tree under ADAPTER_DIRS, MAX_LOADED_ADAPTERS 4, nothing
    loaded yet. `rounds` of first chats with the four adapters (each round after the first
    puts them all away first), `blocks` x 2 x `block` resident turns on A and B."""
    listing = {m["id"]: m for m in gateway.http.post("/api/models/refresh").json()["models"]}
    for model in (BASE_ID, *ADAPTER_IDS):
        if model not in listing or not listing[model]["usable"] or not listing[model][
                "shared_base"]:
            raise RuntimeError(f"{model} is not a usable adapter on the shared base: "
                               f"{listing.get(model)}")
    warm = [_turn(gateway, BASE_ID) for _ in range(3)]  # loads the base, then warm turns
    before = _shared_held(gateway)
    _check_one_base_load(before, "base alone")
    if before["adapters"]:
        raise RuntimeError(f"adapters resident before the benchmark: {before['adapters']}")

    first = _first_chats(gateway, ADAPTER_IDS, 0)
    four = _shared_held(gateway)  # base + the four adapters, before anything else ran
    _check_one_base_load(four, "after the first four adapters")
    if len(four["adapters"]) != len(ADAPTER_IDS):
        raise RuntimeError(f"expected {len(ADAPTER_IDS)} resident adapters: {four}")

    pair = ADAPTER_IDS[:2]
    resident, previous = [], ADAPTER_IDS[-1]  # the last first chat
    for which in _switch_sequence(blocks, block):
        row = _turn(gateway, pair[which])
        if row["adapter_load_s"] is not None:
            raise RuntimeError(f"{pair[which]} was loaded again: it should be resident")
        row["switched"] = pair[which] != previous
        resident.append(row)
        previous = pair[which]

    for round_index in range(1, rounds):
        _unload_all(gateway)
        first += _first_chats(gateway, ADAPTER_IDS, round_index)
    after = _shared_held(gateway)
    _check_one_base_load(after, "at the end")
    _unload_all(gateway)  # the base alone again, as the sections after this one found it
    return {"warm": warm, "first": first, "resident": resident, "pair": list(pair),
            "held_base": before, "held_four": four, "held_end": after,
            "params": ADAPTER_PARAMS, "rounds": rounds, "blocks": blocks, "block": block}


# -- 7. scanning ADAPTER_DIRS -----------------------------------------------------------------

def make_scan_tree(root: Path, base: str, runs: int, checkpoints: int, log_lines: int
                   ) -> int:
    """A saves/ tree as LlamaFactory leaves it, with stand-in weights: root/tiny/lora/run-NNN
    with training_args.yaml and a trainer_log.jsonl of about `log_lines` lines, and
    `checkpoints` checkpoint-N folders each holding adapter_config.json and a 4 KB
    adapter_model.safetensors stand-in. Returns the number of adapter folders."""
    config = json.dumps({
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": base,
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
        "init_lora_weights": True, "layers_pattern": None, "layers_to_transform": None,
        "lora_alpha": 16, "lora_dropout": 0.0, "modules_to_save": None, "peft_type": "LORA",
        "r": 8, "rank_pattern": {}, "revision": None, "target_modules": [
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False}, indent=2)
    steps = log_lines  # one log line per step, an eval line at each checkpoint
    every = max(1, steps // checkpoints)
    for run in range(runs):
        run_dir = root / "tiny" / "lora" / f"run-{run:03d}"
        run_dir.mkdir(parents=True)
        (run_dir / "training_args.yaml").write_text(
            f"finetuning_type: lora\nlora_rank: 8\nlora_target: all\nmodel_name_or_path: "
            f"{base}\nstage: sft\ntemplate: qwen\noutput_dir: {run_dir}\n")
        lines = []
        for step in range(1, steps + 1):
            lines.append(json.dumps({
                "current_steps": step, "total_steps": steps, "loss": round(3 / (1 + step / 50),
                                                                            4),
                "lr": 5e-05 * (1 - step / steps), "epoch": round(3 * step / steps, 2),
                "percentage": round(100 * step / steps, 2), "elapsed_time": "0:10:00",
                "remaining_time": "0:20:00"}))
            if step % every == 0:
                lines.append(json.dumps({"current_steps": step, "total_steps": steps,
                                         "eval_loss": round(3 / (1 + step / 60), 4)}))
        (run_dir / "trainer_log.jsonl").write_text("\n".join(lines) + "\n")
        for index in range(1, checkpoints + 1):
            folder = run_dir / f"checkpoint-{index * every}"
            folder.mkdir()
            (folder / "adapter_config.json").write_text(config)
            (folder / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    return runs * checkpoints


def _wait_first_scan(gateway: GatewayProcess, timeout: float = 120) -> dict[str, Any]:
    """The scan the gateway makes at start-up, so no timed refresh joins it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scan = gateway.http.get("/api/models").json()["scan"]
        if scan["scanned_at"] is not None or scan["error"]:
            return scan
        time.sleep(0.2)
    raise RuntimeError("the gateway's first scan did not finish")


async def _empty_sessions(rig: Rig, count: int) -> list[float]:
    """Seconds for an SSH session running `true` on a connection already open (asyncssh, as
    the gateway opens one): the floor under every scan, whatever the tree."""
    from lfgate.box.asyncssh_import import asyncssh

    async with asyncssh.connect("127.0.0.1", port=rig.sshd.port, username=rig.sshd.user,
                                client_keys=[str(rig.sshd.client_key)],
                                known_hosts=str(rig.sshd.known_hosts)) as conn:
        times = []
        for _ in range(count):
            started = time.monotonic()
            await conn.run("true", check=True)
            times.append(time.monotonic() - started)
    return times


def bench_scan(rig: Rig, runs: int, checkpoints: int, log_lines: int, reps: int
               ) -> dict[str, Any]:
    tree = rig.workdir / "scan-saves"
    started = time.monotonic()
    adapters = make_scan_tree(tree, str(rig.tiny / "base"), runs, checkpoints, log_lines)
    made_s = time.monotonic() - started
    # No ADAPTER_PATH: the listing is the tree's adapters and `default`, the base.
    gateway = rig.gateway("script", ADAPTER_PATH="", ADAPTER_DIRS=str(tree),
                          RESCAN_INTERVAL="0")
    try:
        first = _wait_first_scan(gateway)
        if first["error"]:
            raise RuntimeError(f"first scan failed: {first['error']}")
        timed = []
        for _ in range(reps):
            started = time.monotonic()
            response = gateway.http.post("/api/models/refresh")
            end_to_end = time.monotonic() - started
            listing = response.json()
            found = [m for m in listing["models"] if m["kind"] == "adapter" and m["usable"]]
            if len(found) != adapters or listing["scan"]["truncated"] or listing["scan"][
                    "error"]:
                raise RuntimeError(f"scan found {len(found)} of {adapters} adapters: "
                                   f"{listing['scan']}")
            timed.append({"end_to_end_s": end_to_end, "elapsed_s": listing["scan"]["elapsed_s"],
                          "response_bytes": len(response.content),
                          "models": len(listing["models"])})
    finally:
        gateway.stop()
    # The box program alone, as the gateway runs it (its own clock: the walk and the reading).
    job = json.dumps({"dirs": [str(tree)], "paths": [],
                      "base_model_path": str(rig.tiny / "base"), "time_budget_s": 10})
    program = shlex.quote(str(ROOT / "remote" / "discover_adapters.py"))
    walk, by_hand = [], []
    for _ in range(reps):
        started = time.monotonic()
        out = rig.ssh_run(f"exec {shlex.quote(rig.box_python)} {program}", stdin=job)
        by_hand.append(time.monotonic() - started)  # a new SSH connection each time
        walk.append(json.loads(out)["elapsed_s"])
    empty = asyncio.run(_empty_sessions(rig, max(3, reps)))
    tree_bytes = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    return {"runs": runs, "checkpoints": checkpoints, "log_lines": log_lines,
            "adapters": adapters, "tree_bytes": tree_bytes, "made_s": made_s,
            "first_scan_s": first["elapsed_s"], "refresh": timed, "box_walk_s": walk,
            "by_hand_s": by_hand, "empty_session_s": empty}
