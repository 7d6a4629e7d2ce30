"""The box's host key changes under a running gateway (issue 17, security): the test sshd's
key regenerated and sshd restarted on the same port, as a rebuilt box (or a machine in the
middle) would present it. The gateway's next connect refuses, with host_key_rejected and a
message that says the key changed, naming the new fingerprint; nothing reaches the box.

A real `lfgate serve` over a real sshd of its own (the session's test box keeps its key), with
the scripted box double as the wrapper so the SSH link is the only thing under test.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.gateway_process import GatewayProcess
from tests.rig.sshd import TestSSHD, fingerprint, keygen
from tests.ui_rig import SCRIPTED_ADAPTER, SCRIPTED_BASE, SCRIPTED_WRAPPER


def test_a_changed_host_key_refuses_to_connect_and_says_so(tmp_path: Path, reliability):
    (tmp_path / "sshd").mkdir()
    sshd = TestSSHD(tmp_path / "sshd")
    data = tmp_path / "gateway"
    data.mkdir()
    gateway = GatewayProcess({}, data, dotenv={
        **sshd.settings_env(), "CHAT_MODE": "script", "REMOTE_PYTHON": sys.executable,
        "CHAT_SCRIPT_PATH": str(SCRIPTED_WRAPPER), "BASE_MODEL_PATH": SCRIPTED_BASE,
        "ADAPTER_PATH": SCRIPTED_ADAPTER, "TEMPLATE": "qwen",
        "DATABASE_URL": f"sqlite+aiosqlite:///{data / 'lfgate.db'}",
        "LFGATE_DATA_DIR": str(data / "data"), "CHAT_TIMEOUT": "60"})
    try:
        first = gateway.http.post("/api/chat", json={"message": "over ssh", "stream": False})
        assert first.status_code == 200, first.text  # connected, the key trusted
        old = fingerprint(sshd.host_key.with_suffix(".pub"))

        # The box gets a new host key: sshd stops (the link drops), the key is made anew.
        sshd.stop()
        for made in (sshd.host_key, sshd.host_key.with_suffix(".pub")):
            made.unlink()
        keygen(sshd.host_key)
        new = fingerprint(sshd.host_key.with_suffix(".pub"))
        assert new != old
        sshd.start_again()
        sessions = sshd.log.read_text().count("Accepted publickey")

        refused = gateway.http.post("/api/chat", json={"message": "after the change",
                                                       "stream": False})
        assert refused.status_code == 502, refused.text
        error = refused.json()
        assert error["code"] == "host_key_rejected", error
        assert "CHANGED" in error["message"] and new in error["message"], error
        assert old not in refused.text
        assert "ssh-keygen -R" in error["hint"] and "do not connect" in error["hint"], error
        health = gateway.http.get("/api/health").json()
        assert "CHANGED" in str(health), health  # the box's state says so too
        # Refused before any login: no session was opened on the box with the new key.
        assert sshd.log.read_text().count("Accepted publickey") == sessions
    finally:
        gateway.stop()
        sshd.stop()
    message = (error["message"].replace(new, "<the new key's fingerprint>")
               .replace(f"[127.0.0.1]:{sshd.port}", "the box")
               .replace(str(sshd.known_hosts), "SSH_KNOWN_HOSTS"))
    reliability.record(
        "security", "the box's host key changes under a running gateway (the test sshd's key "
        "regenerated, sshd restarted on the same port)",
        f"the next chat: {refused.status_code} {error['code']}: \"{message}\"; no login is "
        "tried; the box's status says so; the hint says how to check the new fingerprint and "
        "replace the old key, or not to connect")
