"""SSHBox against the real OpenSSH sshd: host keys, wrapper upload, ssh config, keepalive."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from lfgate.box.errors import BoxAuthFailed, BoxUnreachable, HostKeyRejected
from lfgate.box.ssh_box import REMOTE_WRAPPER_ROOT, SSHBox
from lfgate.box.wrapper_files import WrapperFiles
from lfgate.config import load_settings
from tests.rig.hermetic import box_home
from tests.rig.ports import free_port
from tests.rig.sshd import fingerprint, keygen
from tests.wrapper_process import child_pids

HOME = box_home()  # the box is this account logged in over the test sshd


def settings_for(sshd, **overrides):
    env = {k.lower(): v for k, v in sshd.settings_env().items()}
    return load_settings(base_model_path="/models/m", **{**env, **overrides})


async def test_connects_with_a_verified_host_key(sshd):
    box = SSHBox(settings_for(sshd))
    try:
        await box.connect()
        assert box.connected and box.status().error is None
    finally:
        await box.close()
    assert not box.connected


async def test_changed_host_key_is_refused_with_its_fingerprint(sshd, tmp_path):
    other = tmp_path / "other_known_hosts"
    # A known_hosts line for the right host and port, but another key: as if the box changed.
    key_type, key = keygen(tmp_path / "k").split()[:2]
    other.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")
    box = SSHBox(settings_for(sshd, ssh_known_hosts=str(other)))
    with pytest.raises(HostKeyRejected) as refused:
        await box.connect()
    real = fingerprint(sshd.host_key.with_suffix(".pub"))
    assert real in refused.value.message
    assert "ssh-keyscan" in refused.value.hint
    assert not box.connected
    assert real in box.status().error


async def test_unknown_host_key_is_refused(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyRejected):
        await SSHBox(settings_for(sshd, ssh_known_hosts=str(empty))).connect()


async def test_wrong_client_key_is_an_auth_error(sshd, tmp_path):
    keygen(tmp_path / "stranger")
    with pytest.raises(BoxAuthFailed):
        await SSHBox(settings_for(sshd, ssh_key_path=str(tmp_path / "stranger"))).connect()


async def test_closed_port_is_unreachable(sshd):
    with pytest.raises(BoxUnreachable) as error:
        await SSHBox(settings_for(sshd, ssh_port=free_port())).connect()
    assert not isinstance(error.value, HostKeyRejected)


async def test_wrapper_is_uploaded_once_and_again_when_it_changes(sshd, tmp_path):
    source = tmp_path / "wrappers"
    shutil.copytree(WrapperFiles.packaged().folder, source,
                    ignore=shutil.ignore_patterns("__pycache__"))
    files = WrapperFiles.from_folder(source)
    remote = HOME / REMOTE_WRAPPER_ROOT / files.digest
    shutil.rmtree(remote, ignore_errors=True)

    box = SSHBox(settings_for(sshd), files)
    await box.connect()
    path = await box.wrapper_path()
    assert path == f"{remote}/chat_inference.py" and box.uploads == 1
    uploaded = (remote / "chat_inference.py").read_bytes()
    assert uploaded == (source / "chat_inference.py").read_bytes()
    await box.close()

    again = SSHBox(settings_for(sshd), WrapperFiles.from_folder(source))
    await again.connect()
    assert await again.wrapper_path() == path and again.uploads == 0, "unchanged: no upload"
    await again.close()

    (source / "wrapper_serve.py").write_text((source / "wrapper_serve.py").read_text() + "\n#\n")
    changed = WrapperFiles.from_folder(source)
    assert changed.digest != files.digest
    box3 = SSHBox(settings_for(sshd), changed)
    await box3.connect()
    new_path = await box3.wrapper_path()
    await box3.close()
    assert box3.uploads == 1 and changed.digest in new_path and new_path != path
    shutil.rmtree(remote, ignore_errors=True)
    shutil.rmtree(Path(new_path).parent, ignore_errors=True)


async def test_host_alias_from_an_ssh_config_file(sshd, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(f"Host lfgate-test-box\n  HostName 127.0.0.1\n  Port {sshd.port}\n"
                      f"  User {sshd.user}\n  IdentityFile {sshd.client_key}\n"
                      f"  UserKnownHostsFile {sshd.known_hosts}\n")
    settings = load_settings(base_model_path="/m", ssh_host="lfgate-test-box",
                             ssh_config_path=str(config), ssh_known_hosts=str(sshd.known_hosts))
    box = SSHBox(settings)
    try:
        await box.connect()
        assert box.connected
    finally:
        await box.close()


async def test_a_dead_link_is_noticed_by_keepalive(sshd):
    box = SSHBox(settings_for(sshd, ssh_keepalive_interval=1, ssh_keepalive_count_max=2))
    await box.connect()
    before = set(child_pids(sshd.proc.pid))
    for pid in before:
        os.kill(pid, signal.SIGSTOP)  # the link stays open but the box says nothing
    try:
        for _ in range(100):  # 20 s at most; keepalive should need about 3
            if not box.connected:
                break
            await asyncio.sleep(0.2)
        assert not box.connected, "a silent link must be noticed"
        assert "lost" in box.status().error
    finally:
        for pid in before:
            os.kill(pid, signal.SIGCONT)
        await box.close()
    await box.connect()  # and the next request reconnects
    assert box.connected
    await box.close()
