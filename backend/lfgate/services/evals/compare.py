"""Compare: one message to two to four models at once, each a slot with its own branch of
the chat's message tree (its own history), and votes on each compare turn.

Slots whose models ride on one loaded base are answered by one generate call (protocol 4's
batch, `mode` "batch"); slots on processes of their own run side by side ("parallel"); slots
that share a process that cannot batch (CLI mode, the same model twice) take turns on it
("sequential"). Every slot is a ChatTurns turn, so stop, storage and provenance are a chat's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from typing import Any, Literal

from lfgate.services.chat.recently_ended import RecentlyEnded
from lfgate.services.chat.turn_recorder import Turn
from lfgate.services.chat.turns import ChatTurns, title_from
from lfgate.services.errors import BadTurnRequest, ChatBusy, ServiceError, UnknownTurn
from lfgate.services.models.fleet_registry import FleetRegistry
from lfgate.storage.chat_store import ChatRecord, ChatStore, MessageRecord, new_id
from lfgate.storage.vote_store import COMPARE_ID_CHARS, VoteRecord, VoteStore

CompareMode = Literal["batch", "parallel", "sequential"]
MIN_SLOTS, MAX_SLOTS = 2, 4
TIE_WINNERS = ("tie", "both_bad")


class UnvotableTurn(ServiceError):
    """A stored compare turn whose replies do not say, as the gateway writes them, which
    slot and model each is (an older version imported such a chat unchecked)."""

    status_code = 400
    code = "unvotable_turn"


@dataclass
class CompareRun:
    id: str  # the compare turn's id (each slot's reply carries it in its provenance)
    chat_id: str
    mode: CompareMode
    slots: list[Turn]
    blind: bool

    @property
    def models(self) -> list[str]:
        return [turn.model for turn in self.slots]


def serving_mode(registry: FleetRegistry, models: list[str]) -> CompareMode:
    """How these models can answer one message together (see the module's docstring)."""
    slots = [registry.get(model).slot for model in models]
    if all(slot is slots[0] for slot in slots) and slots[0].shared:
        return "batch"
    if len({id(slot) for slot in slots}) == len(slots):
        return "parallel"
    return "sequential"


class Compares:
    def __init__(self, turns: ChatTurns, registry: FleetRegistry, store: ChatStore,
                 votes: VoteStore) -> None:
        self._turns = turns
        self._registry = registry
        self._store = store
        self._votes = votes
        self._running: dict[str, CompareRun] = {}
        self._ended: RecentlyEnded[CompareRun] = RecentlyEnded()  # for late readers
        self._busy: set[str] = set()  # compare chats answering now
        self._watchers: set[asyncio.Task[None]] = set()

    async def start(self, *, message: str, models: list[str], params: dict[str, Any],
                    chat_id: str | None, blind: bool) -> CompareRun:
        if not MIN_SLOTS <= len(models) <= MAX_SLOTS:
            raise BadTurnRequest(f"compare takes {MIN_SLOTS} to {MAX_SLOTS} models")
        self._turns.admit(*models)  # refused before anything is stored
        if chat_id is None:
            if blind:  # columns shuffled: the order chosen says nothing
                models = random.SystemRandom().sample(models, len(models))
            settings = {k: v for k, v in params.items() if k != "system"}
            chat = await self._store.create_chat(
                title=title_from(message), model=models[0], system=params.get("system"),
                params=settings,
                compare={"slots": [{"model": m, "leaf_id": None} for m in models],
                         "blind": blind})
        else:
            chat = await self._compare_chat(chat_id)
            columns = _columns(chat)
            if len(columns) != len(models):
                raise BadTurnRequest(f"this compare chat has {len(columns)} "
                                     f"columns; send {len(columns)} models")
            blind = chat.compare.get("blind") is True
        if chat.id in self._busy:
            raise ChatBusy(f"chat {chat.id!r} is still answering; stop it or wait")
        self._busy.add(chat.id)
        try:
            with self._turns.placing(*models):  # every slot, or none
                run = await self._open(chat, message, models, params, blind)
        except BaseException:
            self._busy.discard(chat.id)
            raise
        return run

    async def _open(self, chat: ChatRecord, message: str, models: list[str],
                    params: dict[str, Any], blind: bool) -> CompareRun:
        compare_id = new_id()
        mode = serving_mode(self._registry, models)
        params = {**chat.params, **({"system": chat.system} if chat.system else {}), **params}
        if mode == "batch" and params.get("tools"):  # a batch takes no tools (protocol 5)
            mode = "sequential"
        leaves = [slot["leaf_id"] for slot in _columns(chat)]
        turns: list[Turn] = []
        histories: list[list[dict[str, str]]] = []
        first_user: str | None = None
        for slot, (model, leaf) in enumerate(zip(models, leaves, strict=True)):
            tags = {"compare_id": compare_id, "slot": slot, "compare_mode": mode}
            if leaf is None and first_user is not None:  # a first turn: one user message
                turn, history = await self._turns.open_reply(
                    chat, model, parent_id=first_user, text=None, tags=tags)
            else:
                turn, history = await self._turns.open_reply(
                    chat, model, parent_id=leaf, text=message, tags=tags)
                if leaf is None:
                    first_user = (await self._store.get_message(
                        chat_id=chat.id, message_id=turn.id)).parent_id
            turns.append(turn)
            histories.append(history)
        await self._store.update_chat(chat_id=chat.id, active_leaf_id=turns[0].id, compare={
            "slots": [{"model": t.model, "leaf_id": t.id} for t in turns], "blind": blind})
        run = CompareRun(compare_id, chat.id, mode, turns, blind)
        self._running[compare_id] = run
        if mode == "batch":
            self._turns.launch_batch(turns, histories, params)
        else:
            for turn, history in zip(turns, histories, strict=True):
                self._turns.launch(turn, history, params)
        watcher = asyncio.create_task(self._watch(run), name=f"compare {compare_id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return run

    async def _watch(self, run: CompareRun) -> None:
        """Once every slot has ended, the chat takes messages again."""
        try:
            await asyncio.gather(*{t.task for t in run.slots if t.task is not None},
                                 return_exceptions=True)
        finally:
            self._running.pop(run.id, None)
            self._ended.add(run.id, run)
            self._busy.discard(run.chat_id)

    def find(self, compare_id: str) -> CompareRun:
        """A running compare, or one that ended in the last few minutes (its replies are
        stored: after that, read the chat)."""
        run = self._running.get(compare_id) or self._ended.get(compare_id)
        if run is None:
            raise UnknownTurn(f"no compare {compare_id!r} is running or just ended; "
                              "its replies are in its chat")
        return run

    async def close(self) -> None:
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    async def stop(self, compare_id: str) -> None:
        run = self._running.get(compare_id)
        if run is None:
            raise UnknownTurn(f"no compare {compare_id!r} is running")
        for turn in run.slots:
            if not turn.finished:
                with contextlib.suppress(UnknownTurn):  # it ended in between
                    await self._turns.stop(turn.id)

    async def _compare_chat(self, chat_id: str) -> ChatRecord:
        chat = await self._store.get_chat(chat_id=chat_id)
        if not chat.compare or not isinstance(chat.compare, dict):
            raise BadTurnRequest(f"chat {chat_id!r} is not a compare chat; use /api/chat")
        return chat

    async def vote(self, *, chat_id: str, compare_id: str, winner: str,
                   reason: str | None) -> VoteRecord:
        """A vote on one compare turn: a slot's index (the best reply), "tie" or
        "both_bad". Voting again replaces the vote. It counts as blind when the chat is
        blind and no other turn of it was voted on yet (the first vote reveals the names)."""
        chat = await self._compare_chat(chat_id)
        replies = [m for m in await self._store.messages(chat_id=chat_id)
                   if isinstance(m.provenance, dict)
                   and m.provenance.get("compare_id") == compare_id]
        if not replies:
            raise BadTurnRequest(f"chat {chat_id!r} has no compare turn {compare_id!r}")
        try:
            replies, models = _slots_of(replies, compare_id)
        except UnvotableTurn:
            if compare_id in self._running:  # a reply says its slot once it has ended
                raise BadTurnRequest("this compare turn is still answering; vote when it is "
                                     "done") from None
            raise
        if any(m.status in ("streaming",) for m in replies):
            raise BadTurnRequest("this compare turn is still answering; vote when it is done")
        allowed = [str(i) for i in range(len(replies))] + list(TIE_WINNERS)
        if winner not in allowed:
            raise BadTurnRequest(f"winner must be one of {', '.join(allowed)}")
        try:
            return await self._votes.put(
                chat_id=chat_id, compare_id=compare_id, models=models,
                reply_ids=[m.id for m in replies], winner=winner, reason=reason,
                blind=chat.compare.get("blind") is True and not any(
                    v.compare_id != compare_id
                    for v in await self._votes.of_chat(chat_id=chat_id)))
        except ValueError as exc:  # its compare id is another chat's turn too
            raise UnvotableTurn(f"this turn cannot be voted on: {exc}") from exc


def _columns(chat: ChatRecord) -> list[dict[str, Any]]:
    """A compare chat's columns ({model, leaf_id} each), refused by name where an older
    version stored them in another shape."""
    slots = chat.compare.get("slots")
    if (not isinstance(slots, list) or not MIN_SLOTS <= len(slots) <= MAX_SLOTS
            or not all(isinstance(s, dict) and isinstance(s.get("model"), str)
                       and isinstance(s.get("leaf_id"), str | None) for s in slots)):
        raise BadTurnRequest(f"chat {chat.id!r}'s compare columns are not "
                             f"{MIN_SLOTS} to {MAX_SLOTS} {{model, leaf_id}}: it cannot "
                             "take another compare message")
    return slots


def _slots_of(replies: list[MessageRecord], compare_id: str
              ) -> tuple[list[MessageRecord], list[str]]:
    """A compare turn's replies in slot order, and their models; UnvotableTurn, naming
    what is wrong, where the stored replies do not say one model per slot 0, 1, ... as the
    gateway writes them."""
    def refuse(why: str) -> UnvotableTurn:
        return UnvotableTurn(f"this turn cannot be voted on: {why}")

    if len(compare_id) > COMPARE_ID_CHARS:
        raise refuse(f"its compare id is longer than {COMPARE_ID_CHARS} characters")
    by_slot: dict[int, MessageRecord] = {}
    for reply in replies:
        slot, model = reply.provenance.get("slot"), reply.provenance.get("model")
        if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
            raise refuse(f"reply {reply.id} does not say its slot (provenance.slot is "
                         f"{_shown(slot)})")
        if not isinstance(model, str):
            raise refuse(f"reply {reply.id} does not name its model (provenance.model is "
                         f"{_shown(model)})")
        if slot in by_slot:
            raise refuse(f"replies {by_slot[slot].id} and {reply.id} both say slot {slot}")
        by_slot[slot] = reply
    if sorted(by_slot) != list(range(len(by_slot))):
        missing = min(set(range(len(by_slot) + 1)) - set(by_slot))
        raise refuse(f"slot {missing} has no reply stored with this turn")
    if not MIN_SLOTS <= len(by_slot) <= MAX_SLOTS:
        count = len(by_slot)
        raise refuse(f"it has {count} {'reply' if count == 1 else 'replies'}; a vote "
                     f"compares {MIN_SLOTS} to {MAX_SLOTS}")
    ordered = [by_slot[slot] for slot in range(len(by_slot))]
    return ordered, [m.provenance["model"] for m in ordered]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
