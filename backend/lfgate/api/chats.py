from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from lfgate.api.deps import SettingsDep, StoreDep, TurnsDep, VotesDep
from lfgate.api.guards.limits import check_limits
from lfgate.api.schemas import (
    ChatCreateIn,
    ChatDetailOut,
    ChatImportIn,
    ChatOut,
    ChatPatchIn,
    ChatsOut,
    ChatSummaryOut,
    EditIn,
    MessageOut,
    RegenerateIn,
    readable_compare,
    readable_provenance,
)
from lfgate.api.sse import STREAMED, turn_response
from lfgate.services.chat.turns import DEFAULT_TITLE
from lfgate.storage.chat_store import ChatRecord, ChatStore, markdown
from lfgate.storage.compare_markdown import compare_markdown

MAX_OFFSET = 2**63 - 1  # the databases' largest integer
router = APIRouter(prefix="/api/chats", tags=["chats"])


async def _detail(store: ChatStore, chat_id: str) -> ChatDetailOut:
    chat = await store.get_chat(chat_id=chat_id)
    messages = await store.messages(chat_id=chat_id)
    return ChatDetailOut(**_readable_chat(chat), messages=[
        MessageOut(**{**{k: v for k, v in asdict(m).items() if k != "chat_id"},
                      "provenance": readable_provenance(m.provenance)}) for m in messages])


def _readable_chat(chat: ChatRecord) -> dict[str, Any]:
    """A stored chat as readers take it: its compare columns, where an older version stored
    them in another shape, read as absent (schemas.readable_compare)."""
    return {**asdict(chat), "compare": readable_compare(chat.compare)}


@router.get("")
async def list_chats(
    store: StoreDep,
    q: Annotated[str | None, Query(max_length=500)] = None,
    archived: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ChatsOut:
    chats = await store.list_chats(q=q, archived=archived, limit=limit, offset=offset)
    return ChatsOut(chats=[ChatSummaryOut(**_readable_chat(chat)) for chat in chats])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_chat(body: ChatCreateIn, store: StoreDep, settings: SettingsDep
                      ) -> ChatDetailOut:
    check_limits(body, settings)
    chat = await store.create_chat(title=body.title or DEFAULT_TITLE, model=body.model,
                                   system=body.system, params=body.params.given())
    return await _detail(store, chat.id)


@router.post("/import", status_code=status.HTTP_201_CREATED)
async def import_chat(body: ChatImportIn, store: StoreDep, settings: SettingsDep
                      ) -> ChatDetailOut:
    check_limits(body, settings)
    try:
        chat = await store.import_chat(data=body.model_dump(mode="json"))
    except ValueError as exc:  # the message tree does not hold together: nothing is stored
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "messages"),
                                       "msg": str(exc), "input": None}]) from exc
    return await _detail(store, chat.id)


@router.get("/{chat_id}")
async def get_chat(chat_id: str, store: StoreDep) -> ChatDetailOut:
    return await _detail(store, chat_id)


@router.patch("/{chat_id}")
async def patch_chat(chat_id: str, body: ChatPatchIn, store: StoreDep, settings: SettingsDep
                     ) -> ChatDetailOut:
    check_limits(body, settings)
    changes = body.model_dump(exclude_unset=True)
    if "params" in changes:
        changes["params"] = body.params.given() if body.params else {}
    await store.update_chat(chat_id=chat_id, **changes)
    return await _detail(store, chat_id)


@router.delete("/{chat_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_chat(chat_id: str, turns: TurnsDep) -> Response:
    await turns.delete_chat(chat_id=chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{chat_id}/regenerate", response_model=ChatOut, responses=STREAMED)
async def regenerate(chat_id: str, body: RegenerateIn, turns: TurnsDep, settings: SettingsDep
                     ) -> StreamingResponse | ChatOut | JSONResponse:
    """Another reply to the same user message, as a new branch; streams like /api/chat."""
    check_limits(body, settings)
    turn = await turns.regenerate(chat_id=chat_id, message_id=body.message_id,
                                  model=body.model, params=body.params.given())
    return await turn_response(turn, stream=body.stream)


@router.post("/{chat_id}/edit", response_model=ChatOut, responses=STREAMED)
async def edit(chat_id: str, body: EditIn, turns: TurnsDep, settings: SettingsDep
               ) -> StreamingResponse | ChatOut | JSONResponse:
    """A new version of a user message, as a new branch, answered afresh."""
    check_limits(body, settings)
    turn = await turns.edit(chat_id=chat_id, message_id=body.message_id, content=body.content,
                            model=body.model, params=body.params.given())
    return await turn_response(turn, stream=body.stream)


@router.get("/{chat_id}/export", response_model=None, responses={200: {
    "description": "The chat as Markdown or JSON (by `format`)",
    "content": {"text/markdown": {"schema": {"type": "string"}}}}})
async def export_chat(chat_id: str, store: StoreDep, votes: VotesDep,
                      format: Literal["md", "json"] = "md") -> Response:
    data = await store.export_chat(chat_id=chat_id)
    # What an older version stored with a wrong type is left out, as every reader leaves it:
    # the export imports back (docs/api.md#chats).
    data["chat"]["compare"] = readable_compare(data["chat"]["compare"])
    for message in data["messages"]:
        message["provenance"] = readable_provenance(message["provenance"])
    if data["chat"]["compare"]:
        data["votes"] = [{k: (v.isoformat() if k == "created_at" else v)
                          for k, v in asdict(vote).items()}
                         for vote in await votes.of_chat(chat_id=chat_id)]
    filename = f"lfgate-chat-{chat_id}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "json":
        return JSONResponse(data, headers=headers)
    text = (compare_markdown(data, data["votes"]) if "votes" in data else markdown(data))
    return PlainTextResponse(text, media_type="text/markdown", headers=headers)
