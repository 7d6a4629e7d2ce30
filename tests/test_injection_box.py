"""No user-controlled string reaches a shell (issue 17), over the real sshd and the real
LlamaFactory. Every place a string of a user's or of the box's travels is given shell
syntax that would create a canary file if any shell ever parsed it: the run folders under
ADAPTER_DIRS (each becomes an adapter path, an id, and in CLI mode a CLI process's model),
REMOTE_WORK_DIR, messages, chat titles, prompt sets and model ids. Everything is served or
refused as data, and no canary appears anywhere a shell could have run."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pytest

from tests.gateway_process import GatewayProcess
from tests.rig.hermetic import box_home
from tests.test_prompt_sets_gateway import follow
from tests.ui_rig import start_real_gateway

pytestmark = pytest.mark.box

CANARY = f"lfgate-canary-{secrets.token_hex(4)}"
# Each would create CANARY in the shell's folder if a shell ever parsed it; none holds `/`,
# so each is also a folder name.
PAYLOADS = {
    "subst": f"$(touch {CANARY})",
    "backticks": f"`touch {CANARY}`",
    "semicolon": f"x; touch {CANARY}; y",
    "quotes": f"q'\"; touch {CANARY}; echo '\"",
    "newline": f"line\ntouch {CANARY}",
    "dash": f"-rf --{CANARY}",
    "dots": f"up..; touch {CANARY} ..",  # a name starting with . is hidden: not scanned
}
GREEDY = {"temperature": 0, "max_new_tokens": 8}


def shown(payload: str) -> str:
    """A payload for docs/reliability.md: quoted, escapes visible, the run's canary named."""
    return json.dumps(payload.replace(CANARY, "CANARY"), ensure_ascii=False)


def canaries(*roots: Path) -> list[Path]:
    return [found for root in roots if root.exists() for found in root.rglob(f"*{CANARY}*")
            if found.name == CANARY]


def hostile_saves(root: Path, adapter: str) -> dict[str, Path]:
    """saves/tiny/lora/<payload>/: a real adapter in a folder named after each payload."""
    made = {}
    for name, payload in PAYLOADS.items():
        folder = root / "tiny" / "lora" / payload
        shutil.copytree(adapter, folder)
        made[name] = folder
    return made


def by_path(gateway: GatewayProcess) -> dict[str, dict]:
    listing = gateway.http.post("/api/models/refresh", timeout=120).json()
    assert listing["scan"]["error"] is None, listing["scan"]
    return {m["adapter_path"]: m for m in listing["models"] if m["adapter_path"]}


def ask(gateway: GatewayProcess, model: str, message: str) -> dict:
    reply = gateway.http.post("/api/chat", json={"message": message, "model": model,
                                                 "params": GREEDY, "stream": False},
                              timeout=300)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture
def where(tmp_path):
    """Every folder a stray shell could have run in: the box user's home, the test's
    folders (the work dir and saves among them)."""
    return [box_home(), tmp_path]


def test_script_mode_serves_hostile_names_and_text_as_data(
        sshd, box_python, tiny, tmp_path, where, reliability):
    root = tmp_path / "saves"
    made = hostile_saves(root, tiny["adapter"])
    work = tmp_path / PAYLOADS["subst"] / PAYLOADS["semicolon"]  # REMOTE_WORK_DIR too
    work.mkdir(parents=True)
    gateway = start_real_gateway(sshd, box_python, tiny, tmp_path / "gw", env={
        "ADAPTER_DIRS": str(root), "RESCAN_INTERVAL": "0", "REMOTE_WORK_DIR": str(work)})
    try:
        listed = by_path(gateway)
        for name, folder in made.items():
            model = listed[str(folder)]
            assert model["usable"], model
            reply = ask(gateway, model["id"], PAYLOADS[name])
            chat = gateway.http.get(f"/api/chats/{reply['chat_id']}").json()
            assert chat["messages"][0]["content"] == PAYLOADS[name]
            assert chat["messages"][-1]["provenance"]["adapter_path"] == str(folder)
            renamed = gateway.http.patch(f"/api/chats/{reply['chat_id']}",
                                         json={"title": PAYLOADS[name]})
            assert renamed.status_code == 200 and renamed.json()["title"] == PAYLOADS[name]
        as_model_id = {}
        for name, payload in PAYLOADS.items():
            unknown = gateway.http.post("/api/chat", json={"message": "hi", "model": payload})
            assert unknown.status_code in (404, 422), unknown.text
            as_model_id[name] = f"{unknown.status_code} {unknown.json()['detail']['code']}"

        made_set = gateway.http.post("/api/prompt-sets", json={
            "filename": f"{PAYLOADS['quotes']}.jsonl", "content": "\n".join(
                json.dumps({"prompt": p, "system": p, "reference": p})
                for p in PAYLOADS.values())})
        assert made_set.status_code == 201, made_set.text
        models = [listed[str(made["subst"])]["id"], listed[str(made["newline"])]["id"]]
        run = gateway.http.post(f"/api/prompt-sets/{made_set.json()['id']}/runs",
                                json={"models": models, "params": GREEDY}, timeout=60)
        assert run.status_code == 201, run.text
        assert follow(gateway, run.json()["id"])[-1] == ("end", {"status": "complete",
                                                                 "error": None})
        rows = gateway.http.get(f"/api/runs/{run.json()['id']}").json()["rows"]
        assert [r["prompt"] for r in rows] == list(PAYLOADS.values())
    finally:
        gateway.stop()
    assert canaries(*where, work) == []
    for name, payload in PAYLOADS.items():
        extra = {"subst": ", a folder of REMOTE_WORK_DIR", "semicolon":
                 ", a folder of REMOTE_WORK_DIR", "quotes": ", a prompt set's file name"}
        reliability.record(
            "security", f"script mode, {name}: {shown(payload)} as an adapter folder's name "
            "(its path and model id), a message, a chat title, a prompt set's prompt, system "
            f"and reference, a model id{extra.get(name, '')}",
            "served as data: the adapter answered, message and title stored exactly as sent, "
            f"the prompt-set run complete; as an unknown model id {as_model_id[name]}; the "
            "canary file was never created")


def test_cli_mode_runs_a_hostile_adapter_folder_as_data(
        sshd, box_python, tiny, tmp_path, where, reliability):
    root = tmp_path / "saves"
    made = hostile_saves(root, tiny["adapter"])
    gateway = start_real_gateway(sshd, box_python, tiny, tmp_path / "gw", mode="cli", env={
        "ADAPTER_DIRS": str(root), "RESCAN_INTERVAL": "0"})
    try:
        listed = by_path(gateway)
        # One llamafactory-cli process per model: the two nastiest folders, not all seven.
        for name in ("quotes", "newline"):
            reply = ask(gateway, listed[str(made[name])]["id"], PAYLOADS["backticks"])
            assert reply["content"] is not None
    finally:
        gateway.stop()
    assert canaries(*where) == []
    reliability.record(
        "security", f"CLI mode: adapter folders named {shown(PAYLOADS['quotes'])} and "
        f"{shown(PAYLOADS['newline'])} (each a llamafactory-cli process's adapter), the "
        f"message {shown(PAYLOADS['backticks'])}",
        "llamafactory-cli started on each folder as data and answered; the canary file was "
        "never created")
