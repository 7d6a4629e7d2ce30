"""Compare two to four models on one message, vote on each compare turn, and the
leaderboard that the votes make (docs/api.md#compare)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from lfgate.api.compare_stream import (
    COMPARE_EVENT_ID,
    compare_finals,
    compare_stream,
    meta,
    slot_ids,
)
from lfgate.api.deps import (
    ComparesDep,
    SettingsDep,
    StandingsDep,
    StoreDep,
    TurnsDep,
    VotesDep,
)
from lfgate.api.guards.limits import check_limits
from lfgate.api.schemas import (
    CompareIn,
    CompareOut,
    CompareSlotOut,
    LeaderboardOut,
    StandingOut,
    StopOut,
    TallyOut,
    VoteIn,
    VoteOut,
    VotesOut,
)
from lfgate.api.sse import EVENT_STREAM, SSE_HEADERS, STREAMED
from lfgate.services.evals.leaderboard import MIN_DECISIVE_VOTES, games_of
from lfgate.storage.csv_export import csv_text

router = APIRouter(prefix="/api", tags=["compare"])


@router.post("/compare", response_model=CompareOut, responses=STREAMED)
async def compare(body: CompareIn, compares: ComparesDep, turns: TurnsDep,
                  settings: SettingsDep) -> StreamingResponse | CompareOut:
    check_limits(body, settings)
    run = await compares.start(message=body.message, models=body.models,
                               params=body.params.given(), chat_id=body.chat_id,
                               blind=body.blind)
    if body.stream:
        return StreamingResponse(compare_stream(run, turns), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    head = meta(run)
    return CompareOut(chat_id=run.chat_id, compare_id=run.id, mode=head["mode"],
                      slots=[CompareSlotOut(**slot) for slot in await compare_finals(run)])


@router.get("/compare/{compare_id}/stream", response_class=StreamingResponse,
            responses=EVENT_STREAM)
async def reattach_compare(
    compare_id: str, compares: ComparesDep, turns: TurnsDep,
    last_event: Annotated[str | None, Header(alias="Last-Event-ID",
                                             pattern=COMPARE_EVENT_ID)] = None,
) -> StreamingResponse:
    """Follow a compare again after a reload or a dropped connection: `meta`, then every
    slot's events after `Last-Event-ID` (each slot's last event id, dot-separated, as the
    stream's `id:` lines), then live ones. One slot alone: GET /api/chat/{turn_id}/stream."""
    run = compares.find(compare_id)
    after = slot_ids(last_event, len(run.slots))
    return StreamingResponse(compare_stream(run, turns, after), media_type="text/event-stream",
                             headers=SSE_HEADERS)


@router.post("/compare/{compare_id}/stop")
async def stop_compare(compare_id: str, compares: ComparesDep) -> StopOut:
    """Stop every slot still running (one slot: POST /api/chat/{turn_id}/stop)."""
    await compares.stop(compare_id)
    return StopOut(turn_id=compare_id)


@router.post("/chats/{chat_id}/votes")
async def vote(chat_id: str, body: VoteIn, compares: ComparesDep) -> VoteOut:
    record = await compares.vote(chat_id=chat_id, compare_id=body.compare_id,
                                 winner=body.winner, reason=body.reason)
    return VoteOut(**{k: v for k, v in asdict(record).items() if k != "chat_id"})


@router.get("/chats/{chat_id}/votes")
async def votes_of_chat(chat_id: str, votes: VotesDep, store: StoreDep) -> VotesOut:
    await store.get_chat(chat_id=chat_id)  # an unknown chat is a 404, not an empty tally
    records = await votes.of_chat(chat_id=chat_id)
    tally: dict[str, TallyOut] = defaultdict(TallyOut)
    for record in records:
        for game in games_of(record.models, record.winner):
            for me, score in ((game.a, game.score), (game.b, 1 - game.score)):
                kind = "wins" if score == 1 else "losses" if score == 0 else "ties"
                setattr(tally[me], kind, getattr(tally[me], kind) + 1)
    return VotesOut(votes=[VoteOut(**{k: v for k, v in asdict(r).items() if k != "chat_id"})
                           for r in records], tally=dict(tally))


async def _board(standings: StandingsDep) -> LeaderboardOut:
    """Compare votes and votes on prompt-set rows count alike."""
    board = await standings.board()
    return LeaderboardOut(standings=[StandingOut(**asdict(s)) for s in board.standings],
                          win_rate=board.win_rate, votes=board.votes,
                          min_decisive_votes=MIN_DECISIVE_VOTES)


@router.get("/leaderboard")
async def get_leaderboard(standings: StandingsDep) -> LeaderboardOut:
    """Bradley-Terry ratings from every vote, with 95% intervals."""
    return await _board(standings)


@router.get("/leaderboard.csv", response_class=Response, responses={200: {
    "description": "The leaderboard as CSV",
    "content": {"text/csv": {"schema": {"type": "string"}}}}})
async def leaderboard_csv(standings: StandingsDep) -> PlainTextResponse:
    board = await _board(standings)
    text = csv_text(
        ["rank", "model", "rating", "ci_low", "ci_high", "votes", "wins", "losses", "ties",
         "decisive_votes", "too_few_votes"],
        ([rank, s.model, f"{s.rating:.1f}", f"{s.ci_low:.1f}", f"{s.ci_high:.1f}", s.votes,
          s.wins, s.losses, s.ties, s.decisive_votes, str(s.too_few_votes).lower()]
         for rank, s in enumerate(board.standings, 1)))
    return PlainTextResponse(text, media_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="lfgate-leaderboard.csv"'})
