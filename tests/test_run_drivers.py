"""Who drives a prompt-set run, and what one gateway may take from another (issue 24 findings
3, 9 and 14).

- Finding 3: a run is claimed in the database, atomically: resumes at once (on one gateway or
  two sharing PostgreSQL) get one driver and every cell is asked once; Stop stops whichever
  gateway drives the run.
- Finding 9: following a run costs O(1) per cell (no read of the whole run after each cell).
- Finding 14: a second gateway on the same SQLite file refuses to start, naming the first; on
  PostgreSQL a gateway recovers only what no live gateway owns.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from lfgate.storage.chat_store import ChatStore
from lfgate.storage.database import open_database
from lfgate.storage.presence import Presence
from lfgate.storage.prompt_set_store import PromptSetStore
from lfgate.storage.run_store import RunStore
from lfgate.storage.sqlite_lock import DatabaseInUse
from lfgate.storage.tables import Gateway, utcnow
from tests.gateway_process import LFGATE
from tests.rig.ports import free_port
from tests.rig.saves_tree import make_saves
from tests.test_models_api import BASE, Client, eventually, gateway
from tests.test_prompt_sets_api import A, B, finished, import_set
from tests.test_streams import wait_for
from tests.ui_rig import scripted_env, start_scripted_gateway


@pytest.fixture
def saves(tmp_path: Path) -> Path:
    make_saves(tmp_path / "saves", BASE)
    return tmp_path / "saves"


async def _cells(http, run_id: str) -> dict[tuple[int, int], dict]:
    run = (await http.get(f"/api/runs/{run_id}")).json()
    return {(row["index"], cell["slot"]): cell for row in run["rows"] for cell in row["cells"]}


# Finding 3: one driver ---------------------------------------------------------------------

async def test_resumes_at_once_get_one_driver_and_each_cell_is_asked_once(
        tmp_path, monkeypatch, saves, reliability):
    """Two concurrent Resumes both answered 200 and every pending cell was asked twice (five
    resumes, five times); Stop then said `stopped` while the other driver went on."""
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    monkeypatch.setenv("LFGATE_SCRIPTED_DELAY_S", "0.01")
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        made = await import_set(http, "\n".join(f"long {n}" for n in range(12)))
        run = (await http.post(f"/api/prompt-sets/{made['id']}/runs", json={
            "models": [A, B], "params": {"max_new_tokens": 40}})).json()
        stopped = await http.post(f"/api/runs/{run['id']}/stop")
        assert stopped.json()["status"] == "stopped"
        before = await _cells(http, run["id"])

        answers = await asyncio.gather(*(http.post(f"/api/runs/{run['id']}/resume")
                                         for _ in range(5)))
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409, 409, 409, 409], [a.text for a in answers]
        assert all("stop it first" in a.text for a in answers if a.status_code == 409)

        # Stop stops the one driver there is: nothing is asked once it has answered.
        async def some_done() -> bool:
            cells = await _cells(http, run["id"])
            return sum(c["status"] == "complete" for c in cells.values()) > \
                sum(c["status"] == "complete" for c in before.values())
        await eventually(some_done)
        assert (await http.post(f"/api/runs/{run['id']}/stop")).json()["status"] == "stopped"
        assert app.state.prompt_runs._active == {} and app.state.turns._active == {}

        assert (await http.post(f"/api/runs/{run['id']}/resume")).status_code == 200
        after = await finished(http, run["id"])
        assert after["status"] == "complete"
        cells = await _cells(http, run["id"])
        for key, cell in cells.items():
            asked_before = before[key]["attempts"]
            # Each sitting asked it at most once: before the first stop, between the stops,
            # after the last resume.
            assert cell["attempts"] - asked_before <= 2, (key, cell, before[key])
            if before[key]["status"] == "complete":
                assert cell["attempts"] == asked_before
    reliability.record(
        "gateway", "five Resumes of one run at once (issue 24 finding 3)",
        "one 200 and four 409 run_busy; each cell asked once per sitting; Stop leaves no "
        "driver and no reply running")


def test_two_gateways_on_one_postgres_share_a_run_with_one_driver(
        tmp_path, postgres_database, reliability):
    """The run is claimed in the database: a gateway sharing it cannot drive it twice, says
    which gateway does, and its Stop stops that one."""
    env = {"DATABASE_URL": postgres_database}
    first = start_scripted_gateway(tmp_path / "a", delay_s=0.01, env=env)
    second = start_scripted_gateway(tmp_path / "b", delay_s=0.01, env=env)
    try:
        made = first.http.post("/api/prompt-sets", json={
            "content": "\n".join(f"long {n}" for n in range(30))}).json()
        run = first.http.post(f"/api/prompt-sets/{made['id']}/runs", json={
            "models": ["default"], "params": {"max_new_tokens": 60}}).json()
        refused = second.http.post(f"/api/runs/{run['id']}/resume")
        assert refused.status_code == 409, refused.text
        assert f"pid {first.proc.pid})" in refused.json()["detail"]["message"]

        wait_for(lambda: first.http.get(f"/api/runs/{run['id']}").json()["progress"]["done"],
                 "a cell answered")
        stopped = second.http.post(f"/api/runs/{run['id']}/stop")  # asks the driver: first
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        view = first.http.get(f"/api/runs/{run['id']}").json()
        assert view["status"] == "stopped"
        assert not [c for r in view["rows"] for c in r["cells"] if c["status"] == "running"]

        # Resumed on both at once: one driver.
        answers: list[int] = []
        threads = [threading.Thread(target=lambda g=g: answers.append(
            g.http.post(f"/api/runs/{run['id']}/resume").status_code))
            for g in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers) == [200, 409]
        done = wait_for(lambda: (v := second.http.get(f"/api/runs/{run['id']}").json())[
            "status"] != "running" and v, "the run ended", timeout_s=120)
        assert done["status"] == "complete"
        attempts = [c["attempts"] for r in done["rows"] for c in r["cells"]]
        assert max(attempts) <= 2  # asked at most once before the stop and once after
    finally:
        assert first.stop(), first.log.read_text()[-3000:]
        assert second.stop(), second.log.read_text()[-3000:]
    reliability.record(
        "gateway", "two gateways on one PostgreSQL: Resume on both, Stop on the one not "
        "driving (issue 24 finding 3)",
        "409 naming the driving gateway's host and pid; Stop reaches the driver and the run "
        "ends `stopped`; Resume on both at once: one driver")


# Finding 9: progress O(1) per cell ---------------------------------------------------------

async def test_following_a_run_reads_each_cell_a_bounded_number_of_times(
        tmp_path, monkeypatch, saves, reliability):
    """After each cell the gateway re-read every cell of the run to publish progress: O(n²)
    for a followed run (a 10,000-cell run took /api/health from 46 to 281 ms). Counted here:
    rows the run store reads while a follower watches the whole run."""
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    monkeypatch.setenv("LFGATE_SCRIPTED_DELAY_S", "0.005")
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        made = await import_set(http, "\n".join(f"prompt {n}" for n in range(40)))
        runs, read = app.state.runs, []
        real = runs.cells

        async def counted(*, run_id: str):
            cells = await real(run_id=run_id)
            read.append(len(cells))
            return cells
        monkeypatch.setattr(runs, "cells", counted)
        run = (await http.post(f"/api/prompt-sets/{made['id']}/runs", json={
            "models": [A, B]})).json()
        events = [event async for event in app.state.prompt_runs.follow(run["id"],
                                                                        keepalive_s=30)]
        total = 80
        progress = [data["progress"]["done"] for name, data in events if name == "progress"]
        assert events[-1][0] == "end" and progress[-1] == total
        assert progress == sorted(progress)  # never backwards
        assert len(progress) > total // 2  # followed while it ran, not only its end
        assert sum(read) <= 4 * total, read
    reliability.record(
        "gateway", "a page follows an 80-cell prompt-set run (issue 24 finding 9)",
        f"progress after every cell, never backwards; {sum(read)} cell rows read in all "
        "(at most 4 per cell; it was one read of the whole run per cell)")


# Finding 14: gateways on one database ------------------------------------------------------

def test_a_second_gateway_on_one_sqlite_file_refuses_to_start_naming_the_first(
        tmp_path, reliability):
    first = start_scripted_gateway(tmp_path / "a")
    try:
        env = {**os.environ, **scripted_env(tmp_path / "a")}
        port = free_port()
        second = subprocess.run([LFGATE, "serve", "--port", str(port)], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert f"another gateway (pid {first.proc.pid}) is using the database " \
               f"{tmp_path / 'a' / 'lfgate.db'}" in lines[0]
        assert "LFGATE_DATA_DIR or DATABASE_URL" in lines[0]
        assert first.http.get("/api/health").status_code == 200  # the first serves on
    finally:
        assert first.stop(), first.log.read_text()[-3000:]
    # Once the first has stopped (or died: the kernel drops the lock), the file is free.
    again = start_scripted_gateway(tmp_path / "a")
    assert again.stop(), again.log.read_text()[-3000:]
    reliability.record(
        "gateway", "a second `lfgate serve` on the same SQLite database (issue 24 finding 14)",
        "exit 1, one line naming the first gateway's pid and the database, and the settings "
        "that give it its own; the first serves on")


async def test_a_sqlite_database_is_held_by_one_opener(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"
    database = await open_database(url)
    try:
        with pytest.raises(DatabaseInUse, match=f"pid {os.getpid()}"):
            await open_database(url)
    finally:
        await database.close()
    again = await open_database(url)  # free once closed
    await again.close()


async def test_recovery_takes_only_what_no_live_gateway_owns(database_url):
    """On a shared database (PostgreSQL) each gateway's heartbeat says it is alive: a reply
    it streams and a run it drives are left alone by the others until it has gone quiet,
    then they are recovered (a reply `interrupted`, a run resumable by any gateway)."""
    database = await open_database(database_url)
    try:
        mine, theirs = Presence(database), Presence(database)
        await mine.register()
        await theirs.register()
        their_chats, my_chats = ChatStore(database, theirs), ChatStore(database, mine)
        chat = await their_chats.create_chat(title="theirs")
        asked = await their_chats.add_message(chat_id=chat.id, parent_id=None, role="user",
                                              content="hi")
        reply = await their_chats.add_message(chat_id=chat.id, parent_id=asked.id,
                                              role="assistant", content="", status="streaming")
        prompt_set = await PromptSetStore(database).create(name="s", format="lines",
                                                           prompts=_prompts(2))
        their_runs, my_runs = RunStore(database, theirs), RunStore(database, mine)
        run = await their_runs.create(set_id=prompt_set.id, models=["m"], params={},
                                      mode="sequential", prompts=2)

        if database.engine.dialect.name == "sqlite":
            # One gateway per SQLite file (it holds the lock): any other owner is gone.
            assert await my_chats.mark_interrupted() == 1
            assert await my_runs.mark_interrupted() == 1
            assert await my_runs.claim(run_id=run.id, mode="sequential")
            return
        assert await my_chats.mark_interrupted() == 0
        assert await my_runs.mark_interrupted() == 0
        assert not await my_runs.claim(run_id=run.id, mode="sequential")
        assert await my_runs.driver(run_id=run.id) == theirs.id
        assert (await my_chats.find_message(message_id=reply.id)).status == "streaming"

        async with database.sessions.begin() as session:  # they go quiet (died)
            await session.execute(update(Gateway).where(Gateway.id == theirs.id).values(
                seen_at=utcnow() - timedelta(seconds=theirs.quiet_after_s + 1)))
        assert await my_runs.driver(run_id=run.id) is None
        assert await my_chats.mark_interrupted() == 1
        assert (await my_chats.find_message(message_id=reply.id)).status == "interrupted"
        assert await my_runs.claim(run_id=run.id, mode="sequential")  # resumable here
        assert await my_runs.driver(run_id=run.id) == mine.id
        assert await my_runs.mark_interrupted() == 0  # it is mine now, and I am alive
    finally:
        await database.close()


def _prompts(count: int):
    from lfgate.services.evals.prompt_set_file import parse_prompt_set

    return parse_prompt_set("\n".join(f"p{n}" for n in range(count))).prompts
