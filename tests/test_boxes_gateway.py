"""Two boxes (issue 16) end to end: `lfgate serve` with the .env's box behind one real sshd and
a BOXES file naming a second box behind another, both on the real LlamaFactory. Both are
listed with their models (the second's ids carry its name), chatted with (each reply from
its own box: each sshd's spy records its own generate calls), compared side by side, and
watched: the second box's sshd stopped, the page's health says it is down while the first
keeps serving; started again, the gateway reconnects by itself and it serves again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import spied_sshd
from tests.ui_rig import start_real_gateway

pytestmark = pytest.mark.box

GREEDY = {"temperature": 0, "max_new_tokens": 16}
# How often the gateway reads each box's status, and tries a box that is down again: what a
# box that comes back waits for at most. Each reading is a round trip and a Python started on
# the box; at 0.5 s the two boxes' readings took 0.3 to 0.7 of a core the whole module long.
STATUS_INTERVAL_S = "3"
MESSAGE = "Hello, how are you today?"


@pytest.fixture(scope="module")
def second_sshd(tmp_path_factory, box_python):
    server = spied_sshd(tmp_path_factory.mktemp("sshd-b"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(sshd, second_sshd, box_python, tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gw-boxes")
    boxes = folder / "boxes.ini"
    section = {**second_sshd.settings_env(), "ADAPTER_PATH": tiny["adapter2"]}
    boxes.write_text("[b]\n" + "".join(f"{k}={v}\n" for k, v in section.items()))
    process = start_real_gateway(sshd, box_python, tiny, folder, env={
        "BOX_NAME": "a", "BOXES": str(boxes), "BOX_STATUS_INTERVAL": STATUS_INTERVAL_S,
        "SSH_KEEPALIVE_INTERVAL": "1", "SSH_KEEPALIVE_COUNT_MAX": "2"})
    yield process
    process.stop()


def until(read: Callable[[], Any], check: Callable[[Any], bool], timeout_s: float = 120
          ) -> Any:
    """Poll `read` until `check` holds on what it returned; fail with the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if check(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(0.2)


def boxes_of(gateway) -> dict[str, dict]:
    return {b["name"]: b for b in gateway.http.get("/api/health").json()["boxes"]}


def generate_calls(server) -> int:
    path = server.spy.with_name(server.spy.name + ".generate.jsonl")
    return len(path.read_text().splitlines()) if path.exists() else 0


def ask(gateway, model: str) -> dict:
    response = gateway.http.post("/api/chat", json={
        "message": MESSAGE, "model": model, "params": GREEDY, "stream": False}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def test_both_boxes_are_listed_with_their_status_and_models(gateway, sshd, second_sshd):
    boxes = until(lambda: boxes_of(gateway),
                  lambda b: all(x["checked_at"] for x in b.values()))
    assert list(boxes) == ["a", "b"]
    assert boxes["a"]["primary"] and not boxes["b"]["primary"]
    assert boxes["a"]["host"].endswith(f"@127.0.0.1:{sshd.port}")
    assert boxes["b"]["host"].endswith(f"@127.0.0.1:{second_sshd.port}")
    for box in boxes.values():
        assert box["state"] == "connected" and box["error"] is None
        assert box["rtt_ms"] > 0 and box["gpus"] == [] and len(box["load_avg"]) == 3
    models = {m["id"]: m for m in gateway.http.get("/api/models").json()["models"]}
    assert {"default", "base", "b:default", "b:base"} <= set(models)
    assert models["default"]["box"] == "a" and models["b:default"]["box"] == "b"
    assert models["b:default"]["base_id"] == "b:base"
    v1 = {m["id"] for m in gateway.http.get("/v1/models").json()["data"]}
    assert {"default", "b:default"} <= v1


def test_each_box_answers_its_own_models_and_compare_puts_them_side_by_side(
        gateway, sshd, second_sshd):
    a_before, b_before = generate_calls(sshd), generate_calls(second_sshd)
    # The second box loads its model meanwhile: a load generates nothing, and the chat there
    # waits for it. (A load a chat starts is the next test's: after the box comes back.)
    load = gateway.http.post("/api/models/b:default/load")
    assert load.status_code == 202, load.text
    on_a = ask(gateway, "default")
    assert (generate_calls(sshd), generate_calls(second_sshd)) == (a_before + 1, b_before)
    on_b = ask(gateway, "b:default")
    assert (generate_calls(sshd), generate_calls(second_sshd)) == (a_before + 1, b_before + 1)
    assert on_a["content"] != on_b["content"]  # another adapter on the second box

    chat = gateway.http.get(f"/api/chats/{on_b['chat_id']}").json()
    reply = chat["messages"][-1]
    assert reply["provenance"]["box"] == "b"
    assert reply["provenance"]["host"].endswith(f":{second_sshd.port}")

    health = boxes_of(gateway)
    assert [x["model_id"] for x in health["b"]["loaded"]] == ["b:base", "b:default"]
    assert health["b"]["wrapper"]["protocol"] >= 4

    events = []
    with gateway.http.stream("POST", "/api/compare", timeout=300, json={
            "message": MESSAGE, "models": ["default", "b:default"], "params": GREEDY}) as resp:
        assert resp.status_code == 200, resp.read()
        name = None
        for line in resp.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:])))
    assert events[0][1]["mode"] == "parallel"
    done = {d["slot"]: d["content"] for n, d in events if n == "done"}
    assert done == {0: on_a["content"], 1: on_b["content"]}


def test_a_box_that_goes_away_leaves_the_other_serving_and_comes_back_by_itself(
        gateway, second_sshd):
    ask(gateway, "b:default")
    second_sshd.stop()
    down = until(lambda: boxes_of(gateway)["b"], lambda b: b["state"] == "down")
    assert down["error"]["code"] == "box_unreachable", down
    assert boxes_of(gateway)["a"]["state"] == "connected"
    assert ask(gateway, "default")["content"]
    refused = gateway.http.post("/api/chat", json={
        "message": MESSAGE, "model": "b:default", "params": GREEDY, "stream": False})
    assert refused.status_code == 502 and refused.json()["code"] == "box_unreachable", \
        refused.text
    assert gateway.http.get("/api/chats").status_code == 200  # reading still works

    second_sshd.start_again()
    # Back: connected, and a status reading taken since (the first read after the restart
    # may fail while the box's sshd settles: that reading has no round trip; wait for one that
    # reached the box).
    back = until(lambda: boxes_of(gateway)["b"], lambda b: b["state"] == "connected"
                 and b["error"] is None and b["checked_at"] > down["checked_at"]
                 and b["rtt_ms"] is not None)
    assert back["rtt_ms"] > 0
    assert ask(gateway, "b:default")["content"]


def test_the_doctor_checks_the_box_named(gateway):
    report = gateway.http.get("/api/doctor", params={"box": "b"}, timeout=600).json()
    assert report["ok"], [f for f in report["findings"] if f["status"] == "fail"]
    unknown = gateway.http.get("/api/doctor", params={"box": "nope"})
    assert unknown.status_code == 404 and "no box is named 'nope'" in unknown.text


def test_lfgate_doctor_checks_every_box_and_one_by_name(gateway, second_sshd):
    folder = gateway.log.parent  # the gateway's own .env and BOXES file
    lfgate = str(Path(sys.executable).with_name("lfgate"))
    done = subprocess.run([lfgate, "doctor", "--json"], cwd=folder, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    both = json.loads(done.stdout)
    assert both["ok"] and [b["box"] for b in both["boxes"]] == ["a", "b"]
    smoke = [f for f in both["boxes"][1]["findings"] if f["section"] == "Smoke chat"]
    assert [f["status"] for f in smoke] == ["pass"], smoke
    login = next(f for f in both["boxes"][1]["findings"] if f["name"] == "TCP")
    assert f":{second_sshd.port}" in login["found"], login

    second_sshd.stop()
    try:
        done = subprocess.run([lfgate, "doctor", "--box", "b"], cwd=folder,
                              capture_output=True, text=True, timeout=300, check=False)
    finally:
        second_sshd.start_again()
    assert done.returncode == 1, done.stdout
    assert "[✗] SSH: TCP:" in done.stdout and "== box" not in done.stdout
    unknown = subprocess.run([lfgate, "doctor", "--box", "nope"], cwd=folder,
                             capture_output=True, text=True, timeout=60, check=False)
    assert unknown.returncode == 2 and "no box is named 'nope'" in unknown.stdout
