"""Issue 12 end to end: `lfgate serve` over the real sshd on the real LlamaFactory box, with a
saves/ tree of real (tiny) adapters under ADAPTER_DIRS.

Two runs, each a final adapter and two checkpoints, one trained with a template other than
.env's, plus broken folders and a missing ADAPTER_DIRS entry. Chats with the base and three
adapters in turn must load the base weights once (the wrapper's own report) and answer, each,
exactly as a ChatModel loaded with that adapter alone does.
"""

from __future__ import annotations

import pytest

from tests.rig.saves_tree import make_saves
from tests.ui_rig import start_real_gateway
from tests.wrapper_process import WrapperProcess

pytestmark = pytest.mark.box

GREEDY = {"temperature": 0, "max_new_tokens": 24}
MESSAGE = "Hello, how are you today?"


@pytest.fixture(scope="module")
def tree(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("box-saves") / "saves"
    made = make_saves(root, tiny["base"], other_template="default",
                      adapters=[tiny["adapter"], tiny["adapter2"], tiny["adapter3"]],
                      full_model=tiny["base"])
    return root, made


@pytest.fixture(scope="module")
def gateway(sshd, box_python, tiny, tree, tmp_path_factory):
    root, _ = tree
    missing = root.parent / "not-there"
    process = start_real_gateway(sshd, box_python, tiny, tmp_path_factory.mktemp("gw-adapters"),
                                 env={"ADAPTER_DIRS": f"{root},{missing}", "RESCAN_INTERVAL": "0"})
    yield process
    process.stop()


def models_of(listing: dict) -> dict[str, dict]:
    return {m["id"]: m for m in listing["models"]}


def ask(gateway, model: str) -> str:
    response = gateway.http.post("/api/chat", json={
        "message": MESSAGE, "model": model, "params": GREEDY, "stream": False}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()["content"]


def test_the_tree_is_listed_with_base_template_step_loss_and_warnings(gateway, tree, tiny):
    root, made = tree
    listing = gateway.http.post("/api/models/refresh", timeout=120).json()
    assert listing["scan"]["error"] is None
    models = models_of(listing)
    assert set(made) <= set(models)
    a20 = models["tiny--lora--sft-a--checkpoint-20"]
    assert (a20["base_model_path"], a20["base_id"], a20["template"], a20["step"]) == (
        tiny["base"], "base", "qwen", 20)
    assert a20["train_loss"] == 1.0 and a20["warnings"] == []
    for model_id in ("tiny--lora--sft-b", "tiny--lora--sft-b--checkpoint-100"):
        b = models[model_id]
        assert b["template"] == "default" and b["training_template"] == "default"
        assert any("'default'" in w and f"TEMPLATE={tiny['template']}" in w
                   for w in b["warnings"]), b["warnings"]
    assert "no weights" in models["tiny--lora--broken-no-weights"]["problems"][0]
    assert not models["tiny--lora--broken-config"]["usable"]
    assert listing["scan"]["missing"] == [{"dir": str(root.parent / "not-there"),
                                           "reason": "no such folder on the box"}]
    refused = gateway.http.post("/api/chat", json={
        "message": "hi", "model": "tiny--lora--broken-no-weights", "stream": False})
    assert refused.status_code == 409 and "no weights" in refused.text


def test_base_and_three_adapters_share_one_load_and_match_chat_models(
        gateway, box_python, tmp_path):
    gateway.http.post("/api/models/refresh", timeout=120)
    chosen = ["base", "tiny--lora--sft-a", "tiny--lora--sft-a--checkpoint-10",
              "tiny--lora--sft-b--checkpoint-200"]
    replies = {model: ask(gateway, model) for model in chosen}
    listing = gateway.http.get("/api/models").json()
    shared = [s for s in listing["serving"] if s["shared"]]
    assert len(shared) == 1, listing["serving"]
    held = shared[0]["held"]
    assert held["base_loads"] == 1, held  # the base weights were loaded once
    assert len(held["adapters"]) == 3
    assert len(set(replies.values())) == 4

    reference = WrapperProcess(box_python, "script", tmp_path / "spy.jsonl")
    try:
        for model in chosen:
            spec = models_of(listing)[model]
            ready = reference.load({"base_model_path": spec["base_model_path"],
                                    "adapter_path": spec["adapter_path"],
                                    "template": spec["template"]}, GREEDY)
            assert ready["event"] == "ready", ready
            done, _ = reference.chat(model, [{"role": "user", "content": MESSAGE}], GREEDY)
            assert done["content"] == replies[model], model
    finally:
        reference.kill()


def test_a_whole_fine_tuned_checkpoint_is_loaded_as_its_own_model(gateway):
    models = models_of(gateway.http.post("/api/models/refresh", timeout=120).json())
    full = models["tiny--full--sft-full--checkpoint-5"]
    assert full["kind"] == "base" and full["shared_base"] is False
    assert full["finetuning_type"] == "full"
    # A copy of the base: the same weights answer the same, from a process of its own.
    assert ask(gateway, "tiny--full--sft-full--checkpoint-5") == ask(gateway, "base")
    serving = gateway.http.get("/api/models").json()["serving"]
    own = [s for s in serving if not s["shared"]]
    assert [s["base_model_path"] for s in own] == [full["base_model_path"]]


def test_cli_mode_chats_with_a_discovered_adapter(sshd, box_python, tiny, tree, tmp_path):
    root, made = tree
    process = start_real_gateway(sshd, box_python, tiny, tmp_path / "gw-cli", mode="cli",
                                 env={"ADAPTER_DIRS": str(root), "RESCAN_INTERVAL": "0"})
    try:
        models = models_of(process.http.post("/api/models/refresh", timeout=120).json())
        assert models["tiny--lora--sft-a--checkpoint-20"]["shared_base"] is False
        reply = ask(process, "tiny--lora--sft-a--checkpoint-20")
        assert reply
        listing = process.http.get("/api/models").json()
        (serving,) = listing["serving"]
        assert serving["held"]["merged_adapter"] == made["tiny--lora--sft-a--checkpoint-20"]
    finally:
        process.stop()
