"""Faults of the box, injected for real under `lfgate serve` on the real LlamaFactory behind a
real sshd: the sshd restarted (idle, and mid-reply), the wrapper killed with SIGKILL,
`llamafactory-cli` killed, the disk full for the wrapper upload, the model failing to load.
Each must end with its own clear error (code, message, hint naming what happened), keep a
cut reply's text, and the next request must recover without a gateway restart.
(The SSH link cut is tests/test_faults_link.py; a gateway SIGKILLed mid-reply is
tests/test_persistence_e2e.py.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lfgate.box.errors import WrapperExited
from lfgate.box.local_box import LocalBox
from lfgate.box.ssh_box import REMOTE_WRAPPER_ROOT
from lfgate.box.wrapper_files import WrapperFiles
from lfgate.config import load_settings
from tests.conftest import PACED_BOX_ENV, spied_sshd
from tests.gateway_process import GatewayProcess
from tests.rig.faults import (
    SHORT,
    answer,
    box_processes,
    cmdline,
    cut_reply,
    gone,
    sigkill,
    stable,
    stored_reply,
    until,
)
from tests.rig.hermetic import box_home
from tests.rig.sshd import TestSSHD
from tests.test_streams import wait_for
from tests.ui_rig import start_real_gateway

pytestmark = pytest.mark.box

FAST_LINK = {"SSH_KEEPALIVE_INTERVAL": "1", "SSH_KEEPALIVE_COUNT_MAX": "2"}
BROKEN_RUN = "broken/lora/run"  # a run under ADAPTER_DIRS, trained on a base that is broken


def generating_pid(server: Any) -> int:
    """The process generating the reply now: the spy's last record (inside the wrapper in
    script mode, inside the real `llamafactory-cli` in CLI mode)."""
    records = [json.loads(line) for line in server.spy.read_text().splitlines()]
    return [r for r in records if not r.get("end")][-1]["pid"]


def a_model_folder_with_truncated_weights(source: str, folder: Path) -> Path:
    """A copy of a model whose weights file was cut in half (a copy that ran out of disk)."""
    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    with weights.open("r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    return folder


def a_run_on(base: Path, adapter: str, saves: Path) -> Path:
    """A LlamaFactory run folder (as saves_tree writes one) whose adapter names `base`."""
    run = saves / BROKEN_RUN
    shutil.copytree(adapter, run)
    config = json.loads((run / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base)
    (run / "adapter_config.json").write_text(json.dumps(config))
    (run / "training_args.yaml").write_text(
        f"finetuning_type: lora\nmodel_name_or_path: {base}\ntemplate: qwen\n")
    return run


@pytest.fixture(scope="module")
def box(tmp_path_factory, box_python) -> Iterator[TestSSHD]:
    """This module's own box (it restarts its sshd): a real sshd loading the test spy."""
    server = spied_sshd(tmp_path_factory.mktemp("faults-sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def broken(tmp_path_factory, tiny) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("broken")
    base = a_model_folder_with_truncated_weights(tiny["base"], folder / "base")
    return {"base": base, "saves": folder / "saves",
            "run": a_run_on(base, tiny["adapter"], folder / "saves")}


@pytest.fixture(scope="module")
def gateway(box, box_python, tiny, broken, tmp_path_factory) -> Iterator[GatewayProcess]:
    """Script mode on the tiny model (`default`, `base`), and a discovered run whose base
    does not load."""
    process = start_real_gateway(box, box_python, tiny, tmp_path_factory.mktemp("faults-gw"),
                                 env={**FAST_LINK, "ADAPTER_DIRS": str(broken["saves"])})
    yield process
    assert process.stop(), process.log.read_text()[-3000:]


def model_status(gateway: GatewayProcess, model: str = "default") -> dict[str, Any]:
    return gateway.http.get(f"/api/models/{model}/status").json()


def settled_status(gateway: GatewayProcess, model: str = "default") -> str:
    """The model's status once it is done loading: an adapter on a shared base is also
    brought onto it in the background when its chat loads the base (it may still be)."""
    return until(lambda: model_status(gateway, model),
                 lambda s: s["status"] not in ("loading", "unloaded"),
                 what=f"{model}'s load")["status"]


def test_the_sshd_restarted_while_idle_the_next_request_reconnects(gateway, box, reliability):
    answer(gateway)  # loaded, idle
    wrapper = generating_pid(box)
    assert wrapper in box_processes(box.proc.pid, "chat_inference.py"), cmdline(wrapper)
    box.stop()
    box.start_again()
    status = until(lambda: model_status(gateway), lambda s: s["status"] != "ready",
                   what="the gateway noticing its wrapper went with the sshd")
    until(lambda: gone(wrapper), bool, what=f"the wrapper's end ({cmdline(wrapper)})")

    answer(gateway)
    again = generating_pid(box)  # a new wrapper answered
    assert again != wrapper and again in box_processes(box.proc.pid, "chat_inference.py")
    assert settled_status(gateway) == "ready"
    reliability.record(
        "link", case="The box's sshd restarted while the gateway is idle",
        outcome=f"the loaded model's wrapper goes with the sshd's sessions and the model "
                f"shows status {status['status']}; the next request reconnects by itself, "
                "starts a new wrapper, loads the model again and answers")


def test_the_sshd_restarted_mid_reply_ends_it_clearly_and_the_next_request_reconnects(
        gateway, box, reliability):
    answer(gateway)

    def restart() -> None:
        box.stop()
        box.start_again()

    cut = cut_reply(gateway, restart)
    assert cut.end == "error", (cut.end, cut.data)
    error = cut.data
    assert error["code"] == "box_unreachable", error
    assert "SSH link" in error["message"] and "was lost" in error["message"], error
    assert "sshd was restarted" in error["message"], error
    assert "reconnects by itself" in error["hint"], error
    # The box closed the connection: told at once, not after the keepalives (1 s x 2).
    assert cut.seconds < 2, f"told {cut.seconds:.1f} s after the restart"
    stored = stored_reply(gateway, cut)
    assert stored["content"] and stored["content"] == cut.text, (stored, cut.text)
    assert stored["status"] == "interrupted", stored

    answer(gateway, {"message": "Are you back?", "chat_id": cut.meta["chat_id"],
                     "params": SHORT})
    reliability.record(
        "link", case="The box's sshd restarted mid-reply",
        outcome=f"the stream ends at once with {error['code']}: "
                f"“{stable(error['message'], box)}”; the reply is stored as "
                f"{stored['status']} with the text that had streamed; the next request "
                "reconnects by itself, loads the model again and answers")


def test_the_wrapper_killed_mid_reply_ends_it_clearly_and_the_next_request_reloads(
        gateway, box, reliability):
    answer(gateway)
    killed: list[int] = []

    def kill_the_wrapper() -> None:
        pid = generating_pid(box)
        assert pid in box_processes(box.proc.pid, "chat_inference.py", "--serve"), \
            cmdline(pid)
        sigkill(pid)
        killed.append(pid)

    cut = cut_reply(gateway, kill_the_wrapper)
    assert cut.end == "error", (cut.end, cut.data)
    error = cut.data
    assert error["code"] == "wrapper_exited", error
    assert error["message"].startswith("the wrapper on the box was killed by SIGKILL"), error
    assert "out-of-memory" in error["hint"] and "next request" in error["hint"], error
    stored = stored_reply(gateway, cut)
    assert stored["content"] and stored["content"] == cut.text, (stored, cut.text)
    assert stored["status"] == "interrupted", stored

    assert model_status(gateway)["status"] == "error"
    answer(gateway, {"message": "Are you back?", "chat_id": cut.meta["chat_id"],
                     "params": SHORT})
    wrapper = generating_pid(box)  # a new wrapper answered
    assert wrapper != killed[0] and wrapper in box_processes(box.proc.pid, "chat_inference.py")
    said = error["message"].split(":", 1)[0]
    reliability.record(
        "box", case="The wrapper killed with SIGKILL mid-reply",
        outcome=f"the stream ends with {error['code']}: “{said}” (then the box's last stderr "
                "lines), the hint naming the out-of-memory killer; the reply is stored as "
                f"{stored['status']} with the text that had streamed; the next request starts "
                "a new wrapper, loads the model again and answers")


def test_a_model_that_fails_to_load_says_why_and_loads_once_fixed(
        gateway, box, broken, tiny, reliability):
    models = gateway.scanned_models()
    [run_id] = [i for i, m in models.items() if m["adapter_path"] == str(broken["run"])]

    done, events = gateway.chat({"message": "hello", "model": run_id, "params": SHORT})
    assert events[-1][0] == "error", events[-1]
    error = done
    assert error["code"] == "load_failed", error
    assert error["message"].startswith(f"model {run_id!r} did not load on the box: "), error
    assert "SafetensorError" in error["message"], error  # the box's own reason
    assert "could not load the model" in error["hint"], error
    status = model_status(gateway, run_id)
    assert status["status"] == "error" and "SafetensorError" in status["error"], status
    stored = gateway.http.get(f"/api/chats/{events[0][1]['chat_id']}").json()["messages"][-1]
    assert (stored["status"], stored["content"]) == ("error", ""), stored

    answer(gateway)  # the gateway goes on serving the models that load

    shutil.copy2(Path(tiny["base"]) / "model.safetensors", broken["base"])  # fixed on the box
    answer(gateway, {"message": "hello", "model": run_id, "params": SHORT})  # retried
    assert settled_status(gateway, run_id) == "ready"
    reason = error["message"].split(": ", 1)[1]
    reliability.record(
        "box", case="The model failing to load (its weights file truncated)",
        outcome=f"the reply ends with {error['code']}: “model … did not load on the box: "
                f"{reason}” (the box's own reason), and the model's status says the same; "
                "the other models go on answering; once the weights are fixed, the next "
                "request loads it and answers")


async def test_a_wrapper_that_dies_on_this_machine_is_told_the_same_way():
    """The demo box (SSH_HOST empty) runs the wrapper as a local process: its end is told
    as over SSH (killed by a signal, or its exit status, then its last stderr lines)."""
    box = LocalBox(load_settings(ssh_host="", base_model_path="/models/m"))
    said = {}
    for name, command in (("killed", "echo loading >&2; kill -KILL $$"),
                          ("exited", "echo Traceback: boom >&2; exit 3")):
        process = await box._spawn(f"exec sh -c {shlex.quote(command)}")
        assert await process.read_line() is None
        said[name] = await process.ended_error()
        await process.close()
    assert isinstance(said["killed"], WrapperExited)
    assert said["killed"].message == "the wrapper on the box was killed by SIGKILL:\nloading"
    assert "out-of-memory" in said["killed"].hint
    assert said["exited"].message == "the wrapper on the box exited with status 3:\n" \
                                     "Traceback: boom"
    assert said["exited"].hint == WrapperExited.hint


# -- CLI mode ------------------------------------------------------------------------------


@pytest.fixture
def cli_gateway(box, box_python, tiny, tmp_path) -> Iterator[GatewayProcess]:
    process = start_real_gateway(box, box_python, tiny, tmp_path / "cli-gw", mode="cli",
                                 env=FAST_LINK)
    yield process
    assert process.stop(), process.log.read_text()[-3000:]


def test_llamafactory_cli_killed_mid_reply_ends_it_clearly_and_the_next_request_restarts_it(
        cli_gateway, box, reliability):
    killed: list[int] = []

    def kill_the_cli() -> None:
        pid = generating_pid(box)  # the spy runs inside the real llamafactory-cli
        assert pid in box_processes(box.proc.pid, "llamafactory-cli", "chat"), cmdline(pid)
        sigkill(pid)
        killed.append(pid)

    cut = cut_reply(cli_gateway, kill_the_cli)  # loads the CLI, then streams
    assert cut.end == "error", (cut.end, cut.data)
    error = cut.data
    assert error["code"] == "cli_exited", error
    assert error["message"].startswith("llamafactory-cli was killed by SIGKILL"), error
    assert "restarts it" in error["hint"] and "out-of-memory" in error["hint"], error
    stored = stored_reply(cli_gateway, cut)
    assert stored["content"] and stored["content"] == cut.text, (stored, cut.text)
    assert stored["status"] == "interrupted", stored

    _, events = answer(cli_gateway)
    restarted = [d["message"] for n, d in events if n == "info"]
    assert any("llamafactory-cli was not running" in m for m in restarted), events
    cli = generating_pid(box)  # a new llamafactory-cli answered
    assert cli != killed[0] and cli in box_processes(box.proc.pid, "llamafactory-cli", "chat")
    reliability.record(
        "box", case="llamafactory-cli killed with SIGKILL mid-reply (CHAT_MODE=cli)",
        outcome=f"the stream ends with {error['code']}: “{error['message'].split(':', 1)[0]}”"
                " (then its last output), the hint naming the out-of-memory killer; the reply "
                f"is stored as {stored['status']} with the text that had streamed; the "
                "next request restarts llamafactory-cli, which loads the model again, says so "
                "and answers")


# -- the disk full -------------------------------------------------------------------------


@pytest.fixture
def full_box(tmp_path, box_python) -> Iterator[TestSSHD]:
    """A box whose disk is full where the gateway uploads its wrapper: the sshd runs in a
    mount namespace of its own, where a small tmpfs, filled up, covers that folder (nothing
    outside it sees the tmpfs, which goes with the sshd)."""
    missing = [tool for tool in ("unshare", "nsenter") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip("a full disk on the box needs root (a mount namespace and a tmpfs)"
                    + (f" and {', '.join(missing)} (util-linux)" if missing else ""))
    target = box_home() / REMOTE_WRAPPER_ROOT
    target.mkdir(parents=True, exist_ok=True)
    script = ('set -e; mount -t tmpfs -o size=2m lfgate-full-disk "$1"; '
              'head -c 4194304 /dev/zero > "$1/filler" 2>/dev/null || true; shift; exec "$@"')
    (tmp_path / "sshd").mkdir()
    server = TestSSHD(tmp_path / "sshd", PACED_BOX_ENV,
                      launcher=["unshare", "--mount", "--propagation", "private",
                                "sh", "-c", script, "sh", str(target)])
    server.wrappers = target
    yield server
    server.stop()


def in_box(server: TestSSHD, *command: str) -> str:
    """A command in the box's mount namespace (where its tmpfs is)."""
    return subprocess.run(["nsenter", "--target", str(server.proc.pid), "--mount", "--",
                           *command], capture_output=True, text=True, check=True).stdout


def test_the_disk_full_for_the_upload_says_so_and_the_next_request_uploads(
        full_box, box_python, tiny, tmp_path, reliability):
    assert in_box(full_box, "df", "--output=avail", str(full_box.wrappers)).split()[-1] == "0"
    # No status readings (BOX_STATUS_INTERVAL=0): they upload too, and would race the look
    # at the disk below.
    gateway = start_real_gateway(full_box, box_python, tiny, tmp_path / "gw",
                                 env={**FAST_LINK, "BOX_STATUS_INTERVAL": "0"})
    try:
        done, events = gateway.chat({"message": "hello", "params": SHORT})
        assert events[-1][0] == "error", events[-1]
        error = done
        folder = str(full_box.wrappers)
        assert error["code"] == "disk_full", error
        assert error["message"].startswith(
            f"no space left on the box's disk for the wrapper upload to {folder}: 0 KiB free"), \
            error
        assert "Free space on the box's disk" in error["hint"] and folder in error["hint"]
        # Nothing half-written is left to fill the disk further. Waited for, not looked at
        # once: the start-up quick checks upload too (box_probe.py), and one of theirs can be
        # half-way, its staging folder there for a moment, when the chat's has failed.
        wait_for(lambda: in_box(full_box, "ls", "-A", folder).split() == ["filler"],
                 "every failed upload's staging folder removed")

        in_box(full_box, "rm", str(full_box.wrappers / "filler"))  # room made on the box
        answer(gateway)
        digest = WrapperFiles.packaged().digest
        in_box(full_box, "test", "-f", f"{folder}/{digest}/.complete")
        stored = gateway.http.get(f"/api/chats/{events[0][1]['chat_id']}").json()
        assert stored["messages"][1]["status"] == "error"
    finally:
        assert gateway.stop(), gateway.log.read_text()[-3000:]
    said = re.sub(r"\d+ KiB", "N KiB", error["message"].replace(str(box_home()), "~"))
    reliability.record(
        "box", case="The box's disk full for the wrapper upload",
        outcome=f"the reply ends with {error['code']}: “{said}”; nothing half-uploaded is left "
                "behind; once space is freed, the next request uploads the wrapper and "
                "answers")
