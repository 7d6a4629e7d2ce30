"""Prompt sets and their runs in each database (SQLite and a real PostgreSQL): a set is
stored whole, a run's cells count their attempts, a crash puts cells in flight back to
pending and the run to interrupted, votes replace, and deleting a set takes its runs."""

from __future__ import annotations

import pytest

from lfgate.services.evals.prompt_set_file import SetPrompt
from lfgate.storage.database import open_database
from lfgate.storage.errors import UnknownPromptSet, UnknownRun
from lfgate.storage.prompt_set_store import PromptSetStore
from lfgate.storage.run_store import RunStore


async def test_a_run_lives_through_a_crash_and_goes_with_its_set(database_url):
    database = await open_database(database_url)
    try:
        sets, runs = PromptSetStore(database), RunStore(database)
        made = await sets.create(name="eval", format="jsonl", prompts=[
            SetPrompt("一 prompt", reference="ref"), SetPrompt("two", system="be brief")])
        assert (made.count, made.references) == (2, 1)
        assert [(p.index, p.prompt, p.system) for p in await sets.prompts(set_id=made.id)] \
            == [(0, "一 prompt", None), (1, "two", "be brief")]

        run = await runs.create(set_id=made.id, models=["a", "b"], params={"seed": 1},
                                mode="batch", prompts=2)
        assert len(await runs.cells(run_id=run.id)) == 4
        await runs.mark_asked(run_id=run.id, cells=[(0, 0), (0, 1)])
        await runs.finish_cell(run_id=run.id, index=0, slot=0, status="complete",
                               content="answer", provenance={"timing": {}},
                               scores={"bleu": 1.0, "chrf": 2.0, "rouge_l": 3.0})
        await runs.mark_asked(run_id=run.id, cells=[(1, 0)])
        # The gateway dies here; the next one starts up.
        assert await runs.mark_interrupted() == 1
        cells = {(c.index, c.slot): c for c in await runs.cells(run_id=run.id)}
        assert (cells[0, 0].status, cells[0, 0].content, cells[0, 0].attempts) == (
            "complete", "answer", 1)
        assert cells[0, 0].scores == {"bleu": 1.0, "chrf": 2.0, "rouge_l": 3.0}
        assert [(cells[k].status, cells[k].attempts) for k in ((0, 1), (1, 0), (1, 1))] == [
            ("pending", 1), ("pending", 1), ("pending", 0)]
        again = await runs.get(run_id=run.id)
        assert again.status == "interrupted" and again.error["code"] == "gateway_restarted"

        await runs.put_vote(run_id=run.id, index=0, models=["a", "b"], winner="0",
                            reason=None)
        await runs.put_vote(run_id=run.id, index=0, models=["a", "b"], winner="tie",
                            reason="same")
        assert [(v.index, v.winner) for v in await runs.votes()] == [(0, "tie")]

        await sets.delete(set_id=made.id)
        with pytest.raises(UnknownRun):
            await runs.get(run_id=run.id)
        assert await runs.votes() == []
        with pytest.raises(UnknownPromptSet):
            await runs.create(set_id=made.id, models=["a"], params={}, mode="batch",
                              prompts=1)
    finally:
        await database.close()


async def test_times_come_back_in_utc(database_url):
    database = await open_database(database_url)
    try:
        sets, runs = PromptSetStore(database), RunStore(database)
        made = await sets.create(name="s", format="lines", prompts=[SetPrompt("p")])
        run = await runs.create(set_id=made.id, models=["a"], params={}, mode="batch",
                                prompts=1)
        again = await runs.get(run_id=run.id)
        listed = (await sets.every())[0]
        assert again.created_at.utcoffset() is not None and listed.created_at.utcoffset() \
            is not None
        assert abs((again.created_at - run.created_at).total_seconds()) < 1
    finally:
        await database.close()
