"""One reply as a terminal follows it: POST the turn, read its Server-Sent Events, and on
Ctrl-C stop it on the box as the page's Stop does (POST /api/chat/{turn_id}/stop), then keep
following it to its end, so the chat is free again when the prompt comes back."""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from lfgate.commands.gateway_client import CommandError, GatewayClient

END = object()  # the stream is over (after its last event, or after an error)
INTERRUPT = object()  # Ctrl-C


@dataclass
class ReplyOutcome:
    chat_id: str | None = None
    turn_id: str | None = None
    text: str = ""  # what was shown
    content: str | None = None  # the whole reply, from `done`
    finish_reason: str | None = None  # stop, length or stopped
    error: dict[str, Any] | None = None  # the `error` event's {code, message, hint}
    interrupted: bool = False  # Ctrl-C asked the box to stop it
    abandoned: bool = False  # a second Ctrl-C: no longer followed, still stopping on the box


@dataclass
class ReplyView:
    """Where a reply goes as it arrives: its text, and notes about it (info events)."""

    text: Callable[[str], None]
    note: Callable[[str], None]


@contextlib.contextmanager
def ctrl_c_as_event(events: queue.SimpleQueue[object]) -> Iterator[None]:
    """While a reply streams, Ctrl-C is an event in the main loop's queue instead of an
    exception that could land anywhere (half-way through printing, or through the stop
    request itself). SimpleQueue.put is reentrant, so a signal handler may call it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread gets signals (and may set their handlers)
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: events.put(INTERRUPT))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _read(client: GatewayClient, body: dict[str, Any], events: queue.SimpleQueue[object]
          ) -> None:
    """The reader thread: every event of the turn's stream into `events`, then END; a
    failure as the CommandError to raise in the main thread."""
    try:
        with client.events("/api/chat", body) as stream:
            for event in stream:
                events.put(event)
    except CommandError as exc:
        events.put(exc)
    except Exception as exc:  # anything else: still one line, in the main thread
        events.put(CommandError(f"the reply's stream failed: {exc!r}"))
    finally:
        events.put(END)


def _stop(client: GatewayClient, turn_id: str) -> None:
    """The page's Stop. A reply that has just ended is no longer running: nothing to stop."""
    try:
        client.call("POST", f"/api/chat/{quote(turn_id, safe='')}/stop")
    except CommandError as exc:
        if not str(exc).startswith("unknown_turn"):
            raise


def follow_reply(client: GatewayClient, body: dict[str, Any], view: ReplyView
                 ) -> ReplyOutcome:
    """Send one message (POST /api/chat `body`) and show its reply as it streams. Ctrl-C
    stops it on the box (before its id is known, as soon as it is) and it is followed to
    its `done` (finish_reason stopped); a second Ctrl-C stops following it at once."""
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    outcome = ReplyOutcome()
    reader = threading.Thread(target=_read, args=(client, body, events), daemon=True,
                              name="lfgate-reply")
    with ctrl_c_as_event(events):
        reader.start()
        while (item := events.get()) is not END:
            if item is INTERRUPT:
                if outcome.interrupted:
                    outcome.abandoned = True
                    break
                outcome.interrupted = True
                if outcome.turn_id is not None:
                    _stop(client, outcome.turn_id)
                continue
            if isinstance(item, CommandError):
                raise item
            name, data = item  # type: ignore[misc]
            if name == "meta":
                outcome.chat_id, outcome.turn_id = data.get("chat_id"), data.get("turn_id")
                if outcome.interrupted and outcome.turn_id is not None:
                    _stop(client, outcome.turn_id)
            elif name == "delta":
                outcome.text += data["text"]
                view.text(data["text"])
            elif name == "info":
                view.note(data.get("message") or data.get("code") or "")
            elif name == "done":
                outcome.content = data.get("content", outcome.text)
                outcome.finish_reason = data.get("finish_reason")
                # The whole reply is what is stored: show any of it the deltas did not.
                if outcome.content.startswith(outcome.text):
                    view.text(outcome.content[len(outcome.text):])
                    outcome.text = outcome.content
            elif name == "error":
                outcome.error = data
    return outcome
