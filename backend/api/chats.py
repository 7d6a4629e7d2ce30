from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from lfgate.api.deps import StoreDep
from lfgate.api.schemas import ChatDetailOut, ChatsOut, ChatSummaryOut, MessageOut

router = APIRouter(prefix="/api/chats", tags=["chats"])


@router.get("")
async def list_chats(
    store: StoreDep,
    q: Annotated[str | None, Query(max_length=500)] = None,
    archived: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ChatsOut:
    chats = await store.list_chats(q=q, archived=archived, limit=limit, offset=offset)
    return ChatsOut(chats=[ChatSummaryOut(**asdict(chat)) for chat in chats])


@router.get("/{chat_id}")
async def get_chat(chat_id: str, store: StoreDep) -> ChatDetailOut:
    chat = await store.get_chat(chat_id=chat_id)
    messages = await store.messages(chat_id=chat_id)
    return ChatDetailOut(**asdict(chat), messages=[
        MessageOut(**{k: v for k, v in asdict(m).items() if k != "chat_id"}) for m in messages])
