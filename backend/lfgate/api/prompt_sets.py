"""Prompt sets: import a file of prompts, run it across models, follow the run, vote on its
rows, export it (docs/api.md#prompt-sets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from lfgate.api.deps import PromptRunsDep, PromptSetsDep, RunsDep, SettingsDep
from lfgate.api.guards.limits import check_limits
from lfgate.api.prompt_set_schemas import (
    AverageOut,
    CellOut,
    PromptSetDetailOut,
    PromptSetIn,
    PromptSetOut,
    PromptSetsOut,
    RowOut,
    RunIn,
    RunOut,
    RunsOut,
    RunSummaryOut,
    RunVoteIn,
    RunVoteOut,
    SetPromptOut,
)
from lfgate.api.sse import EVENT_STREAM, KEEPALIVE_S, SSE_HEADERS, sse_event
from lfgate.services.evals.prompt_runs import PromptRuns, RunView
from lfgate.storage.prompt_set_store import PromptSetRecord
from lfgate.storage.run_export import run_csv, run_jsonl, run_markdown
from lfgate.storage.run_store import CellRecord, RunRecord

router = APIRouter(prefix="/api", tags=["prompt sets"])
EXPORTS = {"markdown": ("text/markdown", "md", run_markdown),
           "jsonl": ("application/x-ndjson", "jsonl", run_jsonl),
           "csv": ("text/csv", "csv", run_csv)}


def _set_out(record: PromptSetRecord, warnings: list[str] | None = None) -> PromptSetOut:
    return PromptSetOut(id=record.id, name=record.name, format=record.format,
                        count=record.count, references=record.references, runs=record.runs,
                        created_at=record.created_at, warnings=warnings or [])


async def _summary(run: RunRecord, runs: PromptRuns, set_name: str) -> RunSummaryOut:
    return RunSummaryOut(id=run.id, set_id=run.set_id, set_name=set_name, models=run.models,
                         params=run.params, mode=run.mode, status=run.status,
                         error=run.error, created_at=run.created_at,
                         progress=await runs.run_progress(run))


def _cell_out(cell: CellRecord) -> CellOut:
    provenance = cell.provenance or {}
    timing = provenance.get("timing") or {}
    return CellOut(slot=cell.slot, model=cell.model, status=cell.status, content=cell.content,
                   finish_reason=provenance.get("finish_reason"),
                   ttft_ms=timing.get("ttft_ms"), total_ms=timing.get("total_ms"),
                   scores=cell.scores, error=provenance.get("error"), attempts=cell.attempts,
                   provenance=cell.provenance)


def _run_out(view: RunView) -> RunOut:
    run = view.run
    return RunOut(
        id=run.id, set_id=run.set_id, set_name=view.prompt_set.name, models=run.models,
        params=run.params, mode=run.mode, status=run.status, error=run.error,
        created_at=run.created_at, progress=view.progress,
        averages={m: AverageOut(**a) for m, a in view.averages().items()},
        rows=[RowOut(index=p.index, prompt=p.prompt, system=p.system, reference=p.reference,
                     vote=(RunVoteOut(index=p.index, winner=view.votes[p.index].winner,
                                      reason=view.votes[p.index].reason)
                           if p.index in view.votes else None),
                     cells=[_cell_out(c) for c in cells])
              for p, cells in view.rows()])


@router.post("/prompt-sets", status_code=201)
async def import_set(body: PromptSetIn, runs: PromptRunsDep, settings: SettingsDep
                     ) -> PromptSetOut:
    """A bad file is refused whole (400, the message and `line` name the line at fault)."""
    record, warnings = await runs.import_set(content=body.content, format=body.format,
                                             filename=body.filename, name=body.name,
                                             max_message_chars=settings.max_message_chars)
    return _set_out(record, warnings)


@router.get("/prompt-sets")
async def list_sets(sets: PromptSetsDep) -> PromptSetsOut:
    return PromptSetsOut(sets=[_set_out(s) for s in await sets.every()])


@router.get("/prompt-sets/{set_id}")
async def get_set(set_id: str, sets: PromptSetsDep) -> PromptSetDetailOut:
    record = await sets.get(set_id=set_id)
    prompts = await sets.prompts(set_id=set_id)
    return PromptSetDetailOut(**_set_out(record).model_dump(),
                              prompts=[SetPromptOut(**asdict(p)) for p in prompts])


@router.delete("/prompt-sets/{set_id}", status_code=204)
async def delete_set(set_id: str, runs: PromptRunsDep) -> Response:
    await runs.delete_set(set_id=set_id)
    return Response(status_code=204)


@router.post("/prompt-sets/{set_id}/runs", status_code=201)
async def start_run(set_id: str, body: RunIn, runs: PromptRunsDep, settings: SettingsDep
                    ) -> RunOut:
    check_limits(body, settings)
    run = await runs.start(set_id=set_id, models=body.models, params=body.params.given())
    return _run_out(await runs.view(run_id=run.id))


async def _summaries(set_id: str | None, runs: PromptRuns, store: RunsDep,
                     sets: PromptSetsDep) -> RunsOut:
    names = {s.id: s.name for s in await sets.every()}
    return RunsOut(runs=[await _summary(r, runs, names.get(r.set_id, ""))
                         for r in await store.of_set(set_id=set_id)])


@router.get("/prompt-sets/{set_id}/runs")
async def runs_of_set(set_id: str, runs: PromptRunsDep, store: RunsDep,
                      sets: PromptSetsDep) -> RunsOut:
    await sets.get(set_id=set_id)
    return await _summaries(set_id, runs, store, sets)


@router.get("/runs")
async def every_run(runs: PromptRunsDep, store: RunsDep, sets: PromptSetsDep) -> RunsOut:
    return await _summaries(None, runs, store, sets)


@router.get("/runs/{run_id}")
async def get_run(run_id: str, runs: PromptRunsDep) -> RunOut:
    return _run_out(await runs.view(run_id=run_id))


@router.get("/runs/{run_id}/events", response_class=Response, responses=EVENT_STREAM)
async def follow_run(run_id: str, runs: PromptRunsDep, store: RunsDep) -> StreamingResponse:
    """SSE: `progress` (a snapshot first), `cell` as each ends, `end` when the run stops."""
    await store.get(run_id=run_id)  # a 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        async for name, data in runs.follow(run_id, keepalive_s=KEEPALIVE_S):
            yield ": keep-alive\n\n" if name == "" else sse_event(name, data)

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/runs/{run_id}/stop")
async def stop_run(run_id: str, runs: PromptRunsDep, sets: PromptSetsDep) -> RunSummaryOut:
    run = await runs.stop(run_id=run_id)
    return await _summary(run, runs, (await sets.get(set_id=run.set_id)).name)


@router.post("/runs/{run_id}/resume")
async def resume_run(run_id: str, runs: PromptRunsDep, sets: PromptSetsDep) -> RunSummaryOut:
    """Ask what is not answered yet (pending, stopped and failed cells), nothing else."""
    run = await runs.resume(run_id=run_id)
    return await _summary(run, runs, (await sets.get(set_id=run.set_id)).name)


@router.delete("/runs/{run_id}", status_code=204)
async def delete_run(run_id: str, runs: PromptRunsDep) -> Response:
    await runs.delete(run_id=run_id)
    return Response(status_code=204)


@router.post("/runs/{run_id}/votes")
async def vote_row(run_id: str, body: RunVoteIn, runs: PromptRunsDep) -> RunVoteOut:
    vote = await runs.vote(run_id=run_id, index=body.index, winner=body.winner,
                           reason=body.reason)
    return RunVoteOut(index=vote.index, winner=vote.winner, reason=vote.reason)


@router.get("/runs/{run_id}/export", response_class=Response, responses={200: {
    "description": "The run as Markdown, JSONL or CSV (by `format`)",
    "content": {media: {"schema": {"type": "string"}} for media, _, _ in EXPORTS.values()}}})
async def export_run(run_id: str, runs: PromptRunsDep,
                     format: Literal["markdown", "jsonl", "csv"] = "markdown"
                     ) -> PlainTextResponse:
    run = _run_out(await runs.view(run_id=run_id)).model_dump(mode="json")
    media, extension, render = EXPORTS[format]
    return PlainTextResponse(render(run), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="lfgate-run-{run_id[:8]}.{extension}"'})
