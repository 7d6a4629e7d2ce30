"""Every benchmark in one run, written to docs/benchmarks.md with plots.

    python -m tests.bench.run            # full run (make bench), about 15 minutes
    python -m tests.bench.run --smoke    # one repetition, small sizes: CI checks the harness
    python -m tests.bench.run --only adapters --out /tmp/b.md   # sections 6 and 7 alone
    python -m tests.bench.run --only openai --out /tmp/b.md     # section 8 alone
    python -m tests.bench.run --only compare --out /tmp/b.md    # section 9 alone
    python -m tests.bench.run --only prompt_sets --out /tmp/b.md  # section 10 alone
    python -m tests.bench.run --only leaderboard --out /tmp/b.md  # section 11 alone (no box)
    python -m tests.bench.run --only openai_surface --out /tmp/b.md  # section 12 alone

All figures come from the same machine in the same run, over a real sshd on loopback and
the real LlamaFactory box with the tiny model. A benchmark, not a test: it fails on errors,
never on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lfgate.box.ssh_box import REMOTE_WRAPPER_ROOT
from lfgate.box.wrapper_files import WrapperFiles
from tests.gateway_process import GatewayProcess
from tests.rig.hermetic import box_home, isolate
from tests.rig.ports import free_port
from tests.rig.sshd import TestSSHD

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["Hello, how are you today?", "Tell me about LoRA adapters.",
           "What is the capital of France?", "Write a short poem about the sea.",
           "Explain attention in one paragraph."]
# The same settings for every contender. Greedy: every path gets the very same reply (the
# tiny model streams it token by token, 128 tokens for most prompts), so rates compare.
PARAMS = {"temperature": 0, "max_new_tokens": 128}
BOX_ENV = {"OMP_NUM_THREADS": "1"}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    """min–max, as context for a median."""
    return f"{min(values):.3g}–{max(values):.3g}" if values else "–"


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _rig(script: str, *args: str) -> str:
    out = subprocess.run(["bash", str(ROOT / "tests" / "rig" / script), *args],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


@dataclass
class Turn:
    ttft_s: float
    total_s: float
    chunks: int
    gaps_s: list[float] = field(default_factory=list)

    @property
    def chunks_per_s(self) -> float:
        """Streaming rate after the first chunk (the same definition for every contender)."""
        stream_s = self.total_s - self.ttft_s
        return (self.chunks - 1) / stream_s if self.chunks > 1 and stream_s > 0 else 0.0


class Rig:
    """The box (tiny model, sshd) and the ways to reach it that the contenders use."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.box_python = _rig("box_env.sh")
        self.tiny = Path(_rig("tiny_model.sh", self.box_python))
        (workdir / "sshd").mkdir()
        # One torch thread on the box: this machine's two cores also run sshd, the gateway
        # and the client; two torch threads fighting them for the CPU would measure contention
        # that a real deployment (box and laptop apart) does not have. Same for every path.
        self.sshd = TestSSHD(workdir / "sshd", BOX_ENV)
        self.model = {"base_model_path": str(self.tiny / "base"),
                      "adapter_path": str(self.tiny / "adapter"), "template": "qwen"}

    def ssh_argv(self, *extra: str) -> list[str]:
        return ["ssh", "-p", str(self.sshd.port), "-i", str(self.sshd.client_key),
                "-o", f"UserKnownHostsFile={self.sshd.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", *extra,
                f"{self.sshd.user}@127.0.0.1"]

    def ssh_run(self, command: str, stdin: str = "", timeout: float = 600) -> str:
        result = subprocess.run([*self.ssh_argv(), command], input=stdin, capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"ssh {command!r} failed: {result.stdout}{result.stderr[-3000:]}")
        return result.stdout

    def gateway(self, mode: str, **extra: str) -> GatewayProcess:
        env = {**self.sshd.settings_env(), "CHAT_MODE": mode, "REMOTE_PYTHON": self.box_python,
               "BASE_MODEL_PATH": self.model["base_model_path"],
               "ADAPTER_PATH": self.model["adapter_path"], "TEMPLATE": "qwen", **extra}
        folder = Path(tempfile.mkdtemp(dir=self.workdir))
        return GatewayProcess({}, folder, dotenv=env)

    def close(self) -> None:
        self.sshd.stop()


class TurnClock:
    """Times one streamed reply at the client, the same way for every contender."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first: float | None = None
        self.last: float | None = None
        self.gaps: list[float] = []
        self.chunks = 0

    def chunk(self, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        self.chunks += 1
        if self.last is not None:
            self.gaps.append(at - self.last)
        self.first = self.first if self.first is not None else at - self.started
        self.last = at

    def turn(self) -> Turn:
        total = time.monotonic() - self.started
        return Turn(self.first if self.first is not None else total, total, self.chunks,
                    self.gaps)


def gateway_turn(gateway: GatewayProcess, body: dict[str, Any]) -> tuple[Turn, dict]:
    """One streamed turn, timed at the client; returns it and `done` (with the chat id)."""
    clock, done, chat_id = TurnClock(), {}, None
    for name, data, at in gateway.stream(body):
        if name == "meta":
            chat_id = data["chat_id"]
        elif name == "delta":
            clock.chunk(at)
        elif name in ("done", "error"):
            done = data | {"event": name}
    if done.get("event") != "done":
        raise RuntimeError(f"turn failed: {done}")
    return clock.turn(), done | {"chat_id": chat_id}


# -- 1. persistent session vs a fresh wrapper per message ------------------------------------

def bench_persistent_vs_one_shot(rig: Rig, reps: int) -> list[dict[str, Any]]:
    rows = []
    for mode, script in (("cli", "chat_cli_wrapper.py"), ("script", "chat_inference.py")):
        wrapper = shlex.quote(str(ROOT / "remote" / script))
        command = f"exec {shlex.quote(rig.box_python)} {wrapper} -"
        shots = []
        for index in range(reps):
            job = json.dumps(rig.model | {"message": PROMPTS[index % len(PROMPTS)], **PARAMS})
            started = time.monotonic()
            reply = json.loads(rig.ssh_run(command, stdin=job))
            if "content" not in reply:
                raise RuntimeError(f"one-shot {mode} failed: {reply}")
            shots.append(time.monotonic() - started)
        gateway = rig.gateway(mode)
        try:
            first, done = gateway_turn(gateway, {"message": PROMPTS[0], "params": PARAMS})
            chat_id = done["chat_id"]
            later = [gateway_turn(gateway, {"message": PROMPTS[(i + 1) % len(PROMPTS)],
                                            "chat_id": chat_id, "params": PARAMS})[0]
                     for i in range(reps)]
        finally:
            gateway.stop()
        rows.append({"mode": mode, "one_shot_s": shots, "first_ttft_s": first.ttft_s,
                     "ttft_s": [t.ttft_s for t in later], "total_s": [t.total_s for t in later]})
    return rows


# -- 2. gateway overhead vs the model itself --------------------------------------------------

def bench_overhead(rig: Rig, gateway: GatewayProcess, reps: int) -> dict[str, Any]:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(reps)]
    direct_job = json.dumps({"model": rig.model, "prompts": prompts, "params": PARAMS})
    script = shlex.quote(str(ROOT / "tests" / "bench" / "box_direct.py"))
    out = rig.ssh_run(f"LLAMAFACTORY_VERBOSITY=WARNING exec {shlex.quote(rig.box_python)} "
                      f"{script} -", stdin=direct_job)
    report = json.loads(out.strip().splitlines()[-1])  # LlamaFactory logs to stdout before it
    direct = [Turn(t["ttft_s"], t["total_s"], t["chunks"], t["gaps_s"]) for t in report["turns"]]
    through, inside = [], []
    for prompt in prompts:
        turn, done = gateway_turn(gateway, {"message": prompt, "params": PARAMS})
        through.append(turn)
        box = done["box_timing"]  # the same turn as the wrapper on the box timed it
        inside.append(Turn(box["ttft_ms"] / 1000, box["total_ms"] / 1000, box["chunks"]))
    return {"direct": direct, "gateway": through, "wrapper": inside}


# -- 3. LlamaFactory's own API server through an SSH tunnel -----------------------------------

@contextlib.contextmanager
def llamafactory_api(rig: Rig, adapter_path: str | None, name: str = "api"
                     ) -> Iterator[str]:
    """`llamafactory-cli api` on the box serving the tiny base (with `adapter_path`, merged
    at load as LlamaFactory does), reached through `ssh -L`; yields its base URL once it
    answers, and stops both on the way out."""
    config = rig.workdir / f"{name}.yaml"
    model = {"model_name_or_path": rig.model["base_model_path"], "template": "qwen",
             "finetuning_type": "lora"}
    if adapter_path:
        model["adapter_name_or_path"] = adapter_path
    config.write_text(json.dumps(model))
    remote_port, local_port = free_port(), free_port()
    cli = Path(rig.box_python).parent / "llamafactory-cli"
    # The server lives as long as the SSH session: when the session's stdin closes, the
    # remote shell stops it (a session without a pty gets no SIGHUP).
    serve = (f"API_HOST=127.0.0.1 API_PORT={remote_port} LLAMAFACTORY_VERBOSITY=WARNING "
             f"{shlex.quote(str(cli))} api {shlex.quote(str(config))} & server=$!; "
             "cat >/dev/null; kill $server; wait $server")
    server = subprocess.Popen([*rig.ssh_argv(), serve], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tunnel = subprocess.Popen([*rig.ssh_argv("-N", "-L",
                                             f"{local_port}:127.0.0.1:{remote_port}")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{local_port}/v1"
    try:
        _wait_http(f"{base_url}/models", timeout=300)
        yield base_url
    finally:
        tunnel.terminate()
        assert server.stdin is not None
        server.stdin.close()  # ends the API server on the box
        for proc in (tunnel, server):
            proc.wait(timeout=60)


def bench_llamafactory_api(rig: Rig, gateway: GatewayProcess, reps: int) -> dict[str, Any]:
    from openai import OpenAI

    with llamafactory_api(rig, rig.model["adapter_path"]) as base_url:
        client = OpenAI(base_url=base_url, api_key="none")
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(reps + 1)]
        api_turns = [openai_turn(client, p)[0] for p in prompts][1:]  # the first warms up
        through = [gateway_turn(gateway, {"message": p, "params": PARAMS})[0]
                   for p in prompts[1:]]
    return {"api": api_turns, "gateway": through}


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


def openai_turn(client: Any, prompt: str, model: str = "lf",
                params: dict[str, Any] | None = None) -> tuple[Turn, str]:
    """One streamed reply through the `openai` client, timed at the client: a chunk is one
    with non-empty content (the role chunk and the finish chunk carry none). The same code
    for every server it talks to; only the client's base_url and `model` differ."""
    params = PARAMS if params is None else params
    clock, parts = TurnClock(), []
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], stream=True,
        temperature=params["temperature"], max_tokens=params["max_new_tokens"])
    for event in stream:
        if event.choices and event.choices[0].delta.content:
            clock.chunk()
            parts.append(event.choices[0].delta.content)
    return clock.turn(), "".join(parts)


# -- 4. concurrency ---------------------------------------------------------------------------

def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _concurrent(url: str, pid: int, users: int) -> dict[str, Any]:
    peak = _proc_rss_mb(pid)
    cpu_before = _proc_cpu_s(pid)
    stop_sampling = asyncio.Event()

    async def sample_rss() -> None:
        nonlocal peak
        while not stop_sampling.is_set():
            peak = max(peak, _proc_rss_mb(pid))
            await asyncio.sleep(0.05)

    async def one(client: httpx.AsyncClient, index: int) -> Turn | None:
        body = {"message": PROMPTS[index % len(PROMPTS)], "params": PARAMS}
        clock, ok = TurnClock(), False
        try:
            async with client.stream("POST", "/api/chat", json=body) as response:
                name = ""
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:") and name == "delta":
                        clock.chunk()
                    elif line.startswith("data:") and name == "done":
                        ok = True
        except httpx.HTTPError:
            return None
        return clock.turn() if ok else None

    sampler = asyncio.create_task(sample_rss())
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(900),
                                 limits=httpx.Limits(max_connections=users + 4)) as client:
        results = await asyncio.gather(*(one(client, i) for i in range(users)))
    stop_sampling.set()
    await sampler
    turns = [r for r in results if r is not None]
    chunks = sum(t.chunks for t in turns)
    cpu = _proc_cpu_s(pid) - cpu_before
    return {"users": users, "turns": turns, "errors": users - len(turns),
            "cpu_s_per_1000_chunks": 1000 * cpu / chunks if chunks else float("nan"),
            "peak_rss_mb": peak}


def bench_concurrency(gateway: GatewayProcess, levels: list[int],
                      profile_to: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Each level in turn, with py-spy sampling the gateway all along (where its CPU goes)."""
    spy = _start_profile(gateway.proc.pid, profile_to)
    try:
        rows = [asyncio.run(_concurrent(gateway.url, gateway.proc.pid, users))
                for users in levels]
    finally:
        profile = _stop_profile(spy, profile_to)
    return rows, profile


def _start_profile(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return None
    return subprocess.Popen([str(py_spy), "record", "-p", str(pid), "-r", "250", "--nonblocking",
                             "--format", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profile(spy: subprocess.Popen[bytes] | None, out: Path) -> dict[str, Any] | None:
    """py-spy's collapsed stacks, summed by the innermost frame of ours or of a library."""
    if spy is None:
        return None
    spy.send_signal(signal.SIGINT)
    spy.wait(timeout=60)
    if not out.exists():
        return None
    total, busy, by_frame = 0, 0, Counter[str]()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        innermost = _frame_name(stack.split(";")[-1])
        if not innermost.startswith(_IDLE_FRAMES):
            busy += samples
            by_frame[innermost] += samples
    return {"samples": total, "busy": busy, "top": by_frame.most_common(10)}


# Frames where a thread waits rather than works (py-spy's --nonblocking cannot tell).
_IDLE_FRAMES = ("EpollSelector.select", "select ", "Condition.wait", "wait (threading",
                "Event.wait", "_worker (thread.py)", "Thread.join")


def _frame_name(frame: str) -> str:
    """`function (path/to/module.py:123)` -> `function (module.py)`."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


# -- 5. cold start ----------------------------------------------------------------------------

def bench_cold_start(rig: Rig, mode: str) -> dict[str, Any]:
    remote = box_home() / REMOTE_WRAPPER_ROOT / WrapperFiles.packaged().digest
    shutil.rmtree(remote, ignore_errors=True)  # force the upload, as on a new box
    started = time.monotonic()
    gateway = rig.gateway(mode)
    try:
        up_s = time.monotonic() - started
        chat_started = time.monotonic()
        turn, _ = gateway_turn(gateway, {"message": PROMPTS[0], "params": PARAMS})
        phases = gateway.http.get("/api/models/default/status").json()["load_phases"]
    finally:
        gateway.stop()
    return {"mode": mode, "gateway_start_s": up_s, "phases": phases,
            "first_token_s": chat_started - started + turn.ttft_s, "ttft_after_ask_s": turn.ttft_s}


# -- report -----------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    from lfgate.box.asyncssh_import import asyncssh

    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "asyncssh": asyncssh.__version__, "os": platform.platform()}


def box_versions(rig: Rig) -> dict[str, str]:
    code = ("import json, llamafactory, transformers, torch, peft; print(json.dumps({"
            "'llamafactory': llamafactory.__version__, 'transformers': transformers.__version__,"
            " 'torch': torch.__version__, 'peft': peft.__version__}))")
    out = subprocess.run([rig.box_python, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "LLAMAFACTORY_VERBOSITY": "ERROR"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", choices=["adapters", "openai", "compare", "prompt_sets",
                                           "leaderboard", "openai_surface"],
                        default=None,
                        help="run sections 6 and 7 (adapters), section 8 (openai), section 9 "
                             "(compare), section 10 (prompt_sets), section 11 (leaderboard) or "
                             "section 12 (openai_surface) alone (while working on them; "
                             "docs/benchmarks.md comes from a whole run)")
    args = parser.parse_args()
    reps = 1 if args.smoke else args.reps
    levels = [1, 4] if args.smoke else [1, 4, 16, 64]
    if args.only and args.out is None:
        parser.error("--only writes a partial report: give --out")
    out = (args.out or (Path(tempfile.mkdtemp()) / "benchmarks.md" if args.smoke
                        else ROOT / "docs" / "benchmarks.md")).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)  # before the run, not after it
    # Issue 12 (sections 6 and 7): rounds of first chats, blocks x 2 x block resident turns,
    # and the scanned tree (runs x checkpoints, log lines per run).
    rounds, blocks, block = (1, 1, 2) if args.smoke else (reps, 6, 10)
    scan_tree = (5, 10, 100) if args.smoke else (100, 10, 1000)
    # Issue 13 (section 8): rounds against the API server per model, rounds against /api/chat.
    api_rounds, ttft_rounds = (2, 4) if args.smoke else (3 * reps, 60)
    # Issue 14 (section 9): rounds of (one reply alone, a compare of 2, 3 and 4 slots, four
    # slots of one adapter, the four models one after the other); shorter replies in smoke.
    compare_rounds, compare_tokens = (1, 32) if args.smoke else (3 * reps, 128)
    # Issue 15 (section 10): rounds of (a run of the set over section 9's four models, the
    # same cells one at a time), prompts in the set; shorter replies in smoke.
    set_rounds, set_prompts = (1, 6) if args.smoke else (reps, 50)
    isolate()  # the user's .env, ~/.ssh and SSH_* never reach the benchmark's gateways

    from tests.bench.adapters import bench_adapters, bench_scan
    from tests.bench.compare import COMPARE_PARAMS, bench_compare
    from tests.bench.leaderboard import bench_leaderboard
    from tests.bench.openai_surface import add_to_report, bench_openai_surface
    from tests.bench.openai_v1 import bench_openai
    from tests.bench.prompt_sets import PROMPT_SET_PARAMS, bench_prompt_sets
    from tests.bench.report import write_report
    from tests.rig.saves_tree import make_saves

    everything = args.only is None
    adapters = args.only in (None, "adapters")
    openai = args.only in (None, "openai")
    compare = args.only in (None, "compare")
    prompt_sets = args.only in (None, "prompt_sets")
    surface = args.only in (None, "openai_surface")
    shared = args.only != "openai_surface"  # section 12 brings a gateway of its own
    results: dict[str, Any] = {"reps": reps, "params": PARAMS}
    if args.only == "leaderboard":  # no box, no gateway: the fit in this process
        results["machine"] = machine()
    else:
        with tempfile.TemporaryDirectory(prefix="lfgate-bench-") as tmp:
            rig = Rig(Path(tmp))
            results["machine"] = machine() | box_versions(rig)
            try:
                if everything:
                    step("1/12 persistent vs one-shot")
                    results["persistent"] = bench_persistent_vs_one_shot(rig, reps)
                # One script-mode gateway for sections 6, 2, 3, 8, 9, 10 and 4: the configured model
                # (base + the tiny adapter) and the demo saves/ tree (real tiny adapters) on one
                # shared base. Section 6 runs first, on the fresh wrapper, and leaves it as it
                # found it: the base alone.
                saves = Path(tmp) / "saves"
                tiny = rig.tiny
                make_saves(saves, str(tiny / "base"), other_template="qwen", broken=False,
                           adapters=[str(tiny / "adapter"), str(tiny / "adapter2"),
                                     str(tiny / "adapter3")])
                gateway = (rig.gateway("script", ADAPTER_DIRS=str(saves), RESCAN_INTERVAL="0",
                                       MAX_LOADED_ADAPTERS="4") if shared else None)
                try:
                    if adapters:
                        step("6/12 adapters on one loaded base")
                        results["adapters"] = bench_adapters(gateway, rounds, blocks, block)
                    if everything or openai:
                        gateway_turn(gateway, {"message": "warm up", "params": PARAMS})
                    if everything:
                        step("2/12 gateway overhead")
                        results["overhead"] = bench_overhead(rig, gateway, reps)
                        step("3/12 LlamaFactory API through a tunnel")
                        results["api"] = bench_llamafactory_api(rig, gateway, reps)
                    if openai:
                        # Leaves `default` resident on the base, as it found it.
                        step("8/12 the OpenAI-compatible /v1")
                        results["openai"] = bench_openai(rig, gateway, api_rounds, ttft_rounds)
                    if compare:
                        # Leaves three adapters resident beside `default` (4 at most).
                        step("9/12 compare: four slots on one loaded base")
                        results["compare"] = bench_compare(
                            gateway, compare_rounds,
                            params=COMPARE_PARAMS | {"max_new_tokens": compare_tokens})
                    if prompt_sets:
                        step("10/12 prompt sets: a run batched against one at a time")
                        results["prompt_sets"] = bench_prompt_sets(
                            gateway, set_rounds, set_prompts,
                            params=PROMPT_SET_PARAMS | {"max_new_tokens": compare_tokens})
                    if everything:
                        step("4/12 concurrency")
                        results["concurrency"], results["profile"] = bench_concurrency(
                            gateway, levels, Path(tmp) / "gateway.pyspy")
                finally:
                    if gateway is not None:
                        gateway.stop()
                if surface:
                    # After the shared gateway is gone: the box's part in process first, then
                    # a gateway of its own with the trained adapters.
                    results["openai_surface"] = bench_openai_surface(rig, reps, args.smoke)
                if everything:
                    step("5/12 cold start")
                    results["cold"] = [bench_cold_start(rig, mode) for mode in ("script", "cli")]
                if adapters:
                    step("7/12 scanning ADAPTER_DIRS")
                    results["scan"] = bench_scan(rig, *scan_tree, reps)
            finally:
                rig.close()
    if args.only in (None, "leaderboard"):
        # Section 11 needs no box: it runs in this process, after the gateways are gone.
        step("11/12 the leaderboard")
        results["leaderboard"] = bench_leaderboard(reps, args.smoke)
    write_report(results, out)
    if "openai_surface" in results:
        add_to_report(out, results["openai_surface"])  # section 12, after section 11
    print(out.read_text())
    print(f"written: {out}", file=sys.stderr)


def step(what: str) -> None:
    print(f"bench: {what}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
