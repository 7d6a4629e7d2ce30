"""Issue 25's costs: what the OpenAI surface's tool calls, logprobs and context check add.

Run by tests/bench/run.py (section 12 of docs/benchmarks.md; `--only openai_surface` alone),
with the adapters LlamaFactory itself trained on the tiny base (tests/rig/train_adapters.sh:
`words` answers a few prompts in plain words, `tool` calls get_weather in the qwen template's
tool format and answers the tool's result in words). Two parts, the box's alone first:

In process, on the box's Python (this file run by the box venv's python with `--box`, a
subprocess: stdlib and the box's own packages, the wrapper's code imported from remote/ as
the box runs it). `ChatModel` loads the tiny base with the `tool` adapter (its real template
and tokenizer, qwen) once, then:

- 12a, the tool path (`box_tool_path`): the adapter streams two real replies, greedy, with its
  tool offered: the call (the trained weather question) and a reply in words (the tool's result
  handed back); their chunks as `stream_chat` yields them. Then, `repeats` times each, timed
  with perf_counter_ns: `tool_call_marker(template)` (once per reply in the wrapper), the
  chunks through a `ToolCallGate`, `tool_calls_in(template, text)` (the parse), the three
  together as the wrapper runs them on one reply, and the whole `Turn` path (`hold_tool_calls`,
  `emit_text` per chunk, the parse, `finish_text`, each event encoded by a `Wire` into memory)
  against the same chunks through a `Turn` without tools: the difference is what a chat that
  offers tools adds to its reply on the box.
- 12e, the context check (`box_fit_context`): a many-turn history of about `history_tokens`
  tokens (the tiny model's tokenizer and the qwen template; its exact count by
  `template.encode_oneturn`, as the check makes it), checked by `ScriptEngine._fit_context`
  (the wrapper's own method: the byte bound `most_tokens`, then only if the bound cannot prove
  it fits the exact count and `fit_context`) on a new `Turn` (the default: refused when over)
  `runs` times per window with the cyclic garbage collector off (the check's own work, as
  `timeit` measures) and, alternating with those, `runs` times with it on (as the wrapper runs);
  on a stand-in engine that holds the real template and tokenizer and a model config naming the
  window (no weights: the check reads none). Windows: the first power of two the bound and the
  reply's default length fit under (the bound alone), 65,536 (a common `cutoff_len`), the first
  power of two over the history plus the reply's default length (near the window: the exact
  count) and the power of two under the history (refused, after the exact count). A counting
  proxy around the template says, per window, whether the exact count ran (one run, untimed);
  `encode_oneturn` and `most_tokens` alone are timed too.

Through the gateway, a script-mode gateway of its own: `default` is the tiny base with its
tiny adapter (sections 2 to 8's model), the trained folder is ADAPTER_DIRS, so `words` and
`tool` ride on the same loaded base. Every request by the official `openai` client, streamed,
`stream_options.include_usage`, no retries; contenders alternate round by round (AB BA AB ...)
after a warm-up turn each:

- 12b, tool calls end to end (`bench_tools_e2e`): `tool` asked the trained weather question
  with its tool against `words` asked one of its questions without tools; each reply's total
  time at the client (from just before the request to the stream's end), the call checked to
  be the trained one and the words the trained answer. For context only: not a like-for-like
  (another prompt, the tool's schema in the prompt, a longer reply).
- 12c, logprobs (`bench_logprobs`): `default`, one prompt, greedy, `max_tokens` 128, with
  `logprobs=True, top_logprobs=5` against without; chunks/s (content chunks after the first,
  as sections 2 to 8), total time and the time from the last content chunk to the chunk with
  the `finish_reason`. The logprobs stream with the chunks (each carries the tokens its text
  completed; the finish chunk, any left). Both streams are checked to carry the same text,
  the logprobs, all chunks' together, to cover the reply with 5 alternatives each.
- 12d, `/v1` over `/api/chat` (first token): section 8's `bench_v1_vs_chat`
  (tests/bench/openai_v1.py), called as it is on this gateway's `default`.
"""

from __future__ import annotations

import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.bench.run import Rig
    from tests.gateway_process import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
# Issue 25's targets.
TOOL_BUDGET_MS = 5.0  # tool-call handling added to a reply, at most
LOGPROBS_RATE_TARGET = 0.90  # streaming rate with logprobs over without, at least
CONTEXT_BUDGET_MS = 5.0  # the context check on a 30k-token history, at most
CONTEXT_TARGET_TOKENS = 30_000
# 12c: the same prompt and greedy settings for both contenders: of the bench's prompts, the
# one whose reply on `default` is all 128 tokens in the most chunks (17).
LOGPROBS_PROMPT = "What is the capital of France?"
LOGPROBS_PARAMS = {"temperature": 0, "max_tokens": 128}
TOP_LOGPROBS = 5
TOOLS_PARAMS = {"temperature": 0, "max_tokens": 96}  # as tests/test_tool_calls_box.py
# 12e: the history's turns, English prose in turn (its size set by the tokens wanted).
PROSE = [
    "LoRA adapters keep the base model frozen and learn two small matrices per layer, so a "
    "fine-tune weighs a few megabytes instead of the whole model.",
    "The gateway keeps one SSH connection to the box and streams each reply back as it is "
    "made, token by token, to the browser or to an OpenAI client.",
    "A conversation sends its whole history with every turn: the template lays the turns out "
    "in the model's own format, and the tokenizer turns them into ids.",
    "Greedy decoding picks the likeliest token at every step, so the same prompt always gets "
    "the same reply, which is what a benchmark wants to compare paths.",
    "When the history grows past what the model can attend to, the request is refused with a "
    "clear error instead of letting the model run past its positions.",
]


# -- on the box: in process ---------------------------------------------------------------------

def _ns_runs(work: Callable[[], object], repeats: int) -> list[float]:
    """`work` timed `repeats` times, in seconds each."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        work()
        times.append((time.perf_counter_ns() - started) / 1e9)
    return times


def box_tool_path(chat_model: Any, cases: dict[str, dict[str, Any]], repeats: int
                  ) -> dict[str, Any]:
    """12a: each case's real reply streamed by `chat_model`, then the wrapper's tool path
    over its chunks, timed."""
    import chat_inference as ci

    import wrapper_serve as ws

    template = chat_model.engine.template
    out: dict[str, Any] = {}
    for kind, case in cases.items():
        started = time.perf_counter()
        chunks = list(chat_model.stream_chat(case["messages"], tools=case["tools"],
                                             temperature=0, max_new_tokens=96))
        generated_s = time.perf_counter() - started
        text = "".join(chunks)
        if text != case["answer"]:
            raise RuntimeError(f"12a {kind}: the adapter said {text!r}, trained {case['answer']!r}")
        marker = ci.tool_call_marker(template)
        calls = ci.tool_calls_in(template, text)
        want = case["tool_calls"]
        got = [(c["name"], json.loads(c["arguments"])) for c in calls or []]
        if got != [(c["name"], json.loads(c["arguments"])) for c in want or []]:
            raise RuntimeError(f"12a {kind}: parsed {calls}, trained {want}")

        def gate(marker: str = marker, chunks: list[str] = chunks, calls: Any = calls) -> str:
            held = ws.ToolCallGate(marker)
            shown = "".join(held.feed(chunk) for chunk in chunks)
            return shown if calls else shown + held.flush()

        def wrapper_path(chunks: list[str] = chunks, text: str = text) -> None:
            """What the wrapper adds to a reply when the chat offers tools."""
            held = ws.ToolCallGate(ci.tool_call_marker(template))
            for chunk in chunks:
                held.feed(chunk)
            if not ci.tool_calls_in(template, text):
                held.flush()

        def turn(tools: bool, chunks: list[str] = chunks, text: str = text) -> None:
            wire = ws.Wire(io.StringIO())
            one = ws.Turn("bench", [], {}, wire.send)
            if tools:
                one.hold_tool_calls(ci.tool_call_marker(template))
            for chunk in chunks:
                one.emit_text(chunk)
            found = ci.tool_calls_in(template, text) if tools else None
            one.finish_text(ws.ChatOutcome(text, "stop", tool_calls=found))

        shown = gate()
        if (shown == "") != bool(calls) or (not calls and shown != text):
            raise RuntimeError(f"12a {kind}: the gate showed {shown!r}")
        for work in (gate, wrapper_path):  # warm: first calls import and cache
            work()
        with_tools = _ns_runs(lambda turn=turn: turn(True), repeats)
        without = _ns_runs(lambda turn=turn: turn(False), repeats)
        out[kind] = {
            "chunks": chunks, "chars": len(text), "marker": marker, "calls": calls,
            "generated_s": generated_s,
            "marker_s": _ns_runs(lambda: ci.tool_call_marker(template), repeats),
            "gate_s": _ns_runs(gate, repeats),
            "parse_s": _ns_runs(lambda text=text: ci.tool_calls_in(template, text), repeats),
            "path_s": _ns_runs(wrapper_path, repeats),
            "turn_tools_s": with_tools, "turn_plain_s": without,
        }
    return out


class _CountingTemplate:
    """The template, counting the exact counts (`encode_oneturn`) made through it."""

    def __init__(self, template: Any) -> None:
        self._template = template
        self.counts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._template, name)

    def encode_oneturn(self, *args: Any, **kwargs: Any) -> Any:
        messages = args[1] if len(args) > 1 else kwargs.get("messages", [])
        if any(m["content"] for m in messages):  # not the template's part alone (TokenCounts)
            self.counts += 1
        return self._template.encode_oneturn(*args, **kwargs)


def _history(template: Any, tokenizer: Any, tokens: int) -> tuple[list[dict[str, str]], int]:
    """user/assistant turns of PROSE (ending with the user's) whose prompt, as the check
    counts it, is `tokens` or a little more; and that count."""
    def count(messages: list[dict[str, str]]) -> int:
        prompt, _ = template.encode_oneturn(
            tokenizer, [*messages, {"role": "assistant", "content": ""}], None, None)
        return len(prompt)

    def turns(n: int) -> list[dict[str, str]]:
        return [{"role": "user" if i % 2 == 0 else "assistant",
                 "content": f"Turn {i + 1}. " + " ".join(PROSE[(i + k) % len(PROSE)]
                                                         for k in range(3))}
                for i in range(n)]

    n = 2 * max(1, round(tokens / count(turns(10)) * 10 / 2)) + 1  # odd: ends with the user
    while count(turns(n)) < tokens:
        n += 2
    while n > 3 and count(turns(n - 2)) >= tokens:
        n -= 2
    messages = turns(n)
    return messages, count(messages)


def box_fit_context(engine: Any, tokens: int, runs: int) -> dict[str, Any]:
    """12e: the wrapper's context check on a history of about `tokens` tokens, per window."""
    import chat_inference as ci

    import wrapper_protocol as wp
    import wrapper_serve as ws

    template, tokenizer = engine.template, engine.tokenizer
    messages, counted = _history(template, tokenizer, tokens)
    default_new = (engine.generating_args or {}).get("max_new_tokens") or 0
    texts = [m["content"] for m in messages] + [getattr(template, "default_system", "") or "",
                                                 ""]
    bound = ci.most_tokens(texts)

    def pow2_over(n: int) -> int:
        return 1 << max(n - 1, 1).bit_length()

    windows = [("bound", pow2_over(bound + default_new)), ("cutoff", 65_536),
               ("near", pow2_over(counted + default_new)), ("over", pow2_over(counted) // 2)]

    def engine_for(window: int, tmpl: Any) -> Any:
        """A ScriptEngine on this tokenizer and template, with this window: its token counts
        (TokenCounts) start empty, as after a load."""
        engine_now = SimpleNamespace(
            template=tmpl, tokenizer=tokenizer, generating_args=engine.generating_args,
            model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=window)))
        script = ci.ScriptEngine()
        script._chat_model = SimpleNamespace(engine=engine_now)
        script._model_spec = {"extra_args": {}}
        return script

    def check(script: Any, times: list[float] | None = None) -> tuple[str, dict[str, Any]]:
        """One check of a new turn (refused when over, the default), timed into `times`:
        the method's call alone."""
        turn = ws.Turn("bench", list(messages), {}, lambda event: None)
        kwargs: dict[str, Any] = {}
        outcome = "fits"
        started = time.perf_counter_ns()
        try:
            script._fit_context(turn, None, None, kwargs)
        except wp.WrapperError as exc:
            outcome = exc.code
        if times is not None:
            times.append((time.perf_counter_ns() - started) / 1e9)
        return outcome, kwargs

    rows = []
    for name, window in windows:
        # The first check of this history on a new engine (every message tokenized once:
        # a history the wrapper has not seen, say a /v1 client's), then the same history
        # again on that engine (a chat's next turn: its messages already counted).
        counting = _CountingTemplate(template)
        cold: list[float] = []
        outcome, kwargs = check(engine_for(window, counting), cold)
        warm_engine = engine_for(window, counting)
        check(warm_engine)
        counting.counts = 0
        times: list[float] = []
        as_is: list[float] = []
        for _ in range(runs):
            gc.disable()  # the check's own work, as timeit measures it
            try:
                check(warm_engine, times)
            finally:
                gc.enable()
            check(warm_engine, as_is)  # the collector's passes land where they fall
        rows.append({"case": name, "window": window, "outcome": outcome,
                     "exact_counts": counting.counts, "max_new_tokens": kwargs.get(
                         "max_new_tokens"), "check_s": times, "as_is_s": as_is,
                     "cold_s": cold})
    last = [*messages, {"role": "assistant", "content": ""}]
    return {
        "messages": len(messages), "tokens": counted, "bound": bound, "chars": sum(
            len(t) for t in texts), "bytes": sum(len(t.encode()) for t in texts),
        "default_new_tokens": default_new, "runs": runs, "rows": rows,
        "count_s": _ns_runs(lambda: template.encode_oneturn(tokenizer, last, None, None), runs),
        "bound_s": _ns_runs(lambda: ci.most_tokens(texts), runs),
        "gc_objects": len(gc.get_objects()),
    }


def _box_main() -> None:
    """On the box's Python: the job on stdin, the figures as JSON on stdout's last line."""
    job = json.loads(sys.stdin.read())
    sys.path.insert(0, str(ROOT / "remote"))  # the wrapper's modules, as on the box
    from llamafactory.chat import ChatModel

    started = time.perf_counter()
    chat_model = ChatModel({"model_name_or_path": job["base"],
                            "adapter_name_or_path": job["adapter"], "template": job["template"],
                            "finetuning_type": "lora", "infer_backend": "huggingface"})
    load_s = time.perf_counter() - started
    tool = box_tool_path(chat_model, job["cases"], job["repeats"])
    context = box_fit_context(chat_model.engine, job["history_tokens"], job["runs"])
    print(json.dumps({"load_s": load_s, "repeats": job["repeats"], "tool": tool,
                      "context": context}))


def run_on_box(rig: Rig, trained: dict[str, Any], repeats: int, history_tokens: int,
               runs: int) -> dict[str, Any]:
    """12a and 12e: this file on the box's Python, as a subprocess (one torch thread)."""
    from tests.bench.run import BOX_ENV

    tool = trained["adapters"]["tool"]
    cases = {"call": next(c for c in tool["cases"] if c["tool_calls"]),
             "words": next(c for c in tool["cases"] if c["tools"] and not c["tool_calls"])}
    job = {"base": str(rig.tiny / "base"), "adapter": tool["path"],
           "template": trained["template"], "cases": cases, "repeats": repeats,
           "history_tokens": history_tokens, "runs": runs}
    out = subprocess.run([rig.box_python, str(Path(__file__).resolve()), "--box"],
                         input=json.dumps(job), capture_output=True, text=True, timeout=900,
                         env={**os.environ, **BOX_ENV, "LLAMAFACTORY_VERBOSITY": "WARNING",
                              "TOKENIZERS_PARALLELISM": "false"})
    if out.returncode != 0:
        raise RuntimeError(f"the box part failed: {out.stdout[-2000:]}{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["cases"] = {kind: {"messages": c["messages"], "answer": c["answer"]}
                       for kind, c in cases.items()}
    return result


# -- through the gateway ------------------------------------------------------------------------

def v1_stream(client: Any, model: str, messages: list[dict[str, Any]], **params: Any
              ) -> dict[str, Any]:
    """One streamed chat completion through the `openai` client, timed at the client."""
    from tests.bench.run import TurnClock

    clock, parts, calls = TurnClock(), [], []
    logprobs, usage, finish, finish_at, call_at = None, None, None, None, None
    stream = client.chat.completions.create(model=model, messages=messages, stream=True,
                                            stream_options={"include_usage": True}, **params)
    for event in stream:
        if event.usage is not None:
            usage = event.usage
        if not event.choices:
            continue
        choice = event.choices[0]
        delta = choice.delta
        if delta is not None and delta.content:
            clock.chunk()
            parts.append(delta.content)
        if delta is not None and delta.tool_calls:
            call_at = time.monotonic() - clock.started
            calls += [(c.function.name, json.loads(c.function.arguments))
                      for c in delta.tool_calls]
        if choice.logprobs is not None and choice.logprobs.content:
            logprobs = [*(logprobs or []), *choice.logprobs.content]  # with each chunk
        if choice.finish_reason:
            finish, finish_at = choice.finish_reason, time.monotonic() - clock.started
    turn = clock.turn()
    last_text_at = None if clock.last is None else clock.last - clock.started
    return {"ttft_s": turn.ttft_s, "total_s": turn.total_s, "chunks": turn.chunks,
            "rate": turn.chunks_per_s, "text": "".join(parts), "calls": calls,
            "call_at_s": call_at, "finish": finish, "finish_at_s": finish_at,
            "tail_s": None if finish_at is None or last_text_at is None
            else finish_at - last_text_at,
            "logprobs": None if logprobs is None else len(logprobs),
            "top_logprobs": None if logprobs is None else [len(t.top_logprobs) for t in logprobs],
            "completion_tokens": None if usage is None else usage.completion_tokens,
            "prompt_tokens": None if usage is None else usage.prompt_tokens}


def _tools_of(case: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": tool} for tool in json.loads(case["tools"])]


def bench_tools_e2e(gateway: GatewayProcess, ids: dict[str, str], trained: dict[str, Any],
                    rounds: int) -> dict[str, Any]:
    """12b: `tool` asked its weather question with its tool against `words` plain."""
    from openai import OpenAI

    from tests.bench.openai_v1 import orders

    client = OpenAI(base_url=f"{gateway.url}/v1", api_key="none", max_retries=0)
    tool = next(c for c in trained["adapters"]["tool"]["cases"] if c["tool_calls"])
    words = next(c for c in trained["adapters"]["words"]["cases"] if not c["tools"])
    expected = [(c["name"], json.loads(c["arguments"])) for c in tool["tool_calls"]]

    def ask(kind: str) -> dict[str, Any]:
        if kind == "tool":
            reply = v1_stream(client, ids["tool"], tool["messages"], tools=_tools_of(tool),
                              **TOOLS_PARAMS)
            if reply["calls"] != expected or reply["finish"] != "tool_calls" or reply["text"]:
                raise RuntimeError(f"12b: the tool adapter answered {reply}")
        else:
            reply = v1_stream(client, ids["words"], words["messages"], **TOOLS_PARAMS)
            if reply["text"] != words["answer"] or reply["finish"] != "stop":
                raise RuntimeError(f"12b: the words adapter answered {reply}")
        return reply

    kinds = ["tool", "words"]
    for kind in kinds:
        ask(kind)  # warm: the adapter's load onto the base, the client's connection
    turns: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for _, kind in orders(kinds, rounds):
        turns[kind].append(ask(kind))
    return {"rounds": rounds, "turns": turns, "params": TOOLS_PARAMS,
            "questions": {"tool": tool["messages"][-1]["content"],
                          "words": words["messages"][-1]["content"]},
            "tool_chars": len(tool["tools"]), "ids": ids}


def bench_logprobs(gateway: GatewayProcess, rounds: int, model: str = "default"
                   ) -> dict[str, Any]:
    """12c: the same greedy request with `logprobs=True, top_logprobs=5` and without."""
    from openai import OpenAI

    from tests.bench.openai_v1 import orders

    client = OpenAI(base_url=f"{gateway.url}/v1", api_key="none", max_retries=0)
    messages = [{"role": "user", "content": LOGPROBS_PROMPT}]
    extra = {"plain": {}, "logprobs": {"logprobs": True, "top_logprobs": TOP_LOGPROBS}}
    kinds = list(extra)
    for kind in kinds:
        v1_stream(client, model, messages, **LOGPROBS_PARAMS, **extra[kind])  # warm
    turns: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    texts: set[str] = set()
    for _, kind in orders(kinds, rounds):
        reply = v1_stream(client, model, messages, **LOGPROBS_PARAMS, **extra[kind])
        # Up to 5 alternatives a token: two that decode alike are one (docs/openai.md).
        if kind == "logprobs" and (
                not reply["logprobs"] or reply["logprobs"] > reply["completion_tokens"]
                or any(not 1 <= n <= TOP_LOGPROBS for n in reply["top_logprobs"])):
            raise RuntimeError(f"12c: logprobs missing or wrong: {reply['logprobs']} tokens, "
                               f"{reply['completion_tokens']} made, {reply['top_logprobs']}")
        texts.add(reply["text"])
        turns[kind].append(reply)
    if len(texts) != 1:
        raise RuntimeError(f"12c: greedy replies differ: {texts}")
    return {"rounds": rounds, "turns": turns, "model": model, "prompt": LOGPROBS_PROMPT,
            "params": LOGPROBS_PARAMS, "top_logprobs": TOP_LOGPROBS}


def bench_openai_surface(rig: Rig, reps: int, smoke: bool) -> dict[str, Any]:
    """Section 12: the box's part in process first (nothing else running), then a gateway of
    its own for the requests."""
    from tests.bench.openai_v1 import bench_v1_vs_chat
    from tests.bench.run import _rig, step

    trained_dir = Path(_rig("train_adapters.sh", rig.box_python, str(rig.tiny)))
    trained = json.loads((trained_dir / "trained.json").read_text())
    repeats, history, runs = (50, 3_000, 3) if smoke else (2_000, CONTEXT_TARGET_TOKENS,
                                                           max(20, 3 * reps))
    rounds, ttft_rounds = (2, 4) if smoke else (max(20, 3 * reps), 60)
    load = [os.getloadavg()[0]]  # the machine's own business, said in the report
    step("12/12 the OpenAI surface: in process on the box")
    box = run_on_box(rig, trained, repeats, history, runs)
    load.append(os.getloadavg()[0])
    gateway = rig.gateway("script", ADAPTER_DIRS=str(trained_dir), RESCAN_INTERVAL="0",
                          MAX_LOADED_ADAPTERS="4")
    try:
        response = gateway.http.post("/api/models/refresh", timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"refresh: {response.status_code} {response.text}")
        listed = [m["id"] for m in gateway.http.get("/v1/models").json()["data"]]
        ids = {name: next(i for i in listed if i.endswith(name)) for name in ("tool", "words")}
        step("12/12 the OpenAI surface: tool calls, logprobs, /v1 over /api/chat")
        tools = bench_tools_e2e(gateway, ids, trained, rounds)
        logprobs = bench_logprobs(gateway, rounds)
        chat = bench_v1_vs_chat(gateway, ttft_rounds)
    finally:
        gateway.stop()
    load.append(os.getloadavg()[0])
    return {"smoke": smoke, "box": box, "tools": tools, "logprobs": logprobs, "chat": chat,
            "load": load}


# -- the report -----------------------------------------------------------------------------------

def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _us(seconds: list[float]) -> str:
    """Median in µs with the min–max."""
    from tests.bench.run import spread

    return f"{_med(seconds) * 1e6:.1f} ({spread([v * 1e6 for v in seconds])})"


def _ms_med(seconds: list[float]) -> str:
    from tests.bench.run import spread

    return f"{_med(seconds) * 1000:.1f} ({spread([v * 1000 for v in seconds])})"


def _fine(seconds: list[float]) -> str:
    """Median with the min–max, in µs below a millisecond, else in ms."""
    if _med(seconds) < 1e-3:
        return f"{_us(seconds)} µs"
    return f"{_ms_med(seconds)} ms"


def after_raw(ttft: dict[str, list[float]], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Section 8's turns (`bench_v1_vs_chat`) split by the turn before each: the same raw
    reader over the same httpx connection (`chat` or `v1`) or not (`v1_sdk`, its own client;
    the warm-ups end with it). The order is `orders`' and the contenders' (chat, v1, v1_sdk),
    as that function runs them."""
    from tests.bench.openai_v1 import orders

    split: dict[str, dict[str, list[float]]] = {
        kind: {"after_raw": [], "after_sdk": []} for kind in ttft}
    seen = dict.fromkeys(ttft, 0)
    before = "v1_sdk"
    for _, kind in orders(list(ttft), rounds):
        key = "after_sdk" if before == "v1_sdk" else "after_raw"
        split[kind][key].append(ttft[kind][seen[kind]])
        seen[kind] += 1
        before = kind
    return split


def surface_figures(data: dict[str, Any]) -> dict[str, Any]:
    """Section 12's figures from the raw timings; times in seconds unless `_ms`."""
    from tests.bench.adapters import bootstrap_diff

    box, f = data["box"], {}
    tool = box["tool"]
    f["path_ms"] = {kind: _med(row["path_s"]) * 1000 for kind, row in tool.items()}
    f["turn_diff_ms"] = {kind: (_med(row["turn_tools_s"]) - _med(row["turn_plain_s"])) * 1000
                         for kind, row in tool.items()}
    # The larger of the two ways of measuring it, for the worse of the two replies.
    f["tool_worst_ms"] = max(*f["path_ms"].values(), *f["turn_diff_ms"].values())
    f["tool_met"] = f["tool_worst_ms"] <= TOOL_BUDGET_MS
    turns = data["tools"]["turns"]
    f["e2e_total"] = {kind: _med([t["total_s"] for t in ts]) for kind, ts in turns.items()}
    lp = data["logprobs"]["turns"]
    f["rate"] = {kind: _med([t["rate"] for t in ts]) for kind, ts in lp.items()}
    f["total"] = {kind: _med([t["total_s"] for t in ts]) for kind, ts in lp.items()}
    f["tail"] = {kind: _med([t["tail_s"] for t in ts]) for kind, ts in lp.items()}
    f["rate_ratio"] = f["rate"]["logprobs"] / f["rate"]["plain"]
    f["total_ratio"] = f["total"]["logprobs"] / f["total"]["plain"]
    f["logprobs_met"] = f["rate_ratio"] >= LOGPROBS_RATE_TARGET
    chat = data["chat"]["ttft"]
    for kind in ("v1", "v1_sdk"):
        low, high = bootstrap_diff(chat[kind], chat["chat"])
        f[f"{kind}_over_chat_ms"] = (_med(chat[kind]) - _med(chat["chat"])) * 1000
        f[f"{kind}_over_chat_ci_ms"] = (low * 1000, high * 1000)
    split = after_raw(chat, data["chat"]["rounds"])
    f["split"] = split
    low, high = bootstrap_diff(split["v1"]["after_sdk"], split["chat"]["after_sdk"])
    f["v1_over_chat_after_sdk_ms"] = (_med(split["v1"]["after_sdk"])
                                      - _med(split["chat"]["after_sdk"])) * 1000
    f["v1_over_chat_after_sdk_ci_ms"] = (low * 1000, high * 1000)
    ctx = box["context"]
    f["context_sized"] = ctx["tokens"] >= CONTEXT_TARGET_TOKENS
    fits = [row for row in ctx["rows"] if row["outcome"] == "fits"]
    f["context_ms"] = {row["case"]: _med(row["check_s"]) * 1000 for row in ctx["rows"]}
    f["context_worst_ms"] = max(_med(row["check_s"]) * 1000 for row in fits)
    f["context_met"] = f["context_sized"] and f["context_worst_ms"] <= CONTEXT_BUDGET_MS
    return f


def _goal_verdict(met: bool, judged: bool = True) -> str:
    from tests.bench.report import _verdict

    return _verdict(met) if judged else "not judged (smoke: a smaller history)"


def surface_headlines(data: dict[str, Any]) -> list[str]:
    from tests.bench.report import V1_OVER_CHAT_BUDGET_MS, _signed, _verdict

    f = surface_figures(data)
    over, (low, high) = f["v1_over_chat_ms"], f["v1_over_chat_ci_ms"]
    ctx = data["box"]["context"]
    caveat = (f" on the median, its 95% interval {_signed(low)} to {_signed(high)} ms holding "
              "the target" if low <= V1_OVER_CHAT_BUDGET_MS <= high else "")
    caveat += (f"; {_signed(f['v1_over_chat_after_sdk_ms'])} ms on the turns that do not follow "
               "another turn on the harness's connection")
    return [
        f"- Issue 25, the OpenAI surface's costs: tool-call handling adds at most "
        f"**{f['tool_worst_ms'] * 1000:.0f} µs** to a reply on the box (the marker, the gate "
        f"and the parse, on a call and on a reply in words; target at most "
        f"{TOOL_BUDGET_MS:.0f} ms: {_verdict(f['tool_met'])}); `logprobs` with 5 "
        f"alternatives streams at **{f['rate_ratio']:.2f}x** the rate without (total "
        f"{f['total_ratio']:.2f}x; target at least {LOGPROBS_RATE_TARGET:.2f}x: "
        f"{_verdict(f['logprobs_met'])}); `/v1` over `/api/chat`: **{_signed(over)} ms** to "
        f"the first token (target at most {V1_OVER_CHAT_BUDGET_MS:.0f} ms: "
        f"{_verdict(over <= V1_OVER_CHAT_BUDGET_MS)}{caveat}); the context check on a "
        f"{ctx['tokens']:,}-token history: **{f['context_worst_ms']:.1f} ms** at most where "
        f"the tokens must be counted, {f['context_ms']['bound'] * 1000:.0f} µs where the bound "
        f"proves it fits (target at most {CONTEXT_BUDGET_MS:.0f} ms: "
        f"{_goal_verdict(f['context_met'], f['context_sized'])}; section 12).",
    ]


def surface_section(data: dict[str, Any]) -> list[str]:
    from tests.bench.report import V1_OVER_CHAT_BUDGET_MS, _ms_list, _signed, _table, _verdict
    from tests.bench.run import spread

    f = surface_figures(data)
    box, tools, lp, chat = data["box"], data["tools"], data["logprobs"], data["chat"]
    tool, ctx = box["tool"], box["context"]
    over, (low, high) = f["v1_over_chat_ms"], f["v1_over_chat_ci_ms"]
    sdk, (sdk_low, sdk_high) = f["v1_sdk_over_chat_ms"], f["v1_sdk_over_chat_ci_ms"]
    goals = _table(["goal", "measured", "target", "verdict"], [
        ["tool-call handling added to a reply (12a: on the box, in process)",
         f"{f['tool_worst_ms'] * 1000:.0f} µs at most (a call: "
         f"{f['path_ms']['call'] * 1000:.0f} µs, `Turn` {f['turn_diff_ms']['call'] * 1000:+.0f}; "
         f"words: {f['path_ms']['words'] * 1000:.0f} µs, `Turn` "
         f"{f['turn_diff_ms']['words'] * 1000:+.0f})", f"at most {TOOL_BUDGET_MS:.0f} ms",
         _verdict(f["tool_met"])],
        ["`logprobs=True, top_logprobs=5`: streaming rate with ÷ without (12c)",
         f"{f['rate_ratio']:.2f}x ({f['rate']['logprobs']:.0f} against "
         f"{f['rate']['plain']:.0f} chunks/s)", f"at least {LOGPROBS_RATE_TARGET:.2f}x "
         "(at most 10% slower)", _verdict(f["logprobs_met"])],
        ["`/v1` − `/api/chat`, time to first token (12d)",
         f"{_signed(over)} ms ({_signed(low)} to {_signed(high)})",
         f"at most +{V1_OVER_CHAT_BUDGET_MS:.0f} ms",
         _verdict(over <= V1_OVER_CHAT_BUDGET_MS) + (
             " on the median (the interval holds the target)"
             if low <= V1_OVER_CHAT_BUDGET_MS <= high else "")],
        [f"the context check, a {ctx['tokens']:,}-token history (12e)",
         f"{f['context_worst_ms']:.1f} ms at most where the count runs; "
         f"{f['context_ms']['bound'] * 1000:.0f} µs by the bound alone",
         f"at most {CONTEXT_BUDGET_MS:.0f} ms",
         _goal_verdict(f["context_met"], f["context_sized"])],
    ])
    reps = box["repeats"]
    labels = {"call": "the call (the weather question)",
              "words": "words (the tool's result handed back)"}
    tool_rows = [[labels[kind], f"{len(row['chunks'])} ({sum(1 for c in row['chunks'] if c)})",
                  str(row["chars"]),
                  _us(row["marker_s"]), _us(row["gate_s"]), _us(row["parse_s"]),
                  f"**{_us(row['path_s'])}**", _us(row["turn_plain_s"]), _us(row["turn_tools_s"]),
                  f"{f['turn_diff_ms'][kind] * 1000:+.1f}",
                  f"{row['generated_s'] * 1000:.0f}"]
                 for kind, row in tool.items()]
    call = tool["call"]
    e2e = tools["turns"]
    e2e_rows = []
    for kind, label in (("tool", f"`tool` + its tool: {tools['questions']['tool']!r}"),
                        ("words", f"`words`, no tools: {tools['questions']['words']!r}")):
        ts = e2e[kind]
        first = ([t["call_at_s"] for t in ts] if kind == "tool" else [t["ttft_s"] for t in ts])
        e2e_rows.append([label, str(len(ts)), f"**{_ms_list([t['total_s'] for t in ts])}**",
                         _ms_list(first),
                         f"{_med([t['completion_tokens'] for t in ts]):.0f}",
                         f"{_med([t['prompt_tokens'] for t in ts]):.0f}"])
    lp_rows = []
    for kind, label in (("plain", "without"), ("logprobs",
                                               f"`logprobs=True, top_logprobs={TOP_LOGPROBS}`")):
        ts = lp["turns"][kind]
        lp_rows.append([label, str(len(ts)), f"**{f['rate'][kind]:.1f}** "
                        f"({spread([t['rate'] for t in ts])})",
                        _ms_list([t["total_s"] for t in ts]), _ms_list([t["ttft_s"] for t in ts]),
                        _ms_list([t["tail_s"] for t in ts]),
                        f"{_med([t['chunks'] for t in ts]):.0f}"])
    lp_rows.append(["**with ÷ without**", "", f"**{f['rate_ratio']:.2f}**",
                    f"{f['total_ratio']:.2f}", "", "", ""])
    ctx_labels = {"bound": "the bound proves it fits", "cutoff": "a 65,536-token window",
                  "near": "near the window", "over": "over the window (refused)"}
    ctx_rows = [[ctx_labels[row["case"]], f"{row['window']:,}",
                 "yes" if row["exact_counts"] else "no",
                 row["outcome"] if row["outcome"] == "fits" else f"refused (`{row['outcome']}`)",
                 _fine(row["cold_s"]),
                 f"**{_fine(row['check_s'])}**" if row["outcome"] == "fits"
                 else _fine(row["check_s"]), _fine(row["as_is_s"])]
                for row in ctx["rows"]]
    smoke = (" This is a smoke run: tiny sizes, and the figures are not judged on them."
             if data["smoke"] else "")
    lp_tail = f["tail"]["logprobs"] - f["tail"]["plain"]
    load = data["load"]
    ttft, n = chat["ttft"], {k: len(v) for k, v in chat["ttft"].items()}
    v1_caveat = ""
    split = f["split"]
    raw_after = split["chat"]["after_raw"] + split["v1"]["after_raw"]
    raw_fresh = split["chat"]["after_sdk"] + split["v1"]["after_sdk"]
    fair, (fair_low, fair_high) = (f["v1_over_chat_after_sdk_ms"],
                                   f["v1_over_chat_after_sdk_ci_ms"])
    sdk_note = (
        " By the turn before each (the order is known: `orders`' permutations in turn): a "
        "raw-reader turn right after another raw-reader turn, on the same httpx connection "
        f"of the harness, took {_ms_list(raw_after)} ms ({len(raw_after)} turns, `/api/chat` "
        "and `/v1` together); one right after an `openai` client turn, "
        f"{_ms_list(raw_fresh)} ms ({len(raw_fresh)} turns); the client's own turns, never "
        f"back to back in this order, {_ms_list(ttft['v1_sdk'])} ms. On the turns after a "
        f"client turn alone, `/v1` − `/api/chat` is {_signed(fair)} ms ({_signed(fair_low)} "
        f"to {_signed(fair_high)}; {len(split['v1']['after_sdk'])} and "
        f"{len(split['chat']['after_sdk'])} turns).")
    if low <= V1_OVER_CHAT_BUDGET_MS <= high:  # as section 8 says it
        v1_caveat = (f" on the median, but the 95% interval holds "
                     f"{V1_OVER_CHAT_BUDGET_MS:.0f} ms: this run cannot tell either way")
    with_lp = lp["turns"]["logprobs"]
    lp_entries = f"{_med([t['logprobs'] for t in with_lp]):.0f}"
    lp_tokens = f"{_med([t['completion_tokens'] for t in with_lp]):.0f}"
    lp_alts = statistics.mean(n for t in with_lp for n in t["top_logprobs"])
    return [
        "## 12. The OpenAI surface's costs (issue 25)",
        "",
        "What the OpenAI surface's newer parts cost: tool calls (the wrapper holds a reply "
        "from the template's tool-call marker on and parses it with the template's own "
        "parser), `logprobs`, the `/v1` path itself and the context check that refuses a "
        "prompt the model's window cannot hold. The tool path and the context check are "
        "measured in process on the box's Python (the wrapper's own code from remote/, the "
        "real LlamaFactory template and tokenizer), where they run and where milliseconds "
        "are not lost in the path's noise; the rest through a script-mode gateway of its own "
        "with the `openai` client, streamed: `default` (the tiny base with its adapter, as in "
        "sections 2 to 8) and the two adapters LlamaFactory trained on the tiny base "
        "(`words` and `tool`, tests/rig/train_adapters.sh), all on one loaded base. "
        "tests/bench/openai_surface.py says exactly how. The machine's load average (one "
        f"minute) was {load[0]:.2f} when the section began, {load[1]:.2f} after the box's "
        f"part and {load[2]:.2f} at its end (this run's own work included; the machine has "
        f"{os.cpu_count()} cores)." + smoke,
        "",
        goals,
        "",
        "**12a. Tool-call handling on the box.** The `tool` adapter (qwen template) loaded "
        "by `ChatModel`, its two replies to chats that offer its tool streamed once, greedy, "
        "each checked against its training: the call "
        f"({''.join(call['chunks'])!r}) and the words it answers the tool's result with "
        f"({''.join(tool['words']['chunks'])!r}). `stream_chat` yields a chunk per token, "
        "most of them empty (its streamer holds text back to a word's end), and the "
        "wrapper hands every one to the `Turn`, so all are fed here too. Then the wrapper's "
        f"code on those very chunks, {reps:,} times each, µs per reply, median (min–max): "
        "`tool_call_marker` (the "
        f"template's marker, {call['marker']!r}, found by formatting a probe call; once per "
        "reply), the chunks through a `ToolCallGate`, `tool_calls_in` (the template's "
        "`extract_tool` on the reply), and the three as the wrapper runs them on one reply. "
        "The `Turn` columns run the wrapper's whole per-reply text path on the same chunks "
        "(`emit_text` per chunk, `finish_text`, every event encoded as the wrapper's JSON "
        "line into memory), with the tool path and without; their difference is what a "
        "chat that offers tools adds, all told (a call's chunks are held, so fewer events "
        "are encoded). The last column is the reply's own generation on this box, for scale.",
        "",
        _table(["reply", "chunks (with text)", "characters", "marker (µs)", "gate (µs)",
                "parse (µs)",
                "all three, as the wrapper (µs)", "`Turn` without tools (µs)",
                "`Turn` with tools (µs)", "with − without (µs)",
                "the reply's generation (ms)"], tool_rows),
        "",
        f"Target: at most {TOOL_BUDGET_MS:.0f} ms added to a reply: {_verdict(f['tool_met'])} "
        f"({f['tool_worst_ms'] * 1000:.0f} µs at most, the larger of the two ways of "
        "measuring it on the worse reply, "
        f"{f['tool_worst_ms'] / TOOL_BUDGET_MS * 100:.1f}% of the budget). The cost grows with "
        "the reply's length (the gate looks at each chunk once, the parse at the whole text), "
        "not with the history; a real model's reply is longer than these, and its step is "
        "milliseconds, so the path stays a small share of it.",
        "",
        "**12b. Tool calls end to end, for context.** Through the gateway's `/v1` with the "
        f"`openai` client, {tools['rounds']} rounds of one turn each, alternating, after a "
        "warm-up each: `tool` asked the trained weather question "
        f"with its tool (a {tools['tool_chars']}-character schema), every reply checked to be "
        f"the trained call, with `finish_reason` `tool_calls` and no text; `words` "
        f"asked one of its questions, no tools, every reply the "
        f"trained answer. Settings {tools['params']}. Total: from just before the request to "
        "the stream's end; the call arrives whole, in one chunk, once the reply is done "
        "(the wrapper holds it and parses it at the end), so its time is the reply's; for "
        "words, the first content chunk. Not a like-for-like: the prompts differ (the "
        "tool's schema is in the `tool` prompt), so do the replies' lengths (tokens below) "
        "and the adapters' weights (both rank 16 on every linear layer, so a step costs the "
        "same); 12a is the tool path's own cost.",
        "",
        _table(["request", "turns", "total (ms)", "the call / first token at (ms)",
                "completion tokens", "prompt tokens"], e2e_rows),
        "",
        "**12c. `logprobs`.** `default`, one prompt "
        f"({lp['prompt']!r}), settings {lp['params']}, streamed with "
        f"`logprobs=True, top_logprobs={TOP_LOGPROBS}` and without, {lp['rounds']} rounds of "
        "one turn each, the order alternating round by round, after a warm-up each; both "
        "streamed the same text every time (greedy, checked), and every logprobs reply "
f"carried its `logprobs.content` ({lp_entries} entries; the usage counted {lp_tokens} "
        f"completion tokens) with 1 to {TOP_LOGPROBS} alternatives an entry "
        f"({lp_alts:.1f} on average: tokens that decode alike are one alternative, "
        "docs/openai.md; checked). Chunks/s is "
        "the rate of content chunks after the first (sections 2 to 8's definition); the "
        "last column but one is the time from the last content chunk to the chunk with the "
        "`finish_reason`. The logprobs stream with the text: `generate` keeps each step's "
        "logits as it goes (a forward hook), and the box scores a token (a `log_softmax` "
        "and a top-5 over the vocabulary) when its text goes out, in the thread that sends "
        "the text while `generate`'s own thread makes the next tokens; each chunk carries "
        "the tokens its text completed, the finish chunk any left.",
        "",
        _table(["request", "turns", "chunks/s", "total (ms)", "TTFT (ms)",
                "the last text → the finish chunk (ms)", "chunks"], lp_rows),
        "",
        f"Target: `logprobs` costs at most 10% of the streaming rate (with ÷ without at least "
        f"{LOGPROBS_RATE_TARGET:.2f}): {_verdict(f['logprobs_met'])} "
        f"({f['rate_ratio']:.2f}x the rate; the whole reply {f['total_ratio']:.2f}x the time, "
        f"{lp_tail * 1000:+.1f} ms between the last text and the finish chunk on the "
        "medians: where the logprobs are made and sent). The rate does not see that tail, "
        "since it ends at the last content chunk. On a model with a real vocabulary "
        "(some 150,000 tokens against the tiny model's 400) the per-token `log_softmax` and "
        "top-k work on far more logits, and `generate` keeps far larger ones: not measured "
        "here.",
        "",
        "**12d. `/v1` over `/api/chat`.** Section 8's measurement (`bench_v1_vs_chat` in "
        "tests/bench/openai_v1.py, called as it is) on this section's gateway and its "
        f"`default`: one prompt ({chat['prompt']!r}), settings {chat['params']}, each turn a "
        f"new conversation, {chat['rounds']} rounds of one turn per path, every order of the "
        "three in turn, after a warm-up each; time to first token at the client. The "
        "difference is of the medians, with a 95% bootstrap interval.",
        "",
        _table(["path", "turns", "TTFT at client (ms)"], [
            ["`/api/chat` (SSE `delta` events)", str(n["chat"]), _ms_list(ttft["chat"])],
            ["`/v1` (chunks, the same reader)", str(n["v1"]), _ms_list(ttft["v1"])],
            ["`/v1` through the `openai` client", str(n["v1_sdk"]), _ms_list(ttft["v1_sdk"])],
            ["**`/v1` − `/api/chat`**", "",
             f"**{_signed(over)}** ({_signed(low)} to {_signed(high)})"],
            ["`/v1` through the `openai` client − `/api/chat`", "",
             f"{_signed(sdk)} ({_signed(sdk_low)} to {_signed(sdk_high)})"],
        ]),
        "",
        f"Target: `/v1` adds at most {V1_OVER_CHAT_BUDGET_MS:.0f} ms to the first token over "
        f"`/api/chat`: {_verdict(over <= V1_OVER_CHAT_BUDGET_MS)}{v1_caveat} ({_signed(over)} "
        f"ms, the same reader; {_signed(sdk)} ms through the `openai` client)." + sdk_note,
        "",
        f"**12e. The context check.** A history of {ctx['messages']} turns (user and "
        f"assistant in turn, ending with the user's; English prose, {ctx['chars']:,} "
        f"characters), **{ctx['tokens']:,} tokens** as the check counts them (the tiny "
        "model's tokenizer, the qwen template); the reply's default length, LlamaFactory's "
        f"`max_new_tokens`, {ctx['default_new_tokens']:,}. The wrapper's "
        "`ScriptEngine._fit_context` first takes a bound that needs no tokenizer "
        "(`most_tokens`: two tokens per UTF-8 byte, plus 32 per message and 64; here "
        f"{ctx['bound']:,} tokens, {ctx['bound'] / ctx['tokens']:.1f} times the real count, "
        f"worked out in {_us(ctx['bound_s'])} µs): when that and the reply fit the window, "
        "nothing is counted. Next, a bound from each message's own tokens, each counted once "
        "and kept by the wrapper (`TokenCounts`: a chat sends its whole history every turn, "
        "so only its new message is new), plus the template's own part counted exactly with "
        "the texts left empty, plus 4 tokens a message. Only when that does not fit either "
        "does it count the prompt exactly as the engine will build it, "
        f"`template.encode_oneturn` ({_ms_med(ctx['count_s'])} ms alone on this history), "
        f"and `fit_context` refuses it or sets what the reply may use. The first check of "
        "the history on a new engine tokenizes every message (a history the wrapper has "
        "never seen: the \"first\" column, one call); the check column is the same history "
        f"checked again on that engine, a chat's next turn: median (min–max) of "
        f"{ctx['runs']} checks per window, each a whole call of the method on a new `Turn` "
        "(the default: a prompt over the window is refused); whether the exact count ran "
        "(again) is what a counting proxy around the template saw. The check column runs "
        "each check with Python's cyclic garbage collector off, as `timeit` does: the "
        "check's own work. The last column, each run alternating with the check column's, "
        "leaves the collector on, as the wrapper does: a count allocates enough for the "
        "collector to run a pass now and then, in whichever call is running then (this "
        "process tracks "
        f"{ctx['gc_objects']:,} objects, torch and transformers loaded).",
        "",
        _table(["case", "window (tokens)", "exact count ran", "outcome", "first check",
                "check", "the collector left alone"],
               ctx_rows),
        "",
        f"Target: the check costs at most {CONTEXT_BUDGET_MS:.0f} ms on a 30k-token history: "
        + _goal_verdict(f["context_met"], f["context_sized"])
        + f" ({f['context_worst_ms']:.1f} ms at most where the tokens are counted and the prompt "
        f"fits, {f['context_ms']['near']:.1f} ms near the window; "
        f"{f['context_ms']['bound'] * 1000:.0f} µs where the bound proves it fits). "
        + _context_note(f, ctx),
        "",
    ]


def _context_note(f: dict[str, Any], ctx: dict[str, Any]) -> str:
    rows = {row["case"]: row for row in ctx["rows"]}
    bound_window = rows["bound"]["window"]
    cutoff = rows["cutoff"]
    note = (f"The tiny model's tokenizer (400 tokens) makes "
            f"{ctx['chars'] / ctx['tokens']:.1f} characters a token of this prose, where a "
            "real model's makes about 4: the same token count there is about three times the "
            "text, and the count's cost there was not measured. "
            f"The bound is loose by design (a tokenizer makes at most one token per byte; "
            f"twice that for word-boundary pieces), so on this history it proves a fit only "
            f"from a {bound_window:,}-token window up")
    if cutoff["exact_counts"]:
        note += (f"; at 65,536 tokens, a common `cutoff_len`, the bound says "
                 f"{ctx['bound']:,} and the exact count runs")
    note += "."
    cold = max(_med(row["cold_s"]) for row in ctx["rows"] if row["outcome"] == "fits") * 1000
    note += (f" The first check of a history the wrapper has not seen tokenizes every message "
             f"once: {cold:.1f} ms at most here, "
             + ("over" if cold > CONTEXT_BUDGET_MS else "within")
             + " the target; a chat pays it at most once (each turn adds one message to "
             "what is counted), a `/v1` client that sends a new long history each time pays "
             "it each time.")
    if not f["context_met"] and f["context_sized"]:
        note += (" Missed where the count runs: the cost is the tokenizer's, "
                 "`encode_oneturn` tokenizing each of the history's messages, which the "
                 "engine then does again for the reply itself.")
    return note


def add_to_report(out: Path, data: dict[str, Any]) -> None:
    """Section 12 into the page report.py wrote: its headline at the end of the Headlines
    list, the section at the end (after section 11)."""
    lines = out.read_text().splitlines()
    at = lines.index("## Headlines") + 2
    while at < len(lines) and lines[at].startswith("- "):
        at += 1
    lines[at:at] = surface_headlines(data)
    text = "\n".join(lines).rstrip("\n") + "\n\n" + "\n".join(surface_section(data))
    out.write_text(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--box"]:
        _box_main()
