"""Discovered models through the API, served by the scripted box double (the real wrapper loop
and protocol 2, no model): listing, rescans, one process per base in script mode, the adapter
bound, CLI mode's process bound, and broken or vanished models. The real LlamaFactory side is
in tests/test_adapters_box.py and tests/test_adapters_gateway.py."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from lfgate.app import create_app
from lfgate.config import load_settings
from tests.rig.saves_tree import make_saves

SCRIPTED_WRAPPER = Path(__file__).parent / "rig" / "fake_wrappers" / "scripted_wrapper.py"
BASE = "/models/tiny-base"


def gateway(tmp_path: Path, monkeypatch, mode: str = "script", **settings: object):
    monkeypatch.setenv("CHAT_MODE", mode)  # the double's hello reads it
    monkeypatch.setenv("LFGATE_SCRIPTED_LOAD_S", "0.05")
    monkeypatch.setenv("LFGATE_SCRIPTED_DELAY_S", "0")
    return create_app(load_settings(**{
        "ssh_host": "", "chat_mode": mode, "chat_script_path": str(SCRIPTED_WRAPPER),
        "remote_python": sys.executable, "base_model_path": BASE, "template": "qwen",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gate.db'}", "rescan_interval": 0,
        **settings}))


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30) -> None:
    """Wait on state: poll `check` until it holds (a TimeoutError says it never did)."""
    async with asyncio.timeout(timeout_s):
        for _ in itertools.count():
            if await check():
                return
            await asyncio.sleep(0.05)


class Client:
    def __init__(self, app) -> None:
        self.app = app

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                       base_url="http://localhost", timeout=60)
        return self._http

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()
        await self._lifespan.__aexit__(*exc)


async def ask(http: httpx.AsyncClient, model: str, message: str = "hi",
              chat_id: str | None = None) -> dict:
    body = {"message": message, "model": model, "stream": False,
            **({"chat_id": chat_id} if chat_id else {})}
    response = await http.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def by_id(listing: dict) -> dict[str, dict]:
    return {m["id"]: m for m in listing["models"]}


@pytest.fixture
def saves(tmp_path: Path) -> Path:
    make_saves(tmp_path / "saves", BASE)
    return tmp_path / "saves"


async def test_listing_has_runs_checkpoints_losses_and_what_is_missing(tmp_path, monkeypatch,
                                                                       saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=f"{saves},{tmp_path / 'nope'}",
                  adapter_path="/runs/lora")
    async with Client(app) as http:
        listing = (await http.post("/api/models/refresh")).json()
        models = by_id(listing)
        ckpt = models["tiny--lora--sft-a--checkpoint-20"]
        assert (ckpt["kind"], ckpt["base_id"], ckpt["step"], ckpt["template"]) == (
            "adapter", "base", 20, "qwen")
        assert ckpt["train_loss"] == 1.0 and ckpt["run"] == "tiny--lora--sft-a"
        assert ckpt["run_path"] == "tiny/lora/sft-a" and ckpt["shared_base"] is True
        b = models["tiny--lora--sft-b--checkpoint-100"]
        assert b["template"] == "default" and b["warnings"]
        assert not models["tiny--lora--broken-no-weights"]["usable"]
        assert models["default"]["adapter_path"] == "/runs/lora"
        assert listing["runs"]["tiny--lora--sft-a"]["train"][0] == [2, 2.8]
        assert listing["scan"]["missing"] == [{"dir": str(tmp_path / "nope"),
                                               "reason": "no such folder on the box"}]
        assert listing["scan"]["error"] is None
        warnings = (await http.get("/api/health")).json()["warnings"]
        assert f"ADAPTER_DIRS: {tmp_path / 'nope'}: no such folder on the box" in warnings

        new = saves / "tiny/lora/sft-a/checkpoint-30"
        shutil.copytree(saves / "tiny/lora/sft-a/checkpoint-20", new)
        listed = by_id((await http.get("/api/models")).json())
        assert "tiny--lora--sft-a--checkpoint-30" not in listed
        assert "tiny--lora--sft-a--checkpoint-30" in by_id(
            (await http.post("/api/models/refresh")).json())


async def test_one_process_serves_the_base_and_its_adapters(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves), max_loaded_adapters=2)
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        replies = {}
        for model in ("default", "tiny--lora--sft-a", "tiny--lora--sft-a--checkpoint-10",
                      "tiny--lora--sft-b--checkpoint-200"):
            replies[model] = (await ask(http, model))["content"]
        assert replies["default"] == "Echo #1 from tiny-base + no adapter: hi"
        assert replies["tiny--lora--sft-a--checkpoint-10"].endswith("+ checkpoint-10: hi")
        listing = (await http.get("/api/models")).json()
        (serving,) = listing["serving"]
        assert serving["shared"] and serving["held"]["base_loads"] == 1
        held = [a["path"] for a in serving["held"]["adapters"]]
        assert held == [str(saves / "tiny/lora/sft-a/checkpoint-10"),
                        str(saves / "tiny/lora/sft-b/checkpoint-200")]  # the bound: 2
        models = by_id(listing)
        assert models["tiny--lora--sft-a"]["status"] == "unloaded"  # put away
        assert models["tiny--lora--sft-b--checkpoint-200"]["status"] == "ready"
        assert models["default"]["status"] == "ready"

        # Loading an adapter ahead of a chat, and putting it away, leave the base loaded.
        loading = await http.post("/api/models/tiny--lora--sft-b/load")
        assert loading.status_code == 202
        async def loaded() -> bool:
            status = await http.get("/api/models/tiny--lora--sft-b/status")
            return status.json()["status"] != "loading"

        await eventually(loaded)
        assert by_id((await http.get("/api/models")).json())["tiny--lora--sft-b"][
            "status"] == "ready"
        status = (await http.get("/api/models/tiny--lora--sft-b/status")).json()
        held = (await http.get("/api/models")).json()["serving"][0]["held"]["adapters"]
        own = [a["load_seconds"] for a in held if a["path"].endswith("sft-b")]
        assert status["load_seconds"] == own[0]  # its own file load, not the base's
        unloaded = (await http.post("/api/models/tiny--lora--sft-b/unload")).json()
        assert unloaded["status"] == "unloaded"
        after = (await http.get("/api/models")).json()
        assert after["serving"][0]["held"]["base_loads"] == 1
        assert by_id(after)["default"]["status"] == "ready"
        chat = (await http.get(f"/api/chats/{(await ask(http, 'tiny--lora--sft-a'))['chat_id']}"
                               )).json()
        provenance = chat["messages"][-1]["provenance"]
        assert provenance["run"] == "tiny--lora--sft-a" and provenance["shared_base"] is True
        assert provenance["template"] == "qwen"


async def test_broken_and_unknown_models_are_refused_before_anything_is_stored(
        tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        broken = await http.post("/api/chat", json={"message": "hi", "stream": False,
                                                     "model": "tiny--lora--broken-config"})
        assert broken.status_code == 409
        assert broken.json()["detail"]["code"] == "model_unusable"
        assert "adapter_config.json" in broken.json()["detail"]["message"]
        assert (await http.post("/api/models/tiny--lora--broken-no-weights/load")
                ).status_code == 409
        unknown = await http.post("/api/chat", json={"message": "hi", "model": "nope"})
        assert unknown.status_code == 404
        assert (await http.get("/api/chats")).json()["chats"] == []


async def test_a_chat_whose_adapter_vanished_stays_readable(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        reply = await ask(http, "tiny--lora--sft-a--checkpoint-20")
        shutil.rmtree(saves / "tiny/lora/sft-a/checkpoint-20")
        assert "tiny--lora--sft-a--checkpoint-20" not in by_id(
            (await http.post("/api/models/refresh")).json())
        chat = (await http.get(f"/api/chats/{reply['chat_id']}")).json()
        assert chat["model"] == "tiny--lora--sft-a--checkpoint-20"
        assert chat["messages"][-1]["content"] == reply["content"]
        again = await http.post("/api/chat", json={
            "message": "more", "chat_id": reply["chat_id"], "stream": False,
            "model": "tiny--lora--sft-a--checkpoint-20"})
        assert again.status_code == 404 and "checkpoint-20" in again.text


async def test_cli_mode_runs_one_process_per_model_within_its_bound(tmp_path, monkeypatch,
                                                                    saves):
    app = gateway(tmp_path, monkeypatch, mode="cli", adapter_dirs=str(saves),
                  max_cli_sessions=1)
    async with Client(app) as http:
        listing = (await http.post("/api/models/refresh")).json()
        assert by_id(listing)["tiny--lora--sft-a"]["shared_base"] is False
        first = await ask(http, "tiny--lora--sft-a")
        assert first["content"].endswith("+ sft-a: hi")
        second = await ask(http, "tiny--lora--sft-b--checkpoint-100")
        assert second["content"].endswith("+ checkpoint-100: hi")
        after = (await http.get("/api/models")).json()
        assert len(after["serving"]) == 1  # the first process was shut down for the second
        assert after["serving"][0]["held"]["merged_adapter"].endswith("checkpoint-100")
        assert by_id(after)["tiny--lora--sft-a"]["status"] == "unloaded"


async def test_the_gateway_rescans_by_itself(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves), rescan_interval=0.2)
    async with Client(app) as http:
        async def listed(model_id: str) -> bool:
            return model_id in by_id((await http.get("/api/models")).json())

        await eventually(lambda: listed("tiny--lora--sft-a"))
        shutil.copytree(saves / "tiny/lora/sft-a/checkpoint-20",
                        saves / "tiny/lora/sft-a/checkpoint-40")
        await eventually(lambda: listed("tiny--lora--sft-a--checkpoint-40"))
        assert app.state.fleet.primary.discovery.report.scans >= 2


async def test_a_scan_that_fails_says_why_and_keeps_the_listing(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    async with Client(app) as http:
        before = by_id((await http.post("/api/models/refresh")).json())
        assert "tiny--lora--sft-a" in before
        # The box's Python goes away (a box rebuilt without it): the next scan fails.
        app.state.settings.remote_python = str(tmp_path / "no-python")
        listing = (await http.post("/api/models/refresh")).json()
        assert listing["scan"]["error"] and "discover_adapters.py" in listing["scan"]["error"]
        assert set(by_id(listing)) == set(before)
        warnings = (await http.get("/api/health")).json()["warnings"]
        assert any(w.startswith("scanning ADAPTER_DIRS failed") for w in warnings)


async def test_a_first_message_is_loading_at_once_and_counts_the_base_in_its_load(
        tmp_path, monkeypatch, saves):
    """Issue 23: the first message to an adapter whose base is not loaded. Its status is
    `loading` from the turn's first event (with the seconds so far), `ready` before its reply
    starts, and its load_seconds is the whole wait (the base's load, wrapper start included,
    plus its own), not the adapter's few milliseconds. An adapter put on that base afterwards
    says its load was its own alone, the base already loaded."""
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves), adapter_path="/runs/lora")
    monkeypatch.setenv("LFGATE_SCRIPTED_LOAD_S", "1")  # the double's base load: a second
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        assert by_id((await http.get("/api/models")).json())["default"]["status"] == "unloaded"
        turn = await app.state.turns.start(message="hi", chat_id=None, model="default",
                                           params={})
        seen: dict[str, dict] = {}
        async for logged in turn.log.follow():
            assert logged is not None
            _, (name, _) = logged
            if name in ("meta", "delta") and name not in seen:
                seen[name] = by_id((await http.get("/api/models")).json())["default"]
        assert seen["meta"]["status"] == "loading"  # the page polling now says so
        assert seen["meta"]["loading_seconds"] is not None
        assert seen["meta"]["loading_seconds"] >= 0
        assert seen["delta"]["status"] == "ready"  # loaded before the reply, not during it

        status = (await http.get("/api/models/default/status")).json()
        phases = status["load_phases"]
        assert set(phases) == {"connect_s", "upload_s", "start_s", "load_s", "adapter_s"}
        base = (await http.get("/api/models/base/status")).json()
        assert base["load_phases"] == {k: v for k, v in phases.items() if k != "adapter_s"}
        assert base["load_seconds"] >= sum(base["load_phases"].values())
        assert status["load_seconds"] == round(base["load_seconds"] + phases["adapter_s"], 3)
        assert status["base_already_loaded"] is False and status["loading_seconds"] is None
        listed = by_id((await http.get("/api/models")).json())["default"]
        assert (listed["load_seconds"], listed["base_already_loaded"]) == (
            status["load_seconds"], False)

        await ask(http, "tiny--lora--sft-a")  # onto the loaded base
        other = (await http.get("/api/models/tiny--lora--sft-a/status")).json()
        held = (await http.get("/api/models")).json()["serving"][0]["held"]["adapters"]
        own = next(a["load_seconds"] for a in held if a["path"].endswith("sft-a"))
        assert other["status"] == "ready" and other["base_already_loaded"] is True
        assert other["load_seconds"] == own and other["load_phases"] == {"adapter_s": own}


async def test_an_adapter_that_does_not_load_fails_its_first_message_saying_so(
        tmp_path, monkeypatch):
    app = gateway(tmp_path, monkeypatch, adapter_path="/runs/broken-lora")
    async with Client(app) as http:
        reply = await http.post("/api/chat", json={"message": "hi", "stream": False})
        error = reply.json()
        assert reply.status_code == 502 and error["code"] == "adapter_not_found", error
        assert error["message"].startswith("model 'default' did not load on the box: ")
        assert "/runs/broken-lora" in error["message"]
        status = (await http.get("/api/models/default/status")).json()
        assert status["status"] == "error" and "/runs/broken-lora" in status["error"]
        assert (await http.get("/api/models/base/status")).json()["status"] == "ready"


async def test_a_folder_named_in_latin1_lists_chats_and_reads_back(tmp_path, monkeypatch, saves):
    """Issue 24 finding 5: a run folder named in Latin-1 (b"run-caf\\xe9") once made
    GET /api/models and refresh a 500 for every model, and a chat that tried it unreadable.
    Now it is listed as text under an id of its own, the wrapper is given its exact bytes, a
    chat with it answers and reads back and exports, and so does one whose adapter failed to
    load with the path in the box's message."""
    root = os.fsencode(saves)
    for name in (b"run-caf\xe9", b"broken-caf\xe9"):  # the double fails "broken" adapters
        shutil.copytree(saves / "tiny/lora/sft-a/checkpoint-10", os.fsdecode(root + b"/" + name))
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    async with Client(app) as http:
        refreshed = await http.post("/api/models/refresh")
        assert refreshed.status_code == 200, refreshed.text
        listed = (await http.get("/api/models")).json()
        (model_id,) = [i for i in by_id(listed) if i.startswith("run-caf-")]
        (broken_id,) = [i for i in by_id(listed) if i.startswith("broken-caf-")]
        model = by_id(listed)[model_id]
        assert model["adapter_path"] == f"{saves}/run-caf\ufffd"
        assert model["run_path"] == "run-caf\ufffd" and model["usable"]
        entry = app.state.fleet.registry.get(model_id)
        assert os.fsencode(entry.choice()["adapter"]) == root + b"/run-caf\xe9"  # exact

        reply = await ask(http, model_id)
        assert reply["content"] == "Echo #1 from tiny-base + run-caf\ufffd: hi"
        after = await http.get("/api/models")
        assert after.status_code == 200, after.text
        assert by_id(after.json())[model_id]["status"] == "ready"  # held, as the wrapper says
        held = after.json()["serving"][0]["held"]["adapters"]
        assert [a["path"] for a in held] == [f"{saves}/run-caf\ufffd"]
        chat = await http.get(f"/api/chats/{reply['chat_id']}")
        assert chat.status_code == 200, chat.text
        provenance = chat.json()["messages"][-1]["provenance"]
        assert provenance["adapter_path"] == f"{saves}/run-caf\ufffd"
        for form in ("md", "json"):
            exported = await http.get(f"/api/chats/{reply['chat_id']}/export",
                                      params={"format": form})
            assert exported.status_code == 200 and "run-caf\ufffd" in exported.text

        failed = await http.post("/api/chat", json={"message": "hi", "model": broken_id,
                                                     "stream": False})
        assert failed.status_code == 502, failed.text
        assert f"{saves}/broken-caf\ufffd" in failed.json()["message"]
        assert (await http.post(f"/api/models/{broken_id}/load")).status_code == 202

        async def failed_to_load() -> bool:
            status = await http.get(f"/api/models/{broken_id}/status")
            return status.json()["status"] == "error"

        await eventually(failed_to_load)
        listing = await http.get("/api/models")
        assert listing.status_code == 200, listing.text
        assert "broken-caf\ufffd" in by_id(listing.json())[broken_id]["error"]
        tried = [c for c in (await http.get("/api/chats")).json()["chats"]
                 if c["model"] == broken_id]
        assert tried  # the chat keeps the message it could not answer
        for chat in tried:
            read = await http.get(f"/api/chats/{chat['id']}")
            assert read.status_code == 200, read.text
            exported = await http.get(f"/api/chats/{chat['id']}/export")
            assert exported.status_code == 200, exported.text


async def test_no_lone_surrogate_in_a_scan_reaches_an_answer(tmp_path, monkeypatch):
    """Issue 24 finding 5, the guard: whatever strings the box's scan holds (lone surrogates
    of names that are not UTF-8, or of nothing; NUL), the listing answers, as text."""
    odd = "caf\udce9\ud800\x00"
    scan = {"adapters": [{
        "path": f"/saves/{odd}", "root": "/saves", "relative": odd, "run": odd,
        "run_dir": f"/saves/{odd}", "step": None, "base": f"/models/{odd}",
        "base_resolved": False, "saved_base": f"/models/{odd}", "template": odd,
        "finetuning_type": "lora", "peft_type": "LORA", "kind": "adapter",
        "problems": [f"problem {odd}"], "notes": [], "explicit": False}],
        "curves": {f"/saves/{odd}": {"train": [], "eval": []}},
        "missing": [{"dir": f"/x/{odd}", "reason": odd}], "truncated": False}

    async def run_program(script, job, timeout_s):
        return scan

    app = gateway(tmp_path, monkeypatch, adapter_dirs="/saves")
    async with Client(app) as http:
        monkeypatch.setattr(app.state.fleet.primary.discovery._box, "run_program", run_program)
        for answer in (await http.post("/api/models/refresh"), await http.get("/api/models")):
            assert answer.status_code == 200, answer.text
            assert "\ufffd" in answer.text
        model = next(m for m in answer.json()["models"] if m["id"].startswith("caf"))
        assert model["adapter_path"] == "/saves/caf\ufffd\ufffd\ufffd"
        assert not model["usable"] and model["problems"] == ["problem caf\ufffd\ufffd\ufffd"]
