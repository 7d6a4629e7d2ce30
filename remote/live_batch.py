"""Chat turns answered together as they arrive (issue 26): the wrapper's side of continuous
batching. A turn joins the running StepBatch at the next step instead of waiting for the
replies in flight; each row streams its own text (IncrementalText), ends on its own (a stop
token, its budget, a stop string or Stop: Turn sets its cancel flag) and says so at once.

Stand-alone beside step_batch and text_stream; the engine builds each row (template,
tokens, sampling) and passes how to read its tool calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import wrapper_protocol as wp
from step_batch import FINISH_CANCELLED, FINISH_STOP, Row, RowSpec, StepBatch
from text_stream import IncrementalText
from wrapper_serve import ChatOutcome, Turn


@dataclass
class LiveRow:
    turn: Turn
    row: Row
    text: IncrementalText
    prompt_tokens: int
    on_done: Callable[[Turn, ChatOutcome], None]
    tool_calls: Callable[[str], Any] | None = None  # the template's parser, when tools
    first_at: float | None = None
    last_at: float | None = None
    said: list[str] = field(default_factory=list)


class LiveBatch:
    """The rows generating on one model. One thread (the wrapper's) joins and steps."""

    def __init__(self, model: Any) -> None:
        self._batch = StepBatch(model)
        self.rows: list[LiveRow] = []

    def use_model(self, model: Any) -> None:
        """The engine wrapped its model (the first adapter makes it a PeftModel): the rows
        in flight go on with the same weights under their names ("__base__" for none)."""
        self._batch.model = model

    def join(self, turn: Turn, spec: RowSpec, text: IncrementalText, prompt_tokens: int,
             on_done: Callable[[Turn, ChatOutcome], None],
             tool_calls: Callable[[str], Any] | None = None) -> None:
        """Prefill the turn alone and take its first token; it decodes with the others from
        the next step (or is done already)."""
        row = self._batch.join(spec)
        live = LiveRow(turn, row, text, prompt_tokens, on_done, tool_calls)
        self.rows.append(live)
        self._took(live)
        self._end_the_ended()

    def step(self) -> bool:
        """One token for every live row; whether any row is left."""
        for live in self.rows:
            if live.turn.cancelled.is_set():
                self._batch.cancel(live.row)
        self._end_the_ended()
        if not self.rows:
            return False
        for row in self._batch.step():
            self._took(next(live for live in self.rows if live.row is row))
        self._end_the_ended()
        return bool(self.rows)

    def fail(self) -> list[Turn]:
        """Generation broke: every row leaves; their turns, to be told."""
        turns = [live.turn for live in self.rows]
        for live in self.rows:
            self._batch.cancel(live.row)
        self.rows = []
        return turns

    def _took(self, live: LiveRow) -> None:
        """The row's newest token: its text out (a stop token shows none)."""
        now = time.monotonic()
        live.first_at = live.first_at or now
        live.last_at = now
        if live.row.finish == FINISH_STOP:
            return
        piece = live.text.add(live.row.made[-1])
        if piece and not live.turn.cancelled.is_set():
            live.turn.emit_text(piece)  # a stop string it completes sets the cancel flag
        if live.turn.cancelled.is_set():
            self._batch.cancel(live.row)

    def _end_the_ended(self) -> None:
        for live in [live for live in self.rows if live.row.ended]:
            self.rows.remove(live)
            live.on_done(live.turn, self._outcome(live))

    def _outcome(self, live: LiveRow) -> ChatOutcome:
        stopped = live.row.finish == FINISH_CANCELLED or live.turn.cancelled.is_set()
        if not stopped:
            rest = live.text.finish()
            if rest:
                live.turn.emit_text(rest)
        text = live.text.text()
        finish = {FINISH_STOP: wp.FINISH_STOP, FINISH_CANCELLED: wp.FINISH_STOPPED}.get(
            live.row.finish or "", wp.FINISH_LENGTH)
        calls = None
        if live.tool_calls is not None and not stopped:
            calls = live.tool_calls(text)
        return ChatOutcome(text, finish, len(live.row.made), live.first_at, live.last_at,
                           live.prompt_tokens, calls)
