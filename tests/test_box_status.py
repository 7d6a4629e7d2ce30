"""The box's live status program (remote/box_status.py, groundwork for issue 16's status
line) run over the real sshd, as the gateway runs it: over the open connection, with a
stand-in `nvidia-smi` on the box's PATH printing what nvidia-smi prints for this query (two
GPUs, one busy training, one whose utilisation cannot be read), and with none."""

from __future__ import annotations

from pathlib import Path

import pytest

from lfgate.box.ssh_box import SSHBox
from lfgate.box.wrapper_files import STATUS
from lfgate.config import load_settings
from tests.rig.sshd import TestSSHD
from tests.ui_rig import stand_in_nvidia_smi

# `nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu
# --format=csv,noheader,nounits`, in nvidia-smi's own layout (", " between fields; [N/A]
# where a GPU cannot tell, as MIG devices say for utilisation).
NVIDIA_SMI_OUTPUT = """\
0, NVIDIA A100-SXM4-80GB, 81920, 73421, 97
1, NVIDIA A100-SXM4-80GB, 81920, 4, [N/A]
"""


def status_box(tmp_path: Path, tools: Path | None) -> tuple[TestSSHD, SSHBox]:
    folder = tmp_path / "sshd"
    folder.mkdir()
    path = f"{tools}:/usr/bin:/bin" if tools else "/usr/bin:/bin"
    server = TestSSHD(folder, {"PATH": path})
    env = {k.lower(): v for k, v in server.settings_env().items()}
    return server, SSHBox(load_settings(base_model_path="/m", **env))


@pytest.mark.parametrize("with_gpus", [True, False])
async def test_gpus_are_read_from_nvidia_smi_over_the_open_connection(tmp_path, with_gpus):
    tools = stand_in_nvidia_smi(tmp_path / "tools") if with_gpus else None
    server, box = status_box(tmp_path, tools)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model-00001-of-00002.safetensors").write_bytes(b"w" * 1000)
    (model / "model-00002-of-00002.safetensors").write_bytes(b"w" * 24)
    (model / "config.json").write_text("{}")  # not weights
    job = {"weights": [str(model), str(tmp_path / "not-there")]}
    try:
        await box.connect()
        status = await box.run_program(STATUS, job, 30)
        again = await box.run_program(STATUS, {}, 30)
    finally:
        await box.close()
        server.stop()
    assert server.log.read_text().count("Accepted publickey") == 1, "no new handshake"
    assert again["gpus"] == status["gpus"] and again["weights"] == {}
    assert status["weights"] == {str(model): 1024, str(tmp_path / "not-there"): None}
    assert len(status["load_avg"]) == 3
    if not with_gpus:
        assert status["gpus"] == [] and status["nvidia_smi"] is None
        return
    assert status["nvidia_smi"] == str(tools / "nvidia-smi") and "error" not in status
    assert status["gpus"] == [
        {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "memory_total_mib": 81920,
         "memory_used_mib": 73421, "utilization_pct": 97},
        {"index": 1, "name": "NVIDIA A100-SXM4-80GB", "memory_total_mib": 81920,
         "memory_used_mib": 4, "utilization_pct": None}]
