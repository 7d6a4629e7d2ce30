"""The whole path, for real: HTTP -> `lfgate serve` -> asyncssh -> OpenSSH sshd -> wrapper ->
LlamaFactory (ChatModel or llamafactory-cli), in both modes. No mocks."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from lfgate.box.ssh_box import REMOTE_WRAPPER_ROOT
from lfgate.box.wrapper_files import WrapperFiles
from tests.gateway_process import GatewayProcess, sse_with_ids
from tests.rig.hermetic import box_home
from tests.rig.waiting import wait_until

pytestmark = pytest.mark.box

SHORT = {"temperature": 0, "max_new_tokens": 24}
# Greedy, and a prompt the tiny model answers for well over 1,000 tokens without stopping,
# so a stop or a disconnect always lands mid-reply (a sampled reply may end first).
LONG = {"temperature": 0, "max_new_tokens": 4000}
LONG_PROMPT = "Tell me a very long story"


def spy_records(sshd) -> list[dict]:
    if not sshd.spy.exists():
        return []
    return [json.loads(line) for line in sshd.spy.read_text().splitlines()]


def calls(sshd) -> list[dict]:
    return [r for r in spy_records(sshd) if not r.get("end")]


@pytest.fixture(scope="module", params=["script", "cli"])
def gateway(request, sshd, box_python, tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gw")
    env = {**sshd.settings_env(), "CHAT_MODE": request.param, "REMOTE_PYTHON": box_python,
           "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'lfgate.db'}",
           "BASE_MODEL_PATH": tiny["base"], "ADAPTER_PATH": tiny["adapter"],
           "TEMPLATE": tiny["template"], "CHAT_TIMEOUT": "120"}
    gw = GatewayProcess({}, folder, dotenv=env)  # read from ./.env
    gw.mode = request.param
    yield gw
    assert gw.stop(), gw.log.read_text()[-3000:]


def test_tokens_stream_one_event_at_a_time_and_the_second_turn_is_fast(gateway, sshd):
    gateway.http.post("/api/models/default/unload")
    events = list(gateway.stream({"message": "Hello, how are you?", "params": SHORT}))
    names = [name for name, _, _ in events]
    assert names[0] == "meta" and names[-1] == "done", names
    assert set(names[1:-1]) <= {"delta", "info"}
    deltas = [(data["text"], at) for name, data, at in events if name == "delta"]
    assert len(deltas) >= 2
    assert len({at for _, at in deltas}) >= 2, "deltas must arrive one at a time"
    first = events[-1][1]
    assert first["content"] == "".join(text for text, _ in deltas)
    assert first["timing"]["chunks"] == len(deltas)

    meta = events[0][1]
    second, _ = gateway.chat({"message": "And then?", "chat_id": meta["chat_id"],
                              "params": SHORT})
    print(f"\n[{gateway.mode}] first turn ttft {first['timing']['ttft_ms']} ms (includes load),"
          f" second turn ttft {second['timing']['ttft_ms']} ms")
    assert second["timing"]["ttft_ms"] < first["timing"]["ttft_ms"] / 3, "no reload per turn"


def test_health_and_models(gateway, sshd):
    health = gateway.http.get("/api/health").json()
    boxes = health.pop("boxes")
    assert health.pop("auth") is False  # no GATEWAY_TOKEN: nobody logs in
    assert health == {"status": "ok", "mode": gateway.mode,
                      "remote": {"connected": True, "host": f"{sshd.user}@127.0.0.1:{sshd.port}",
                                 "error": None}, "warnings": []}
    assert [(b["name"], b["host"], b["mode"], b["state"]) for b in boxes] == [
        ("main", f"{sshd.user}@127.0.0.1:{sshd.port}", gateway.mode, "connected")]
    models = gateway.http.get("/api/models").json()["models"]
    assert [m["id"] for m in models] == ["default", "base"]
    assert models[0]["adapter_path"] and models[1]["adapter_path"] is None
    assert {m["status"] for m in models} <= {"unloaded", "loading", "ready", "error"}


def test_multi_turn_and_non_streaming(gateway, sshd):
    reply = gateway.http.post("/api/chat", json={"message": "First question", "stream": False,
                                                 "params": SHORT}).json()
    assert reply["role"] == "assistant" and reply["content"] and reply["turn_id"]
    second = gateway.http.post("/api/chat", json={
        "message": "Second question", "chat_id": reply["chat_id"], "stream": False,
        "params": SHORT}).json()
    assert second["chat_id"] == reply["chat_id"]
    seen = calls(sshd)[-1]["messages"]
    assert [m["content"] for m in seen if m["role"] == "user"] == ["First question",
                                                                    "Second question"]
    if gateway.mode == "script":
        assert seen[1] == {"role": "assistant", "content": reply["content"]}


# Test order (one gateway per mode for the module): this one before the tests that change
# the CLI's settings (stop, reattach: a restart of llamafactory-cli each) and before
# test_load_status_unload, whose unload of `base` ends the script wrapper serving `default`
# too; so each reload the link drop costs is the only one here. Any order passes.
def test_reconnects_after_the_ssh_connection_is_killed(gateway, sshd):
    done, _ = gateway.chat({"message": "before", "params": SHORT})
    assert done["finish_reason"] in ("stop", "length")
    dropped = sshd.connection_pids()
    assert sshd.drop_connections() >= 1
    # The gateway noticed: its health says the link is down, or it has already made a new
    # connection (its box monitor may reconnect between two looks at the health: a loaded
    # machine's run missed the down state that way).
    def noticed() -> str:
        health = gateway.http.get("/api/health").json()["remote"]
        if not health["connected"]:
            assert health["error"], health
            return "down"
        return "reconnected" if sshd.connection_pids() - dropped else ""

    wait_until(noticed, "the gateway noticing the dropped link", timeout_s=30)
    done, events = gateway.chat({"message": "after", "params": SHORT})
    assert done.get("finish_reason") in ("stop", "length"), events
    assert gateway.http.get("/api/health").json()["remote"]["connected"] is True


def test_stop_ends_the_reply_on_the_box(gateway, sshd):
    stream = gateway.stream({"message": LONG_PROMPT, "params": LONG})
    meta = next(stream)[1]
    texts = []
    for name, data, _ in stream:
        if name == "delta":
            texts.append(data["text"])
            break
    assert gateway.http.post(f"/api/chat/{meta['turn_id']}/stop").status_code == 200
    rest = list(stream)
    done = rest[-1]
    assert done[0] == "done" and done[1]["finish_reason"] == "stopped"
    texts += [data["text"] for name, data, _ in rest if name == "delta"]
    assert done[1]["content"] == "".join(texts)
    if gateway.mode == "script":
        # The whole reply is about 1,500 tokens and 78 chunks; a stop ends it within a step.
        assert done[1]["usage"]["completion_tokens"] < 200, "generation went on after stop"
        assert _wait_generation_end(sshd)["chunks"] < 20
    assert gateway.http.post("/api/chat/nope/stop").status_code == 404


def _wait_generation_end(sshd, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = spy_records(sshd)
        if records and records[-1].get("end"):
            return records[-1]
        time.sleep(0.2)
    raise AssertionError("generation did not end on the box")


def test_a_reply_outlives_its_client_and_reattaches(gateway, sshd, reliability):
    """The box goes on while no client watches; the reattached stream has every event once,
    and the text shown, the text stored and the box's own are one."""
    body = {"message": LONG_PROMPT, "params": {"temperature": 0, "max_new_tokens": 300}}
    before = []
    with gateway.http.stream("POST", "/api/chat", json=body) as response:
        for item in sse_with_ids(response):
            before.append(item)
            if sum(name == "delta" for _, name, _ in before) >= 3:
                break
    # The connection is closed here, mid-reply.
    meta = before[0][2]
    with gateway.http.stream("GET", f"/api/chat/{meta['turn_id']}/stream",
                             headers={"Last-Event-ID": before[-1][0]}) as response:
        after = list(sse_with_ids(response))
    events = before + after
    assert [int(i) for i, _, _ in events] == list(range(1, len(events) + 1))
    name, done = after[-1][1:]
    assert name == "done" and done["finish_reason"] in ("stop", "length"), done
    streamed = "".join(data["text"] for _, name, data in events if name == "delta")
    assert streamed == done["content"]  # the box's own text, as its `done` gave it
    replies = [m for m in gateway.http.get(f"/api/chats/{meta['chat_id']}").json()["messages"]
               if m["role"] == "assistant"]
    assert [(m["content"], m["status"]) for m in replies] == [(streamed, "complete")]
    if gateway.mode == "script":
        assert _wait_generation_end(sshd)["chunks"] > 3  # it went on after the client left
    reliability.record(
        "streams", f"The client left mid-reply and reattached ({gateway.mode} mode, real box)",
        f"the box finished the reply ({done['finish_reason']}); the reattached stream "
        "replayed what was missed, then followed; every event once; stored once, equal to "
        "the box's text")


def test_load_status_unload(gateway):
    unloaded = gateway.http.post("/api/models/base/unload").json()
    assert unloaded["status"] == "unloaded"
    started = time.monotonic()
    accepted = gateway.http.post("/api/models/base/load")
    assert accepted.status_code == 202 and accepted.json()["status"] == "loading"
    assert time.monotonic() - started < 5, "load must return at once"
    ready = gateway.wait_status("base", "ready")
    assert ready["status"] == "ready", ready
    assert ready["load_seconds"] > 0 and ready["error"] is None
    assert set(ready["load_phases"]) == {"connect_s", "upload_s", "start_s", "load_s"}
    done, _ = gateway.chat({"message": "hi", "model": "base", "params": SHORT})
    assert done["content"] is not None
    assert gateway.http.post("/api/models/base/unload").json()["status"] == "unloaded"
    assert gateway.http.get("/api/models/nope/status").status_code == 404


def test_wrapper_was_uploaded_to_a_versioned_folder(gateway):
    folder = box_home() / REMOTE_WRAPPER_ROOT / WrapperFiles.packaged().digest
    assert (folder / ".complete").is_file()
    for name in WrapperFiles.packaged().names:
        assert (folder / name).read_bytes() == (WrapperFiles.packaged().folder / name).read_bytes()


def test_bad_requests_get_clear_errors(gateway):
    cases = [
        ({"message": ""}, 422, "message"),
        ({"message": "x", "params": {"temperature": "hot"}}, 422, "temperature"),
        ({"message": "x", "params": {"enable_thinking": "false"}}, 422, "enable_thinking"),
        ({"message": "x", "params": {"max_tokens": 3}}, 422, "max_tokens"),
        ({"message": "x", "model": "nope"}, 404, "unknown model"),
        ({"message": "x", "chat_id": "nope"}, 404, "unknown chat"),
    ]
    for body, status, words in cases:
        response = gateway.http.post("/api/chat", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.text, response.text


def test_local_box_when_ssh_host_is_empty(box_python, tiny, tmp_path):
    env = {"SSH_HOST": "", "CHAT_MODE": "script", "REMOTE_PYTHON": box_python,
           "BASE_MODEL_PATH": tiny["base"], "TEMPLATE": tiny["template"],
           "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'lfgate.db'}"}
    gw = GatewayProcess(env, tmp_path)
    try:
        assert gw.http.get("/api/health").json()["remote"] == {
            "connected": True, "host": "local", "error": None}
        done, events = gw.chat({"message": "hello", "params": SHORT})
        assert done["finish_reason"] in ("stop", "length"), events
        assert [m["id"] for m in gw.http.get("/api/models").json()["models"]] == ["default"]
    finally:
        assert gw.stop()


def test_home_page_is_served(gateway):
    page = gateway.http.get("/")
    assert page.status_code == 200 and "LF Gate" in page.text
    assert gateway.http.get("/app.js").status_code == 200
    with pytest.raises(httpx.HTTPStatusError):
        gateway.http.get("/nope.js").raise_for_status()
