"""Runs of a prompt set: every prompt asked of one to four models, batched on one base as
compare is, each answer stored as a cell the moment it ends, scored against its reference.

A run goes chunk by chunk: as many prompts as fit in one batch (MAX_BATCH_ROWS rows, a row a
(prompt, model)) when the models share a loaded base, else one prompt at a time with its
models side by side. Prompts of one chunk share their system prompt (a batch shares its
parameters). Only cells not complete are asked, so a run stopped, failed, or cut off by a
gateway restart resumes where it was and never asks an answered prompt again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from lfgate.remote import wrapper_protocol as wp
from lfgate.services.chat.turn_recorder import Turn
from lfgate.services.chat.turns import ChatTurns
from lfgate.services.errors import BadTurnRequest, RunBusy, TooManyTurns
from lfgate.services.evals.compare import MAX_SLOTS, TIE_WINNERS, serving_mode
from lfgate.services.evals.prompt_set_file import MAX_FIELD_CHARS, SetFormat, parse_prompt_set
from lfgate.services.evals.reference_scores import score
from lfgate.services.models.fleet_registry import FleetRegistry
from lfgate.storage.prompt_set_store import PromptSetRecord, PromptSetStore, SetPromptRecord
from lfgate.storage.run_store import CellRecord, RunRecord, RunStore, RunVoteRecord

logger = logging.getLogger("lfgate")
RunEvent = tuple[str, dict[str, Any]]
ENDED = ("complete", "error")  # a cell that counts as done in the progress bar
SCORE_KEYS = ("bleu", "chrf", "rouge_l")
STOP_POLL_S = 1.0  # how often a driver reads whether a stop was asked on another gateway
STOP_WAIT_S = 60.0  # how long a Stop asked of another gateway waits for it


class CellTally:
    """The status of every cell of a running run, and how many have ended or failed, kept
    as cells change: publishing progress after each cell costs O(1), not a read of the whole
    run (which, for a 10,000-cell run a page followed, slowed every request the gateway
    served and the run itself about sevenfold)."""

    def __init__(self, cells: list[CellRecord]) -> None:
        self._status = {(c.index, c.slot): c.status for c in cells}
        self.done = sum(1 for c in cells if c.status in ENDED)
        self.errors = sum(1 for c in cells if c.status == "error")

    def __len__(self) -> int:
        return len(self._status)

    def set(self, cell: tuple[int, int], status: str) -> None:
        before = self._status.get(cell)
        self._status[cell] = status
        self.done += (status in ENDED) - (before in ENDED)
        self.errors += (status == "error") - (before == "error")


@dataclass
class ActiveRun:
    run: RunRecord
    task: asyncio.Task[None] | None = None
    stop_requested: bool = False
    in_flight: list[Turn] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    done_here: int = 0  # cells ended in this sitting (for the estimate)
    tally: CellTally | None = None  # once the driver has read the cells


@dataclass
class RunView:
    """A run with everything the page and the exports show."""

    run: RunRecord
    prompt_set: PromptSetRecord
    prompts: list[SetPromptRecord]
    cells: list[CellRecord]
    votes: dict[int, RunVoteRecord]
    progress: dict[str, Any]

    def rows(self) -> list[tuple[SetPromptRecord, list[CellRecord]]]:
        by_index: dict[int, list[CellRecord]] = {}
        for cell in self.cells:
            by_index.setdefault(cell.index, []).append(cell)
        return [(p, by_index.get(p.index, [])) for p in self.prompts]

    def averages(self) -> dict[str, dict[str, Any]]:
        """Per model (a column): the mean of each score over its scored cells, and of its
        timings over its complete cells."""
        out: dict[str, dict[str, Any]] = {}
        for slot, model in enumerate(self.run.models):
            mine = [c for c in self.cells if c.slot == slot]
            scored = [c.scores for c in mine if c.scores]
            timed = [(c.provenance or {}).get("timing") or {} for c in mine
                     if c.status == "complete"]
            entry: dict[str, Any] = {k: _mean([s[k] for s in scored]) for k in SCORE_KEYS}
            entry["scored"] = len(scored)
            for key in ("ttft_ms", "total_ms"):
                entry[key] = _mean([t[key] for t in timed if t.get(key) is not None])
            out[model] = entry  # the same model twice: one entry (its last column)
        return out


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


class PromptRuns:
    def __init__(self, turns: ChatTurns, registry: FleetRegistry, sets: PromptSetStore,
                 runs: RunStore) -> None:
        self._turns = turns
        self._registry = registry
        self._sets = sets
        self._runs = runs
        self._active: dict[str, ActiveRun] = {}
        self._feeds: dict[str, set[asyncio.Queue[RunEvent | None]]] = {}

    # Sets -----------------------------------------------------------------------------

    async def import_set(self, *, content: str, format: SetFormat | None,
                         filename: str | None, name: str | None,
                         max_message_chars: int = MAX_FIELD_CHARS
                         ) -> tuple[PromptSetRecord, list[str]]:
        """Parse the whole file first (BadPromptSet names the line), then store it in one
        transaction: a bad file leaves nothing behind."""
        parsed = parse_prompt_set(content, format=format, filename=filename,
                                  max_message_chars=max_message_chars)
        name = (name or "").strip() or (filename or "").strip() \
            or parsed.prompts[0].prompt.strip().split("\n", 1)[0][:60]
        record = await self._sets.create(name=name, format=parsed.format,
                                         prompts=parsed.prompts)
        return record, parsed.warnings

    # Runs -----------------------------------------------------------------------------

    async def start(self, *, set_id: str, models: list[str],
                    params: dict[str, Any]) -> RunRecord:
        if not 1 <= len(models) <= MAX_SLOTS:
            raise BadTurnRequest(f"a run takes 1 to {MAX_SLOTS} models")
        for model in models:
            self._registry.usable(model)
        prompt_set = await self._sets.get(set_id=set_id)
        run = await self._runs.create(set_id=set_id, models=models, params=params,
                                      mode=serving_mode(self._registry, models),
                                      prompts=prompt_set.count)
        self._launch(run)
        return run

    async def resume(self, *, run_id: str) -> RunRecord:
        """Drive the run again from what is left. Claimed in the database first: two resumes
        at once (on this gateway or two sharing a database) get one driver, the other a
        RunBusy, and no cell is asked twice."""
        run = await self._runs.get(run_id=run_id)
        if run_id in self._active:
            raise RunBusy(f"run {run_id!r} is running; stop it first")
        if all(c.status == "complete" for c in await self._runs.cells(run_id=run_id)):
            raise BadTurnRequest(f"run {run_id!r} has nothing left to ask")
        for model in run.models:
            self._registry.usable(model)
        mode = serving_mode(self._registry, run.models)
        if not await self._runs.claim(run_id=run_id, mode=mode):
            raise RunBusy(f"run {run_id!r} is running on {await self._driver(run_id)}; "
                          "stop it first")
        run = dataclasses.replace(run, status="running", error=None, mode=mode)
        self._launch(run)  # no await since the claim: nothing else sees it half-launched
        return run

    async def _driver(self, run_id: str) -> str:
        return await self._runs.presence.describe(await self._runs.driver(run_id=run_id))

    async def stop(self, *, run_id: str) -> RunRecord:
        """Stop asking: replies in flight are cut short (kept as `stopped`, asked again on
        resume); returns once the run has written its state. Whichever gateway drives the
        run stops it: one sharing the database is asked through it and waited for."""
        active = self._active.get(run_id)
        if active is not None:
            await self._stop_active(active)
            if active.task is not None:
                await asyncio.shield(active.task)
            return await self._runs.get(run_id=run_id)
        run = await self._runs.get(run_id=run_id)
        if run.status != "running":
            raise RunBusy(f"run {run_id!r} is not running (it is {run.status})")
        if await self._runs.driver(run_id=run_id) is None:  # its driver died: settle it here
            await self._runs.requeue(run_id=run_id)
            return await self._runs.update(run_id=run_id, status="stopped", error=None)
        await self._runs.request_stop(run_id=run_id)
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(STOP_POLL_S)
            run = await self._runs.get(run_id=run_id)
            if run.status != "running":
                return run
        raise RunBusy(f"run {run_id!r} was asked to stop, and {await self._driver(run_id)} "
                      f"that drives it has not stopped it within {STOP_WAIT_S:.0f} s")

    async def _stop_active(self, active: ActiveRun) -> None:
        active.stop_requested = True
        for turn in list(active.in_flight):
            if not turn.finished:
                with contextlib.suppress(Exception):
                    await self._turns.stop(turn.id)

    async def _busy_elsewhere(self, run: RunRecord) -> None:
        if run.id in self._active or (run.status == "running"
                                      and await self._runs.driver(run_id=run.id) is not None):
            raise RunBusy(f"run {run.id!r} is running on {await self._driver(run.id)}; "
                          "stop it first")

    async def delete(self, *, run_id: str) -> None:
        await self._busy_elsewhere(await self._runs.get(run_id=run_id))
        await self._runs.delete(run_id=run_id)

    async def delete_set(self, *, set_id: str) -> None:
        for run in await self._runs.of_set(set_id=set_id):
            await self._busy_elsewhere(run)
        await self._sets.delete(set_id=set_id)

    async def view(self, *, run_id: str) -> RunView:
        run = await self._runs.get(run_id=run_id)
        cells = await self._runs.cells(run_id=run_id)
        return RunView(run, await self._sets.get(set_id=run.set_id),
                       await self._sets.prompts(set_id=run.set_id), cells,
                       {v.index: v for v in await self._runs.votes(run_id=run_id)},
                       self.progress(run, cells))

    def progress(self, run: RunRecord, cells: list[CellRecord]) -> dict[str, Any]:
        tally = CellTally(cells)
        return self._progress(run, tally.done, len(tally), tally.errors)

    def _progress(self, run: RunRecord, done: int, total: int, errors: int) -> dict[str, Any]:
        active = self._active.get(run.id)
        elapsed = run.elapsed_s
        eta = None
        if active is not None:
            here = time.monotonic() - active.started
            elapsed = active.run.elapsed_s + here
            if active.done_here:
                eta = round(here / active.done_here * (total - done), 1)
        return {"done": done, "total": total, "errors": errors,
                "elapsed_s": round(elapsed, 1), "eta_s": eta}

    async def vote(self, *, run_id: str, index: int, winner: str,
                   reason: str | None) -> RunVoteRecord:
        run = await self._runs.get(run_id=run_id)
        row = [c for c in await self._runs.cells(run_id=run_id) if c.index == index]
        if not row:
            raise BadTurnRequest(f"run {run_id!r} has no prompt {index}")
        if any(c.status != "complete" for c in row):
            raise BadTurnRequest(f"prompt {index} is not answered by every model yet; vote "
                                 "when its row is complete")
        allowed = [str(i) for i in range(len(run.models))] + list(TIE_WINNERS)
        if winner not in allowed:
            raise BadTurnRequest(f"winner must be one of {', '.join(allowed)}")
        return await self._runs.put_vote(run_id=run_id, index=index, models=run.models,
                                         winner=winner, reason=reason)

    # Following a run ------------------------------------------------------------------

    async def run_progress(self, run: RunRecord) -> dict[str, Any]:
        return self.progress(run, await self._runs.cells(run_id=run.id))

    async def follow(self, run_id: str, *, keepalive_s: float) -> AsyncIterator[RunEvent]:
        """A snapshot of the run's progress, then its cells and progress as they change,
        then `end` once it no longer runs; ("", {}) after keepalive_s of quiet."""
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        self._feeds.setdefault(run_id, set()).add(queue)  # before the snapshot: miss nothing
        try:
            run = await self._runs.get(run_id=run_id)
            yield "progress", {"status": run.status, "progress": self.progress(
                run, await self._runs.cells(run_id=run_id))}
            if run_id not in self._active:
                yield "end", {"status": run.status, "error": run.error}
                return
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), keepalive_s)
                except TimeoutError:
                    yield "", {}
                    continue
                if item is None:
                    return
                yield item
                if item[0] == "end":
                    return
        finally:
            feeds = self._feeds.get(run_id)
            if feeds is not None:
                feeds.discard(queue)
                if not feeds:
                    self._feeds.pop(run_id, None)

    def _publish(self, run_id: str, name: str, data: dict[str, Any]) -> None:
        for queue in self._feeds.get(run_id, ()):
            queue.put_nowait((name, data))

    # Driving a run --------------------------------------------------------------------

    def _launch(self, run: RunRecord) -> None:
        active = ActiveRun(run)
        self._active[run.id] = active
        active.task = asyncio.create_task(self._drive(active), name=f"run {run.id}")

    async def _drive(self, active: ActiveRun) -> None:
        run = active.run
        status, error = "complete", None
        watch = asyncio.create_task(self._watch_stop(active), name=f"run {run.id} stop")
        try:
            prompts = await self._sets.prompts(set_id=run.set_id)
            todo: dict[int, list[int]] = {}
            cells = await self._runs.cells(run_id=run.id)
            active.tally = CellTally(cells)
            for cell in cells:
                if cell.status != "complete":
                    todo.setdefault(cell.index, []).append(cell.slot)
            for chunk in self._chunks(run, prompts, todo):
                if active.stop_requested:
                    break
                error = await self._ask(active, chunk, prompts, todo)
                await self._save_elapsed(active)
                if error is not None:
                    status = "error"
                    break
            if active.stop_requested:
                status = "stopped"
            elif status == "complete" and active.tally.errors:
                status = "error"
                error = {"code": "cells_failed",
                         "message": "some prompts ended in an error; resume to ask them "
                                    "again"}
        except asyncio.CancelledError:  # the gateway is shutting down: resume later
            status, error = "interrupted", {
                "code": "gateway_stopped",
                "message": "the gateway stopped while this run was going; resume it"}
            raise
        except Exception as exc:  # a bug: say so on the run rather than leave it running
            logger.exception("run %s failed", run.id)
            status, error = "error", {"code": "run_failed", "message": str(exc)}
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await asyncio.shield(self._settle(active, status, error))

    async def _watch_stop(self, active: ActiveRun) -> None:
        """A stop asked for on another gateway sharing the database reaches the driver here
        (this gateway's own Stop acts at once)."""
        while not active.stop_requested:
            await asyncio.sleep(STOP_POLL_S)
            try:
                asked = await self._runs.stop_asked(run_id=active.run.id)
            except Exception:  # the database refusing for a while: ask again later
                continue
            if asked:
                await self._stop_active(active)

    async def _settle(self, active: ActiveRun, status: str,
                      error: dict[str, Any] | None) -> None:
        run_id = active.run.id
        try:
            await self._runs.requeue(run_id=run_id)
            await self._runs.update(run_id=run_id, status=status, error=error,
                                    elapsed_s=self._elapsed(active))
        finally:
            self._active.pop(run_id, None)
            run = await self._runs.get(run_id=run_id)
            self._publish(run_id, "progress", {"status": run.status, "progress": self.progress(
                run, await self._runs.cells(run_id=run_id))})
            self._publish(run_id, "end", {"status": run.status, "error": run.error})

    def _elapsed(self, active: ActiveRun) -> float:
        return active.run.elapsed_s + (time.monotonic() - active.started)

    async def _save_elapsed(self, active: ActiveRun) -> None:
        await self._runs.update(run_id=active.run.id, elapsed_s=self._elapsed(active))

    def _chunks(self, run: RunRecord, prompts: list[SetPromptRecord],
                todo: dict[int, list[int]]) -> list[list[int]]:
        """Prompt indexes to ask together: up to a batch's rows, one system prompt each."""
        rows = wp.MAX_BATCH_ROWS // len(run.models) if run.mode == "batch" else 1
        chunks: list[list[int]] = []
        for index in sorted(todo):
            system = prompts[index].system
            if chunks and len(chunks[-1]) < max(rows, 1) \
                    and prompts[chunks[-1][0]].system == system:
                chunks[-1].append(index)
            else:
                chunks.append([index])
        return chunks

    async def _ask(self, active: ActiveRun, chunk: list[int], prompts: list[SetPromptRecord],
                   todo: dict[int, list[int]]) -> dict[str, Any] | None:
        """One chunk on the box. Returns the error that should stop the run (every cell of
        the chunk failed: the box is down or the model broken), else None."""
        run = active.run
        system = prompts[chunk[0]].system
        params = {**run.params, **({"system": system} if system else {})}
        cells = [(index, slot) for index in chunk for slot in todo[index]]
        with contextlib.ExitStack() as places:  # each cell's place, held until it runs
            turns = [await self._admitted(active, places, run.models[slot], {
                "run_id": run.id, "prompt_index": index, "slot": slot})
                for index, slot in cells]
            if active.stop_requested or None in turns:
                return None
            ready: list[Turn] = [t for t in turns if t is not None]
            histories = [[{"role": "user", "content": prompts[index].prompt}]
                         for index, _ in cells]
            await self._runs.mark_asked(run_id=run.id, cells=cells)
            for cell in cells:
                active.tally.set(cell, "running")
            for index, slot in cells:
                self._publish(run.id, "cell", {"index": index, "slot": slot, "cell": {
                    "slot": slot, "model": run.models[slot], "status": "running"}})
            active.in_flight = ready
            if run.mode == "batch":
                self._turns.launch_batch(ready, histories, params)
            else:
                for turn, history in zip(ready, histories, strict=True):
                    self._turns.launch(turn, history, params)
        if active.stop_requested:  # a stop that came while the cells were being written
            for turn in ready:
                with contextlib.suppress(Exception):
                    await self._turns.stop(turn.id)
        ends = await asyncio.gather(*(self._record(active, turn, prompts[index], params)
                                      for turn, (index, _) in zip(ready, cells, strict=True)))
        active.in_flight = []
        errors = [e for e in ends if e is not None]
        return errors[0] if errors and len(errors) == len(ends) else None

    async def _admitted(self, active: ActiveRun, places: contextlib.ExitStack, model: str,
                        tags: dict[str, Any]) -> Turn | None:
        """A turn for one cell, once MAX_CONCURRENT_TURNS lets it in (page chats go first:
        a run waits its turn rather than fail), its place held in `places`. None: the run
        was stopped meanwhile."""
        while not active.stop_requested:
            try:
                places.enter_context(self._turns.placing(model))
                return self._turns.unstored_turn(model, tags)
            except TooManyTurns as exc:
                await asyncio.sleep(exc.retry_after_s)
        return None

    async def _record(self, active: ActiveRun, turn: Turn, prompt: SetPromptRecord,
                      params: dict[str, Any]) -> dict[str, Any] | None:
        """Wait for one cell's end and store it. Returns its error, if it failed."""
        end: tuple[str, dict[str, Any]] | None = None
        async for _, item in turn.log.follow():
            if item[0] in ("done", "error"):
                end = item
        run_id, slot = active.run.id, turn.tags["slot"]
        provenance = self._turns.provenance(turn, params)
        scores = None
        if end is not None and end[0] == "done":
            data = end[1]
            content = data["content"]
            stopped = data["finish_reason"] == wp.FINISH_STOPPED
            status = "stopped" if stopped else "complete"
            provenance.update({k: data[k] for k in ("finish_reason", "timing", "box_timing",
                                                    "usage", "batch") if k in data})
            if prompt.reference is not None and not stopped:
                scores = (await asyncio.to_thread(score, content, prompt.reference)).as_dict()
            failure = None
        else:
            failure = end[1] if end is not None else {
                "code": "interrupted", "message": "the reply ended without an answer"}
            status, content = "error", "".join(turn.text)
            provenance["error"] = failure
        await self._runs.finish_cell(run_id=run_id, index=prompt.index, slot=slot,
                                     status=status, content=content, provenance=provenance,
                                     scores=scores)
        active.tally.set((prompt.index, slot), status)
        if status in ENDED:
            active.done_here += 1
        self._publish(run_id, "cell", {"index": prompt.index, "slot": slot, "cell": {
            "slot": slot, "model": turn.model, "status": status, "content": content,
            "finish_reason": provenance.get("finish_reason"),
            "ttft_ms": (provenance.get("timing") or {}).get("ttft_ms"),
            "total_ms": (provenance.get("timing") or {}).get("total_ms"),
            "scores": scores, "error": provenance.get("error")}})
        tally = active.tally
        self._publish(run_id, "progress", {"status": "running", "progress": self._progress(
            active.run, tally.done, len(tally), tally.errors)})
        return failure if status == "error" else None

    async def close(self) -> None:
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
