"""Load (issue 17, limits): 200 chat requests at once, streaming, against MAX_CONCURRENT_TURNS=8
on the real test box (a real sshd, the real LlamaFactory, the tiny model, short replies).
Each either completes (its `done`) or is refused at once with 429 and Retry-After, never a
hang; storage holds exactly the accepted ones, each once (one user message, one complete
reply equal to what streamed), none of the refused; the gateway's peak memory is reported
and bounded. A second wave afterwards is accepted whole: every slot was freed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway_process import GatewayProcess
from tests.ui_rig import start_real_gateway

pytestmark = pytest.mark.box

LIMIT = 8  # MAX_CONCURRENT_TURNS here
WAVE = 200
PARAMS = {"max_new_tokens": 8}
HANG_S = 120  # no request may take longer than this, accepted or refused
REFUSAL_S = 15  # a 429 comes at once: far sooner than this, whatever the machine's load
PEAK_MB_CEILING = 600


@dataclass
class Outcome:
    message: str
    status: int = 0
    retry_after: str | None = None
    error: dict[str, Any] | None = None
    chat_id: str | None = None
    turn_id: str | None = None
    deltas: list[str] = field(default_factory=list)
    end: tuple[str, dict[str, Any]] | None = None
    answered_at: float = 0.0  # when the 429 arrived, or the reply's `done`
    took_s: float = 0.0


async def one(http: httpx.AsyncClient, message: str) -> Outcome:
    """One streamed chat: its events as they come, or its refusal."""
    outcome, started = Outcome(message), time.monotonic()
    async with http.stream("POST", "/api/chat", json={"message": message,
                                                      "params": PARAMS}) as response:
        outcome.status = response.status_code
        if response.status_code != 200:
            outcome.error = json.loads(await response.aread())["detail"]
            outcome.retry_after = response.headers.get("retry-after")
        else:
            name = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:])
                    if name == "meta":
                        outcome.chat_id, outcome.turn_id = data["chat_id"], data["turn_id"]
                    elif name == "delta":
                        outcome.deltas.append(data["text"])
                    elif name in ("done", "error"):
                        outcome.end = (name, data)
                        break
    outcome.answered_at = time.monotonic()
    outcome.took_s = outcome.answered_at - started
    return outcome


async def wave(url: str, prefix: str, count: int) -> list[Outcome]:
    limits = httpx.Limits(max_connections=count + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits,
                                 timeout=httpx.Timeout(HANG_S, connect=30)) as http:
        async with asyncio.timeout(HANG_S):  # none hangs
            return await asyncio.gather(*(one(http, f"{prefix} request {i}")
                                          for i in range(count)))


def peak_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def stored(gateway: GatewayProcess) -> dict[str, dict[str, Any]]:
    """Every chat the gateway holds, with its messages."""
    listing = gateway.http.get("/api/chats", params={"limit": 500}).json()["chats"]
    return {item["id"]: gateway.http.get(f"/api/chats/{item['id']}").json()
            for item in listing}


def check_wave(outcomes: list[Outcome], chats: dict[str, dict[str, Any]]) -> None:
    accepted = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status != 200]
    for o in refused:
        assert o.status == 429, (o.status, o.error)
        assert o.error["code"] == "too_many_turns" and "MAX_CONCURRENT_TURNS" in \
            o.error["message"], o.error
        assert o.retry_after is not None and int(o.retry_after) > 0
        assert o.took_s < REFUSAL_S, o.took_s
    for o in accepted:
        assert o.end is not None and o.end[0] == "done", (o.message, o.end)
        assert o.end[1]["content"] == "".join(o.deltas), o.message
    if refused:
        # Refused because the slots were busy, not after waiting for them: when each 429
        # arrived, a reply accepted in the same wave was still streaming.
        last_done = max(o.answered_at for o in accepted)
        assert all(o.answered_at < last_done for o in refused)
    # Storage holds the accepted requests, each once, exactly as streamed; none refused.
    by_chat = {o.chat_id: o for o in accepted}
    assert len(by_chat) == len(accepted)
    mine = {chat_id: chat for chat_id, chat in chats.items() if chat_id in by_chat}
    assert set(mine) == set(by_chat)
    for chat_id, chat in mine.items():
        o = by_chat[chat_id]
        assert [(m["role"], m["status"], m["content"]) for m in chat["messages"]] == [
            ("user", "complete", o.message), ("assistant", "complete", "".join(o.deltas))]
        assert chat["messages"][1]["id"] == o.turn_id
    asked = {o.message for o in outcomes}
    strays = [chat["title"] for chat_id, chat in chats.items()
              if chat_id not in by_chat and chat["title"] in asked]
    assert strays == []  # nothing of a refused request was stored


def test_200_requests_at_once_complete_or_get_429_and_storage_holds_each_once(
        sshd, box_python, tiny, tmp_path, reliability):
    gateway = start_real_gateway(sshd, box_python, tiny, tmp_path / "gw",
                                 env={"MAX_CONCURRENT_TURNS": str(LIMIT)})
    try:
        loaded = gateway.http.post("/api/models/default/load")
        assert loaded.status_code in (200, 202), loaded.text
        assert gateway.wait_status("default", "ready", timeout=180)["status"] == "ready"
        before = peak_mb(gateway.proc.pid)

        started = time.monotonic()
        first = asyncio.run(wave(gateway.url, "first", WAVE))
        first_s = time.monotonic() - started
        accepted = sum(o.status == 200 for o in first)
        refused = [o for o in first if o.status == 429]
        assert accepted + len(refused) == WAVE
        assert accepted >= LIMIT and refused, (
            f"{accepted} of {WAVE} requests at once were accepted with MAX_CONCURRENT_TURNS="
            f"{LIMIT}, {len(refused)} refused: the limit did not hold")
        check_wave(first, stored(gateway))

        second = asyncio.run(wave(gateway.url, "second", LIMIT))  # the slots were freed
        assert [o.status for o in second] == [200] * LIMIT, [o.error for o in second]
        chats = stored(gateway)
        check_wave(second, chats)
        assert len(chats) == accepted + LIMIT  # nothing lost, nothing twice
        peak = peak_mb(gateway.proc.pid)
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]
    print(f"\nload: {accepted} accepted, {len(refused)} refused in {first_s:.1f} s; gateway "
          f"peak memory {peak:.0f} MB (before the wave {before:.0f} MB)")
    assert peak < PEAK_MB_CEILING, peak
    slowest_refusal = max(o.took_s for o in refused)
    reliability.record(
        "limits", f"{WAVE} streaming chat requests at once against MAX_CONCURRENT_TURNS="
        f"{LIMIT} on the real box (tiny model, {PARAMS['max_new_tokens']} new tokens each)",
        f"{accepted} completed and {len(refused)} got 429 too_many_turns with Retry-After "
        f"{refused[0].retry_after} s (all within {REFUSAL_S} s, while accepted replies were "
        f"still streaming); none hung; storage holds each accepted request once (its message "
        f"and a complete reply equal to what streamed) and nothing of the refused; a second "
        f"wave of {LIMIT} right after was accepted whole")
    reliability.record(
        "limits", f"the gateway's peak memory (VmHWM) through {WAVE} requests at once",
        f"about {round(peak, -1):.0f} MB (bounded by the test at {PEAK_MB_CEILING} MB)")
    assert slowest_refusal < REFUSAL_S
