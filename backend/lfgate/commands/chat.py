"""`lfgate chat`: a chat in the terminal over the HTTP API the page uses. Each reply streams
token by token; the conversation is one stored chat, as the page's are (it is in the page's
list, and `--chat ID` goes on with it); Ctrl-C stops a reply on the box as the page's Stop
does. With a prompt (an argument, or stdin that is not a terminal) it answers once and exits,
for scripts: the reply alone on stdout, notes and errors on stderr."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote

from lfgate.commands.chat_input import HOW_TO_TYPE, Dropped, read_message
from lfgate.commands.gateway_client import CommandError, GatewayClient
from lfgate.commands.prompt_interrupts import PromptInterrupts
from lfgate.commands.reply_stream import ReplyOutcome, ReplyView, follow_reply

DEFAULT_MODEL = "default"  # the page's first pick: .env's BASE_MODEL_PATH + ADAPTER_PATH
INTERRUPTED_STATUS = 130  # a one-shot reply stopped by Ctrl-C, as a shell reports SIGINT
# Control characters a model could write to take over a terminal (escape sequences that move
# the cursor, retitle the window or set the clipboard); a terminal shows them as ^X instead.
# Line feeds and tabs stay.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """Model output fit for a terminal: control characters as caret notation (^[ for ESC)."""
    def shown(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"^{chr(code ^ 0x40)}" if code < 0x80 else f"<{code:#x}>"
    return CONTROL.sub(shown, text)


@dataclass
class ChatSession:
    """One stored chat, continued message by message. Its system prompt is the chat's
    (saved on it, as the page saves one), so it holds for every turn and in the page."""

    client: GatewayClient
    model: str
    out: TextIO
    err: TextIO
    chat_id: str | None = None
    system: str | None = None  # for a chat not created yet: created with it
    params: dict[str, Any] = field(default_factory=dict)  # every turn's (-o NAME VALUE)
    _at_line_start: bool = field(default=True, init=False, repr=False)

    def send(self, text: str) -> ReplyOutcome:
        """One message and its reply, shown as it streams."""
        if self.chat_id is None and self.system:
            # The page's way: a new chat with its own settings is created first, with them.
            created = self.client.call("POST", "/api/chats",
                                       {"model": self.model, "system": self.system})
            self.chat_id = created["id"]
        body: dict[str, Any] = {"message": text, "chat_id": self.chat_id, "model": self.model}
        if self.params:
            body["params"] = self.params
        self._at_line_start = True
        try:
            outcome = follow_reply(self.client, body, ReplyView(self._text, self._note))
        finally:
            self._end_line()
        self.chat_id = outcome.chat_id or self.chat_id
        self._report(outcome)
        return outcome

    def _text(self, piece: str) -> None:
        if not piece:
            return
        self.out.write(terminal_safe(piece) if self.out.isatty() else piece)
        self.out.flush()
        self._at_line_start = piece.endswith("\n")

    def _end_line(self) -> None:
        if not self._at_line_start:
            self.out.write("\n")
            self.out.flush()
            self._at_line_start = True

    def _note(self, line: str) -> None:
        self._end_line()
        print(f"[{terminal_safe(line)}]", file=self.err, flush=True)

    def _report(self, outcome: ReplyOutcome) -> None:
        """How the reply ended, when it was not simply done."""
        if outcome.abandoned:
            self._note("no longer following the reply; it is stopping on the box")
        elif outcome.error is not None:
            error = outcome.error
            self._note(f"error {error.get('code')}: {error.get('message')}")
            if error.get("hint"):
                self._note(f"hint: {error['hint']}")
        elif outcome.finish_reason == "stopped":
            self._note("stopped")
        elif outcome.finish_reason == "length":
            self._note("cut off at max_new_tokens")
        elif outcome.finish_reason is None:
            self._note("the gateway ended the stream before the reply ended")


def open_session(client: GatewayClient, *, model: str | None, chat_id: str | None,
                 system: str | None, params: dict[str, Any], out: TextIO, err: TextIO
                 ) -> ChatSession:
    """The chat to talk in: `chat_id`'s (its model unless `model` says otherwise, its system
    prompt replaced by `system` when given) or a new one, created with the first message.
    The model is checked first, so a typo is said before anything is typed."""
    if chat_id is not None:
        chat = client.call("GET", f"/api/chats/{quote(chat_id, safe='')}")
        model = model or chat.get("model")
        if system is not None:
            client.call("PATCH", f"/api/chats/{quote(chat_id, safe='')}", {"system": system})
    model = model or DEFAULT_MODEL
    check_model(client, model)
    return ChatSession(client, model, out, err, chat_id=chat_id, system=system,
                       params=params)


def check_model(client: GatewayClient, model: str) -> dict[str, Any]:
    """The model's listing, or a CommandError naming the models there are."""
    models = client.call("GET", "/api/models")["models"]
    found = next((m for m in models if m["id"] == model), None)
    if found is None:
        ids = ", ".join(m["id"] for m in models[:12]) + (", …" if len(models) > 12 else "")
        raise CommandError(f"the gateway at {client.url} has no model {model!r}; it has: {ids} "
                           "(`lfgate models` lists them)")
    if not found.get("usable", True):
        raise CommandError(f"model {model!r} cannot be used: {'; '.join(found['problems'])}")
    return found


def one_shot(session: ChatSession, prompt: str) -> int:
    """Ask once, print the reply, exit: 0 when it came, 1 on an error, 130 when stopped."""
    if not prompt.strip():
        raise CommandError("nothing to send: the prompt is empty", status=2)
    outcome = session.send(prompt)
    if outcome.interrupted:
        return INTERRUPTED_STATUS
    return 0 if outcome.error is None and outcome.finish_reason is not None else 1


def interactive(session: ChatSession, read_line: Callable[[str], str]) -> int:
    """Prompt, send, show the reply, until Ctrl-D or Ctrl-C at the prompt. A message the
    gateway refuses (busy, too many turns, gone) is said, and the prompt comes back."""
    print(f"Chatting with {session.model} at {session.client.url}"
          + (f", in chat {session.chat_id}" if session.chat_id else "") + ".", file=session.out)
    print(HOW_TO_TYPE, file=session.out, flush=True)
    while True:
        try:
            text = read_message(read_line)
        except Dropped:
            print(file=session.out)  # past the ^C, to a fresh prompt
            continue
        except KeyboardInterrupt:
            text = None
        if text is None:
            print(file=session.out)
            break
        if not text.strip():
            continue
        try:
            session.send(text)
        except CommandError as exc:
            print(f"lfgate: {exc}", file=session.err, flush=True)
    if session.chat_id:
        print(f"Chat {session.chat_id}: go on with `lfgate chat --chat {session.chat_id}`.",
              file=session.out, flush=True)
    return 0


def chat_command(client: GatewayClient, *, model: str | None, prompt: str | None,
                 chat_id: str | None, system: str | None, params: dict[str, Any],
                 stdin: TextIO, out: TextIO, err: TextIO) -> int:
    """One-shot with a prompt (the argument, else stdin when it is not a terminal: `echo hi |
    lfgate chat`), else the interactive chat. The gateway and the model are checked first,
    so a script whose gateway is down hears that, whatever its stdin."""
    session = open_session(client, model=model, chat_id=chat_id, system=system,
                           params=params, out=out, err=err)
    if prompt is None and not stdin.isatty():
        prompt = stdin.read().rstrip("\n")
        if not prompt.strip():
            raise CommandError("nothing to send: the prompt on stdin is empty", status=2)
    if prompt is not None:
        return one_shot(session, prompt)
    with contextlib.suppress(ImportError):  # not on every platform; input() works without
        import readline  # noqa: F401  line editing, and a paste of many lines as one
    # Ctrl-C at the prompt ends the chat (KeyboardInterrupt), whatever this process inherited
    # (a script's background job starts it with SIGINT ignored) and however it is timed
    # (prompt_interrupts says why a plain handler is not enough).
    with PromptInterrupts() as prompt:
        return interactive(session, prompt.input)
