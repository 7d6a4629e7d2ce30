#!/usr/bin/env python3
"""Find every LoRA run and checkpoint under the box's training folders, in one call.

    python3 discover_adapters.py < job.json      # prints one JSON object

The job: {"dirs": [...], "paths": [...], "base_model_path": "...", "max_depth": 4,
"time_budget_s": 10, "max_adapters": 5000}; `paths` are single adapter folders to describe
too (the configured ADAPTER_PATH), marked `explicit`. Every directory holding
`adapter_config.json` is an adapter (a run's final adapter, or one of its `checkpoint-N`);
what LlamaFactory left beside it says how it was trained (template, finetuning type) and how
it went (losses). Stdlib only: uploaded to the box beside the wrappers and run with the box's
Python, reading files, never importing torch. Bounded in depth, count and time; a folder
that is missing or unreadable is reported, never fatal.

Paths are given exactly as this Python names them: a name that is not UTF-8 (a Latin-1
`run-caf\\xe9`) holds a lone surrogate for each such byte (surrogateescape), which the JSON
out carries as "\\udce9" and which the box's Python, given the path back, opens as that byte.
Such a string is no text for people: the gateway shows it with U+FFFD and keeps it exact for
the wrapper alone. Messages for people (`problems`, `notes`) say paths that way too
(docs/protocol.md, "Paths").
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
# A whole model (a full or freeze fine-tune's output or checkpoint): config.json and weights.
FULL_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                     "pytorch_model.bin.index.json")
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
SKIP_DIRS = {"runs", "wandb", "__pycache__", "logs", "tensorboard"}  # and every .hidden one
LOSS_POINTS = 48  # a loss curve is thinned to this many points (a sparkline needs no more)
_YAML_SCALAR = re.compile(r"^([A-Za-z_][\w.]*):\s*(.*?)\s*$")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def shown(path: str) -> str:
    """A path as a message for people says it: each lone surrogate (a byte of a name that is
    not UTF-8) is U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", path)


def _read_json(path: str) -> Any:
    """A JSON file. A string written in it raw in bytes that are not UTF-8 (a path, by a tool
    other than Python's json) reads as this Python names that path (surrogateescape)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return json.load(handle)


def _flat_yaml(path: str) -> dict[str, str]:
    """The top-level `key: value` lines of a YAML file LlamaFactory wrote (safe_dump of a
    flat dict): enough to read the template without a YAML library on the box."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = _YAML_SCALAR.match(line)
                if match and match.group(2) not in ("", "|", ">"):
                    values[match.group(1)] = match.group(2).strip("'\"")
    except OSError:
        pass
    return values


def training_facts(run_dir: str) -> dict[str, str | None]:
    """Template and finetuning type from what LlamaFactory saved with the run:
    training_args.yaml (its arguments) or llamaboard_config.yaml (LlamaBoard's form)."""
    args = _flat_yaml(os.path.join(run_dir, "training_args.yaml"))
    board = _flat_yaml(os.path.join(run_dir, "llamaboard_config.yaml"))
    return {
        "template": args.get("template") or board.get("top.template"),
        "finetuning_type": args.get("finetuning_type") or board.get("top.finetuning_type"),
        "trained_base": args.get("model_name_or_path") or board.get("top.model_path"),
    }


def _number(value: Any) -> float | None:
    """A loss as a number, or None: "n/a", true, NaN or a list in a log are no loss."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _points(entry: Any, step_key: str, train: list[list[float]],
            evals: list[list[float]]) -> bool:
    """One log entry's losses added to the curves; False when it is no entry at all."""
    if not isinstance(entry, dict):
        return False
    step = entry.get(step_key)
    if isinstance(step, int) and not isinstance(step, bool):
        if (loss := _number(entry.get("loss"))) is not None:
            train.append([step, loss])
        if (loss := _number(entry.get("eval_loss"))) is not None:
            evals.append([step, loss])
    return True


def _thin(points: list[list[float]], most: int = LOSS_POINTS) -> list[list[float]]:
    if len(points) <= most:
        return points
    stride = (len(points) - 1) / (most - 1)
    return [points[round(i * stride)] for i in range(most)]


def run_losses(run_dir: str, checkpoints: list[str]) -> dict[str, Any]:
    """The run's loss curve and final losses, from trainer_log.jsonl (LlamaFactory's
    callback), else the newest trainer_state.json (transformers' Trainer), then all_results.
    A file or line that is not what they write costs only what it would have said, with a
    note in `notes` (the models of the run carry it as a warning); never the scan."""
    train: list[list[float]] = []
    evals: list[list[float]] = []
    notes: list[str] = []
    log_path = os.path.join(run_dir, "trainer_log.jsonl")
    if os.path.isfile(log_path):
        skipped = 0
        try:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                    except (ValueError, RecursionError):
                        entry = None  # a line being written right now, or no JSON
                    if not _points(entry, "current_steps", train, evals):
                        skipped += 1
        except OSError as exc:
            notes.append(f"trainer_log.jsonl unreadable: {exc.strerror}")
        if skipped > 1:  # one cut line at the end is a log being written
            notes.append(f"trainer_log.jsonl: {skipped} lines are not log entries; skipped")
    else:
        states = [os.path.join(run_dir, "trainer_state.json")] + [
            os.path.join(c, "trainer_state.json") for c in reversed(checkpoints)]
        for state_path in states:
            if not os.path.isfile(state_path):
                continue
            try:
                state = _read_json(state_path)
            except (OSError, ValueError, RecursionError):
                notes.append(f"{os.path.relpath(state_path, run_dir)} is not JSON; skipped")
                continue
            history = state.get("log_history") if isinstance(state, dict) else None
            for entry in history if isinstance(history, list) else []:
                _points(entry, "step", train, evals)
            break
    results: Any = {}
    results_path = os.path.join(run_dir, "all_results.json")
    if os.path.isfile(results_path):
        try:
            results = _read_json(results_path)
        except (OSError, ValueError, RecursionError):
            notes.append("all_results.json is not JSON; skipped")
        if not isinstance(results, dict):
            results = {}
    final_train = _number(results.get("train_loss"))
    final_eval = _number(results.get("eval_loss"))
    return {
        "train": train, "eval": evals, "notes": notes,
        "final_train_loss": final_train if final_train is not None else (
            train[-1][1] if train else None),
        "final_eval_loss": final_eval if final_eval is not None else (
            evals[-1][1] if evals else None),
    }


def _loss_at(points: list[list[float]], step: int) -> float | None:
    """The last logged loss at or before `step` (a checkpoint's own loss)."""
    before = [loss for at, loss in points if at <= step]
    return before[-1] if before else None


def _folder_facts(path: str) -> tuple[int, float]:
    """Bytes of the folder's own files (not its checkpoints) and the newest file time."""
    size, newest = 0, 0.0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                size += info.st_size
                newest = max(newest, info.st_mtime)
    return size, newest


def is_full_model(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "config.json")) and any(
        os.path.isfile(os.path.join(folder, weights)) for weights in FULL_WEIGHT_FILES)


def describe(path: str, root: str, base_model_path: str, run: dict[str, Any]) -> dict[str, Any]:
    """One adapter (or whole fine-tuned model): where it is, what it was trained on and with,
    how it went, or why it cannot be used."""
    name = os.path.basename(path)
    match = CHECKPOINT.match(name)
    step = int(match.group(1)) if match else None
    run_dir = os.path.dirname(path) if match else path
    adapter: dict[str, Any] = {
        "path": path, "root": root, "relative": os.path.relpath(path, root),
        "run": os.path.relpath(run_dir, root), "run_dir": run_dir, "step": step, "problems": [],
        "template": run["facts"]["template"], "finetuning_type": run["facts"]["finetuning_type"],
        "kind": "adapter",
    }
    try:
        adapter["size_bytes"], adapter["modified"] = _folder_facts(path)
    except OSError as exc:
        adapter["problems"].append(f"unreadable folder: {exc.strerror}")
    if not os.path.isfile(os.path.join(path, ADAPTER_CONFIG)):
        # A whole model: it is its own base, loaded as its own model.
        adapter.update(kind="full", peft_type=None, saved_base=None, base=path,
                       base_resolved=False)
        _add_losses(adapter, run["losses"], step)
        return adapter
    try:
        config = _read_json(os.path.join(path, ADAPTER_CONFIG))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, RecursionError) as exc:
        adapter["problems"].append(f"unreadable {ADAPTER_CONFIG}: {exc}")
        config = {}
    peft_type, saved_base = config.get("peft_type"), config.get("base_model_name_or_path")
    adapter["peft_type"] = peft_type if isinstance(peft_type, str) else None
    if saved_base is not None and not isinstance(saved_base, str):
        adapter["problems"].append(f"{ADAPTER_CONFIG}: base_model_name_or_path is not a path")
        saved_base = None
    adapter["saved_base"] = saved_base
    adapter["base"], adapter["base_resolved"] = _resolve_base(saved_base, base_model_path)
    if adapter["base"] is None:
        adapter["problems"].append(
            f"its base {shown(saved_base)!r} is not on the box, and BASE_MODEL_PATH is not set"
            if saved_base else "adapter_config.json names no base model")
    if not any(os.path.isfile(os.path.join(path, weights)) for weights in WEIGHT_FILES):
        adapter["problems"].append(f"no weights ({' or '.join(WEIGHT_FILES)})")
    _add_losses(adapter, run["losses"], step)
    return adapter


def _add_losses(adapter: dict[str, Any], losses: dict[str, Any], step: int | None) -> None:
    adapter["notes"] = list(losses.get("notes") or [])
    if step is None:
        adapter["train_loss"] = losses["final_train_loss"]
        adapter["eval_loss"] = losses["final_eval_loss"]
    else:
        adapter["train_loss"] = _loss_at(losses["train"], step)
        adapter["eval_loss"] = _loss_at(losses["eval"], step)


def _resolve_base(saved: str | None, configured: str) -> tuple[str | None, bool]:
    """The base as the box has it: the saved path if it exists there, else BASE_MODEL_PATH
    (True: resolved that way); a hub id stays as it is (the box may have it cached)."""
    if saved and _is_dir(saved):
        return saved, False
    if configured:
        return configured, True
    if saved and not saved.startswith(("/", "~", ".")):
        return saved, False
    return None, False


def _is_dir(path: str) -> bool:
    """Whether `path` is a folder here; a path that no file system can hold (a NUL, a lone
    surrogate that stands for no byte: JSON can say "\\ud800") is none."""
    try:
        return os.path.isdir(os.path.expanduser(path))
    except ValueError:
        return False


def scan(job: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    budget = float(job.get("time_budget_s") or 10)
    max_depth = int(job.get("max_depth") or 4)
    most = int(job.get("max_adapters") or 5000)
    base_model_path = str(job.get("base_model_path") or "")
    found: list[str] = []
    roots: dict[str, str] = {}  # adapter path -> the root it was found under
    missing: list[dict[str, str]] = []
    truncated = False

    def walk(folder: str, root: str, depth: int) -> None:
        nonlocal truncated
        if truncated or time.monotonic() - started > budget or len(found) >= most:
            truncated = True
            return
        try:
            with os.scandir(folder) as entries:
                children = sorted(e.name for e in entries if e.is_dir(follow_symlinks=True))
        except OSError:
            return
        if os.path.isfile(os.path.join(folder, ADAPTER_CONFIG)) or is_full_model(folder):
            found.append(folder)
            roots[folder] = root
        if depth >= max_depth:
            return
        for name in children:
            if name.startswith(".") or name in SKIP_DIRS:
                continue
            walk(os.path.join(folder, name), root, depth + 1)

    walked: set[str] = set()
    for raw in job.get("dirs") or []:
        root = os.path.abspath(os.path.expanduser(str(raw)))
        if root in walked:
            continue  # listed twice
        walked.add(root)
        if not os.path.isdir(root):
            missing.append({"dir": str(raw), "reason": "no such folder on the box"})
            continue
        if not os.access(root, os.R_OK | os.X_OK):
            missing.append({"dir": str(raw), "reason": "not readable by this user"})
            continue
        walk(root, root, 0)
    explicit = set()
    for raw in job.get("paths") or []:
        path = os.path.abspath(os.path.expanduser(str(raw)))
        if path not in roots and os.path.isfile(os.path.join(path, ADAPTER_CONFIG)):
            found.append(path)
            roots[path] = os.path.dirname(path)
            explicit.add(path)

    runs: dict[str, dict[str, Any]] = {}
    adapters = []
    for path in found:
        run_dir = os.path.dirname(path) if CHECKPOINT.match(os.path.basename(path)) else path
        if run_dir not in runs:
            checkpoints = sorted((p for p in found if os.path.dirname(p) == run_dir
                                  and CHECKPOINT.match(os.path.basename(p))),
                                 key=lambda p: int(CHECKPOINT.match(os.path.basename(p))[1]))
            losses = run_losses(run_dir, checkpoints)
            runs[run_dir] = {"facts": training_facts(run_dir), "losses": losses}
        adapter = describe(path, roots[path], base_model_path, runs[run_dir])
        adapter["explicit"] = path in explicit
        adapters.append(adapter)
    curves = {run_dir: {"train": _thin(run["losses"]["train"]),
                        "eval": _thin(run["losses"]["eval"])} for run_dir, run in runs.items()}
    return {"adapters": adapters, "curves": curves, "missing": missing,
            "truncated": truncated, "elapsed_s": round(time.monotonic() - started, 3)}


def main() -> int:
    try:
        job = json.loads(sys.stdin.read() or "{}")
        if not isinstance(job, dict):
            raise ValueError("the job must be a JSON object")
        for key in ("dirs", "paths"):
            if not isinstance(job.get(key, []), list):
                raise ValueError(f"'{key}' must be a list of folders")
    except ValueError as exc:
        print(json.dumps({"error": f"bad job: {exc}"}))
        return 2
    print(json.dumps(scan(job), ensure_ascii=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
