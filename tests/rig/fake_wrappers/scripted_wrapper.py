#!/usr/bin/env python3
"""A scripted box for UI tests: the real wrapper protocol (remote/wrapper_serve.py's loop),
with replies chosen by trigger words instead of a model, so a browser test knows exactly
what will stream and can run in a second instead of minutes.

    CHAT_SCRIPT_PATH=.../scripted_wrapper.py REMOTE_PYTHON=<test venv python> SSH_HOST=

Replies, by what the last user message contains (case-insensitive, first match wins):
  "stall" nothing at all until stopped (a box that hangs: CHAT_TIMEOUT's case)
  "error" some text, then an `error` event (generation_failed, "scripted failure: ...")
  "long"  LONG_CHUNKS chunks, for stopping mid-reply
  "xss"   HTML and javascript: links a page must render inert
  "think" a <think>…</think> block, then a short answer
  "code"  Markdown: heading, **bold**, list, a ```python block, $inline$ and $$display$$ math
  "unstorable" text holding a NUL and an unpaired surrogate (a byte-level tokenizer has a token
          for NUL; PostgreSQL cannot store one)
  "notice" an `info` event first (cli_restarted, as CLI mode sends one), then the echo
  "weather" with tools offered (script mode): TOOL_LEAD in words, then a call of the first
          tool in qwen's tool format (<tool_call>...</tool_call>), parsed as a call
  a tool's result (the last message an observation): "The tool said: <its content>" after a
          function turn (its call), "The tool said, uncalled: ..." otherwise
"overflow" in the last message: context_length_exceeded (OVERFLOW_MESSAGE), as the real
script engine refuses a prompt its window cannot hold. The model's window is SCRIPTED_WINDOW
words, or its load's cutoff_len: a page chat's earliest turns are left out to fit it.
A chat whose template contains "needs-tokens" fails with template_unusable (a template whose
special tokens the base's tokenizer lacks, as the real script engine finds it).
  else    "Echo #<user turn> from <base> + <adapter or 'no adapter'>: <message>"

Environment: LFGATE_SCRIPTED_LOAD_S (load time, default 0.3), LFGATE_SCRIPTED_DELAY_S (per
chunk, default 0.02), CHAT_MODE (the mode its hello reports, default "script"; the gateway
refuses a wrapper whose mode differs from its own), LFGATE_SCRIPTED_PACE_FILE (optional: a
file read before every chunk; while it holds a number, that is the wait before each chunk
instead of LFGATE_SCRIPTED_DELAY_S, for replies under way too. A test paces a reply while it
checks it mid-stream, then lets the rest come at once; missing or empty: the delay above).
A base path containing "broken" fails to load with model_not_found naming the path (an
adapter path with "broken": adapter_not_found). Paths are otherwise never checked, so any
strings do.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any


def _remote_folder() -> str:
    """Where wrapper_serve.py is: the installed lfgate.remote (the files the gateway itself
    speaks with), else the repository's remote/ beside tests/."""
    try:
        spec = importlib.util.find_spec("lfgate.remote")
    except ImportError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return next(iter(spec.submodule_search_locations))
    return str(Path(__file__).resolve().parents[3] / "remote")


sys.path.insert(0, _remote_folder())
# After the path is known, as on the box (where these files sit beside the wrapper).
import wrapper_protocol as wp  # noqa: E402
import wrapper_serve  # noqa: E402
from wrapper_serve import ChatOutcome, Turn, drop_to_fit  # noqa: E402

CHUNK_SIZES = (3, 5, 8, 4, 6, 7)  # cycled: small uneven pieces, as a tokenizer gives
LONG_CHUNKS = 400
ERROR_AFTER_CHUNKS = 6
ERROR_MESSAGE = "scripted failure: the box ran out of memory"
NOTICE_TRIGGER = "notice"
STALL_TRIGGER = "stall"
STALL_MOST_S = 600.0
PACE_FILE_ENV = "LFGATE_SCRIPTED_PACE_FILE"
NOTICE_MESSAGE = "generation settings changed (temperature): restarted llamafactory-cli (0.3 s)"
UNUSABLE_TEMPLATE = "needs-tokens"
CONTINUED = " and so the story goes on."  # a continued assistant message's reply
# The scripted model's window, in words (a word of the prompt counts as a token): its load's
# cutoff_len (CUTOFF_LEN), else this. A page chat's earliest turns are left out to fit it
# (protocol 6's fit), anything else over it is refused, as by the real wrapper.
SCRIPTED_WINDOW = 32768
OVERFLOW_TRIGGER = "overflow"
OVERFLOW_MESSAGE = ("this model's context window is 512 tokens, but the request needs 37776 "
                    "(37776 in the messages)")
TOOL_TRIGGER = "weather"
TOOL_LEAD = "Let me look that up. "
TOOL_MARKER = "<tool_call>"
TOOL_ARGUMENTS = {"city": "Paris"}
TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)

CODE_REPLY = """## Scripted code sample

Here is a paragraph with **bold text** and `inline code`.

- first item
- second item
- third item

```python
def greet(name: str) -> str:
    return f"Hello, {name}!"


print(greet("world"))
```

Inline math: $E=mc^2$.

$$\\int_0^1 x\\,dx$$
"""

THINK_REPLY = ("<think>Let me reason about this step by step.</think>\n\n"
               "The answer is 42.")

XSS_REPLY = """Here are things a page must show as text or make inert:

<img src=x onerror="window.__xss=1">

<script>window.__xss=2</script>

[click me](javascript:window.__xss=3)

<a href="javascript:window.__xss=4">raw link</a>

End of the xss sample.
"""

ERROR_LEAD = "Starting to answer, and then the box will fail..."
UNSTORABLE_REPLY = "before\x00after, then \ud800 alone, and the end."


def chunks_of(text: str) -> list[str]:
    """The reply cut into the deterministic small pieces it streams as."""
    pieces, start, index = [], 0, 0
    while start < len(text):
        size = CHUNK_SIZES[index % len(CHUNK_SIZES)]
        pieces.append(text[start:start + size])
        start, index = start + size, index + 1
    return pieces


def long_chunks() -> list[str]:
    sentences = (f"This is sentence {n} of a very long scripted reply. " for n in range(1, 1000))
    text, pieces = "", []
    for sentence in sentences:
        text += sentence
        pieces = chunks_of(text)
        if len(pieces) >= LONG_CHUNKS:
            break
    return pieces[:LONG_CHUNKS]


def model_label(model: dict[str, Any], turn: Turn | None = None) -> str:
    """The basenames of the base and adapter(s), as the echo names them: `tiny-base + lora`.
    A turn that names its adapter (protocol 2) is answered by that one."""
    def name(path: str) -> str:
        return os.path.basename(path.strip().rstrip("/")) or path.strip()

    chosen = model.get("adapter_path") or ""
    if turn is not None and turn.chosen:
        chosen = turn.adapter or ""
    adapters = [name(a) for a in chosen.split(",") if a.strip()]
    return f"{name(model['base_model_path'])} + {','.join(adapters) or 'no adapter'}"


def _env_seconds(key: str, default: float) -> float:
    """A duration from the environment; unset or empty means the default."""
    raw = os.environ.get(key, "").strip()
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        wrapper_serve.log(f"{key}={raw!r} is not a number of seconds; using {default}")
        return default


SCRIPTED_WEIGHT_BYTES = 1_000_000  # what the scripted base reports holding
SCRIPTED_ADAPTER_BYTES = 8_192


class ScriptedEngine:
    """A ChatEngine with no model: loads by sleeping, answers from the script above. In
    script mode it serves adapters per chat as the real script engine does (protocol 2)."""

    def __init__(self) -> None:
        self.mode = os.environ.get("CHAT_MODE", "script").strip().lower() or "script"
        self.load_seconds: float | None = None
        self._load_s = _env_seconds("LFGATE_SCRIPTED_LOAD_S", 0.3)
        self._delay_s = _env_seconds("LFGATE_SCRIPTED_DELAY_S", 0.02)
        self._pace_file = os.environ.get(PACE_FILE_ENV, "").strip()
        self._model: dict[str, Any] | None = None
        self.base_loads = 0
        self.weight_bytes: int | None = None
        self._adapters: set[str] = set()
        self.offers_adapters = self.mode == "script"  # a CLI-mode box has none per chat
        self.takes_tools = self.mode == "script"  # as the real engines: CLI mode has none

    def pace(self) -> float:
        """Seconds to wait before the next chunk: the pace file's number, if it holds one
        now, else LFGATE_SCRIPTED_DELAY_S."""
        if self._pace_file:
            try:
                raw = Path(self._pace_file).read_text().strip()
            except OSError:  # not written (yet): the delay
                raw = ""
            if raw:
                try:
                    return max(0.0, float(raw))
                except ValueError:
                    wrapper_serve.log(f"{self._pace_file} holds {raw!r}, not seconds")
        return self._delay_s

    @property
    def serves_adapters(self) -> bool:
        return (self.offers_adapters and self._model is not None
                and not self._model.get("adapter_path"))

    def load_adapter(self, path: str) -> int:
        time.sleep(self._load_s / 4)
        if "broken" in path:
            raise wp.WrapperError(
                wp.E_ADAPTER_NOT_FOUND,
                f"adapter not found on the box (no adapter_config.json): {path}")
        self._adapters.add(path)
        return SCRIPTED_ADAPTER_BYTES

    def unload_adapter(self, path: str) -> None:
        self._adapters.discard(path)

    def load(self, model: dict[str, Any], params: dict[str, Any], timeout_s: float) -> None:
        # No wrapper_serve.check_paths: the gateway's test settings use made-up paths.
        self._model = None
        started = time.monotonic()
        wrapper_serve.log(f"scripted load of {model['base_model_path']} "
                          f"({self._load_s:.2f} s)")
        time.sleep(min(self._load_s, timeout_s))
        base = model["base_model_path"]
        if "broken" in base:
            raise wp.WrapperError(wp.E_MODEL_NOT_FOUND,
                                  f"base model path not found on the box: {base}")
        adapter = model.get("adapter_path") or ""
        if "broken" in adapter:
            raise wp.WrapperError(
                wp.E_ADAPTER_NOT_FOUND,
                f"adapter not found on the box (no adapter_config.json): {adapter}")
        self._model = model
        self._adapters = set()
        self.base_loads += 1
        self.weight_bytes = SCRIPTED_WEIGHT_BYTES
        self.load_seconds = time.monotonic() - started

    def script(self, messages: list[dict[str, str]], turn: Turn | None = None
               ) -> tuple[list[str], bool]:
        """The reply's chunks for this history, and whether it ends in a box error."""
        assert self._model is not None
        message = messages[-1]["content"]
        lowered = message.lower()
        if "error" in lowered:
            return chunks_of(ERROR_LEAD)[:ERROR_AFTER_CHUNKS], True
        if "long" in lowered:
            return long_chunks(), False
        for trigger, reply in (("xss", XSS_REPLY), ("think", THINK_REPLY),
                               ("code", CODE_REPLY), ("unstorable", UNSTORABLE_REPLY)):
            if trigger in lowered:
                return chunks_of(reply), False
        if messages[-1]["role"] == wp.ROLE_OBSERVATION:
            # Says whether the call before it came as the template's function turn.
            called = len(messages) > 1 and messages[-2]["role"] == wp.ROLE_FUNCTION
            return chunks_of(f"The tool said{'' if called else ', uncalled'}: {message}"), False
        if turn is not None and turn.tools and self.takes_tools and TOOL_TRIGGER in lowered:
            call = {"name": turn.tools[0]["name"], "arguments": TOOL_ARGUMENTS}
            return chunks_of(f"{TOOL_LEAD}{TOOL_MARKER}\n{json.dumps(call)}\n</tool_call>"), \
                False
        turn_number = sum(1 for m in messages if m["role"] == "user")
        label = model_label(self._model, turn)
        return chunks_of(f"Echo #{turn_number} from {label}: {message}"), False

    def chat(self, turn: Turn) -> ChatOutcome:
        if self._model is None:
            raise wp.WrapperError(wp.E_NOT_LOADED, "no model is loaded")
        params = turn.params
        limit = params.get("max_new_tokens")  # one chunk counts as one token
        if OVERFLOW_TRIGGER in turn.messages[-1]["content"].lower():
            raise wp.WrapperError(wp.E_CONTEXT_TOO_LONG, OVERFLOW_MESSAGE)
        self.fit_window(turn)
        if turn.template and UNUSABLE_TEMPLATE in turn.template:
            raise wp.WrapperError(wp.E_TEMPLATE_UNUSABLE, f"template {turn.template!r} needs "
                                  "special tokens the loaded base's tokenizer does not have")
        if STALL_TRIGGER in turn.messages[-1]["content"].lower():
            turn.cancelled.wait(STALL_MOST_S)
            return ChatOutcome("", wp.FINISH_STOPPED, 0)
        pieces, fails = self.script(turn.messages, turn)
        if NOTICE_TRIGGER in turn.messages[-1]["content"].lower():
            turn.emit_info(wp.INFO_CLI_RESTARTED, NOTICE_MESSAGE)
        if turn.tools and self.takes_tools:
            turn.hold_tool_calls(TOOL_MARKER)
        elif turn.tools:
            turn.emit_info(wp.INFO_PARAM_IGNORED, "tools: llamafactory-cli chat takes no tools")
        # One chunk counts as one token, one word of the prompt as one prompt token.
        prompt = sum(len(m["content"].split()) for m in turn.messages) + len(
            str(params.get("system", "")).split())
        sent: list[str] = []
        for piece in pieces:
            if turn.cancelled.wait(self.pace()):
                return ChatOutcome("".join(sent), wp.FINISH_STOPPED, len(sent),
                                   prompt_tokens=prompt)
            if limit is not None and len(sent) >= limit:
                return ChatOutcome("".join(sent), wp.FINISH_LENGTH, len(sent),
                                   prompt_tokens=prompt)
            turn.emit_text(piece)
            sent.append(piece)
        if fails:
            raise wp.WrapperError(wp.E_GENERATION_FAILED, ERROR_MESSAGE)
        calls = None
        if turn.tools and self.takes_tools:
            calls = [{"name": found["name"], "arguments": json.dumps(found["arguments"])}
                     for found in map(json.loads, TOOL_CALL.findall("".join(sent)))] or None
        return ChatOutcome("".join(sent), wp.FINISH_STOP, len(sent), prompt_tokens=prompt,
                           tool_calls=calls)

    def continue_reply(self, turn: Turn) -> ChatOutcome:
        """The assistant's last words continued: CONTINUED, at the usual pace."""
        sent = []
        for piece in chunks_of(CONTINUED):
            if turn.cancelled.wait(self.pace()):
                return ChatOutcome("".join(sent), wp.FINISH_STOPPED, len(sent))
            turn.emit_text(piece)
            sent.append(piece)
        return ChatOutcome("".join(sent), wp.FINISH_STOP, len(sent))

    def fit_window(self, turn: Turn) -> None:
        """The real wrapper's window check, counting words: the earliest turns left out
        (fit drop_oldest) until the prompt and the reply's room fit; a prompt over the
        window is refused."""
        window = int((self._model.get("extra_args") or {}).get("cutoff_len")
                     or SCRIPTED_WINDOW)
        turn.context_window = window
        system = len(str(turn.params.get("system", "")).split())

        def words(messages: list[dict[str, str]]) -> int:
            return system + sum(len(m["content"].split()) for m in messages)

        room = turn.params.get("max_new_tokens") or window // 4
        if turn.fit == wp.FIT_DROP_OLDEST:
            turn.left_out = drop_to_fit(turn.messages, words, window - room)
            turn.messages = turn.messages[turn.left_out:]
        # The prompt alone (the real wrapper holds the asked-for reply too; the tests here
        # send any max_new_tokens to the double).
        if words(turn.messages) >= window:
            raise wp.WrapperError(wp.E_CONTEXT_TOO_LONG, f"this model's context window is "
                                  f"{window} tokens, but the request needs "
                                  f"{words(turn.messages)} in the messages")

    def chat_batch(self, turns: list[Turn], params: dict[str, Any],
                   on_done: Any = None) -> list[ChatOutcome]:
        """Protocol 4: the rows' scripted replies, a chunk of each in turn per step (as one
        generate call streams them), each row stoppable alone."""
        if self._model is None:
            raise wp.WrapperError(wp.E_NOT_LOADED, "no model is loaded")
        if any("error" in turn.messages[-1]["content"].lower() for turn in turns):
            raise wp.WrapperError(wp.E_GENERATION_FAILED, ERROR_MESSAGE)
        limit = params.get("max_new_tokens")
        for turn in turns:
            self.fit_window(turn)
        scripts = [self.script(turn.messages, turn)[0] for turn in turns]
        sent: list[list[str]] = [[] for _ in turns]
        ended = [False] * len(turns)
        step = 0
        while not all(ended):
            time.sleep(self.pace())
            for index, (turn, pieces) in enumerate(zip(turns, scripts, strict=True)):
                if ended[index]:
                    continue
                if turn.cancelled.is_set() or step >= len(pieces) or (
                        limit is not None and step >= limit):
                    ended[index] = True
                    if turn.cancelled.is_set() and on_done is not None:  # told at once
                        on_done(turn, ChatOutcome("".join(sent[index]), wp.FINISH_STOPPED,
                                                  len(sent[index])))
                    continue
                turn.emit_text(pieces[step])
                sent[index].append(pieces[step])
            step += 1
        outcomes = []
        for turn, pieces, done in zip(turns, scripts, sent, strict=True):
            finish = (wp.FINISH_STOPPED if turn.cancelled.is_set() else wp.FINISH_LENGTH
                      if len(done) < len(pieces) else wp.FINISH_STOP)
            prompt = sum(len(m["content"].split()) for m in turn.messages)
            outcomes.append(ChatOutcome("".join(done), finish, len(done),
                                        prompt_tokens=prompt))
        return outcomes

    def unload(self) -> None:
        self._model = None


if __name__ == "__main__":
    sys.exit(wrapper_serve.main(ScriptedEngine))
