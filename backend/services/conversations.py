"""Conversations kept in memory (lost on restart until persistent storage lands)."""

from __future__ import annotations

import uuid

from lfgate.services.errors import ChatBusy, UnknownChat


class ConversationMemory:
    def __init__(self) -> None:
        self._chats: dict[str, list[dict[str, str]]] = {}
        self._busy: set[str] = set()

    def open(self, chat_id: str | None) -> str:
        """An existing chat's id, or a new chat's when none is given."""
        if chat_id is None:
            chat_id = uuid.uuid4().hex
            self._chats[chat_id] = []
        elif chat_id not in self._chats:
            raise UnknownChat(f"unknown chat {chat_id!r}")
        return chat_id

    def history(self, chat_id: str) -> list[dict[str, str]]:
        return list(self._chats[chat_id])

    def claim(self, chat_id: str) -> None:
        """One reply at a time per chat: a second would answer a history without the first."""
        if chat_id in self._busy:
            raise ChatBusy(f"chat {chat_id!r} is still answering; stop it or wait")
        self._busy.add(chat_id)

    def release(self, chat_id: str) -> None:
        self._busy.discard(chat_id)

    def add_turn(self, chat_id: str, user_text: str, reply: str) -> None:
        self._chats[chat_id] += [{"role": "user", "content": user_text},
                                 {"role": "assistant", "content": reply}]
