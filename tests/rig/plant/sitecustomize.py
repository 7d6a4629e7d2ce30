"""Planted faults for the gateway guards' own tests (tests/test_loop_watch.py,
tests/test_reply_failures.py): on PYTHONPATH with LFGATE_TEST_PLANT set, the gateway's GET
/api/leaderboard first either computes 300 ms on the event loop ("block") or starts a task
whose exception nobody reads ("unread"); or ("save_fails") the save of a finished reply
raises, as a bug or a database refusing its text would. Nothing else changes."""

from __future__ import annotations

import os

PLANT = os.environ.get("LFGATE_TEST_PLANT", "")

if PLANT:
    import asyncio
    import time

    from lfgate.services.evals import standings

    _board = standings.Standings.board

    async def _planted_board(self: standings.Standings):  # type: ignore[no-untyped-def]
        if PLANT == "block":
            until = time.thread_time() + 0.3
            while time.thread_time() < until:
                pass
        elif PLANT == "unread":
            async def fails() -> None:
                raise RuntimeError("planted: an exception nobody reads")

            asyncio.get_running_loop().create_task(fails())
            await asyncio.sleep(0)
        return await _board(self)

    standings.Standings.board = _planted_board  # type: ignore[method-assign]

    if PLANT == "save_fails":
        from lfgate.storage import chat_store

        _update = chat_store.ChatStore.update_message

        async def _planted_update(self, *, message_id, **changes):  # type: ignore[no-untyped-def]
            if changes.get("status") == "complete":
                raise RuntimeError("planted: the save of a finished reply fails")
            return await _update(self, message_id=message_id, **changes)

        chat_store.ChatStore.update_message = _planted_update  # type: ignore[method-assign]
