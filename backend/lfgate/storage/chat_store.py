"""Chats and messages in the database: keyword-only operations, one transaction each.

Messages form a tree; a chat's `active_leaf_id` names the branch the user sees and the model
continues. Nothing is overwritten: an edit or a regeneration is a new sibling.

A reply's saves that the database refuses for a while (locked, full) wait and are written when
it takes them again (lfgate.storage.deferred), so the reply streams on; reads show them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update

from lfgate.storage.database import Database
from lfgate.storage.deferred import DeferredSaves
from lfgate.storage.errors import UnknownChat, UnknownMessage
from lfgate.storage.markdown_text import escape_html, html_text
from lfgate.storage.presence import Presence
from lfgate.storage.storable import storable_text, storable_value
from lfgate.storage.tables import Chat, Message, utcnow

MESSAGE_STATUSES = ("complete", "streaming", "stopped", "interrupted", "error")
EXPORT_FORMAT = "lfgate-chat"
EXPORT_VERSION = 1


@dataclass(frozen=True)
class ChatRecord:
    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    archived: bool
    model: str
    system: str | None
    params: dict[str, Any]
    active_leaf_id: str | None
    source: str = "page"  # "api": a conversation of the OpenAI API (STORE_API_CHATS)
    compare: dict[str, Any] | None = None  # a compare chat's slots (tables.Chat.compare)


@dataclass(frozen=True)
class MessageRecord:
    id: str
    chat_id: str
    parent_id: str | None
    role: str
    content: str
    status: str
    created_at: datetime
    provenance: dict[str, Any] | None


def _chat(row: Chat) -> ChatRecord:
    return ChatRecord(row.id, row.title, row.created_at, row.updated_at, row.archived, row.model,
                      row.system, row.params if isinstance(row.params, dict) else {},
                      row.active_leaf_id,
                      row.source or "page", row.compare)


def _message(row: Message) -> MessageRecord:
    # Made storable on the way out too: what an older version stored (a path with an
    # unpaired surrogate in a reply's provenance) reads back rather than failing every read.
    return MessageRecord(row.id, row.chat_id, row.parent_id, row.role,
                         storable_text(row.content), row.status, row.created_at,
                         storable_value(row.provenance))


def new_id() -> str:
    return uuid.uuid4().hex


class ChatStore:
    def __init__(self, database: Database, presence: Presence | None = None) -> None:
        """`presence`: this gateway among those sharing the database (a reply streaming is
        marked as its own); without one, a gateway of its own that owns nothing yet."""
        self._sessions = database.sessions
        self._presence = presence or Presence(database)
        self._deferred = DeferredSaves(self._write_message, database.fault)
        database.before_close(self._deferred.close)

    def _view(self, row: Message) -> MessageRecord:
        return self._deferred.view(_message(row))

    async def create_chat(self, *, title: str, model: str = "default",
                          system: str | None = None,
                          params: dict[str, Any] | None = None,
                          source: str = "page",
                          compare: dict[str, Any] | None = None) -> ChatRecord:
        row = Chat(id=new_id(), title=title[:200], model=model, system=system,
                   params=params or {}, source=source, compare=compare)
        async with self._sessions.begin() as session:
            session.add(row)
        return _chat(row)

    async def get_chat(self, *, chat_id: str) -> ChatRecord:
        async with self._sessions() as session:
            row = await session.get(Chat, chat_id)
            if row is None:
                raise UnknownChat(f"unknown chat {chat_id!r}")
            return _chat(row)

    async def list_chats(self, *, q: str | None = None, archived: bool | None = False,
                         limit: int = 50, offset: int = 0) -> list[ChatRecord]:
        """Newest first; `q` searches titles and message text (case-insensitive)."""
        query = select(Chat).order_by(Chat.updated_at.desc(), Chat.id).limit(limit).offset(offset)
        if archived is not None:
            query = query.where(Chat.archived == archived)
        if q:
            pattern = f"%{_escape_like(q)}%"
            in_messages = select(Message.chat_id).where(
                Message.content.ilike(pattern, escape="\\"))
            query = query.where(or_(Chat.title.ilike(pattern, escape="\\"),
                                    Chat.id.in_(in_messages)))
        async with self._sessions() as session:
            return [_chat(row) for row in (await session.scalars(query)).all()]

    async def update_chat(self, *, chat_id: str, **changes: Any) -> ChatRecord:
        """Change a chat's settings; a new `active_leaf_id` must be a message of this chat
        (checked in the same transaction, so a bad id changes nothing)."""
        allowed = {"title", "archived", "system", "params", "model", "active_leaf_id",
                   "compare"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
        async with self._sessions.begin() as session:
            row = await session.get(Chat, chat_id)
            if row is None:
                raise UnknownChat(f"unknown chat {chat_id!r}")
            leaf_id = changes.get("active_leaf_id")
            if leaf_id is not None:
                leaf = await session.get(Message, leaf_id)
                if leaf is None or leaf.chat_id != chat_id:
                    raise UnknownMessage(f"unknown message {leaf_id!r} in chat {chat_id!r}")
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
        return _chat(row)

    async def delete_chat(self, *, chat_id: str) -> None:
        async with self._sessions.begin() as session:
            if await session.get(Chat, chat_id) is None:
                raise UnknownChat(f"unknown chat {chat_id!r}")
            await session.execute(delete(Message).where(Message.chat_id == chat_id))
            await session.execute(delete(Chat).where(Chat.id == chat_id))

    async def add_message(self, *, chat_id: str, parent_id: str | None, role: str,
                          content: str, status: str = "complete",
                          provenance: dict[str, Any] | None = None) -> MessageRecord:
        """Append to the tree under `parent_id` and make the new message the active leaf."""
        if status not in MESSAGE_STATUSES:
            raise ValueError(f"status must be one of {MESSAGE_STATUSES}")
        row = Message(id=new_id(), chat_id=chat_id, parent_id=parent_id, role=role,
                      content=storable_text(content), status=status,
                      provenance=storable_value(provenance),
                      owner=self._presence.id if status == "streaming" else None)
        async with self._sessions.begin() as session:
            chat = await session.get(Chat, chat_id)
            if chat is None:
                raise UnknownChat(f"unknown chat {chat_id!r}")
            if parent_id is not None:
                parent = await session.get(Message, parent_id)
                if parent is None or parent.chat_id != chat_id:
                    raise UnknownMessage(f"unknown message {parent_id!r} in chat {chat_id!r}")
            session.add(row)
            chat.active_leaf_id = row.id
            chat.updated_at = utcnow()
        return _message(row)

    async def update_message(self, *, message_id: str, content: str | None = None,
                             status: str | None = None,
                             provenance: dict[str, Any] | None = None,
                             thread_digest: str | None = None) -> None:
        """Save a reply as it grows, and its final state. While the database refuses (locked
        by another process, its disk full), the save waits and is written once it can be."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if thread_digest is not None:
            values["thread_digest"] = thread_digest
        if content is not None:  # a reply from the box: kept whatever it holds
            values["content"] = storable_text(content)
        if status is not None:
            if status not in MESSAGE_STATUSES:
                raise ValueError(f"status must be one of {MESSAGE_STATUSES}")
            values["status"] = status
        if provenance is not None:
            values["provenance"] = storable_value(provenance)
        await self._deferred.save(message_id, values)

    async def _write_message(self, message_id: str, values: dict[str, Any]) -> None:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Message).where(Message.id == message_id).values(**values))
            if result.rowcount == 0:
                raise UnknownMessage(f"unknown message {message_id!r}")

    async def find_reply(self, *, thread_digest: str) -> MessageRecord | None:
        """The newest reply stored with this conversation digest (an API chat's), if any."""
        async with self._sessions() as session:
            row = await session.scalar(
                select(Message).where(Message.thread_digest == thread_digest)
                .order_by(Message.created_at.desc()).limit(1))
            return None if row is None else self._view(row)

    async def messages(self, *, chat_id: str) -> list[MessageRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(select(Message).where(Message.chat_id == chat_id)
                                         .order_by(Message.created_at, Message.id))
            return [self._view(row) for row in rows.all()]

    async def get_message(self, *, chat_id: str, message_id: str) -> MessageRecord:
        async with self._sessions() as session:
            row = await session.get(Message, message_id)
            if row is None or row.chat_id != chat_id:
                raise UnknownMessage(f"unknown message {message_id!r} in chat {chat_id!r}")
            return self._view(row)

    async def find_message(self, *, message_id: str) -> MessageRecord:
        """A message by its id alone (a reply's id is its turn's: a stream reattaches by it)."""
        async with self._sessions() as session:
            row = await session.get(Message, message_id)
            if row is None:
                raise UnknownMessage(f"unknown message {message_id!r}")
            return self._view(row)

    async def branch(self, *, chat_id: str, leaf_id: str | None = None) -> list[MessageRecord]:
        """The messages from the root to `leaf_id` (default: the chat's active leaf)."""
        chat = await self.get_chat(chat_id=chat_id)
        return await self.path_to(chat_id=chat_id, message_id=leaf_id or chat.active_leaf_id)

    async def path_to(self, *, chat_id: str, message_id: str | None) -> list[MessageRecord]:
        """The messages from the root to `message_id`, both included; [] for None."""
        leaf_id = message_id
        by_id = {m.id: m for m in await self.messages(chat_id=chat_id)}
        if leaf_id is not None and leaf_id not in by_id:
            raise UnknownMessage(f"unknown message {leaf_id!r} in chat {chat_id!r}")
        path = []
        while leaf_id is not None:
            message = by_id[leaf_id]
            path.append(message)
            leaf_id = message.parent_id
        return path[::-1]

    async def mark_interrupted(self) -> int:
        """Replies left `streaming` by a gateway that stopped or died become `interrupted`:
        at start-up, and after each heartbeat (a gateway sharing the database died). A reply
        another live gateway streams is its own (lfgate.storage.presence)."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Message).where(Message.status == "streaming", or_(
                    Message.owner.is_(None), Message.owner.not_in(self._presence.live_ids())))
                .values(status="interrupted", updated_at=utcnow()))
            return result.rowcount

    async def export_chat(self, *, chat_id: str) -> dict[str, Any]:
        """Everything about a chat, in the shape `import_chat` takes back."""
        chat = await self.get_chat(chat_id=chat_id)
        messages = await self.messages(chat_id=chat_id)
        return {
            "format": EXPORT_FORMAT, "version": EXPORT_VERSION,
            "chat": {"id": chat.id, "title": chat.title, "created_at": chat.created_at.isoformat(),
                     "updated_at": chat.updated_at.isoformat(), "archived": chat.archived,
                     "model": chat.model, "system": chat.system, "params": chat.params,
                     "active_leaf_id": chat.active_leaf_id, "source": chat.source,
                     "compare": chat.compare},
            "messages": [{"id": m.id, "parent_id": m.parent_id, "role": m.role,
                          "content": m.content, "status": m.status,
                          "created_at": m.created_at.isoformat(), "provenance": m.provenance}
                         for m in messages],
        }

    async def import_chat(self, *, data: dict[str, Any]) -> ChatRecord:
        """A chat from `export_chat`'s shape, under new ids (the tree and times kept). Its
        compare turns get new ids too: a vote is one per compare id, so a copy's turn must
        not be its original's (a vote on one replaced the other's)."""
        source = data["chat"]
        ids = {m["id"]: new_id() for m in data["messages"]}
        turns: dict[str, str] = {}
        if any(m["parent_id"] is not None and m["parent_id"] not in ids
               for m in data["messages"]):
            raise ValueError("a message's parent_id names no message of this chat")
        chat = Chat(id=new_id(), title=source["title"][:200], archived=source["archived"],
                    model=source["model"], system=source["system"], params=source["params"],
                    source=source.get("source") or "page",
                    compare=_imported_compare(source.get("compare"), ids),
                    created_at=datetime.fromisoformat(source["created_at"]),
                    updated_at=datetime.fromisoformat(source["updated_at"]),
                    active_leaf_id=ids.get(source["active_leaf_id"] or ""))
        async with self._sessions.begin() as session:
            session.add(chat)
            await session.flush()
            for m in _parents_first(data["messages"]):
                session.add(Message(
                    id=ids[m["id"]], chat_id=chat.id, role=m["role"], content=m["content"],
                    parent_id=None if m["parent_id"] is None else ids[m["parent_id"]],
                    # A reply streaming where it was exported streams nowhere here.
                    status="interrupted" if m["status"] == "streaming" else m["status"],
                    provenance=_imported_provenance(m, turns),
                    created_at=datetime.fromisoformat(m["created_at"]),
                    updated_at=datetime.fromisoformat(m["created_at"])))
                await session.flush()
        return _chat(chat)


def _imported_provenance(message: dict[str, Any], turns: dict[str, str]
                         ) -> dict[str, Any] | None:
    """A reply's provenance, its compare turn's id renewed (the same for the whole turn)."""
    facts = message["provenance"]
    if isinstance(facts, dict) and isinstance(facts.get("compare_id"), str):
        facts = {**facts, "compare_id": turns.setdefault(facts["compare_id"], new_id())}
    return facts


def _imported_compare(compare: dict[str, Any] | None, ids: dict[str, str]
                      ) -> dict[str, Any] | None:
    """A compare chat's columns point at the imported messages' new ids."""
    if not compare:
        return None
    return {**compare, "slots": [{**slot, "leaf_id": ids.get(slot.get("leaf_id") or "")}
                                 for slot in compare.get("slots") or []]}


def _parents_first(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order a tree's messages so each comes after its parent (foreign keys need it)."""
    placed: set[str | None] = {None}
    ordered: list[dict[str, Any]] = []
    pending = list(messages)
    while pending:
        ready = [m for m in pending if m["parent_id"] in placed]
        if not ready:
            raise ValueError("the messages' parent_ids form a cycle")
        for m in ready:
            ordered.append(m)
            placed.add(m["id"])
        pending = [m for m in pending if m["id"] not in placed]
    return ordered


def facts_of(message: dict[str, Any]) -> dict[str, Any]:
    """A message's provenance for a reader: {} where there is none, or where what is stored
    (by an older version, or an import it did not check) is not an object."""
    facts = message.get("provenance")
    return facts if isinstance(facts, dict) else {}


def text_fact(facts: Any, key: str) -> str | None:
    """facts[key] if it is text; absent (None) if missing or of another type."""
    value = facts.get(key) if isinstance(facts, dict) else None
    return value if isinstance(value, str) else None


def number_fact(facts: Any, key: str) -> int | float | None:
    """facts[key] if it is a number (not a boolean); absent (None) otherwise."""
    value = facts.get(key) if isinstance(facts, dict) else None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def branch_of(by_id: dict[str, dict[str, Any]], leaf_id: str | None) -> list[dict[str, Any]]:
    """The messages from the root to `leaf_id`, in order; a stored leaf or parent that names
    no message of the chat (or a loop) ends the walk there rather than failing it."""
    path: list[dict[str, Any]] = []
    seen: set[str] = set()
    cursor = leaf_id
    while isinstance(cursor, str) and cursor in by_id and cursor not in seen:
        seen.add(cursor)
        path.append(by_id[cursor])
        cursor = by_id[cursor].get("parent_id")
    return path[::-1]


def markdown(export: dict[str, Any], *, leaf_id: str | None = None) -> str:
    """The active branch as Markdown a person can read, naming the model of each reply."""
    chat, by_id = export["chat"], {m["id"]: m for m in export["messages"]}
    path = branch_of(by_id, leaf_id or chat["active_leaf_id"])
    lines = [f"# {escape_html(chat['title'])}", "", f"*Exported from LF Gate. Chat "
             f"{chat['id']}, created {chat['created_at'][:16].replace('T', ' ')} UTC.*", ""]
    if chat["system"]:
        lines += ["**System:**", "", escape_html(chat["system"]), ""]
    for message in path:
        if message["role"] == "user":
            heading = "## Tool result" if facts_of(message).get("tool_result") is True \
                else "## User"
            lines += [heading, "", escape_html(message["content"]), ""]
            continue
        p = facts_of(message)
        source = text_fact(p, "adapter_path") or "base model only"
        model, base, mode = (_or_unknown(text_fact(p, key))
                             for key in ("model", "base_model_path", "mode"))
        heading = f"{model} ({base} + {source}, {mode} mode)"
        lines += [f"## Assistant · {html_text(heading)}", ""]
        if message["status"] != "complete":
            lines += [f"*[{html_text(str(message['status']))}]*", ""]
        left_out = p.get("left_out")
        if isinstance(left_out, int) and not isinstance(left_out, bool) and left_out > 0:
            lines += [f"*[the first {left_out} messages were left out of this reply's prompt: "
                      "the chat was longer than the model's window]*", ""]
        lines += [escape_html(message["content"]), ""]
        calls = p.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict) and isinstance(call.get("name"), str):
                arguments = call.get("arguments")
                lines += [f"*Calls* {escape_html(call['name'])}"
                          + (f" with {escape_html(arguments)}" if isinstance(arguments, str)
                             else ""), ""]
    return "\n".join(lines)


def _or_unknown(text: str | None) -> str:
    return "?" if text is None else text


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
