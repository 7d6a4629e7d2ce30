"""Issue 26's benchmark: chats that overlap, generated together, against one at a time.

    .venv/bin/python -m tests.bench.batching               # the full run, some 10 minutes
    .venv/bin/python -m tests.bench.batching --reps 1 --stagger-reps 1 --alone-rounds 2 \
        --profile 0                                         # a quick look that it all runs

Wrappers on this machine (tests/wrapper_process.py: no SSH, no gateway), so what is measured
is the box's own scheduling. Three script-mode wrappers hold the tiny base, started and
loaded alike: wrapper 0.7.0 loaded with `max_batch_rows` 16 (a chat that arrives while
others generate joins their batch at the next decode step), the same loaded with 1 (chats
answered one at a time, as before 0.7.0), and the wrapper as of commit 111bd67 (the last
before 0.7.0, extracted with `git archive`; nothing in the work tree changes).

1. Burst: 16 chats sent at once, 4 on each of 4 models of one base (the base and three
   adapters, all resident), greedy, on each of the three wrappers in turn.
2. Staggered: a chat every 100 ms for 5 s (50 chats, the models in turn), 16 rows against 1.
3. One chat alone, 0.7.0 against 111bd67: (a) on the plain base, before any adapter was
   loaded (no peft at all), (b) with the adapters resident, the four models in turn.
Then, untimed, py-spy over the same work: where each wrapper's time goes.

Times are the client's: every event is stamped by the thread that reads the wrapper's stdout,
as it arrives. Writes build/bench-batching.json and prints the tables of docs/benchmarks.md's
section 13. A benchmark, not a test: it fails on errors, never on speed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from tests.bench.run import ROOT, _rig, median, percentile
from tests.wrapper_process import WRAPPERS, WrapperProcess

OUT = ROOT / "build" / "bench-batching.json"
OLD_COMMIT = "111bd67"  # the last commit before 3fdf997 (wrapper 0.7.0)
MODELS = ("base", "adapter", "adapter2", "adapter3")  # the tiny base and three adapters on it
# 16 short prompts, all different: chat i asks PROMPTS[i] of MODELS[i % 4].
PROMPTS = ["Hello, how are you today?", "Tell me about LoRA adapters.",
           "What is the capital of France?", "Write a short poem about the sea.",
           "Explain attention in one paragraph.", "Name three primary colours.",
           "What does a compiler do?", "Give me a tip for learning to cook.",
           "Why is the sky blue?", "Describe a cat in two sentences.",
           "What is a prime number?", "Suggest a name for a bakery.",
           "How do tides work?", "Summarise the plot of Hamlet.",
           "What is the speed of light?", "Recommend a board game for four."]
BURST = {"temperature": 0, "max_new_tokens": 64}
STAGGER = {"temperature": 0, "max_new_tokens": 32}
ALONE = {"temperature": 0, "max_new_tokens": 128}
# Every wrapper alike: torch on one thread, as every other section of
# docs/benchmarks.md holds the box (this machine's two cores also run the client), and the
# test spy off (its records are file writes per request that no real box makes).
BOX_ENV = {"OMP_NUM_THREADS": "1", "LFGATE_TEST_SPY": ""}
ARRIVED = "_arrived"  # the reader thread's time.monotonic() of an event, added to it


class StampedWrapper(WrapperProcess):
    """A wrapper as tests/wrapper_process.py starts it, with each event stamped on arrival by
    its reader thread: the main thread may be busy sending when an event comes, and a stamp
    taken when it gets round to the queue would count that against the wrapper."""

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            event[ARRIVED] = time.monotonic()
            self.events.put(event)
        self.events.put(None)

    def poll(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None when none came within `timeout` (a wrapper that exited
        fails the run)."""
        try:
            event = self.events.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        if event is None:
            raise RuntimeError(f"wrapper exited; stderr:\n{''.join(self.stderr[-40:])}")
        return event


def start_wrapper(box_python: str, remote: Path, workdir: Path) -> StampedWrapper:
    """A script-mode wrapper from `remote` (this tree's remote/ or an old commit's), started
    with exactly WrapperProcess's command line and environment (it reads its script from
    WRAPPERS when it starts, so the old one is swapped in for that moment only)."""
    with mock.patch.dict(WRAPPERS, {"script": remote / "chat_inference.py"}):
        return StampedWrapper(box_python, "script", workdir / "unused-spy.jsonl", env=BOX_ENV)


def extract_old_remote(workdir: Path) -> Path:
    """remote/ as of OLD_COMMIT, from git (the files only; nothing in the work tree moves)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT, "remote"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive, check=True)
    return workdir / "remote"


# -- one chat, many chats --------------------------------------------------------------------

@dataclass
class Chat:
    """One chat as sent and as answered, by the client's clock (seconds, time.monotonic)."""

    index: int
    model: str
    sent_at: float
    first_at: float | None = None
    done_at: float | None = None
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    deltas: int = 0  # delta events: how finely the reply was streamed

    @property
    def ttft_s(self) -> float:
        assert self.first_at is not None, f"chat {self.index} never streamed"
        return self.first_at - self.sent_at

    @property
    def tokens(self) -> int:
        return int(self.done["usage"]["completion_tokens"]) if self.done else 0

    @property
    def content(self) -> str | None:
        return self.done["content"] if self.done else None

    @property
    def client_tokens_per_s(self) -> float | None:
        """Tokens after the first over the time from the first delta to `done` (the rate
        definition of the wrapper's own `timing.tokens_per_s`, on the client's clock). A path
        whose first delta holds several tokens reads faster here than it generated: the old
        wrapper's streamer holds text back to a word's end, 0.7.0 sends every token's."""
        if not self.done or self.first_at is None or self.tokens < 2:
            return None
        return (self.tokens - 1) / (self.done_at - self.first_at)


def chat_command(chat_id: str, model: str, prompt: str, params: dict[str, Any],
                 tiny: dict[str, str]) -> dict[str, Any]:
    adapter = None if model == "base" else tiny[model]
    return {"op": "chat", "id": chat_id, "messages": [{"role": "user", "content": prompt}],
            "params": params, "adapter": adapter}


class Exchange:
    """Chats in flight on one wrapper: sends them and files every event under its chat."""

    def __init__(self, wrapper: StampedWrapper, tiny: dict[str, str], tag: str) -> None:
        self.wrapper = wrapper
        self.tiny = tiny
        self.tag = tag
        self.chats: dict[str, Chat] = {}
        self.ended = 0

    def send(self, index: int, model: str, prompt: str, params: dict[str, Any]) -> None:
        chat_id = f"{self.tag}-{index}"
        command = chat_command(chat_id, model, prompt, params, self.tiny)
        self.chats[chat_id] = Chat(index, model, time.monotonic())
        self.wrapper.send(command)

    def take(self, timeout: float) -> None:
        """File the next event (if one comes within `timeout`)."""
        event = self.wrapper.poll(timeout)
        if event is None:
            return
        chat = self.chats.get(event.get("id", ""))
        if chat is None:
            return  # an info event, or a pong: nothing of these chats
        if event["event"] == "delta":
            chat.deltas += 1
            chat.first_at = chat.first_at or event[ARRIVED]
        elif event["event"] in ("done", "error"):
            chat.done_at = event[ARRIVED]
            chat.done = event if event["event"] == "done" else None
            chat.error = event if event["event"] == "error" else None
            self.ended += 1

    def finish(self, deadline_s: float = 600) -> list[Chat]:
        """Wait for every chat's end; the chats in the order they were sent."""
        deadline = time.monotonic() + deadline_s
        while self.ended < len(self.chats):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.tag}: chats still open after {deadline_s} s")
            self.take(deadline - time.monotonic())
        return sorted(self.chats.values(), key=lambda chat: chat.sent_at)


def load(wrapper: StampedWrapper, tiny: dict[str, str], rows: int | None) -> None:
    """Load the tiny base (no adapter: adapters come per chat); `rows` is max_batch_rows,
    None for a wrapper from before it existed."""
    command: dict[str, Any] = {"op": "load", "timeout_s": 300, "params": {},
                               "model": {"base_model_path": tiny["base"],
                                         "template": tiny["template"]}}
    if rows is not None:
        command["max_batch_rows"] = rows
    wrapper.send(command)
    ready, _ = wrapper.until("ready", "error", timeout=320)
    if ready["event"] != "ready":
        raise RuntimeError(f"load failed: {ready}")


def alone(wrapper: StampedWrapper, tiny: dict[str, str], tag: str, model: str, prompt: str,
          params: dict[str, Any]) -> Chat:
    """One chat with nothing else in flight."""
    exchange = Exchange(wrapper, tiny, tag)
    exchange.send(0, model, prompt, params)
    (chat,) = exchange.finish()
    if chat.done is None:
        raise RuntimeError(f"{tag}: {chat.error}")
    return chat


def alone_ttfts(wrapper: StampedWrapper, tiny: dict[str, str], tag: str,
                params: dict[str, Any], count: int = 3) -> list[float]:
    """First-token times of `count` chats alone (one is at the mercy of whatever else this
    machine ran at that moment; the median of a few is the reference a rep is held to)."""
    return [alone(wrapper, tiny, f"{tag}-{index}", "adapter", PROMPTS[0], params).ttft_s
            for index in range(count)]


def warm(wrapper: StampedWrapper, tiny: dict[str, str]) -> None:
    """One chat per model (so every adapter is resident before anything is timed), then one
    burst (so the batch's first shapes are not timed either)."""
    for model in MODELS:
        alone(wrapper, tiny, f"warm-{model}", model, PROMPTS[0], BURST)
    burst(wrapper, tiny, "warm-burst")


def burst(wrapper: StampedWrapper, tiny: dict[str, str], tag: str) -> list[Chat]:
    """16 chats sent at once: chat i asks PROMPTS[i] of MODELS[i % 4]."""
    exchange = Exchange(wrapper, tiny, tag)
    for index, prompt in enumerate(PROMPTS):
        exchange.send(index, MODELS[index % len(MODELS)], prompt, BURST)
    return exchange.finish()


def staggered(wrapper: StampedWrapper, tiny: dict[str, str], tag: str, count: int,
              spacing_s: float) -> list[Chat]:
    """`count` chats, one every `spacing_s` (the workload's own clock: chat i is due at
    i * spacing_s from the first), the models in turn; events are read while waiting for
    the next one to be due, so none waits on the sending."""
    exchange = Exchange(wrapper, tiny, tag)
    started = time.monotonic()
    for index in range(count):
        due = started + index * spacing_s
        while (left := due - time.monotonic()) > 0:
            exchange.take(left)
        exchange.send(index, MODELS[index % len(MODELS)], PROMPTS[index % len(PROMPTS)],
                      STAGGER)
    return exchange.finish()


# -- summaries -----------------------------------------------------------------------------

def summary(chats: list[Chat]) -> dict[str, Any]:
    """A run's figures: wall time from the first send to the last end, aggregate tokens/s,
    first-token percentiles, errors."""
    answered = [chat for chat in chats if chat.done is not None]
    ttfts = [chat.ttft_s for chat in answered if chat.first_at is not None]
    wall = max(chat.done_at for chat in chats) - min(chat.sent_at for chat in chats)
    tokens = sum(chat.tokens for chat in answered)
    wrapper_rates = [chat.done["timing"].get("tokens_per_s") for chat in answered]
    return {
        "chats": len(chats), "errors": sum(1 for chat in chats if chat.error is not None),
        "error_codes": sorted({chat.error.get("code", "?") for chat in chats if chat.error}),
        "wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall,
        "ttft_p50_s": percentile(ttfts, 50), "ttft_p95_s": percentile(ttfts, 95),
        "ttft_max_s": max(ttfts, default=float("nan")),
        "row_tokens_per_s_median": median([rate for rate in wrapper_rates if rate]),
        "wrapper_ttft_ms_median": median([chat.done["timing"]["ttft_ms"] for chat in answered]),
        "most_in_flight": most_in_flight(chats),
    }


def most_in_flight(chats: list[Chat]) -> int:
    """The most chats sent and not yet ended at once, by the client's clock."""
    marks = sorted([(chat.sent_at, 1) for chat in chats] +
                   [(chat.done_at, -1) for chat in chats if chat.done_at is not None])
    level = most = 0
    for _, step in marks:
        level += step
        most = max(most, level)
    return most


def chat_record(chat: Chat) -> dict[str, Any]:
    """What the JSON keeps of a chat (not its text: that is compared, not stored)."""
    timing = chat.done["timing"] if chat.done else {}
    return {"index": chat.index, "model": chat.model,
            "ttft_s": None if chat.first_at is None else chat.ttft_s,
            "done_s": None if chat.done_at is None else chat.done_at - chat.sent_at,
            "tokens": chat.tokens, "deltas": chat.deltas,
            "client_tokens_per_s": chat.client_tokens_per_s,
            "wrapper_ttft_ms": timing.get("ttft_ms"),
            "wrapper_tokens_per_s": timing.get("tokens_per_s"),
            "error": chat.error}


# -- the three measurements ----------------------------------------------------------------

@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    burst: dict[str, Any] = field(default_factory=dict)
    staggered: dict[str, Any] = field(default_factory=dict)
    alone: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    goals: list[dict[str, Any]] = field(default_factory=list)


def in_turn(names: list[str], rep: int) -> list[str]:
    """The wrappers' order in rep `rep`: rotated by one each rep, so each goes first in turn
    (with two, the order alternates)."""
    shift = rep % len(names)
    return names[shift:] + names[:shift]


def bench_burst(wrappers: dict[str, StampedWrapper], tiny: dict[str, str],
                reps: int) -> dict[str, Any]:
    """Each rep: per wrapper (the order rotating), three chats alone, then the burst. Every
    greedy reply must be the same on every wrapper and in every rep."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in wrappers}
    replies: dict[str, dict[int, set[str | None]]] = {name: {} for name in wrappers}
    names = list(wrappers)
    for rep in range(reps):
        for name in in_turn(names, rep):
            wrapper = wrappers[name]
            ones = alone_ttfts(wrapper, tiny, f"{name}-alone-{rep}", BURST)
            chats = burst(wrapper, tiny, f"{name}-burst-{rep}")
            for chat in chats:
                replies[name].setdefault(chat.index, set()).add(chat.content)
            runs[name].append({"rep": rep, "alone_ttft_s": median(ones), "alone_ttfts_s": ones,
                               "load_average": os.getloadavg()[0], **summary(chats),
                               "per_chat": [chat_record(c) for c in chats]})
        print(f"burst rep {rep + 1}/{reps}: " + ", ".join(
            f"{name} {runs[name][-1]['tokens_per_s']:.0f} tok/s" for name in names),
              file=sys.stderr, flush=True)
    identical = {}
    for first, second in itertools.pairwise(names):
        identical[f"{first}={second}"] = {"same": sum(
            1 for index, texts in replies[first].items()
            if len(texts | replies[second].get(index, set())) == 1), "of": len(PROMPTS)}
    stable = {name: sum(1 for texts in replies[name].values() if len(texts) == 1)
              for name in names}
    return {"runs": runs, "identical_between": identical, "stable_across_reps": stable,
            "distinct_replies": len({text for texts in replies[names[0]].values()
                                     for text in texts})}


def bench_staggered(wrappers: dict[str, StampedWrapper], tiny: dict[str, str], reps: int,
                    count: int, spacing_s: float) -> dict[str, Any]:
    """Each rep: per wrapper (the order alternating), three chats alone, then the arrivals."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in wrappers}
    names = list(wrappers)
    for rep in range(reps):
        for name in in_turn(names, rep):
            wrapper = wrappers[name]
            ones = alone_ttfts(wrapper, tiny, f"{name}-salone-{rep}", STAGGER)
            chats = staggered(wrapper, tiny, f"{name}-stagger-{rep}", count, spacing_s)
            late = max(chat.sent_at - chats[0].sent_at - chat.index * spacing_s
                       for chat in chats)
            runs[name].append({"rep": rep, "alone_ttft_s": median(ones),
                               "alone_ttfts_s": ones, "load_average": os.getloadavg()[0],
                               **summary(chats),
                               "latest_send_s": late,
                               "per_chat": [chat_record(c) for c in chats]})
        print(f"staggered rep {rep + 1}/{reps}: " + ", ".join(
            f"{name} p95 {runs[name][-1]['ttft_p95_s'] * 1000:.0f} ms" for name in names),
              file=sys.stderr, flush=True)
    return {"runs": runs, "count": count, "spacing_s": spacing_s}


def bench_alone(wrappers: dict[str, StampedWrapper], tiny: dict[str, str], rounds: int,
                models: tuple[str, ...]) -> dict[str, Any]:
    """Each round: one chat on each wrapper (the order alternating), `models` and the
    prompts in turn; the same chat on both, so their greedy replies must match."""
    chats: dict[str, list[dict[str, Any]]] = {name: [] for name in wrappers}
    names = list(wrappers)
    same = 0
    for index in range(rounds):
        model, prompt = models[index % len(models)], PROMPTS[index % len(PROMPTS)]
        texts = set()
        for name in in_turn(names, index):
            chat = alone(wrappers[name], tiny, f"{name}-solo-{index}", model, prompt, ALONE)
            texts.add(chat.content)
            chats[name].append(chat_record(chat))
        same += len(texts) == 1
    return {"models": models, "chats": chats, "identical": {"same": same, "of": rounds}}


# -- where the time goes ---------------------------------------------------------------------

PROFILE_HZ = 500
# Where a wrapper serves chats: 0.7.0's main thread (joining rows, stepping them), the old
# wrapper's generation thread (`generate`) and its thread that sends the text out.
SERVING = ("_generate_together", "_admit", "GenerationMixin.generate", "Turn.emit_text")
# What sorts a sample (py-spy, collapsed stacks): the first frame in this list on its stack
# names it, so the innermost concerns come first.
PHASES = (
    ("peft: hooks set on every forward that names adapters", "_enable_peft_forward_hooks"),
    ("peft: LoRA split by adapter (`_mixed_batch_forward`)", "_mixed_batch_forward"),
    ("writing events to stdout (`Wire.send`)", "Wire.send"),
    ("the streamer: detokenising, queueing text for the writer", "TextStreamer.put"),
    ("stopping criteria (the wrapper's per-step hooks)", "StoppingCriteriaList"),
    ("prefill: the cache merged into the batch (`_merge`)", "StepBatch._merge"),
    ("prefill: the prompt's forward alone (`join`)", "StepBatch.join"),
    ("decode: choosing each row's token (`_take`)", "StepBatch._take"),
    ("decode: ended rows out, padding cut (`_leave`)", "StepBatch._leave"),
    ("the model's forward, the rest (`step`; `generate`'s loop)", "StepBatch.step"),
    ("the model's forward, the rest (`step`; `generate`'s loop)", "GenerationMixin.generate"),
    ("text out: detokenising, stop strings, `done` (`LiveBatch`)", "LiveBatch."),
    ("building the chat's row (template, tokens)", "ScriptEngine.join"),
)


@contextmanager
def profiled(pid: int, out: Path) -> Iterator[dict[str, Any]]:
    """py-spy over a wrapper while the block runs; the block puts its `tokens` in what it
    gets, and finds `phase_shares` there after it."""
    found: dict[str, Any] = {}
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        yield found
        return
    spy = subprocess.Popen([str(py_spy), "record", "-p", str(pid), "-r", str(PROFILE_HZ),
                            "--nonblocking", "--format", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    try:
        yield found
    finally:
        found["wall_s"] = time.monotonic() - started
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    found.update(phase_shares(out, found.get("tokens", 0)))


def phase_shares(out: Path, tokens: int) -> dict[str, Any]:
    """The samples of the threads serving chats (SERVING), by phase: count and share. Shares
    only: py-spy leaves out samples of a thread it sees idle, and under other load its
    counts per second differ from process to process, so counts are not times."""
    by_phase: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines() if out.exists() else []:
        stack, _, count = line.rpartition(" ")
        if not any(frame in stack for frame in SERVING):
            continue
        total += int(count)
        by_phase[next((label for label, frame in PHASES if frame in stack), "other")] += \
            int(count)
    return {"samples": total, "tokens": tokens,
            "phases": {label: [count, count / total] for label, count in by_phase.items()}}


def profile_burst(wrapper: StampedWrapper, tiny: dict[str, str], bursts: int,
                  out: Path) -> dict[str, Any]:
    """0.7.0 answering bursts under py-spy (after the timed runs: sampling slows what it
    samples)."""
    with profiled(wrapper.proc.pid, out) as found:
        found["tokens"] = sum(chat.tokens for rep in range(bursts)
                              for chat in burst(wrapper, tiny, f"profile-{rep}"))
    return found


def profile_alone(wrapper: StampedWrapper, tiny: dict[str, str], chats: int,
                  models: tuple[str, ...], out: Path) -> dict[str, Any]:
    """A wrapper answering chats alone, `models` in turn, under py-spy (not timed)."""
    with profiled(wrapper.proc.pid, out) as found:
        found["tokens"] = sum(
            alone(wrapper, tiny, f"profile-{out.stem}-{index}", models[index % len(models)],
                  PROMPTS[index % len(PROMPTS)], ALONE).tokens for index in range(chats))
    return found


# -- the run -------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cores": os.cpu_count(), "commit": commit, "old_commit": OLD_COMMIT,
            "load_average_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def run(args: argparse.Namespace) -> Results:
    box_python = os.environ.get("LFGATE_BOX_PYTHON") or _rig("box_env.sh")
    folder = Path(_rig("tiny_model.sh", box_python))
    tiny = {name: str(folder / name) for name in MODELS}
    tiny["template"] = json.loads((folder / "tiny.json").read_text())["template"]
    results = Results(machine=machine())
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        workdir = Path(tmp)
        old_remote = extract_old_remote(workdir)
        wrappers: dict[str, StampedWrapper] = {}
        try:
            for name, remote, rows in (("rows16", ROOT / "remote", 16),
                                       ("rows1", ROOT / "remote", 1),
                                       ("old", old_remote, None)):
                wrappers[name] = start_wrapper(box_python, remote, workdir)
                load(wrappers[name], tiny, rows)
                results.machine[f"{name}_hello"] = {
                    key: wrappers[name].hello.get(key)
                    for key in ("wrapper", "protocol", "features")}
            solo = {name: wrappers[name] for name in ("old", "rows16")}
            profile: dict[str, Any] = {}
            # 3a first, while no adapter was ever loaded: the plain base, no peft at all.
            for name, wrapper in solo.items():
                for index in range(2):
                    alone(wrapper, tiny, f"warm-plain-{name}-{index}", "base", PROMPTS[0], ALONE)
            results.alone["plain"] = bench_alone(solo, tiny, args.alone_rounds, ("base",))
            if args.profile:
                for name, wrapper in solo.items():
                    profile[f"alone_plain_{name}"] = profile_alone(
                        wrapper, tiny, 4 * args.profile, ("base",), workdir / f"plain-{name}.raw")
            for name in ("rows16", "rows1"):
                warm(wrappers[name], tiny)
            for model in MODELS:
                alone(wrappers["old"], tiny, f"warm-old-{model}", model, PROMPTS[0], ALONE)
            pair = {name: wrappers[name] for name in ("rows1", "rows16")}
            # 111bd67 too, for reference: the serialised path as it was before 0.7.0.
            results.burst = bench_burst({**pair, "old": wrappers["old"]}, tiny, args.reps)
            results.staggered = bench_staggered(pair, tiny, args.stagger_reps,
                                                args.stagger_count, args.stagger_spacing)
            results.alone["adapters"] = bench_alone(solo, tiny, args.alone_rounds, MODELS)
            if args.profile:
                profile["burst_rows16"] = profile_burst(wrappers["rows16"], tiny, args.profile,
                                                        workdir / "burst.raw")
                for name, wrapper in solo.items():
                    profile[f"alone_adapters_{name}"] = profile_alone(
                        wrapper, tiny, 4 * args.profile, MODELS, workdir / f"adapters-{name}.raw")
            results.profile = profile or None
        finally:
            for wrapper in wrappers.values():
                wrapper.kill()
    results.machine["load_average_end"] = os.getloadavg()
    return results


# -- the goals -----------------------------------------------------------------------------

def paired(new: list[dict[str, Any]], old: list[dict[str, Any]], key: str) -> float:
    """The median of new ÷ old over chats asked back to back (the same round): what else
    ran on the machine then weighs on both sides of each ratio alike."""
    return median([a[key] / b[key] for a, b in zip(new, old, strict=True)])


def goals(results: Results) -> list[dict[str, Any]]:
    """Issue 26's goals against this run's figures: medians over the reps (ratios paired
    within a rep, where both sides ran back to back)."""
    runs, stag = results.burst["runs"], results.staggered["runs"]
    speedup = median([b["tokens_per_s"] / a["tokens_per_s"]
                      for a, b in zip(runs["rows1"], runs["rows16"], strict=True)])
    burst_p95 = median([r["ttft_p95_s"] / r["alone_ttft_s"] for r in runs["rows16"]])
    same = results.burst["identical_between"]
    stag_p95 = median([r["ttft_p95_s"] / r["alone_ttft_s"] for r in stag["rows16"]])
    refused = sum(r["errors"] for r in stag["rows16"])
    found = [
        {"goal": "16 chats over 4 models: aggregate tokens/s, together ÷ one at a time",
         "measured": speedup, "target": ">= 4", "met": speedup >= 4},
        {"goal": "16 chats over 4 models: first token p95 ÷ one chat alone",
         "measured": burst_p95, "target": "<= 3", "met": burst_p95 <= 3},
        {"goal": "16 chats over 4 models: greedy replies identical",
         "measured": same, "target": "all", "met": all(v["same"] == v["of"]
                                                      for v in same.values())},
        {"goal": "staggered arrivals: first token p95 ÷ one chat alone",
         "measured": stag_p95, "target": "<= 3", "met": stag_p95 <= 3},
        {"goal": "staggered arrivals: chats refused", "measured": refused, "target": "0",
         "met": refused == 0},
    ]
    for part in ("plain", "adapters"):
        solo = results.alone[part]["chats"]
        for key, clock in (("wrapper_tokens_per_s", "the wrapper's clock"),
                           ("client_tokens_per_s", "the client's clock")):
            ratio = paired(solo["rows16"], solo["old"], key)
            found.append({"goal": f"one chat alone ({part}): tokens/s 0.7.0 ÷ {OLD_COMMIT}, "
                                  f"{clock}", "measured": ratio, "target": ">= 0.95",
                          "met": ratio >= 0.95})
    return found


# -- the tables ------------------------------------------------------------------------------

def fmt(values: list[float], digits: int = 0) -> str:
    """'median (min–max)', every figure to `digits` decimals."""
    return (f"{median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"
            if values else "–")


def ms(values: list[float], digits: int = 0) -> str:
    """Seconds as 'median (min–max)' in milliseconds."""
    return fmt([value * 1000 for value in values], digits)


def tables(results: Results) -> str:
    """The figures of section 13 as markdown (the prose around them is written by hand)."""
    lines: list[str] = []
    runs = results.burst["runs"]
    lines += ["| 16 chats at once | aggregate tokens/s | wall time (ms) | first token p50 (ms) "
              "| first token p95 (ms) | one chat alone, first token (ms) | p95 ÷ alone "
              "| a row's tokens/s (wrapper) |", "|---|---|---|---|---|---|---|---|"]
    for name, label in (("old", f"{OLD_COMMIT} (before 0.7.0: one at a time)"),
                        ("rows1", "0.7.0, `max_batch_rows` 1 (one at a time)"),
                        ("rows16", "0.7.0, `max_batch_rows` 16 (together)")):
        got = runs[name]
        lines.append(
            f"| {label} | {fmt([r['tokens_per_s'] for r in got])} "
            f"| {ms([r['wall_s'] for r in got])} | {ms([r['ttft_p50_s'] for r in got])} "
            f"| {ms([r['ttft_p95_s'] for r in got])} | {ms([r['alone_ttft_s'] for r in got])} "
            f"| {fmt([r['ttft_p95_s'] / r['alone_ttft_s'] for r in got], 1)} "
            f"| {fmt([r['row_tokens_per_s_median'] for r in got])} |")
    for base, label in (("rows1", "`max_batch_rows` 1"), ("old", OLD_COMMIT)):
        ratio = [b["tokens_per_s"] / a["tokens_per_s"]
                 for a, b in zip(runs[base], runs["rows16"], strict=True)]
        lines.append(f"| **together ÷ {label}** (paired by rep) | **{fmt(ratio, 2)}** "
                     "| | | | | | |")
    lines += ["", f"Greedy replies identical: {results.burst['identical_between']}; the same "
              f"in every rep: {results.burst['stable_across_reps']}", ""]
    stag = results.staggered["runs"]
    lines += ["| staggered arrivals | first token p50 (ms) | first token p95 (ms) "
              "| one chat alone (ms) | p95 ÷ alone | wall time (s) | errors | most in flight |",
              "|---|---|---|---|---|---|---|---|"]
    for name, label in (("rows1", "`max_batch_rows` 1"), ("rows16", "`max_batch_rows` 16")):
        got = stag[name]
        lines.append(
            f"| {label} | {ms([r['ttft_p50_s'] for r in got])} "
            f"| {ms([r['ttft_p95_s'] for r in got])} | {ms([r['alone_ttft_s'] for r in got])} "
            f"| {fmt([r['ttft_p95_s'] / r['alone_ttft_s'] for r in got], 1)} "
            f"| {fmt([r['wall_s'] for r in got], 2)} | {sum(r['errors'] for r in got)} "
            f"| {fmt([r['most_in_flight'] for r in got])} |")
    lines += ["", "| one chat alone | first token (ms) | tokens/s, client | tokens/s, wrapper "
              "| wrapper's first token (ms) | deltas per reply | identical replies |",
              "|---|---|---|---|---|---|---|"]
    for part, title in (("plain", "the plain base (no adapter ever loaded)"),
                        ("adapters", "base and 3 adapters resident, the 4 models in turn")):
        solo = results.alone[part]["chats"]
        same = results.alone[part]["identical"]
        for name, label in (("old", OLD_COMMIT), ("rows16", "0.7.0")):
            got = solo[name]
            lines.append(
                f"| {title}: {label} | {ms([c['ttft_s'] for c in got])} "
                f"| {fmt([c['client_tokens_per_s'] for c in got])} "
                f"| {fmt([c['wrapper_tokens_per_s'] for c in got])} "
                f"| {fmt([c['wrapper_ttft_ms'] for c in got], 1)} "
                f"| {fmt([c['deltas'] for c in got])} | {same['same']} of {same['of']} |")
        keys = ("ttft_s", "client_tokens_per_s", "wrapper_tokens_per_s")
        ratios = [median([c[key] for c in solo["rows16"]]) / median([c[key] for c in solo["old"]])
                  for key in keys]
        lines.append(f"| {title}: 0.7.0 ÷ {OLD_COMMIT}, of the medians | {ratios[0]:.2f} "
                     f"| {ratios[1]:.3f} | {ratios[2]:.3f} | | | |")
        ratios = [paired(solo["rows16"], solo["old"], key) for key in keys]
        lines.append(f"| **{title}: 0.7.0 ÷ {OLD_COMMIT}, paired by round** | {ratios[0]:.2f} "
                     f"| **{ratios[1]:.3f}** | **{ratios[2]:.3f}** | | | |")
    lines += ["", "| goal | measured | target | verdict |", "|---|---|---|---|"]
    for goal in results.goals:
        measured = goal["measured"]
        shown = f"{measured:.2f}" if isinstance(measured, float) else str(measured)
        lines.append(f"| {goal['goal']} | {shown} | {goal['target']} "
                     f"| **{'met' if goal['met'] else 'missed'}** |")
    if results.profile:
        lines += ["", *profile_table(results.profile)]
    return "\n".join(lines)


PROFILES = (("alone_plain_old", f"alone, plain base: {OLD_COMMIT}"),
            ("alone_plain_rows16", "alone, plain base: 0.7.0"),
            ("alone_adapters_old", f"alone, adapters: {OLD_COMMIT}"),
            ("alone_adapters_rows16", "alone, adapters: 0.7.0"),
            ("burst_rows16", "16 at once: 0.7.0"))


def profile_table(profile: dict[str, Any]) -> list[str]:
    """The phases as rows, each profile's share of its samples as a column."""
    shown = [(key, label) for key, label in PROFILES if key in profile]
    labels = list(dict.fromkeys([label for label, _ in PHASES] + ["other"]))
    lines = ["| phase | " + " | ".join(label for _, label in shown) + " |",
             "|---|" + "---|" * len(shown),
             "| samples | " + " | ".join(str(profile[key]["samples"]) for key, _ in shown) + " |"]
    for phase in labels:
        cells = [profile[key]["phases"].get(phase) for key, _ in shown]
        if any(cells):
            lines.append(f"| {phase} | " + " | ".join(
                f"{cell[1]:.0%}" if cell else "–" for cell in cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9, help="bursts per wrapper")
    parser.add_argument("--stagger-reps", type=int, default=5)
    parser.add_argument("--stagger-count", type=int, default=50)
    parser.add_argument("--stagger-spacing", type=float, default=0.1)
    parser.add_argument("--alone-rounds", type=int, default=40,
                        help="chats alone per wrapper, on the plain base and with adapters")
    parser.add_argument("--profile", type=int, default=5,
                        help="bursts profiled with py-spy after the timed runs, and 4 times as "
                        "many chats alone per wrapper and kind (0: no profile)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--tables", type=Path, metavar="JSON",
                        help="print the tables of an earlier run's results, run nothing")
    args = parser.parse_args()
    if args.tables:
        print(tables(Results(**json.loads(args.tables.read_text()))))
        return
    results = run(args)
    results.goals = goals(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(results), indent=1))
    print(tables(results))
    print(f"\nwritten: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
