"""Our one-call box programs (a scan of the training folders) run over the box's own
connection: the real sshd, and this machine as the local box."""

from __future__ import annotations

import pytest

from lfgate.box.errors import WrapperUnavailable
from lfgate.box.local_box import LocalBox
from lfgate.box.ssh_box import SSHBox
from lfgate.box.wrapper_files import DISCOVER
from lfgate.config import load_settings
from tests.test_discover_adapters import saves
from tests.test_ssh_box import settings_for


@pytest.mark.parametrize("where", ["ssh", "local"])
async def test_a_scan_of_saves_is_one_call_over_the_boxs_connection(where, sshd, tmp_path):
    root, base = saves(tmp_path)
    box = SSHBox(settings_for(sshd)) if where == "ssh" else LocalBox(
        load_settings(base_model_path="/m"))
    try:
        found = await box.run_program(DISCOVER, {"dirs": [str(root), str(tmp_path / "nope")],
                                                 "base_model_path": str(base)}, 60)
        assert sorted(a["relative"] for a in found["adapters"]) == [
            "tiny/lora/sft-a", "tiny/lora/sft-a/checkpoint-10", "tiny/lora/sft-a/checkpoint-20",
            "tiny/lora/sft-b/checkpoint-100", "tiny/lora/sft-b/checkpoint-200"]
        assert found["missing"][0]["reason"] == "no such folder on the box"
        with pytest.raises(WrapperUnavailable, match="bad job"):
            await box.run_program(DISCOVER, {"dirs": "not a list"}, 60)
    finally:
        await box.close()
