"""A real OpenSSH server on 127.0.0.1 for the tests, with keys generated per run.

Facts this relies on (see shared/box-env.md): sshd needs an absolute path, `/run/sshd`,
`StrictModes no` for keys in a temp dir, `UsePAM no`, `Subsystem sftp internal-sftp`, and
`PermitRootLogin prohibit-password` when the tests run as root.
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
from pathlib import Path

from tests.rig.ports import free_port, wait_listening

SSHD = "/usr/sbin/sshd"


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lfgate-test",
                    "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def fingerprint(public_key_file: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key_file)], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[1]  # "256 SHA256:... comment (ED25519)"


class TestSSHD:
    """sshd -D on a free port; `known_hosts`, `client_key` and `user` are what a client needs."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, session_env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key = folder / "host_ed25519"
        self.client_key = folder / "client_ed25519"
        host_public = keygen(self.host_key)
        (folder / "authorized_keys").write_text(keygen(self.client_key) + "\n")
        self.known_hosts = folder / "known_hosts"
        key_type, key_data = host_public.split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key_type} {key_data}\n")
        set_env = " ".join(f"{k}={v}" for k, v in (session_env or {}).items())
        config = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
        ]
        if set_env:
            config.append(f"SetEnv {set_env}")
        self.config = folder / "sshd_config"
        self.config.write_text("\n".join(config) + "\n")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.log = folder / "sshd.log"
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                     stderr=self.log.open("w"), stdout=subprocess.DEVNULL)
        wait_listening(self.port, self.proc, self.log, "sshd")

    def settings_env(self) -> dict[str, str]:
        """The gateway's .env keys for this box."""
        return {"SSH_HOST": "127.0.0.1", "SSH_PORT": str(self.port), "SSH_USER": self.user,
                "SSH_KEY_PATH": str(self.client_key), "SSH_KNOWN_HOSTS": str(self.known_hosts)}

    def drop_connections(self) -> int:
        """Kill every per-connection sshd (the link drops as if the network went away)."""
        killed = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        return killed

    def stop(self) -> None:
        self.drop_connections()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def start_again(self) -> None:
        """After stop(): the same server (port, keys, config) back, as a rebooted box."""
        with self.log.open("a") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                         stderr=log, stdout=subprocess.DEVNULL)
        wait_listening(self.port, self.proc, self.log, "sshd")
