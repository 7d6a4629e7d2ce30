"""Issue 24 finding 5 on the real box: an adapter in a run folder whose name is not UTF-8.

`lfgate serve` over the real sshd on the real LlamaFactory box, with ADAPTER_DIRS holding a
copy of the tiny adapter in a folder named in Latin-1 (bytes b"run-caf\\xe9"). The scan over
SSH reports the path exactly, the gateway lists it as text under an id of its own, and a chat
with it (the path sent to the wrapper, byte for byte, LlamaFactory and peft loading from it)
answers exactly as the same adapter under `default` does; the chat reads back and exports.
safetensors takes UTF-8 paths alone: the wrapper gives it a symlink (tested first, alone).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.ui_rig import start_real_gateway

# The box-side module, imported as the box imports it (by file name).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "remote"))
import wrapper_serve

GREEDY = {"temperature": 0, "max_new_tokens": 24}
MESSAGE = "Hello, how are you today?"


def ask(gateway, model: str) -> dict:
    response = gateway.http.post("/api/chat", json={
        "message": MESSAGE, "model": model, "params": GREEDY, "stream": False}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def test_loaders_that_take_utf8_paths_alone_get_a_symlink(tmp_path):
    """Issue 24 finding 5: safetensors refuses a path that is not UTF-8 ("Path ... is not
    valid UTF-8"), and llamafactory-cli's config is written as UTF-8, so the wrappers give
    LlamaFactory such a path as a symlink to it, named in UTF-8; any other path as it is."""
    folder = os.fsencode(tmp_path) + b"/run-caf\xe9"
    os.makedirs(folder + b"/checkpoint-5")
    exact = os.fsdecode(folder)
    alias = wrapper_serve.utf8_path(exact)
    assert alias != exact and alias.encode("utf-8") and alias.endswith("run-caf\ufffd")
    assert os.path.realpath(os.fsencode(alias)) == os.path.realpath(folder)
    assert wrapper_serve.utf8_path(exact) == alias  # one link per folder
    assert wrapper_serve.utf8_path(str(tmp_path)) == str(tmp_path)  # UTF-8: as it is
    gone = os.fsdecode(b"/gone/caf\xe9")
    assert wrapper_serve.utf8_path(gone) == gone  # not on the box: LlamaFactory says so
    args = wrapper_serve.llamafactory_args({
        "base_model_path": exact, "adapter_path": f"{exact}/checkpoint-5, {tmp_path}",
        "template": "qwen", "finetuning_type": "lora", "infer_backend": "huggingface",
        "extra_args": {}})
    json.dumps(args, ensure_ascii=False).encode("utf-8")  # as the CLI wrapper writes it
    base, adapter = args["model_name_or_path"], args["adapter_name_or_path"].split(",")
    assert base == alias and adapter[1] == str(tmp_path)
    assert os.path.realpath(os.fsencode(adapter[0])) == os.path.realpath(
        folder + b"/checkpoint-5")


@pytest.mark.box
def test_an_adapter_in_a_latin1_folder_chats_through_the_gateway(sshd, box_python, tiny,
                                                                   tmp_path):
    """Issue 24 finding 5: listed, chatted with, read back and exported, on the real box."""
    root = tmp_path / "saves"
    folder = os.fsencode(root) + b"/run-caf\xe9"
    shutil.copytree(tiny["adapter"], os.fsdecode(folder))  # on tiny's base, as `default`
    gateway = start_real_gateway(sshd, box_python, tiny, tmp_path / "gw",
                                 env={"ADAPTER_DIRS": str(root), "RESCAN_INTERVAL": "0"})
    try:
        refreshed = gateway.http.post("/api/models/refresh", timeout=120)
        assert refreshed.status_code == 200, refreshed.text
        listing = refreshed.json()
        assert listing["scan"]["error"] is None
        (model,) = [m for m in listing["models"] if m["id"].startswith("run-caf-")]
        assert model["adapter_path"] == f"{root}/run-caf\ufffd" and model["usable"]
        assert model["base_id"] == "base" and model["shared_base"]

        latin = ask(gateway, model["id"])
        assert latin["content"] == ask(gateway, "default")["content"]  # the same weights
        after = gateway.http.get("/api/models")
        assert after.status_code == 200, after.text
        statuses = {m["id"]: m["status"] for m in after.json()["models"]}
        assert statuses[model["id"]] == statuses["default"] == "ready"
        (serving,) = after.json()["serving"]
        assert f"{root}/run-caf\ufffd" in [a["path"] for a in serving["held"]["adapters"]]
        assert serving["held"]["base_loads"] == 1

        chat = gateway.http.get(f"/api/chats/{latin['chat_id']}")
        assert chat.status_code == 200, chat.text
        provenance = chat.json()["messages"][-1]["provenance"]
        assert provenance["model"] == model["id"]
        assert provenance["adapter_path"] == f"{root}/run-caf\ufffd"
        exported = gateway.http.get(f"/api/chats/{latin['chat_id']}/export",
                                    params={"format": "json"})
        assert exported.status_code == 200 and "run-caf\ufffd" in exported.text
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]
