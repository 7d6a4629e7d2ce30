"""Chat turns: one user message in, the model's reply out as a stream of API events.

Each turn runs as its own task writing its events to a log (services/chat/turn_log.py), so the
reply does not depend on the HTTP request that asked for it: a page that goes away and comes
back follows the same log, and only a stop request cancels it on the box.
The user's message is stored before anything goes to the box, and the reply is saved as it
grows (at least once a second), so a gateway that dies mid-reply loses at most a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

from lfgate.box.errors import BoxError
from lfgate.config import Settings
from lfgate.remote import wrapper_protocol as wp
from lfgate.services.chat.api_conversations import ApiConversations
from lfgate.services.chat.recently_ended import RecentlyEnded
from lfgate.services.chat.turn_log import TurnLog
from lfgate.services.chat.turn_recorder import Turn, TurnRecorder
from lfgate.services.errors import BadTurnRequest, ChatBusy, TooManyTurns, UnknownTurn
from lfgate.services.models.fleet_registry import FleetRegistry
from lfgate.storage.chat_store import ChatRecord, ChatStore, MessageRecord, new_id
from lfgate.storage.errors import UnknownChat, UnknownMessage

TITLE_CHARS = 60
logger = logging.getLogger("lfgate")
DEFAULT_TITLE = "New chat"  # a chat made without a title; its first message renames it


def title_from(message: str) -> str:
    """A chat's title from its first message: its first line, cut at a word."""
    line = " ".join(message.strip().split("\n", 1)[0].split())
    if len(line) <= TITLE_CHARS:
        return line or DEFAULT_TITLE
    return line[:TITLE_CHARS].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


def model_history(branch: list[MessageRecord]) -> list[dict[str, str]]:
    """A branch as the wrapper takes it: a reply that made tool calls is the template's
    `function` turn (its calls, as stored in its provenance), a message sent as a tool's
    result its `observation` turn (protocol 5); the rest as stored. A provenance of another
    shape (an import, an older gateway) is words."""
    turns = []
    for message in branch:
        facts = message.provenance if isinstance(message.provenance, dict) else {}
        calls = stored_calls(facts.get("tool_calls")) if message.role == "assistant" else None
        if calls:
            turns.append({"role": wp.ROLE_FUNCTION, "content": json.dumps(calls,
                                                                          ensure_ascii=False)})
        elif message.role == "user" and facts.get("tool_result") is True:
            turns.append({"role": wp.ROLE_OBSERVATION, "content": message.content})
        else:
            turns.append({"role": message.role, "content": message.content})
    return turns


def stored_calls(value: Any) -> list[dict[str, Any]] | None:
    """A reply's stored tool calls ({"name", "arguments": JSON text}) as a function turn
    lists them (arguments as an object where they parse), or None."""
    if not isinstance(value, list) or not value:
        return None
    calls = []
    for call in value:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        arguments = call.get("arguments", "{}")
        with contextlib.suppress(ValueError, TypeError):
            arguments = json.loads(arguments)
        calls.append({"name": call["name"], "arguments": arguments})
    return calls


def meta_of(turn: Turn) -> dict[str, Any]:
    """A turn's first event; a compare slot's names its compare, so a client that follows
    the slot alone (after a reload) can follow the whole compare instead."""
    compare = {k: turn.tags[k] for k in ("compare_id", "slot") if "compare_id" in turn.tags}
    return {"chat_id": turn.chat_id, "turn_id": turn.id, "model": turn.model, **compare}


def stored_end(reply: MessageRecord) -> TurnLog:
    """A stored reply's end as the events its stream ended with."""
    log = TurnLog()
    facts = reply.provenance if isinstance(reply.provenance, dict) else {}
    log.append("meta", {"chat_id": reply.chat_id, "turn_id": reply.id,
                        "model": facts.get("model"), "replayed": True})
    if reply.status in ("complete", "stopped"):
        log.append("done", {"content": reply.content,
                            "finish_reason": facts.get("finish_reason")
                            or ("stopped" if reply.status == "stopped" else "stop"),
                            **{k: facts[k] for k in ("timing", "usage") if k in facts}})
    else:
        error = facts.get("error")
        if not isinstance(error, dict):
            error = {"code": "interrupted", "hint": "",
                     "message": "the gateway stopped before this reply finished; what "
                                "arrived is kept"}
        log.append("error", {**error, "content": reply.content})
    log.close()
    return log


class ChatTurns:
    def __init__(self, registry: FleetRegistry, store: ChatStore, settings: Settings) -> None:
        self._registry = registry
        self._store = store
        self._settings = settings
        self._conversations = ApiConversations(store)
        self._recorder = TurnRecorder(registry, store)
        self._active: dict[str, Turn] = {}
        self._ended: RecentlyEnded[Turn] = RecentlyEnded()  # stored turns, for late readers
        self._busy: set[str] = set()
        self._placing: Counter[str] = Counter()  # per box: turns admitted, being set up

    def admit(self, *models: str) -> None:
        """Refuse at once, before anything is stored: an unknown or broken model, or more
        replies at once on a box than that box's MAX_CONCURRENT_TURNS allows (a 429, never a
        hang). Counted: the turns running and those being set up (see `placing`)."""
        wanted: Counter[str] = Counter()
        boxes = {}
        for model in models:
            self._registry.usable(model)
            box = self._registry.of(model)
            boxes[box.settings.box_name] = box
            wanted[box.settings.box_name] += 1
        for name, count in wanted.items():
            box = boxes[name]
            most = box.settings.max_concurrent_turns
            running = sum(box.owns(t.model) for t in self._active.values())
            if running + self._placing[name] + count > most:
                raise TooManyTurns(f"{most} replies are being generated or queued on box "
                                   f"{name!r} (MAX_CONCURRENT_TURNS); retry in a moment")

    @contextlib.contextmanager
    def placing(self, *models: str) -> Iterator[None]:
        """Admit these models' turns and hold their places while they are set up (stored,
        then launched): setting up awaits storage, and a burst of requests must not all pass
        `admit` before any of them runs. Launched turns count as running from then on."""
        self.admit(*models)
        names = [self._registry.of(model).settings.box_name for model in models]
        self._placing.update(names)
        try:
            yield
        finally:
            self._placing.subtract(names)

    def find(self, turn_id: str) -> Turn | None:
        """A running turn, or a stored one that ended in the last few minutes."""
        return self._active.get(turn_id) or self._ended.get(turn_id)

    async def reattach(self, turn_id: str) -> tuple[TurnLog, bool]:
        """The log a client that lost its stream follows again, and whether it is the turn's
        own (its event ids go on from where the client left off). A reply that ended longer
        ago, or before a restart, comes back as its stored end: a closed log of `meta` and
        `done` (the whole text) or `error`."""
        turn = self.find(turn_id)
        if turn is not None:
            return turn.log, True
        try:
            reply = await self._store.find_message(message_id=turn_id)
        except UnknownMessage:
            raise UnknownTurn(f"no reply {turn_id!r}: neither running nor stored") from None
        if reply.role != "assistant":
            raise UnknownTurn(f"message {turn_id!r} is not a reply")
        return stored_end(reply), False

    async def start(self, *, message: str, chat_id: str | None, model: str,
                    params: dict[str, Any], tool_result: bool = False) -> Turn:
        """A new message at the end of the chat's active branch (a new chat without an id).
        `tool_result`: the message is the result of the tool calls the reply before it made
        (the model sees it as the template's observation turn)."""
        with self.placing(model):
            if chat_id is None:
                chat = await self._store.create_chat(title=title_from(message), model=model)
            else:
                chat = await self._store.get_chat(chat_id=chat_id)
            return await self._begin(chat, model, params, parent_id=chat.active_leaf_id,
                                     new_text=message, retitle=True, tool_result=tool_result)

    async def edit(self, *, chat_id: str, message_id: str, content: str, model: str,
                   params: dict[str, Any]) -> Turn:
        """A new version of a user message, as its sibling, answered afresh."""
        with self.placing(model):
            chat = await self._store.get_chat(chat_id=chat_id)
            target = await self._store.get_message(chat_id=chat_id, message_id=message_id)
            if target.role != "user":
                raise BadTurnRequest("only a user message can be edited; regenerate a reply")
            return await self._begin(chat, model, params, parent_id=target.parent_id,
                                     new_text=content)

    async def regenerate(self, *, chat_id: str, message_id: str, model: str,
                         params: dict[str, Any]) -> Turn:
        """Another reply to the same user message, as a sibling of `message_id`."""
        with self.placing(model):
            chat = await self._store.get_chat(chat_id=chat_id)
            target = await self._store.get_message(chat_id=chat_id, message_id=message_id)
            if target.role != "assistant" or target.parent_id is None:
                raise BadTurnRequest("only a reply can be regenerated; edit a user message")
            return await self._begin(chat, model, params, parent_id=target.parent_id,
                                     new_text=None)

    async def start_messages(self, *, messages: list[dict[str, str]], model: str,
                             params: dict[str, Any], store: bool,
                             tools: list[dict[str, Any]] | None = None, n: int = 1
                             ) -> list[Turn]:
        """A whole conversation sent at once (the OpenAI API): answered as sent, `n` times
        (OpenAI's `n`; each reply a choice). With `store` (and one reply), kept as a chat:
        one whose history ends with a reply this gateway gave is continued, anything else
        becomes a new chat holding the history it came with."""
        if n > 1:
            return self._start_choices(messages, model, params, tools, n)
        with self.placing(model):
            spec = self._registry.get(model).spec
            if not store:
                turn = Turn(id=new_id(), chat_id=None, model=model, spec=spec,
                            exclusive=False, tools=tools)
            else:
                first = next((m["content"] for m in messages if m["role"] == "user"),
                             messages[-1]["content"])
                chat, path = await self._conversations.place(
                    model=model, system=params.get("system"), title=title_from(first),
                    messages=messages)
                _, reply = await self._add_exchange(chat.id, path, messages[-1]["content"])
                turn = Turn(id=reply.id, chat_id=chat.id, model=model, spec=spec,
                            exclusive=False, thread=messages, tools=tools)
            self.launch(turn, messages, params)
        return [turn]

    def _start_choices(self, messages: list[dict[str, str]], model: str,
                       params: dict[str, Any], tools: list[dict[str, Any]] | None, n: int
                       ) -> list[Turn]:
        """n replies to one conversation, not stored: rows of one generate call where the
        model rides on a shared base (each row samples on its own), else n turns. A batch
        takes no tools, continues no reply and gives no log probabilities (protocol 5): a
        request that needs them is n turns."""
        with self.placing(*[model] * n):
            entry = self._registry.get(model)
            started = [Turn(id=new_id(), chat_id=None, model=model, spec=entry.spec,
                            exclusive=False, tools=tools) for _ in range(n)]
            if entry.slot.shared and not tools and "logprobs" not in params \
                    and messages[-1]["role"] != wp.ROLE_ASSISTANT:
                self.launch_batch(started, [messages] * n, params)
            else:
                for turn in started:
                    self.launch(turn, messages, params)
        return started

    async def start_completion(self, *, model: str, completion: dict[str, Any],
                               params: dict[str, Any]) -> Turn:
        """Raw text continued, no template (/v1/completions): never stored as a chat (it is
        no conversation). `completion` is protocol 5's {prompt, echo, logprobs}."""
        with self.placing(model):
            spec = self._registry.get(model).spec
            turn = Turn(id=new_id(), chat_id=None, model=model, spec=spec, exclusive=False,
                        completion=completion)
            # The protocol's messages stay valid; the wrapper continues the prompt instead.
            self.launch(turn, [{"role": "user", "content": ""}], params)
        return turn

    def unstored_turn(self, model: str, tags: dict[str, Any]) -> Turn:
        """A turn kept by its caller rather than in a chat (a prompt set's cell), run by
        `launch` or `launch_batch`; its caller holds its place (`placing`) until then."""
        return Turn(id=new_id(), chat_id=None, model=model, spec=self._registry.get(model).spec,
                    exclusive=False, tags=tags)

    def provenance(self, turn: Turn, params: dict[str, Any]) -> dict[str, Any]:
        return self._recorder.provenance(turn, params)

    def launch(self, turn: Turn, messages: list[dict[str, str]],
                params: dict[str, Any]) -> None:
        # A chat's tools (its saved parameters) are the turn's, not generation parameters.
        params = dict(params)
        turn.tools = turn.tools or params.pop("tools", None) or None
        params.pop("tools", None)
        self._active[turn.id] = turn
        turn.task = asyncio.create_task(self._run(turn, messages, params),
                                        name=f"turn {turn.id}")

    async def open_reply(self, chat: ChatRecord, model: str, *, parent_id: str | None,
                         text: str | None, tags: dict[str, Any]) -> tuple[Turn, list[dict]]:
        """Store a reply to come (for a compare slot): under a new user message `text` at
        `parent_id`, or, with no text, answering the user message `parent_id`. The turn is
        not run yet (`launch` or `launch_batch`); its history is returned with it. Its
        caller holds its place (`placing`) until it is launched."""
        path = await self._store.path_to(chat_id=chat.id, message_id=parent_id)
        path, reply = await self._add_exchange(chat.id, path, text)
        turn = Turn(id=reply.id, chat_id=chat.id, model=model,
                    spec=self._registry.get(model).spec, exclusive=False, tags=tags)
        return turn, model_history(path)

    def launch_batch(self, turns: list[Turn], histories: list[list[dict[str, str]]],
                     params: dict[str, Any]) -> None:
        """Turns whose models share one loaded base, answered by one generate call; with
        tools (a chat's parameters), one by one (a batch takes none, protocol 5)."""
        if params.get("tools"):
            for turn, history in zip(turns, histories, strict=True):
                self.launch(turn, history, params)
            return
        task = asyncio.create_task(self._run_batch(turns, histories, params),
                                   name=f"batch {turns[0].id}")
        for turn in turns:
            self._active[turn.id] = turn
            turn.task = task

    async def _begin(self, chat: ChatRecord, model: str, params: dict[str, Any], *,
                     parent_id: str | None, new_text: str | None,
                     retitle: bool = False, tool_result: bool = False) -> Turn:
        """Store the user's side (a new message under `parent_id`, or, with no new text,
        the existing user message `parent_id`), then an empty reply, then run the turn.

        With `retitle`, an empty chat still called DEFAULT_TITLE (made by POST /api/chats
        without a title) is named after this first message; done once the chat is claimed,
        so a message refused as busy never renames it.
        """
        if chat.id in self._busy:
            raise ChatBusy(f"chat {chat.id!r} is still answering; stop it or wait")
        self._busy.add(chat.id)
        try:
            path = await self._store.path_to(chat_id=chat.id, message_id=parent_id)
            if new_text is not None and retitle and not path \
                    and chat.title == DEFAULT_TITLE \
                    and not await self._store.messages(chat_id=chat.id):
                await self._store.update_chat(chat_id=chat.id, title=title_from(new_text))
            path, reply = await self._add_exchange(chat.id, path, new_text,
                                                   tool_result=tool_result)
        except BaseException:
            self._busy.discard(chat.id)
            raise
        # The chat's saved settings apply; what this request sets wins. Its tools are the
        # turn's, not generation parameters.
        params = {**chat.params, **({"system": chat.system} if chat.system else {}), **params}
        turn = Turn(id=reply.id, chat_id=chat.id, model=model,
                    spec=self._registry.get(model).spec)
        self.launch(turn, model_history(path), params)
        return turn

    async def _add_exchange(self, chat_id: str, path: list[MessageRecord], text: str | None,
                            *, tool_result: bool = False
                            ) -> tuple[list[MessageRecord], MessageRecord]:
        """Under the branch `path`, the user's new message `text` (None: `path` already ends
        with the user message to answer; `tool_result`: it is a tool's result), then the
        empty reply to come. Returns the branch up to that user message, and the reply."""
        if text is not None:
            path = [*path, await self._store.add_message(
                chat_id=chat_id, parent_id=path[-1].id if path else None, role="user",
                content=text, provenance={"tool_result": True} if tool_result else None)]
        reply = await self._store.add_message(chat_id=chat_id, parent_id=path[-1].id,
                                              role="assistant", content="", status="streaming")
        return path, reply

    async def stop(self, turn_id: str) -> None:
        turn = self._active.get(turn_id)
        if turn is None:
            raise UnknownTurn(f"no reply {turn_id!r} is running")
        if turn.stop_requested:
            return
        turn.stop_requested = True
        # Stored as stopped at once, with what arrived: a page reloaded now must not find it
        # `streaming`. The box's `done` then writes the final text.
        await self._recorder.save(turn, content="".join(turn.text), status="stopped")
        if turn.session is not None:
            await turn.session.cancel(turn.id)

    async def delete_chat(self, *, chat_id: str) -> None:
        """Delete a chat; a reply of it still streaming is stopped on the box first (its
        stream ends with `chat_deleted`: nothing of a deleted chat is kept)."""
        await self._store.delete_chat(chat_id=chat_id)
        for turn in [t for t in self._active.values() if t.chat_id == chat_id]:
            turn.stop_requested = True
            if turn.session is not None:
                with contextlib.suppress(Exception):
                    await turn.session.cancel(turn.id)

    async def close(self) -> None:
        tasks = [turn.task for turn in self._active.values() if turn.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, turn: Turn, messages: list[dict[str, str]],
                   params: dict[str, Any]) -> None:
        turn.emit("meta", meta_of(turn))
        final = False
        try:
            try:
                served = await self._registry.ready_session(turn.model, params)
                turn.session = served.session
                turn.opened.set()
                if turn.stop_requested:
                    await self._recorder.finish(turn, wp.FINISH_STOPPED, params, 0)
                else:
                    served.slot.active_turns += 1
                    try:
                        await self._relay(turn, messages, params, served.choice)
                    finally:
                        served.slot.active_turns -= 1
            except BoxError as exc:
                await self._recorder.fail(turn, exc.as_dict(), params)
            final = True
        except Exception as exc:  # not the box: the chat deleted under it, a bug
            await self._failed(turn, exc, params)
            final = True
        finally:
            await self._end(turn, final)

    async def _failed(self, turn: Turn, exc: Exception, params: dict[str, Any]) -> None:
        """A reply that failed for another reason than the box: its chat deleted while it
        streamed, the database refusing a save, a bug. Said in the log, ended with an error
        event (never a stream that just stops), and stored as far as it still can be: an
        exception here never leaves the turn's task unread."""
        if isinstance(exc, UnknownMessage | UnknownChat):
            logger.warning("reply %s: its chat was deleted while it streamed; not kept",
                           turn.id)
            error = {"code": "chat_deleted", "hint": "",
                     "message": "this reply's chat was deleted while it streamed; nothing "
                                "of it is kept"}
        else:
            logger.error("reply %s (chat %s, model %s) failed", turn.id, turn.chat_id,
                         turn.model, exc_info=exc)
            error = {"code": "reply_failed", "hint": "the gateway's log has the details",
                     "message": f"the gateway could not finish this reply "
                                f"({type(exc).__name__}); what arrived is kept"}
        if turn.ended:
            return
        turn.error = error
        try:
            await self._recorder.save(turn, content="".join(turn.text), status="error",
                                      provenance={**self._recorder.provenance(turn, params),
                                                  "error": error})
        except Exception as again:
            if not isinstance(again, UnknownMessage | UnknownChat):
                logger.error("reply %s: its error could not be stored either", turn.id,
                             exc_info=again)
        turn.emit("error", error)

    async def _run_batch(self, turns: list[Turn], histories: list[list[dict[str, str]]],
                         params: dict[str, Any]) -> None:
        ended: set[str] = set()
        for turn in turns:
            turn.emit("meta", meta_of(turn))
        try:
            await self._batch(turns, histories, params, ended)
        except Exception as exc:  # not the box: a row's chat deleted, a bug
            for turn in turns:
                if turn.id not in ended:
                    await self._failed(turn, exc, params)
                    ended.add(turn.id)
        finally:
            for turn in turns:
                await self._end(turn, turn.id in ended)

    async def _batch(self, turns: list[Turn], histories: list[list[dict[str, str]]],
                     params: dict[str, Any], ended: set[str]) -> None:
        try:
            served = [await self._registry.ready_session(t.model, params) for t in turns]
            session, slot = served[0].session, served[0].slot
            for turn in turns:
                turn.session = session
                turn.opened.set()
                if turn.stop_requested:  # stopped while the base loaded: the row starts stopped
                    await session.cancel(turn.id)
            rows = [{"id": t.id, "messages": h, **(s.choice or {"adapter": None})}
                    for t, h, s in zip(turns, histories, served, strict=True)]
            by_id = {turn.id: turn for turn in turns}
            slot.active_turns += len(turns)
            try:
                # A wrapper of this protocol serving a shared base batches (a wrapper that
                # could not would answer every row with not_supported).
                idle = self._registry.settings_for(turns[0].model).chat_timeout
                events = session.chat_batch(f"batch-{turns[0].id}", rows, params, idle,
                                            fit=turns[0].fit)
                async with contextlib.aclosing(events):  # left early: the box stops too
                    async for event in events:
                        turn = by_id[event["id"]]
                        try:
                            await self._recorder.on_event(turn, event, params)
                        except Exception as exc:  # this row alone: the others go on
                            if turn.id not in ended:
                                await self._failed(turn, exc, params)
                                ended.add(turn.id)
                                with contextlib.suppress(Exception):
                                    await session.cancel(turn.id)
                            continue
                        if event["event"] in (wp.EV_DONE, wp.EV_ERROR):
                            ended.add(turn.id)
            finally:
                slot.active_turns -= len(turns)
        except BoxError as exc:
            for turn in turns:
                if turn.id not in ended:
                    await self._recorder.fail(turn, exc.as_dict(), params)
                    ended.add(turn.id)

    async def _end(self, turn: Turn, final: bool) -> None:
        if not final:  # cancelled (the gateway is shutting down): keep what arrived
            with contextlib.suppress(Exception):
                await asyncio.shield(self._recorder.save(turn, content="".join(turn.text),
                                                         status="interrupted"))
        turn.finished = True
        turn.opened.set()
        self._active.pop(turn.id, None)
        if turn.chat_id is not None:
            self._ended.add(turn.id, turn)
            if turn.exclusive:
                self._busy.discard(turn.chat_id)
        turn.log.close()

    async def _relay(self, turn: Turn, messages: list[dict[str, str]],
                     params: dict[str, Any], choice: dict[str, Any] | None) -> None:
        assert turn.session is not None
        idle = self._registry.settings_for(turn.model).chat_timeout
        events = turn.session.chat(turn.id, messages, params, choice, idle, tools=turn.tools,
                                   completion=turn.completion, fit=turn.fit)
        async with contextlib.aclosing(events):  # left early (a failed save): the box stops
            async for event in events:
                await self._recorder.on_event(turn, event, params)
