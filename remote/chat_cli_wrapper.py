#!/usr/bin/env python3
"""CLI mode (CHAT_MODE=cli): drive the real `llamafactory-cli chat` through a pty, loaded once.

    python3 chat_cli_wrapper.py '{"base_model_path": ..., "template": ..., "message": ...}'
    python3 chat_cli_wrapper.py --serve     # JSON lines, docs/protocol.md

Runs on the box with the box's Python: stdlib plus pexpect. What the user types never
reaches a command line: the CLI's settings go in a 0600 YAML file and messages are typed
at its `User: ` prompt. docs/protocol.md lists what this mode can and cannot do.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import termios
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wrapper_protocol as wp
import wrapper_serve
from wrapper_serve import ChatOutcome, Turn

# The CLI prints the reply, then print() and input("\nUser: "); the tty turns \n into \r\n.
_PROMPT = "\r\n\r\nUser: "
_ASSISTANT = "Assistant: "
_CLEARED = "History has been removed."
_READ_SLICE_S = 0.05  # how long one read waits before we look at cancel flags and the tty
_EXIT_WAIT_S = 5.0  # how long `exit` may take before the CLI is killed
# Longest message typed at the prompt. readline reads in raw mode, so the pty's 4096-byte
# canonical line limit does not apply; this bound keeps readline's per-key work reasonable.
MAX_MESSAGE_CHARS = 100_000
_CLI_FLAGS = {  # our parameter -> llamafactory-cli argument
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "max_new_tokens": "max_new_tokens",
    "repetition_penalty": "repetition_penalty",
    "system": "default_system",
    "enable_thinking": "enable_thinking",
}
_CLI_COMMANDS = ("exit", "clear")
_WORD_JOINER = "\u200b"  # a zero-width space: not whitespace to str.strip(), so not a command
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_LOG_LINE = re.compile(
    r"^\[(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] [^\n]*\n", re.M)
_LOG_LINE_START = re.compile(r"\[[A-Z]*(?:\|[\d\- :]*(?:\][^\n]*)?)?")
_PARTIAL_ESCAPE = re.compile(r"\x1b[\[\]]?[0-?]*[ -/]*$")
_OUTPUT_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_INPUT_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean(text: str) -> str:
    """Reply text as the user should see it: no tty line endings, escapes or log lines."""
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    return _OUTPUT_CONTROLS.sub("", _LOG_LINE.sub("", text))


def _held_back(raw: str) -> int:
    """How many trailing characters may still turn into the prompt, an escape or a log line."""
    hold = 0
    for size in range(min(len(raw), len(_PROMPT)), 0, -1):
        if _PROMPT.startswith(raw[-size:]):
            hold = size
            break
    escape = _PARTIAL_ESCAPE.search(raw[-32:])
    if escape:
        hold = max(hold, len(raw[-32:]) - escape.start())
    body = raw[: len(raw) - hold]
    line_start = body.rfind("\n") + 1
    if body.startswith("[", line_start) and _LOG_LINE_START.fullmatch(body, line_start):
        hold = len(raw) - line_start
    return hold


class ReplyStream:
    """Raw pty output of one reply in, clean text out, with a possible prompt held back."""

    def __init__(self) -> None:
        self._raw = ""

    def feed(self, chunk: str) -> str:
        self._raw += chunk
        cut = len(self._raw) - _held_back(self._raw)
        ready, self._raw = self._raw[:cut], self._raw[cut:]
        return _clean(ready)

    def ends_with_prompt(self) -> bool:
        return self._raw.endswith(_PROMPT)

    def finish(self) -> str:
        raw = self._raw[: -len(_PROMPT)] if self.ends_with_prompt() else self._raw
        self._raw = ""
        return _clean(raw)


def prepare_message(text: str) -> tuple[str, list[str]]:
    """Make a message safe to type at the prompt; returns it and what had to change.

    Control characters are removed (they are readline commands). A message that is exactly a
    CLI command (`exit`, `clear`) gets a zero-width space so the CLI answers it instead.
    """
    notes = []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    cleaned = _INPUT_CONTROLS.sub("", text)
    if cleaned != text:
        notes.append("control characters were removed")
    if cleaned.strip() in _CLI_COMMANDS:
        cleaned += _WORD_JOINER
        notes.append(f"a zero-width space was added so the CLI does not run {cleaned.strip()!r}"
                     " as its own command")
    if len(cleaned) > MAX_MESSAGE_CHARS:
        raise wp.WrapperError(
            wp.E_MESSAGE_TOO_LONG,
            f"message is {len(cleaned)} characters; CLI mode types at most "
            f"{MAX_MESSAGE_CHARS} characters at the llamafactory-cli prompt",
        )
    return cleaned, notes


def _typed(text: str) -> str:
    """The keystrokes for a message: readline's quoted-insert (^V) makes newlines and tabs
    literal instead of accept-line and completion; a carriage return sends the line."""
    return text.replace("\n", "\x16\n").replace("\t", "\x16\t") + "\r"


def find_cli(configured: str | None) -> str:
    if configured:
        path = os.path.expanduser(configured)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise wp.WrapperError(wp.E_CLI_NOT_FOUND,
                              f"llamafactory-cli not found or not executable at {configured}")
    beside_python = os.path.join(os.path.dirname(sys.executable), "llamafactory-cli")
    if os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which("llamafactory-cli")
    if found:
        return found
    raise wp.WrapperError(wp.E_CLI_NOT_FOUND,
                          f"llamafactory-cli is not beside {sys.executable} nor on PATH")


def _die_with_parent() -> None:
    """In the CLI's process: get SIGTERM if the wrapper dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _close(child: Any) -> None:
    """End the CLI for good. pexpect's close(force=True) gives a killed child 0.1 s to be
    reaped and raises if it is not: on a loaded box that happened, the exception skipped the
    clean-up after it and a temp dir was left behind. So a child that outlives close() is
    killed and waited for here, and this never raises."""
    import pexpect

    try:
        child.close(force=True)
        return
    except (pexpect.ExceptionPexpect, OSError):
        pass
    with contextlib.suppress(OSError):
        os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + _EXIT_WAIT_S
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:  # reaped meanwhile (by close() itself)
            return
        if pid:
            return
        time.sleep(0.01)


class CliEngine:
    """One `llamafactory-cli chat` process, restarted only when its start-up flags change."""

    mode = "cli"

    def __init__(self) -> None:
        self.load_seconds: float | None = None
        self._child: Any = None
        self._model: dict[str, Any] | None = None
        self._flags: dict[str, Any] = {}
        self._timeout_s = 600.0
        self._held: list[dict[str, str]] | None = []  # the history the CLI holds (None: unknown)
        self._draining = False  # a stopped reply is still running to its end
        self._dir = ""  # a private temp dir for the CLI's settings and stderr, while it runs

    # -- lifecycle -------------------------------------------------------------------------

    def load(self, model: dict[str, Any], params: dict[str, Any], timeout_s: float) -> None:
        try:
            import pexpect  # noqa: F401
        except ImportError as exc:
            raise wp.WrapperError(wp.E_PEXPECT_MISSING,
                                  f"cannot import pexpect in {sys.executable}") from exc
        self.unload()
        model = {**model, "cli_path": find_cli(model["cli_path"])}
        wrapper_serve.check_paths(model)
        self._model, self._timeout_s = model, timeout_s
        self._start(self._flags_for(params))

    def _flags_for(self, params: dict[str, Any]) -> dict[str, Any]:
        """The CLI's start-up flags for a turn's params. Only the turn's own: the params a load
        came with only spare the first turn a restart, they are no defaults for later turns."""
        return {_CLI_FLAGS[key]: value for key, value in params.items() if key in _CLI_FLAGS}

    def _start(self, flags: dict[str, Any]) -> None:
        import pexpect

        assert self._model is not None
        model = self._model
        config = {**wrapper_serve.llamafactory_args(model), **flags}
        if not os.path.isdir(self._dir):
            self._dir = tempfile.mkdtemp(prefix="lfgate-cli-")
        # LlamaFactory 0.9.5 reads .yaml with OmegaConf (its .json branch is broken); JSON is
        # YAML, and OmegaConf leaves ${...} in strings alone unless resolved.
        config_path = os.path.join(self._dir, "chat.yaml")
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(config, handle, ensure_ascii=False)
        stderr_path = os.path.join(self._dir, "stderr.log")
        env = {
            **os.environ,
            "LLAMAFACTORY_VERBOSITY": "WARNING",
            "TRANSFORMERS_VERBOSITY": "error",
            "TERM": "dumb",
            "LC_ALL": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONUNBUFFERED": "1",
        }
        if model["infer_backend"] == "sglang":  # the CLI's own bin/ is its Python's
            env["PATH"] = wrapper_serve.engine_path(os.path.dirname(model["cli_path"]),
                                                    env.get("PATH", ""))
        started = time.monotonic()
        # stderr goes to a file so warnings and progress bars never mix into replies. The
        # shell only redirects: every value is a positional parameter, nothing is parsed.
        self._child = pexpect.spawn(
            "/bin/sh", ["-c", 'exec "$0" chat "$1" 2>"$2"', model["cli_path"], config_path,
                        stderr_path],
            env=env, encoding="utf-8", codec_errors="replace", echo=False,
            dimensions=(24, 1000), preexec_fn=_die_with_parent,
        )
        self._flags = flags
        self._held = []
        self._draining = False
        try:
            self._read_to_prompt(started + self._timeout_s, what="the CLI to load the model")
        except wp.WrapperError:
            self._kill()
            raise
        finally:
            os.unlink(config_path)  # it may hold the system prompt; the CLI has read it
        self.load_seconds = time.monotonic() - started

    def _restart(self, flags: dict[str, Any], turn: Turn, reason: str) -> None:
        self._kill()
        started = time.monotonic()
        self._start(flags)
        turn.emit_info(wp.INFO_CLI_RESTARTED,
                       f"{reason}: restarted llamafactory-cli ({time.monotonic() - started:.1f} s)")

    def unload(self) -> None:
        child, self._child = self._child, None
        if child is None:
            self._remove_dir()
            return
        if child.isalive() and not self._draining and self._at_prompt(child):
            import pexpect

            with contextlib.suppress(pexpect.ExceptionPexpect, OSError):
                child.send("exit\r")
                child.expect(pexpect.EOF, timeout=_EXIT_WAIT_S)
        try:
            _close(child)
        finally:
            self._remove_dir()

    def _remove_dir(self) -> None:
        """The temp dir goes with the CLI (one was left in /tmp per wrapper before)."""
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _kill(self) -> None:
        self._draining = False
        child, self._child = self._child, None
        if child is not None:
            _close(child)

    # -- turns -----------------------------------------------------------------------------

    def chat(self, turn: Turn) -> ChatOutcome:
        if self._model is None:
            raise wp.WrapperError(wp.E_NOT_LOADED, "no model is loaded")
        text, notes = prepare_message(turn.messages[-1]["content"])
        flags = self._flags_for(turn.params)
        if self._child is None or not self._child.isalive():
            self._restart(flags, turn, "llamafactory-cli was not running")
        elif flags != self._flags:
            changed = sorted(k for k in {*flags, *self._flags}
                             if flags.get(k) != self._flags.get(k))
            self._restart(flags, turn, f"generation settings changed ({', '.join(changed)})")
        if self._draining:
            self._drain()
        self._match_history(turn)
        for note in notes:
            turn.emit_info(wp.INFO_MESSAGE_ADJUSTED, note)
        if "seed" in turn.params:
            turn.emit_info(wp.INFO_PARAM_IGNORED, "seed: llamafactory-cli chat takes no seed, "
                           "so this reply is sampled as usual (script mode honours it)")
        if turn.tools:
            turn.emit_info(wp.INFO_PARAM_IGNORED, "tools: llamafactory-cli chat takes no "
                           "tools, so the model answered without them (script mode formats "
                           "them with the template and returns its calls)")
        self._child.send(_typed(text))
        content, finish = self._stream_reply(turn)
        self._held = [*turn.messages, {"role": "assistant", "content": content}]
        if finish == wp.FINISH_STOPPED:
            self._held = None  # the CLI keeps the whole reply; we returned part of it
        return ChatOutcome(content, finish)

    def _match_history(self, turn: Turn) -> None:
        """The CLI keeps its own history; make it the history this turn continues."""
        wanted = turn.messages[:-1]
        if self._held == wanted:
            return
        if self._held != []:
            self._child.send("clear\r")
            self._read_to_prompt(time.monotonic() + self._timeout_s, what="`clear`")
            self._held = []
        if wanted:
            turn.emit_info(
                wp.INFO_CONTEXT_RESET,
                "llamafactory-cli held a different history, so it was cleared: the model sees "
                "only this message (CLI mode cannot replay earlier turns; script mode can)",
            )

    def _stream_reply(self, turn: Turn) -> tuple[str, str]:
        pending = self._read_to_marker(_ASSISTANT)
        stream, parts = ReplyStream(), []
        last_output = time.monotonic()
        while True:
            chunk, pending = pending or self._read_some(), ""
            if chunk:
                last_output = time.monotonic()
                text = stream.feed(chunk)
                if text and not turn.cancelled.is_set():
                    parts.append(text)
                    turn.emit_text(text)
            if stream.ends_with_prompt() and self._at_prompt(self._child):
                tail = stream.finish()
                if tail and not turn.cancelled.is_set():
                    parts.append(tail)
                    turn.emit_text(tail)
                finish = wp.FINISH_STOPPED if turn.cancelled.is_set() else wp.FINISH_STOP
                return "".join(parts), finish
            if turn.cancelled.is_set():
                # llamafactory-cli cannot interrupt a reply (Ctrl-C ends the whole CLI), so
                # the stream ends here and the reply runs out before the next turn.
                self._draining = True
                return "".join(parts), wp.FINISH_STOPPED
            if time.monotonic() - last_output > self._timeout_s:
                self._kill()
                raise wp.WrapperError(
                    wp.E_TIMEOUT, f"llamafactory-cli printed nothing for {self._timeout_s:.0f} s")

    def _drain(self) -> None:
        try:
            self._read_to_prompt(time.monotonic() + self._timeout_s, what="the stopped reply")
        finally:
            self._draining = False

    # -- reading the pty -------------------------------------------------------------------

    def _read_some(self) -> str:
        import pexpect

        try:
            return self._child.read_nonblocking(65536, timeout=_READ_SLICE_S)
        except pexpect.TIMEOUT:
            return ""
        except pexpect.EOF as exc:
            raise self._exited() from exc

    @staticmethod
    def _at_prompt(child: Any) -> bool:
        """readline switches the tty to raw mode only while it waits for a line, so a
        `User: ` that the model itself printed is never taken for the prompt."""
        try:
            return not termios.tcgetattr(child.child_fd)[3] & termios.ICANON
        except (termios.error, OSError):
            return False

    def _read_to_prompt(self, deadline: float, what: str) -> str:
        seen = ""
        while not (seen.endswith(_PROMPT) and self._at_prompt(self._child)):
            if time.monotonic() > deadline:
                self._kill()
                raise wp.WrapperError(wp.E_TIMEOUT, f"timed out waiting for {what}")
            seen = (seen + self._read_some())[-65536:]
        return seen

    def _read_to_marker(self, marker: str) -> str:
        """Read up to `marker`; returns what came after it in the same read: a reply's start,
        when the CLI wrote it together with `Assistant: ` (it was lost before)."""
        seen, deadline = "", time.monotonic() + self._timeout_s
        while marker not in seen:
            if time.monotonic() > deadline:
                self._kill()
                raise wp.WrapperError(wp.E_TIMEOUT, f"llamafactory-cli did not print {marker!r}")
            seen = seen[-len(marker):] + self._read_some()
        return seen[seen.index(marker) + len(marker):]

    def _exited(self) -> wp.WrapperError:
        """The CLI is gone: say how (killed by a signal, or its exit status) and why, from
        the end of its output and of its stderr."""
        child, self._child = self._child, None
        output, how = "", "exited"
        if child is not None:
            output = _clean(child.before or "") if isinstance(child.before, str) else ""
            _close(child)
            how = _how_it_ended(child)
        stderr_path = os.path.join(self._dir, "stderr.log")
        with contextlib.suppress(OSError), open(stderr_path, encoding="utf-8",
                                                errors="replace") as handle:
            output += "\n" + handle.read()[-4000:]
        self._draining = False
        lines = [line for line in output.strip().splitlines() if line.strip()]
        summary = "\n".join(lines[-12:]) or "no output"
        error = wrapper_serve.classify_failure(
            f"llamafactory-cli {how}: {summary}",
            wp.E_LOAD_FAILED if self.load_seconds is None else wp.E_CLI_EXITED)
        if how == "was killed by SIGKILL":
            error.hint += (" SIGKILL is what the kernel's out-of-memory killer sends (`dmesg | "
                           "tail` on the box says whether it did).")
        return error


def _how_it_ended(child: Any) -> str:
    """A closed pexpect child's end, as the message says it."""
    if child.signalstatus:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(child.signalstatus).name}"
        return f"was killed by signal {child.signalstatus}"
    if child.exitstatus is not None:
        return f"exited with status {child.exitstatus}"
    return "exited"



if __name__ == "__main__":
    wrapper_serve.run_and_exit(CliEngine)
