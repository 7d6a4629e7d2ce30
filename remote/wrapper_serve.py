"""Runs a chat engine as a wrapper: one-shot (JSON argument) or persistent (``--serve``).

Both wrappers (CLI mode and script mode) share this loop so they speak exactly the same
protocol. Stdlib only: it is uploaded to the box beside them.

Threads: the main thread loads and generates (a pexpect child must be spawned by a thread
that outlives it); a reader thread takes stdin so `cancel` and `ping` are seen mid-reply.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import platform
import queue
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import IO, Any, NamedTuple, NoReturn, Protocol

import wrapper_protocol as wp

_MAX_REMEMBERED_CANCELS = 256


class ChatOutcome(NamedTuple):
    content: str
    finish_reason: str
    completion_tokens: int | None = None  # of a stopped reply: those made before the stop
    first_token_at: float | None = None  # time.monotonic() of the first and last token, where
    last_token_at: float | None = None  # the engine sees tokens (else chunk times are used)
    prompt_tokens: int | None = None  # where the engine counts tokens
    # The calls the template's tool format parsed out of the reply ({"name", "arguments":
    # a JSON text}), when the chat offered tools; None: a reply in words.
    tool_calls: list[dict[str, str]] | None = None
    # A completion's log probabilities (OpenAI's legacy shape: tokens, token_logprobs,
    # top_logprobs, text_offset), when asked for.
    logprobs: dict[str, Any] | None = None


class StopScanner:
    """Stop strings over a stream: text that could be the start of a stop string is held
    back until it is clear, so no part of a stop string is ever sent."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._longest = max(len(stop) for stop in stops)
        self._pending = ""
        self.matched = False

    def feed(self, text: str) -> str:
        """What of the stream so far can be sent now; after a match, nothing more."""
        if self.matched:
            return ""
        self._pending += text
        found = [i for i in (self._pending.find(stop) for stop in self._stops) if i >= 0]
        if found:
            self.matched = True
            out, self._pending = self._pending[:min(found)], ""
            return out
        keep = next((k for k in range(min(len(self._pending), self._longest - 1), 0, -1)
                     if any(stop.startswith(self._pending[-k:]) for stop in self._stops)), 0)
        cut = len(self._pending) - keep
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out

    def flush(self) -> str:
        """The reply ended without a stop string: what was held back goes out."""
        out, self._pending = self._pending, ""
        return out


def rate_per_s(count: int | None, first_at: float | None, last_at: float | None
               ) -> float | None:
    """The usual streaming rate: what came after the first, over the time from the first to
    the last. None below two (one token has no rate: dividing by a few microseconds gave
    8,333 tok/s for a one-chunk reply)."""
    if count is None or count < 2 or first_at is None or last_at is None or last_at <= first_at:
        return None
    return round((count - 1) / (last_at - first_at), 1)


class ToolCallGate:
    """A reply to a chat that offers tools, on its way out: text streams as it comes while
    it is plain words; from the template's tool-call marker on (`<tool_call>` for qwen,
    `Action:` for the default template) it is held until the reply ends, when it is either a
    call (never shown as text) or words after all (sent then). The tail of a chunk that
    could begin the marker waits for the next one, so a marker split between chunks is
    caught. Without a marker (a template whose calls start with the name), all is held."""

    def __init__(self, marker: str) -> None:
        self._marker = marker
        self._pending = ""
        self.holding = not marker

    def feed(self, text: str) -> str:
        """What of the reply so far can be shown now."""
        self._pending += text
        if self.holding:
            return ""
        at = self._pending.find(self._marker)
        if at >= 0:
            shown, self._pending = self._pending[:at], self._pending[at:]
            self.holding = True
            return shown
        keep = next((n for n in range(min(len(self._marker) - 1, len(self._pending)), 0, -1)
                     if self._marker.startswith(self._pending[-n:])), 0)
        shown = self._pending[:len(self._pending) - keep]
        self._pending = self._pending[len(shown):]
        return shown

    def flush(self) -> str:
        """The held text, as words (it was no call)."""
        held, self._pending = self._pending, ""
        return held


def drop_to_fit(messages: list[dict[str, str]], tokens: Callable[[list[dict[str, str]]], int],
                most: int) -> int:
    """How many messages to leave out from the start so the prompt is at most `most` tokens:
    the fewest, cutting only before a user message (a tool's result never loses its call),
    never the last. Binary search over the cuts (each count tokenizes the whole prompt: some
    20 ms for 30k tokens). If even the last turn alone does not fit, it is that cut, and
    the window check that follows refuses it."""
    if tokens(messages) <= most:
        return 0
    cuts = [i for i in range(1, len(messages)) if messages[i]["role"] == wp.ROLE_USER]
    if not cuts:
        return 0
    low, high = 0, len(cuts) - 1
    while low < high:
        middle = (low + high) // 2
        if tokens(messages[cuts[middle]:]) <= most:
            high = middle
        else:
            low = middle + 1
    return cuts[low]



class Turn:
    """One chat request being answered: its input, its cancel flag and its timing."""

    def __init__(
        self, turn_id: str, messages: list[dict[str, str]], params: dict[str, Any],
        send: Callable[[dict[str, Any]], None],
    ) -> None:
        self.id = turn_id
        self.messages = messages
        self.params = params
        self.cancelled = threading.Event()
        self._send = send
        self.started = time.monotonic()
        self.first_chunk_at: float | None = None
        self.last_chunk_at: float | None = None
        self.chunks = 0
        self.chosen = False  # protocol 2: the chat names its adapter (None: the base alone)
        self.adapter: str | None = None
        self.template: str | None = None  # None: the template the base was loaded with
        self.adapter_load_s: float | None = None  # this turn loaded its adapter first
        stops = params.get("stop")
        self._stop = StopScanner(stops) if stops else None
        self._sent: list[str] = []
        self.tools: list[dict[str, Any]] | None = None  # protocol 5: offered to the model
        self.completion: dict[str, Any] | None = None  # protocol 5: raw text to continue
        self.fit = wp.FIT_REFUSE  # protocol 6: a prompt over the window, refused or cut
        self.left_out = 0  # messages left out from the start, to fit the window
        self.context_window: int | None = None  # the model's, where the engine knows it
        self._gate: ToolCallGate | None = None
        # Chat logprobs streamed with the deltas (chat_inference's _StreamedLogprobs): given
        # how many characters of the reply have gone out, the entries of the tokens they
        # now cover that no delta carried yet.
        self.delta_logprobs: Callable[[int], list[dict[str, Any]]] | None = None
        self._sent_chars = 0

    def emit_echo(self, text: str) -> None:
        """A completion's echoed prompt: sent as it is (stop strings and tool calls are the
        reply's matter, not the prompt's)."""
        self._send_text(text)

    def hold_tool_calls(self, marker: str) -> None:
        """The engine formats this turn's tools: text from `marker` on may be a call."""
        self._gate = ToolCallGate(marker)

    @property
    def stop_matched(self) -> bool:
        """The reply made one of its stop strings: it ends there, as the model's own stop."""
        return self._stop is not None and self._stop.matched

    def emit_text(self, text: str) -> None:
        if self._stop is not None:
            text = self._stop.feed(text)
            if self._stop.matched:
                self.cancelled.set()  # the engine stops generating as for a cancel
        if self._gate is not None:
            text = self._gate.feed(text)
        self._send_text(text)

    def finish_text(self, outcome: ChatOutcome) -> tuple[str, str]:
        """The reply's content and finish reason once the engine is done: with stop
        strings or stopped, what was sent (held-back text going out now unless stopped)."""
        if self.stop_matched:
            self._flush_gate(outcome)
            return "".join(self._sent), wp.FINISH_STOP
        if self.cancelled.is_set():
            # A stopped reply is what the user saw: the engine's own decode of its tokens
            # can differ at the cut (a character split between tokens decodes to U+FFFD).
            return "".join(self._sent), wp.FINISH_STOPPED
        finish = outcome.finish_reason
        if self._stop is not None:
            tail = self._stop.flush()
            self._send_text(self._gate.feed(tail) if self._gate is not None else tail)
        if self._gate is not None:
            self._flush_gate(outcome)
            return "".join(self._sent), finish
        return ("".join(self._sent) if self._stop is not None else outcome.content), finish

    def _flush_gate(self, outcome: ChatOutcome) -> None:
        """Held text that was no tool call goes out as words; a call's text never does."""
        if self._gate is not None and not outcome.tool_calls:
            self._send_text(self._gate.flush())

    def _send_text(self, text: str) -> None:
        if not text:
            return
        self._sent.append(text)
        self._sent_chars += len(text)
        self.last_chunk_at = time.monotonic()
        if self.first_chunk_at is None:
            self.first_chunk_at = self.last_chunk_at
        self.chunks += 1
        event: dict[str, Any] = {"event": wp.EV_DELTA, "id": self.id, "text": text}
        if self.delta_logprobs is not None:
            event["logprobs"] = {"content": self.delta_logprobs(self._sent_chars)}
        self._send(event)

    def emit_info(self, code: str, message: str) -> None:
        self._send({"event": wp.EV_INFO, "id": self.id, "code": code, "message": message})

    def timing(self, load_seconds: float | None, outcome: ChatOutcome) -> dict[str, Any]:
        """The turn's timing; the rate counts only what the user got (a stopped reply's
        later tokens are not in it): tokens_per_s where the engine counts tokens, else
        chunks_per_s (CLI mode)."""
        now = time.monotonic()
        ttft = None if self.first_chunk_at is None else self.first_chunk_at - self.started
        timing: dict[str, Any] = {
            "load_seconds": load_seconds,
            "ttft_ms": None if ttft is None else round(ttft * 1000, 1),
            "total_ms": round((now - self.started) * 1000, 1),
            "chunks": self.chunks,
        }
        if self.adapter_load_s is not None:
            timing["adapter_load_s"] = round(self.adapter_load_s, 3)
        if outcome.completion_tokens is None:
            timing["chunks_per_s"] = rate_per_s(self.chunks, self.first_chunk_at,
                                                self.last_chunk_at)
        elif outcome.first_token_at is not None:
            timing["tokens_per_s"] = rate_per_s(outcome.completion_tokens,
                                                outcome.first_token_at, outcome.last_token_at)
        else:
            timing["tokens_per_s"] = rate_per_s(outcome.completion_tokens, self.first_chunk_at,
                                                self.last_chunk_at)
        return timing


class ChatEngine(Protocol):
    """What a wrapper implements: load a model once, then answer turns.

    An engine that can serve a loaded base's adapters per chat (protocol 2's "adapters"
    feature) also has `serves_adapters` (True once a base is loaded without a merged
    adapter), `load_adapter(path) -> bytes`, `unload_adapter(path)`, `base_loads` (how many
    times this process loaded base weights) and `weight_bytes` (the base's, or None); its
    `chat` then answers with `turn.adapter` (None: the base) and `turn.template`.
    """

    mode: str
    load_seconds: float | None

    def load(self, model: dict[str, Any], params: dict[str, Any], timeout_s: float) -> None: ...

    def chat(self, turn: Turn) -> ChatOutcome: ...

    def unload(self) -> None: ...


def rss_bytes() -> int | None:
    """This process's resident memory (Linux), for the memory report."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class AdapterShelf:
    """The adapters held on the loaded base, least recently used first, at most `most`:
    loading one more puts the least recently used one away first."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.most = 4
        self._held: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()  # the report is read by the stdin thread (ping)

    def use(self, path: str) -> float | None:
        """Make `path` resident and most recently used; the seconds its load took, or None
        when it was resident already."""
        with self._lock:
            if path in self._held:
                self._held.move_to_end(path)
                return None
        while len(self._held) >= self.most:
            oldest = next(iter(self._held))
            self.put_away(oldest)
        started = time.monotonic()
        try:
            size = self._engine.load_adapter(path)
        except wp.WrapperError:
            raise
        except Exception as exc:
            raise unexpected_error(exc, wp.E_LOAD_FAILED) from exc
        seconds = time.monotonic() - started
        with self._lock:
            self._held[path] = {"path": path, "bytes": size, "load_seconds": round(seconds, 3)}
        return seconds

    def put_away(self, path: str) -> bool:
        with self._lock:
            if path not in self._held:
                return False
            del self._held[path]
        self._engine.unload_adapter(path)
        return True

    def ready_now(self, path: str) -> bool:
        """Whether `path` can be used without putting another adapter away (rows in flight
        may be using any of them)."""
        with self._lock:
            return path in self._held or len(self._held) < self.most

    def forget(self) -> None:
        """The base went away (unload, or another load): its adapters went with it."""
        with self._lock:
            self._held.clear()

    def report(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._held.values()]


class Wire:
    """The protocol's output: whole lines, one writer at a time, flushed at once; every
    string in them Unicode text (`wrapper_protocol.as_text`)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, event: dict[str, Any]) -> None:
        line = wp.encode(wp.as_text(event))
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


def claim_stdout() -> IO[str]:
    """Keep the real stdout for protocol lines and send everything else printed to stderr.

    LlamaFactory's logger and stray prints write to stdout; one of them in the middle of the
    JSON stream would break the gateway's parser.
    """
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)


def log(message: str) -> None:
    print(f"lfgate-wrapper: {message}", file=sys.stderr, flush=True)


_FAILURE_SIGNS = (  # (code, lower-case text seen in LlamaFactory/transformers/peft failures)
    (wp.E_OUT_OF_MEMORY, ("out of memory", "outofmemoryerror", "cannot allocate memory")),
    (wp.E_ADAPTER_MISMATCH, ("size mismatch", "error(s) in loading state_dict for peft")),
    (wp.E_MODEL_NOT_FOUND, ("is not a local folder and is not a valid model identifier",
                            "does not appear to have a file named", "can't load tokenizer",
                            "can't load the configuration")),
)


_ENGINE_PACKAGES = {"vllm": "vllm", "sglang": '"sglang[all]"'}  # INFER_BACKEND -> pip install


def missing_engine(text: str) -> str | None:
    """The engine (vllm, sglang) a failure says is not installed. LlamaFactory 0.9.5 checks
    the package when it parses its arguments, before any weights load: "The
    'vllm>=0.4.3,<=0.11.0' distribution was not found" (also with DISABLE_VERSION_CHECK)."""
    lowered = text.lower()
    for engine in _ENGINE_PACKAGES:
        if re.search(rf"the '{engine}(?:[<>=!~][^']*)?' distribution was not found"
                     rf"|no module named '{engine}'", lowered):
            return engine
    return None


def classify_failure(text: str, default_code: str) -> wp.WrapperError:
    """Turn a failure's text (exception or CLI output) into the error a user can act on."""
    engine = missing_engine(text)
    if engine is not None:
        return wp.WrapperError(
            wp.E_ENGINE_MISSING,
            f"INFER_BACKEND={engine} needs the {engine} package in the box's Python (pip "
            f"install {_ENGINE_PACKAGES[engine]}); it is not installed. LlamaFactory said: "
            f"{text[-1500:]}")
    lowered = text.lower()
    for code, signs in _FAILURE_SIGNS:
        if any(sign in lowered for sign in signs):
            return wp.WrapperError(code, text[-2000:])
    return wp.WrapperError(default_code, text[-2000:])


def unexpected_error(exc: BaseException, code: str) -> wp.WrapperError:
    if isinstance(exc, wp.WrapperError):
        return exc
    return classify_failure(f"{type(exc).__name__}: {exc}", code)


_ALIASES: dict[str, str] = {}  # a path whose name is not UTF-8 -> the symlink given for it
_ALIAS_FOLDER: list[str] = []  # the folder of those symlinks, once there is one


def utf8_path(path: str) -> str:
    """`path` as a library that takes only UTF-8 paths can open it. A name that is not UTF-8
    comes as this Python names it (a lone surrogate for each such byte: docs/protocol.md,
    "Paths"); Python's own file calls open it exactly, but safetensors refuses it ("Path ...
    is not valid UTF-8") and a config written as UTF-8 cannot hold it. Such a path is given
    as a symlink to it, named in UTF-8, in a folder of this wrapper's own (gone when it
    exits); any other path as it is. What cannot be linked is left for the load to refuse."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    exact = os.path.abspath(os.path.expanduser(path))
    alias = _ALIASES.get(exact)
    if alias is not None and os.path.islink(alias):
        return alias
    try:
        if not os.path.exists(exact):
            return path  # not on the box (a hub id?): LlamaFactory says so
        if not _ALIAS_FOLDER:
            _ALIAS_FOLDER.append(tempfile.mkdtemp(prefix="lfgate-paths-"))
            atexit.register(shutil.rmtree, _ALIAS_FOLDER[0], True)
        name = wp.as_text(os.path.basename(exact.rstrip("/"))) or "path"
        alias = os.path.join(_ALIAS_FOLDER[0], f"{len(_ALIASES) + 1}-{name}")
        os.symlink(exact, alias)
    except (OSError, ValueError):  # ValueError: a surrogate that stands for no byte
        return path
    _ALIASES[exact] = alias
    return alias


def llamafactory_args(model: dict[str, Any]) -> dict[str, Any]:
    """A checked model spec as LlamaFactory's own arguments (ChatModel and llamafactory-cli),
    its paths ones that LlamaFactory's loaders can open (`utf8_path`)."""
    args: dict[str, Any] = {
        "model_name_or_path": utf8_path(model["base_model_path"]),
        "template": model["template"],
        "finetuning_type": model["finetuning_type"],
        "infer_backend": model["infer_backend"],
        **model["extra_args"],
    }
    adapter = model["adapter_path"]
    if adapter:
        args["adapter_name_or_path"] = adapter if wp.as_text(adapter) == adapter else ",".join(
            utf8_path(part.strip()) for part in adapter.split(","))
    return args


def engine_path(bin_dir: str, path: str) -> str:
    """PATH for LlamaFactory's SGLang engine. 0.9.5 starts SGLang's server as `python3 -m
    sglang.launch_server`, found on PATH, and a box Python run by its path (REMOTE_PYTHON)
    puts nothing there: `python3` would be the system's, without sglang. So the box Python's
    own folder goes first when it holds a python3 (a venv's or a conda env's bin/)."""
    if not os.access(os.path.join(bin_dir, "python3"), os.X_OK):
        return path
    rest = [part for part in path.split(os.pathsep) if part and part != bin_dir]
    return os.pathsep.join([bin_dir, *rest])


def _looks_local(path: str) -> bool:
    return path.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(path))


def check_adapter_path(adapter: str) -> None:
    """An adapter that looks local must hold adapter_config.json (and say where it is not)."""
    if _looks_local(adapter):
        config = os.path.join(os.path.expanduser(adapter), "adapter_config.json")
        if not os.path.isfile(config):
            raise wp.WrapperError(
                wp.E_ADAPTER_NOT_FOUND,
                f"adapter not found on the box (no adapter_config.json): {adapter}",
            )


def check_paths(model: dict[str, Any]) -> None:
    """Fail early, with the path in the message, when a local model or adapter is missing.

    A name like `Qwen/Qwen2-7B` may be a hub id the box can fetch, so only paths that look
    local are checked here; LlamaFactory reports the rest.
    """
    base = model["base_model_path"]
    if _looks_local(base) and not os.path.isdir(os.path.expanduser(base)):
        raise wp.WrapperError(wp.E_MODEL_NOT_FOUND, f"base model path not found on the box: {base}")
    for adapter in (model["adapter_path"] or "").split(","):
        adapter = adapter.strip()
        if adapter:
            check_adapter_path(adapter)


DEFAULT_BATCH_ROWS = 16
_BUILT_TURN = "_built_turn"  # in the line: a chat whose turn was built, to answer alone


class WrapperServer:
    """The persistent loop: JSON-line commands in, JSON-line events out, until stdin closes."""

    def __init__(self, engine: ChatEngine, wire: Wire, stdin: IO[bytes]) -> None:
        self._engine = engine
        self._wire = wire
        self._stdin = stdin
        self._commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._current: dict[str, Turn] = {}  # the turns being answered (a batch: several)
        self._cancelled_ids: list[str] = []
        self._closing = threading.Event()
        self._state = "unloaded"
        self._model: dict[str, Any] | None = None
        self._shelf = AdapterShelf(engine)
        self._max_rows = DEFAULT_BATCH_ROWS  # chats generating together, at most (the load's)

    @property
    def _serves_adapters(self) -> bool:
        return bool(getattr(self._engine, "serves_adapters", False))

    def held(self) -> dict[str, Any]:
        """What this process holds: the base (and how many times it loaded base weights),
        the adapters on it, their bytes, and the process's resident memory."""
        adapters = self._shelf.report()
        return {
            "base_model_path": None if self._model is None else self._model["base_model_path"],
            "merged_adapter": None if self._model is None else self._model["adapter_path"],
            "base_loads": getattr(self._engine, "base_loads", None),
            "weight_bytes": getattr(self._engine, "weight_bytes", None),
            "adapters": adapters,
            "adapter_bytes": sum(int(a["bytes"] or 0) for a in adapters),
            "max_adapters": self._shelf.most,
            "rss_bytes": rss_bytes(),
        }

    def run(self) -> None:
        offers = getattr(self._engine, "offers_adapters", hasattr(self._engine, "load_adapter"))
        features = [wp.FEATURE_ADAPTERS] if offers else []
        if offers and hasattr(self._engine, "chat_batch"):
            features.append(wp.FEATURE_BATCH)
        if getattr(self._engine, "takes_tools", False):
            features.append(wp.FEATURE_TOOLS)
        if hasattr(self._engine, "complete"):
            features.append(wp.FEATURE_COMPLETE)
        if hasattr(self._engine, "join"):
            features.append(wp.FEATURE_LIVE_BATCH)
        self._wire.send({
            "event": wp.EV_HELLO,
            "protocol": wp.PROTOCOL_VERSION,
            "wrapper": wp.WRAPPER_VERSION,
            "mode": self._engine.mode,
            "python": platform.python_version(),
            "pid": os.getpid(),
            "features": features,
        })
        threading.Thread(target=self._read_commands, name="stdin", daemon=True).start()
        waiting: deque[dict[str, Any]] = deque()  # read, not yet answered, in order
        while True:
            if getattr(self._engine, "live", False):
                self._generate_together(waiting)
                continue
            if self._closing.is_set():  # its None was taken while rows generated
                return
            command = waiting.popleft() if waiting else self._commands.get()
            if command is None or self._closing.is_set():
                return
            if self._may_join(command):
                self._admit(command)
                self._settle()
            else:
                self._dispatch(command)

    def _generate_together(self, waiting: deque[dict[str, Any]]) -> None:
        """While rows generate (issue 26): take in what came, let the chats at the head of
        the line join the batch (a command that cannot join holds the line behind it until
        the rows are done: a load, an adapter change, a chat only the solo path answers),
        then one step."""
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                break
            if command is None:
                self._closing.set()  # stop() cancelled every turn: the next step ends them
                break
            waiting.append(command)
        while waiting and not self._closing.is_set() and self._may_join(waiting[0]):
            self._admit(waiting.popleft(), waiting)
        try:
            self._engine.step()  # type: ignore[attr-defined]
        except Exception as exc:
            error = unexpected_error(exc, wp.E_GENERATION_FAILED)
            for turn in self._engine.fail_live():  # type: ignore[attr-defined]
                self._forget(turn)
                self._wire.send(error.event(turn.id))
        self._settle()

    def _settle(self) -> None:
        """Busy while rows generate; ready once none is left."""
        if not getattr(self._engine, "live", False) and self._state == "busy":
            self._state = "ready"

    def _may_join(self, command: dict[str, Any]) -> bool:
        """A chat that may generate with others, as far as its command tells (the engine
        decides the rest once its turn is built): a row free (MAX_BATCH_ROWS), an adapter
        already held or with room. A chat at the head of the line that may not join yet
        waits there, and so does everything behind it."""
        if command.get("op") != wp.OP_CHAT or self._state not in ("ready", "busy") \
                or not hasattr(self._engine, "join") \
                or getattr(self._engine, "live_rows", 0) >= self._max_rows:
            return False
        adapter = command.get("adapter")
        return not isinstance(adapter, str) or self._shelf.ready_now(adapter)

    def _admit(self, command: dict[str, Any],
               waiting: deque[dict[str, Any]] | None = None) -> None:
        """Build the chat's turn; join it to the batch if the engine can, else answer it
        alone (now, or once the rows in flight are done: first in line)."""
        try:
            turn = self._new_turn(command)
            if turn.cancelled.is_set() or not self._engine.joinable(turn):  # type: ignore
                if waiting is not None:
                    waiting.appendleft({"op": _BUILT_TURN, "turn": turn})
                else:
                    self._answer(turn)
                return
            self._state = "busy"
            self._engine.join(turn, self._row_done)  # type: ignore[attr-defined]
        except wp.WrapperError as exc:
            self._wire.send(exc.event(command.get("id")))
            self._forget_id(command.get("id"))
        except Exception as exc:
            self._wire.send(unexpected_error(exc, wp.E_GENERATION_FAILED).event(
                command.get("id")))
            self._forget_id(command.get("id"))

    def _row_done(self, turn: Turn, outcome: ChatOutcome) -> None:
        self._forget(turn)
        self._wire.send(self._done(turn, outcome))

    def _forget(self, turn: Turn) -> None:
        self._forget_id(turn.id)

    def _forget_id(self, turn_id: Any) -> None:
        with self._lock:
            self._current.pop(turn_id, None)

    def stop(self) -> None:
        """Called on EOF or a signal: abandon queued work and stop the reply in flight."""
        self._closing.set()
        with self._lock:
            for turn in self._current.values():
                turn.cancelled.set()
        self._commands.put(None)

    def _read_commands(self) -> None:
        for raw in self._stdin:
            if not raw.strip():
                continue
            try:
                command = wp.decode(raw)
                op = command.get("op")
                if op not in wp.OPS:
                    raise wp.WrapperError(wp.E_BAD_REQUEST, f"unknown op {op!r}")
            except wp.WrapperError as exc:
                self._wire.send(exc.event())
                continue
            if op == wp.OP_PING:
                self._wire.send({"event": wp.EV_PONG, "id": command.get("id"),
                                 "state": self._state, "held": self.held()})
            elif op == wp.OP_CANCEL:
                self._cancel(str(command.get("id")))
            else:
                self._commands.put(command)
        self.stop()

    def _cancel(self, turn_id: str) -> None:
        with self._lock:
            if turn_id in self._current:
                self._current[turn_id].cancelled.set()
                return
            self._cancelled_ids.append(turn_id)
            del self._cancelled_ids[:-_MAX_REMEMBERED_CANCELS]

    def _dispatch(self, command: dict[str, Any]) -> None:
        op = command["op"]
        command_id = command.get("id")
        try:
            if op == wp.OP_LOAD:
                self._load(command)
            elif op == wp.OP_CHAT:
                self._chat(command)
            elif op == _BUILT_TURN:
                self._answer(command["turn"])
            elif op == wp.OP_CHAT_BATCH:
                self._chat_batch(command)
            elif op == wp.OP_UNLOAD:
                self._engine.unload()
                self._shelf.forget()
                self._state, self._model = "unloaded", None
                self._wire.send({"event": wp.EV_UNLOADED, "id": command_id})
            elif op in (wp.OP_LOAD_ADAPTER, wp.OP_UNLOAD_ADAPTER):
                self._adapter_command(command)
        except wp.WrapperError as exc:
            self._wire.send(exc.event(command_id))
        except Exception as exc:
            code = wp.E_LOAD_FAILED if op == wp.OP_LOAD else wp.E_GENERATION_FAILED
            self._wire.send(unexpected_error(exc, code).event(command_id))

    def _load(self, command: dict[str, Any]) -> None:
        model = wp.check_model(command.get("model"))
        params = wp.check_params(command.get("params"))
        timeout_s = float(command.get("timeout_s") or 600)
        most = command.get("max_adapters", 4)
        if not isinstance(most, int) or isinstance(most, bool) or most < 1:
            raise wp.WrapperError(wp.E_BAD_REQUEST, "max_adapters must be an integer >= 1")
        rows = command.get("max_batch_rows", DEFAULT_BATCH_ROWS)
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
            raise wp.WrapperError(wp.E_BAD_REQUEST, "max_batch_rows must be an integer >= 1")
        self._max_rows = rows
        self._state = "loading"
        self._shelf.forget()
        self._shelf.most = most
        self._wire.send({"event": wp.EV_LOADING, "id": command.get("id"), "model": model})
        try:
            self._engine.load(model, params, timeout_s)
        except BaseException:
            self._state, self._model = "unloaded", None
            raise
        self._state, self._model = "ready", model
        self._wire.send({
            "event": wp.EV_READY,
            "id": command.get("id"),
            "load_seconds": round(self._engine.load_seconds or 0.0, 3),
            "model": model,
            "held": self.held(),
        })

    def _adapter_command(self, command: dict[str, Any]) -> None:
        path = command.get("path")
        if not isinstance(path, str) or not path.strip():
            raise wp.WrapperError(wp.E_BAD_REQUEST, "path must be the adapter's folder")
        if self._state not in ("ready", "busy"):
            raise wp.WrapperError(wp.E_NOT_LOADED, "load a base model first")
        if not self._serves_adapters:
            raise wp.WrapperError(wp.E_NOT_SUPPORTED,
                                  "this wrapper cannot put adapters on its loaded model")
        if command["op"] == wp.OP_LOAD_ADAPTER:
            seconds = self._shelf.use(path)
            self._wire.send({"event": wp.EV_ADAPTER_LOADED, "id": command.get("id"),
                             "path": path, "load_seconds": None if seconds is None
                             else round(seconds, 3), "held": self.held()})
        else:
            self._shelf.put_away(path)
            self._wire.send({"event": wp.EV_ADAPTER_UNLOADED, "id": command.get("id"),
                             "path": path, "held": self.held()})

    def _choose(self, turn: Turn, command: dict[str, Any]) -> None:
        """Protocol 2: the chat names its adapter (or the base) and maybe its template."""
        chosen, adapter, template = wp.check_adapter_choice(command)
        if not chosen:
            return
        loaded = self._model or {}
        as_loaded = adapter == loaded.get("adapter_path") and template in (
            None, loaded.get("template"))
        if not self._serves_adapters and not as_loaded:
            serves = loaded.get("adapter_path") or "the base alone"
            raise wp.WrapperError(
                wp.E_NOT_SUPPORTED, f"this wrapper serves {serves} as loaded; it cannot answer "
                "with another adapter or template")
        turn.chosen, turn.adapter, turn.template = True, adapter, template
        if adapter is not None and self._serves_adapters:
            turn.adapter_load_s = self._shelf.use(adapter)

    def _chat(self, command: dict[str, Any]) -> None:
        self._answer(self._new_turn(command))

    def _new_turn(self, command: dict[str, Any]) -> Turn:
        """A chat command's turn, checked, its adapter chosen, counted as current (a cancel
        that came first is on it)."""
        turn_id = command.get("id")
        if not isinstance(turn_id, str) or not turn_id:
            raise wp.WrapperError(wp.E_BAD_REQUEST, "chat needs a string id")
        continues = hasattr(self._engine, "continue_reply")
        turn = Turn(turn_id, wp.check_messages(command.get("messages"), may_continue=continues),
                    wp.check_params(command.get("params")), self._wire.send)
        turn.tools = wp.check_tools(command.get("tools"))
        turn.completion = wp.check_completion(command.get("completion"))
        turn.fit = wp.check_fit(command.get("fit"))
        if self._state in ("ready", "busy"):  # busy: rows generating, this one may join
            self._choose(turn, command)
        with self._lock:
            if turn_id in self._cancelled_ids:
                self._cancelled_ids.remove(turn_id)
                turn.cancelled.set()
            self._current[turn_id] = turn
        return turn

    def _answer(self, turn: Turn) -> None:
        """Answer one turn alone (the solo path)."""
        turn_id = turn.id
        try:
            if turn.cancelled.is_set():
                outcome = ChatOutcome("", wp.FINISH_STOPPED)
            elif self._state != "ready":
                raise wp.WrapperError(wp.E_NOT_LOADED, "no model is loaded")
            elif turn.completion is not None and not hasattr(self._engine, "complete"):
                raise wp.WrapperError(wp.E_NOT_SUPPORTED, "this wrapper answers conversations "
                                      "only (llamafactory-cli chat applies the template); "
                                      "script mode continues raw text")
            else:
                self._state = "busy"
                if turn.completion is not None:
                    outcome = self._engine.complete(turn)
                elif turn.messages[-1]["role"] == wp.ROLE_ASSISTANT:
                    outcome = self._engine.continue_reply(turn)
                else:
                    outcome = self._engine.chat(turn)
        finally:
            with self._lock:
                self._current.pop(turn_id, None)
            if self._state == "busy":
                self._state = "ready"
        self._wire.send(self._done(turn, outcome))

    def _done(self, turn: Turn, outcome: ChatOutcome,
              batch: dict[str, Any] | None = None) -> dict[str, Any]:
        content, finish = turn.finish_text(outcome)
        done: dict[str, Any] = {
            "event": wp.EV_DONE,
            "id": turn.id,
            "content": content,
            "finish_reason": finish,
            "timing": turn.timing(self._engine.load_seconds, outcome),
        }
        if outcome.completion_tokens is not None:
            done["usage"] = {"completion_tokens": outcome.completion_tokens,
                             **({} if outcome.prompt_tokens is None
                                else {"prompt_tokens": outcome.prompt_tokens}),
                             **({} if turn.context_window is None
                                else {"context_window": turn.context_window})}
        if turn.left_out:
            done["left_out"] = turn.left_out
        if turn.chosen:
            done["adapter"] = turn.adapter
            done["held"] = self.held()
        if batch is not None:
            done["batch"] = batch
        if outcome.tool_calls and finish != wp.FINISH_STOPPED:
            done["tool_calls"] = outcome.tool_calls
        if outcome.logprobs is not None:
            done["logprobs"] = outcome.logprobs
        return done

    def _chat_batch(self, command: dict[str, Any]) -> None:
        """Protocol 4: every row is a chat of its own (its events under its id, a cancel
        stops that row alone), answered together by one generate call. A failure before or
        during generation is every row's error."""
        rows = wp.check_batch_rows(command.get("rows"))
        params = wp.check_params(command.get("params"))
        fit = wp.check_fit(command.get("fit"))
        turns: list[Turn] = []
        try:
            if not hasattr(self._engine, "chat_batch") or not self._serves_adapters:
                raise wp.WrapperError(wp.E_NOT_SUPPORTED, "this wrapper cannot answer a batch "
                                      "(script mode on a base loaded without an adapter can)")
            if self._state != "ready":
                raise wp.WrapperError(wp.E_NOT_LOADED, "no model is loaded")
            adapters = {row.get("adapter") for row in rows} - {None}
            if len(adapters) > self._shelf.most:
                raise wp.WrapperError(wp.E_BAD_REQUEST, f"the batch needs {len(adapters)} "
                                      f"adapters at once; at most {self._shelf.most} are kept "
                                      "(MAX_LOADED_ADAPTERS)")
            for row in rows:
                turn = Turn(row["id"], wp.check_messages(row.get("messages")), params,
                            self._wire.send)
                turn.fit = fit
                self._choose(turn, {k: row[k] for k in ("adapter", "template") if k in row}
                             or {"adapter": None})
                turns.append(turn)
        except wp.WrapperError as exc:
            for row in rows:
                self._wire.send(exc.event(row["id"]))
            return
        with self._lock:
            for turn in turns:
                if turn.id in self._cancelled_ids:
                    self._cancelled_ids.remove(turn.id)
                    turn.cancelled.set()
                self._current[turn.id] = turn
        batch = {"id": command.get("id"), "rows": len(turns)}
        told: set[str] = set()

        def row_done(turn: Turn, outcome: ChatOutcome) -> None:
            """A row that ends (its stop tokens, or stopped) says so at once."""
            told.add(turn.id)
            with self._lock:
                self._current.pop(turn.id, None)
            self._wire.send(self._done(turn, outcome, batch))

        self._state = "busy"
        try:
            outcomes = self._engine.chat_batch(turns, params, row_done)
        except Exception as exc:
            error = unexpected_error(exc, wp.E_GENERATION_FAILED)
            for turn in turns:
                if turn.id not in told:
                    self._wire.send(error.event(turn.id))
            return
        finally:
            with self._lock:
                for turn in turns:
                    self._current.pop(turn.id, None)
            self._state = "ready"
        for turn, outcome in zip(turns, outcomes, strict=True):
            if turn.id not in told:
                self._wire.send(self._done(turn, outcome, batch))


ONE_SHOT_HINT = ("Pass one JSON object, quoted for your shell, e.g. "
                 """'{"base_model_path": "/models/qwen", "template": "qwen", "message": "Hi"}'"""
                 ", or `-` to read it from stdin.")


def _json_error_excerpt(text: str, error: json.JSONDecodeError) -> str:
    """The line where the JSON went wrong, with a caret under the column."""
    line = text.splitlines()[error.lineno - 1] if text.splitlines() else ""
    start = max(0, error.colno - 1 - 60)
    return f"  {line[start:start + 120]}\n  {' ' * (error.colno - 1 - start)}^"


def _one_shot_job(argument: str) -> dict[str, Any]:
    """A job typed by a person: say exactly what is wrong with it (not a protocol hint)."""
    text = sys.stdin.read() if argument == "-" else argument
    source = "stdin" if argument == "-" else "the argument"
    try:
        job = json.loads(text)
    except json.JSONDecodeError as exc:
        raise wp.WrapperError(
            wp.E_BAD_REQUEST, f"the job on {source} is not valid JSON: {exc.msg} at line "
            f"{exc.lineno}, column {exc.colno}:\n{_json_error_excerpt(text, exc)}",
            hint=ONE_SHOT_HINT) from exc
    if not isinstance(job, dict):
        raise wp.WrapperError(wp.E_BAD_REQUEST, f"the job on {source} must be a JSON object, "
                              f"not {type(job).__name__}", hint=ONE_SHOT_HINT)
    message = job.get("message")
    if not isinstance(message, str):
        raise wp.WrapperError(wp.E_BAD_REQUEST, "the job needs a string 'message'",
                              hint=ONE_SHOT_HINT)
    return job


def _unload_quietly(engine: ChatEngine) -> None:
    """Unload after a one-shot answer: a failure there (a CLI slow to die on a loaded box)
    is logged, never allowed to replace the answer or the error already made."""
    try:
        engine.unload()
    except Exception as exc:  # the one JSON object is still printed
        log(f"unloading after the one-shot job failed: {type(exc).__name__}: {exc}")


def run_once(engine: ChatEngine, argument: str, out: IO[str]) -> int:
    """The compatibility interface: one JSON job in, one JSON object out, then exit."""
    try:
        job = _one_shot_job(argument)
        model_keys = {"base_model_path", "adapter_path", "template", "finetuning_type",
                      "infer_backend", "cli_path", "extra_args"}
        model = wp.check_model({k: job[k] for k in model_keys if k in job})
        params = wp.check_params({k: job[k] for k in wp.GEN_PARAM_TYPES if k in job})
        history = job.get("history") or []
        messages = wp.check_messages([*history, {"role": "user", "content": job["message"]}])
        engine.load(model, params, float(job.get("timeout_s") or 600))
        turn = Turn("once", messages, params, lambda _event: None)
        outcome = engine.chat(turn)
    except Exception as exc:
        error = unexpected_error(exc, wp.E_GENERATION_FAILED)
        out.write(wp.encode(wp.as_text({"error": {"code": error.code, "message": error.message,
                                               "hint": error.hint}})))
        return 1
    finally:
        _unload_quietly(engine)
    out.write(wp.encode(wp.as_text({"role": "assistant",
                                 "content": turn.finish_text(outcome)[0]})))
    return 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


USAGE = """usage: {prog} '<json job>'   answer one message and print {{"role", "content"}}
       {prog} -              the same, reading the job from stdin
       {prog} --serve        JSON lines on stdin/stdout (docs/protocol.md)"""


def main(engine_factory: Callable[[], ChatEngine], argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    prog = os.path.basename(sys.argv[0])
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(USAGE.format(prog=prog), file=sys.stderr)
        return 2
    out = claim_stdout()
    try:
        engine = engine_factory()
        if args[0] != "--serve":
            return run_once(engine, args[0], out)
        signal.signal(signal.SIGTERM, _exit_on_signal)
        signal.signal(signal.SIGHUP, _exit_on_signal)
        server = WrapperServer(engine, Wire(out), sys.stdin.buffer)
        try:
            server.run()
        finally:
            try:
                server.stop()
            finally:  # the engine's child and temp files go whatever stop() met
                engine.unload()
        return 0
    finally:
        with contextlib.suppress(OSError, ValueError):  # a reader gone: nothing to flush to
            out.flush()


def run_and_exit(engine_factory: Callable[[], ChatEngine]) -> NoReturn:
    """`main`, then the end of the process with its status, without Python's finalization.

    Why: a daemon thread still inside a native call when the interpreter finalizes (the
    thread LlamaFactory starts for `generate`, finishing its last step on a busy machine) is
    ended by pthread_exit as it takes the GIL back, and unwinding torch's C++ frames that way
    aborts the process ("terminate called without an active exception", SIGABRT) after its
    answer was written: a one-shot job that succeeded exited -6. Nothing is skipped that the
    wrapper needs: main's own cleanup has run (the engine unloaded, its child ended, the
    protocol stream flushed), then the atexit callbacks run here (the paths' alias folder),
    then stderr is flushed. An exception out of main is printed as Python prints it, status
    1; SystemExit (a signal, see _exit_on_signal) keeps its code."""
    try:
        status = main(engine_factory)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:  # as the interpreter would: the traceback, then status 1
        traceback.print_exc()
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)
