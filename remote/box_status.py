#!/usr/bin/env python3
"""What the box is doing now, in one quick call: its GPUs as nvidia-smi sees them (a box that
is training shows them busy) and its load. Run every few seconds over the gateway's open
SSH connection, so it does nothing slow: no torch, one nvidia-smi call with a time limit.

    python3 box_status.py < job.json      # prints one JSON object

The job may name model folders (`{"weights": [folder, ...]}`): their weight bytes come back,
so the gateway can warn before a load that will not fit in the freest GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

NVIDIA_SMI_TIMEOUT_S = 10
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
MAX_FOLDERS = 64  # model folders whose weights are measured per reading
QUERY = "index,name,memory.total,memory.used,utilization.gpu"
# Where drivers put nvidia-smi when a non-interactive login's PATH lacks it.
NVIDIA_SMI_PLACES = ("/usr/bin/nvidia-smi", "/usr/local/nvidia/bin/nvidia-smi")


def _number(text: str) -> int | None:
    """nvidia-smi writes `[N/A]` or `[Not Supported]` where a GPU cannot tell (MIG, some
    cards' utilisation): no number, not a zero."""
    try:
        return int(float(text))
    except ValueError:
        return None


def parse_gpus(output: str) -> list[dict[str, Any]]:
    """`nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits`: one line a GPU."""
    gpus = []
    for line in output.splitlines():
        fields = [part.strip() for part in line.split(",")]
        if len(fields) < 5 or _number(fields[0]) is None:
            continue
        # A name may hold a comma: the first field is the index, the last three numbers.
        gpus.append({"index": _number(fields[0]), "name": ", ".join(fields[1:-3]),
                     "memory_total_mib": _number(fields[-3]),
                     "memory_used_mib": _number(fields[-2]),
                     "utilization_pct": _number(fields[-1])})
    return gpus


def gpu_facts() -> dict[str, Any]:
    found = shutil.which("nvidia-smi") or next(
        (p for p in NVIDIA_SMI_PLACES if os.access(p, os.X_OK)), None)
    if found is None:
        return {"nvidia_smi": None, "gpus": []}
    try:
        done = subprocess.run([found, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"nvidia_smi": found, "gpus": [], "error": f"{type(exc).__name__}: {exc}"}
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()[-300:]
        return {"nvidia_smi": found, "gpus": [], "error": said or f"exit {done.returncode}"}
    return {"nvidia_smi": found, "gpus": parse_gpus(done.stdout)}


def weight_bytes(folder: str) -> int | None:
    """A model folder's weight files, in bytes (what loading it puts in memory, roughly);
    None where the folder is not on the box or holds none."""
    try:
        with os.scandir(os.path.expanduser(folder)) as entries:
            sizes = [e.stat().st_size for e in entries
                     if e.is_file() and e.name.endswith(WEIGHT_SUFFIXES)]
    except OSError:
        return None
    return sum(sizes) if sizes else None


def status(job: dict[str, Any]) -> dict[str, Any]:
    facts = gpu_facts()
    try:
        facts["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        facts["load_avg"] = None
    folders = job.get("weights") if isinstance(job.get("weights"), list) else []
    facts["weights"] = {str(f): weight_bytes(str(f)) for f in folders[:MAX_FOLDERS]}
    return facts


def main() -> int:
    try:
        job = json.loads(sys.stdin.read() or "{}")
    except ValueError:
        job = {}
    print(json.dumps(status(job if isinstance(job, dict) else {})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
