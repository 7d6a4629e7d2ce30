"""Several boxes (issue 16) on the scripted box double: the BOXES file read or refused at
start-up with the file, box and key named; every model id bound to its box; two boxes with
the same base never batched together; and each box's live status (a stand-in nvidia-smi on
the box's PATH prints what the real one prints) in /api/health. Over the real sshd and
LlamaFactory: tests/test_boxes_gateway.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lfgate.box_list import box_definitions
from lfgate.config import SettingsError, load_settings
from tests.test_box_status import NVIDIA_SMI_OUTPUT
from tests.test_models_api import Client, eventually, gateway


def boxes_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "boxes.ini"
    path.write_text(text)
    return str(path)


def test_each_section_is_a_box_over_the_env_s_keys(tmp_path):
    path = boxes_file(tmp_path, "[a100]\nSSH_HOST=gpu-a\nSSH_PORT=2222\nCHAT_MODE=cli\n"
                                "[cpu.box]\nBASE_MODEL_PATH=/other\n")
    boxes = box_definitions(load_settings(base_model_path="/m", template="qwen", boxes=path,
                                          box_name="main"))
    assert [(b.name, b.primary, b.id_prefix) for b in boxes] == [
        ("main", True, ""), ("a100", False, "a100:"), ("cpu.box", False, "cpu.box:")]
    a100, cpu = boxes[1].settings, boxes[2].settings
    assert (a100.host_label, a100.chat_mode, a100.base_model_path, a100.template) == (
        "gpu-a:2222", "cli", "/m", "qwen")
    assert (cpu.is_local, cpu.base_model_path, cpu.box_name) == (True, "/other", "cpu.box")


@pytest.mark.parametrize(("text", "said"), [
    ("[b]\nSSH_HOTS=x\n", "BOXES {path} [b]: SSH_HOTS is not a box key; did you mean SSH_HOST?"),
    ("[b]\nGATEWAY_PORT=9000\n", "[b]: GATEWAY_PORT is a setting of the gateway, not of a box"),
    ("[b]\nSSH_PORT=twenty\n", "[b]: SSH_PORT: Input should be a valid integer"),
    ("[b]\nCHAT_MODE=shell\n", "[b]: CHAT_MODE: Input should be 'cli' or 'script'"),
    ("[b]\nBASE_MODEL_PATH=\n", "[b]: BASE_MODEL_PATH is required"),
    ("[main]\nSSH_HOST=x\n", "[main]: the name 'main' is taken"),
    ("[b]\n[b]\n", "section 'b' already exists"),
    ("[b c]\n", "[b c]: a box name is 1-40 letters"),
    ("SSH_HOST=x\n", "File contains no section headers"),
    ("# nothing\n", "has no [box] section"),
])
def test_a_wrong_boxes_file_stops_start_up_naming_box_and_key(tmp_path, text, said):
    path = boxes_file(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        box_definitions(load_settings(base_model_path="/m", boxes=path))
    assert said.format(path=path) in str(caught.value)


def test_a_missing_boxes_file_is_named(tmp_path):
    with pytest.raises(SettingsError, match="BOXES: no such file"):
        load_settings(base_model_path="/m", boxes=str(tmp_path / "nope.ini"))


def two_boxes(tmp_path: Path, monkeypatch, **extra: object):
    """The .env's box and box `b`, both this machine, with the same base."""
    path = boxes_file(tmp_path, "[b]\nADAPTER_PATH=/runs/b\n")
    return gateway(tmp_path, monkeypatch, boxes=path, adapter_path="/runs/a", **extra)


async def test_ids_name_their_box_and_each_box_serves_its_own(tmp_path, monkeypatch):
    async with Client(two_boxes(tmp_path, monkeypatch)) as http:
        models = {m["id"]: m for m in (await http.get("/api/models")).json()["models"]}
        assert {k: (m["box"], m["adapter_path"], m["base_id"]) for k, m in models.items()} == {
            "default": ("main", "/runs/a", "base"), "base": ("main", None, None),
            "b:default": ("b", "/runs/b", "b:base"), "b:base": ("b", None, None)}
        reply = (await http.post("/api/chat", json={"message": "hi", "model": "b:default",
                                                    "stream": False})).json()
        chat = (await http.get(f"/api/chats/{reply['chat_id']}")).json()
        assert chat["messages"][-1]["provenance"]["box"] == "b"
        assert chat["messages"][-1]["provenance"]["adapter_path"] == "/runs/b"
        unknown = await http.post("/api/chat", json={"message": "hi", "model": "zz:default"})
        assert unknown.status_code == 404
        assert "no box is named 'zz' (the boxes: main, b)" in unknown.text
        assert (await http.get("/api/doctor", params={"box": "zz"})).status_code == 404


async def test_two_boxes_with_the_same_base_are_never_one_batch(tmp_path, monkeypatch):
    async with Client(two_boxes(tmp_path, monkeypatch)) as http:
        async with http.stream("POST", "/api/compare", json={
                "message": "hi", "models": ["default", "b:default"]}) as response:
            lines = [line async for line in response.aiter_lines()]
        meta = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
        assert meta["mode"] == "parallel"  # one base path, but two boxes: two processes
        assert sum(line.startswith("event: done") for line in lines) == 2


async def test_health_shows_each_box_s_gpus_and_what_it_holds(tmp_path, monkeypatch):
    tools = tmp_path / "tools"
    tools.mkdir()
    smi = tools / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat <<'OUT'\n{NVIDIA_SMI_OUTPUT}OUT\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{Path('/usr/bin')}:{Path('/bin')}")
    app = two_boxes(tmp_path, monkeypatch, box_status_interval=0.05)
    async with Client(app) as http:
        assert (await http.post("/api/chat", json={"message": "hi", "stream": False})
                ).status_code == 200

        async def read() -> bool:
            boxes = (await http.get("/api/health")).json()["boxes"]
            return all(b["checked_at"] for b in boxes) and bool(boxes[0]["loaded"])

        await eventually(read)
        boxes = (await http.get("/api/health")).json()["boxes"]
    assert [(b["name"], b["state"], b["primary"]) for b in boxes] == [
        ("main", "connected", True), ("b", "connected", False)]
    main = boxes[0]
    assert main["gpus"][0] == {"index": 0, "name": "NVIDIA A100-SXM4-80GB",
                               "memory_total_mib": 81920, "memory_used_mib": 73421,
                               "utilization_pct": 97}
    assert main["gpus"][1]["utilization_pct"] is None  # [N/A]: no number, not a zero
    assert [(x["model_id"], x["kind"], x["status"]) for x in main["loaded"]] == [
        ("base", "base", "ready"), ("default", "adapter", "ready")]
    assert main["wrapper"]["protocol"] >= 4 and main["rtt_ms"] >= 0
    assert boxes[1]["loaded"] == [] and boxes[1]["wrapper"] is None


async def test_a_load_that_will_not_fit_is_warned_before_it_starts(tmp_path, monkeypatch):
    tools = tmp_path / "tools"
    tools.mkdir()
    smi = tools / "nvidia-smi"  # one GPU, nearly full and busy: somebody is training
    smi.write_text("#!/bin/sh\necho '0, NVIDIA GeForce RTX 4090, 24564, 24500, 99'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    base = tmp_path / "base"
    base.mkdir()
    with (base / "model.safetensors").open("wb") as weights:  # 200 MiB, sparse
        weights.truncate(200 * 2**20)
    app = gateway(tmp_path, monkeypatch, base_model_path=str(base), box_status_interval=0.05)
    async with Client(app) as http:
        async def warned() -> bool:
            models = {m["id"]: m for m in (await http.get("/api/models")).json()["models"]}
            return any("will not fit" in w for w in models["default"]["warnings"])

        await eventually(warned)
        models = {m["id"]: m for m in (await http.get("/api/models")).json()["models"]}
        said = next(w for w in models["default"]["warnings"] if "will not fit" in w)
        assert "needs about 0.2 GiB" in said and "0.1 GiB free" in said
        assert "GPU 0 99% busy: training?" in said
        load = (await http.post("/api/models/default/load")).json()
        assert load["warnings"] == [said]  # warned, and loaded all the same

        async def loaded() -> bool:
            status = (await http.get("/api/models/default/status")).json()["status"]
            return status == "ready"

        await eventually(loaded)
        models = {m["id"]: m for m in (await http.get("/api/models")).json()["models"]}
        assert not any("will not fit" in w for w in models["default"]["warnings"])
