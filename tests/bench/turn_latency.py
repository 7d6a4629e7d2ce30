"""Persistent wrapper vs a fresh wrapper per message, on the real LlamaFactory box.

    python -m tests.bench.turn_latency [--reps N] [--smoke]

The one-shot path (today's common approach) starts Python, imports LlamaFactory and loads the
model for every message; the persistent path pays that once. Prints both side by side.
A benchmark, not a test: it fails only on errors, never on speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.wrapper_process import ROOT, WRAPPERS, WrapperProcess

PARAMS = {"temperature": 0, "max_new_tokens": 20}


def _rig(script: str, *args: str) -> str:
    out = subprocess.run(["bash", str(ROOT / "tests" / "rig" / script), *args],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def one_shot(python: str, mode: str, model: dict, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        job = json.dumps(model | {"message": "Hello, how are you?", **PARAMS})
        started = time.monotonic()
        result = subprocess.run([python, str(WRAPPERS[mode]), job], capture_output=True,
                                text=True, timeout=600)
        if result.returncode != 0:
            raise SystemExit(f"one-shot {mode} failed: {result.stdout}{result.stderr[-2000:]}")
        times.append(time.monotonic() - started)
    return times


def persistent(python: str, mode: str, model: dict, reps: int) -> tuple[float, list, list]:
    with tempfile.TemporaryDirectory() as spy_dir:
        wrapper = WrapperProcess(python, mode, Path(spy_dir) / "spy.jsonl")
        try:
            started = time.monotonic()
            ready = wrapper.load(model, PARAMS)
            if ready["event"] != "ready":
                raise SystemExit(f"load failed: {ready}")
            history = [{"role": "user", "content": "Hi"}]
            first, _ = wrapper.chat("t0", history, PARAMS)
            cold = time.monotonic() - started
            ttfts, totals = [], []
            for index in range(1, reps + 1):  # later turns of the same conversation
                history += [{"role": "assistant", "content": first["content"]},
                            {"role": "user", "content": f"Tell me more ({index})"}]
                done, _ = wrapper.chat(f"t{index}", history, PARAMS)
                if done["event"] != "done":
                    raise SystemExit(f"turn failed: {done}")
                first = done
                ttfts.append(done["timing"]["ttft_ms"] / 1000)
                totals.append(done["timing"]["total_ms"] / 1000)
            return cold, ttfts, totals
        finally:
            wrapper.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one repetition: the harness runs")
    args = parser.parse_args()
    reps = 1 if args.smoke else args.reps
    python = _rig("box_env.sh")
    tiny = Path(_rig("tiny_model.sh", python))
    model = {"base_model_path": str(tiny / "base"), "adapter_path": str(tiny / "adapter"),
             "template": "qwen"}
    print(f"{'mode':<7} {'one-shot reply (s)':>20} {'persistent: load+1st (s)':>26} "
          f"{'next turn TTFT (s)':>20} {'next turn total (s)':>20} {'TTFT ratio':>11}")
    for mode in ("cli", "script"):
        shots = one_shot(python, mode, model, reps)
        cold, ttfts, totals = persistent(python, mode, model, reps)
        shot, ttft = statistics.median(shots), statistics.median(ttfts)
        print(f"{mode:<7} {shot:>20.2f} {cold:>26.2f} {ttft:>20.3f} "
              f"{statistics.median(totals):>20.3f} {shot / ttft:>10.0f}x")
    print(f"(medians of {reps} run(s); one-shot = spawn + import + load + reply, as users do "
          "today; TTFT = time to first token of a later turn)")


if __name__ == "__main__":
    main()
