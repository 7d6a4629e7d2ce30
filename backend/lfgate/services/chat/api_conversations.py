"""OpenAI API conversations kept as chats (STORE_API_CHATS).

An API client sends the whole conversation every time. A request whose history ends with a
reply this gateway gave continues that reply's chat, so a conversation held in Open WebUI or
a script reads as one chat here; anything else (a first message, a few-shot history the
client wrote itself) becomes a new chat holding the history it came with. Replies are found
by a digest of the conversation up to and including them, stored with the reply.
"""

from __future__ import annotations

import hashlib
import json

from lfgate.storage.chat_store import ChatRecord, ChatStore, MessageRecord

API_SOURCE = "api"
# A chat holds the user's and the assistant's messages: a tool call (LlamaFactory's
# `function` turn) is kept as the assistant's, its JSON as the text; a tool's result
# (`observation`) as the user's.
STORED_ROLE = {"function": "assistant", "observation": "user"}


def thread_digest(system: str | None, messages: list[dict[str, str]]) -> str:
    """The same for the same system prompt and messages, whatever else the request held."""
    canonical = json.dumps([system or "", [[m["role"], m["content"]] for m in messages]],
                           ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ApiConversations:
    def __init__(self, store: ChatStore) -> None:
        self._store = store

    async def place(self, *, model: str, system: str | None, title: str,
                    messages: list[dict[str, str]]) -> tuple[ChatRecord, list[MessageRecord]]:
        """The chat this request's last (user) message goes into, and the stored messages it
        follows (its parent is the last of them; none: a chat's first message)."""
        prior = messages[:-1]
        if prior and prior[-1]["role"] == "assistant":
            reply = await self._store.find_reply(thread_digest=thread_digest(system, prior))
            if reply is not None:
                chat = await self._store.get_chat(chat_id=reply.chat_id)
                return chat, await self._store.path_to(chat_id=chat.id, message_id=reply.id)
        chat = await self._store.create_chat(title=title, model=model, system=system,
                                             source=API_SOURCE)
        path: list[MessageRecord] = []
        for message in prior:
            path.append(await self._store.add_message(
                chat_id=chat.id, parent_id=path[-1].id if path else None,
                role=STORED_ROLE.get(message["role"], message["role"]),
                content=message["content"]))
        return chat, path
