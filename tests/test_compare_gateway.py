"""Issue 14 end to end: `lfgate serve` over the real sshd on the real LlamaFactory box. A
compare of the base and two adapters streams three slots from one generate call (the spy
counts the calls and their rows), each greedy reply equal to the same model asked alone;
stopping one slot leaves the others running."""

from __future__ import annotations

import json

import pytest

from tests.gateway_process import sse_events
from tests.rig.saves_tree import make_saves
from tests.ui_rig import start_real_gateway

pytestmark = pytest.mark.box

MODELS = ["base", "tiny--lora--sft-a", "tiny--lora--sft-a--checkpoint-10"]
GREEDY = {"temperature": 0, "max_new_tokens": 24}
MESSAGE = "Hello, how are you today?"


@pytest.fixture(scope="module")
def gateway(sshd, box_python, tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-saves") / "saves"
    make_saves(root, tiny["base"], adapters=[tiny["adapter"], tiny["adapter2"]])
    process = start_real_gateway(sshd, box_python, tiny, tmp_path_factory.mktemp("gw-cmp"),
                                 env={"ADAPTER_DIRS": str(root), "RESCAN_INTERVAL": "0"})
    process.http.post("/api/models/refresh", timeout=120)
    yield process
    process.stop()


def generate_calls(sshd) -> list[dict]:
    path = sshd.spy.with_name(sshd.spy.name + ".generate.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_compare(gateway, body: dict, on_event=None) -> list[tuple[str, dict]]:
    events = []
    with gateway.http.stream("POST", "/api/compare", json=body, timeout=300) as response:
        assert response.status_code == 200, response.read()
        for name, data, _ in sse_events(response):
            events.append((name, data))
            if on_event is not None:
                on_event(name, data)
    return events


def test_three_slots_stream_from_one_generate_call_as_each_model_alone(gateway, sshd):
    # Load the base and the adapters first, so the spy sees only the compare's generation.
    alone = {}
    for model in MODELS:
        reply = gateway.http.post("/api/chat", json={"message": MESSAGE, "model": model,
                                                     "params": GREEDY, "stream": False},
                                  timeout=300)
        assert reply.status_code == 200, reply.text
        alone[model] = reply.json()["content"]
    assert len(set(alone.values())) == 3
    before = len(generate_calls(sshd))
    events = run_compare(gateway, {"message": MESSAGE, "models": MODELS, "params": GREEDY})
    calls = generate_calls(sshd)[before:]
    assert [c["rows"] for c in calls] == [3], calls  # one generate call served every slot

    head = events[0][1]
    assert head["mode"] == "batch" and [s["model"] for s in head["slots"]] == MODELS
    done = {d["slot"]: d for n, d in events if n == "done"}
    assert sorted(done) == [0, 1, 2]
    for slot, model in enumerate(MODELS):
        assert done[slot]["model"] == model
        assert done[slot]["content"] == alone[model], model
        streamed = "".join(d["text"] for n, d in events if n == "delta" and d["slot"] == slot)
        assert streamed == done[slot]["content"]
        assert done[slot]["batch"]["rows"] == 3
        assert done[slot]["usage"]["completion_tokens"] > 0
    serving = [s for s in gateway.http.get("/api/models").json()["serving"] if s["shared"]]
    assert [s["held"]["base_loads"] for s in serving] == [1]


def test_stopping_one_slot_leaves_the_others_running(gateway):
    long = {"temperature": 0, "max_new_tokens": 300}
    stopped = {}

    def stop_slot_one(name: str, data: dict) -> None:
        if name == "delta" and data["slot"] == 1 and not stopped:
            stopped["turn"] = data["turn_id"]
            assert gateway.http.post(f"/api/chat/{data['turn_id']}/stop").status_code == 200

    events = run_compare(gateway, {"message": "Tell me a very long story", "models": MODELS,
                                   "params": long}, stop_slot_one)
    done = {d["slot"]: d for n, d in events if n == "done"}
    assert done[1]["finish_reason"] == "stopped"
    for slot in (0, 2):
        assert done[slot]["finish_reason"] in ("stop", "length")
        assert done[slot]["usage"]["completion_tokens"] > 5 * done[1]["usage"][
            "completion_tokens"]
    chat = gateway.http.get(f"/api/chats/{events[0][1]['chat_id']}").json()
    statuses = {m["id"]: m["status"] for m in chat["messages"]}
    assert statuses[stopped["turn"]] == "stopped"
