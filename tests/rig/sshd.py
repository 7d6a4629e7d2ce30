"""A real OpenSSH server on 127.0.0.1 for the tests, with keys generated per run; or on another
address, started through a launcher (`ip netns exec NS`: a box behind a link a test can cut,
tests/rig/netns.py; `unshare --mount ...`: a box whose disk a test can fill).

Facts this relies on (see shared/box-env.md): sshd needs an absolute path, `/run/sshd`,
`StrictModes no` for keys in a temp dir, `UsePAM no`, `Subsystem sftp internal-sftp`, and
`PermitRootLogin prohibit-password` when the tests run as root.

Logins rented boxes hand out, opt-in: a password (PasswordAuthentication checks the shadow
password with `UsePAM no`; keyboard-interactive needs `UsePAM yes`, Debian's /etc/pam.d/sshd)
for a test account of its own (`password_account`, never root's or an existing one's
password), and an encrypted client key.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import pwd
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.rig.ports import free_port, wait_listening

SSHD = "/usr/sbin/sshd"
PASSWORD_USER = "lfgate-pw"  # the account password logins use; made by password_account()
_PASSWORD_LOCK = Path("/run/lock/lfgate-pw.lock")  # one test session sets its password at once


def keygen(path: Path, passphrase: str = "") -> str:
    """A new ed25519 key pair at `path`, encrypted with `passphrase` if one is given (by
    ssh-keygen, in OpenSSH's own format, as users' keys are; the passphrase, made for the test
    run, is on ssh-keygen's command line only while it runs)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "lfgate-test",
                    "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@contextlib.contextmanager
def password_account(name: str = PASSWORD_USER, wait_s: float = 600) -> Iterator[str]:
    """The test account `name` (made if missing: `useradd --create-home`) with a fresh random
    password, yielded, for password logins; needs root. Another test session on this machine
    waits for the account until this one is done with it, rather than change its password
    under it. Never touches another account."""
    if os.geteuid() != 0:
        raise RuntimeError(f"password logins need a test account ({name}) with a password: "
                           "run the tests as root (as CI does)")
    _PASSWORD_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with _PASSWORD_LOCK.open("a") as lock:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another test session held {_PASSWORD_LOCK} for "
                                       f"{wait_s:.0f} s") from None
                time.sleep(0.2)
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash",
                            "--comment", "LF Gate password-login tests", name], check=True)
        password = f"Pw-{secrets.token_urlsafe(18)}"
        # On stdin, not argv: no process listing ever shows it.
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        yield password


def fingerprint(public_key_file: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key_file)], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[1]  # "256 SHA256:... comment (ED25519)"


class TestSSHD:
    """sshd -D on a free port; `known_hosts`, `client_key` and `user` are what a client needs."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, session_env: dict[str, str] | None = None, *,
                 user: str | None = None, password_auth: bool = False,
                 kbd_interactive: bool = False, client_passphrase: str = "",
                 address: str = "127.0.0.1", launcher: Sequence[str] = ()) -> None:
        """Opt-in logins: `user` to log in as (default: this account), `password_auth`
        (PasswordAuthentication), `kbd_interactive` (keyboard-interactive through PAM), and
        `client_passphrase` to encrypt the client key with.

        `address`: where it listens (and what known_hosts names). `launcher`: a command that
        runs sshd's command line given after it, and must exec it in place (`ip netns exec
        NS`, `unshare ... sh -c '...; exec "$@"'`), so `proc` is sshd itself and
        drop_connections finds its sessions; used again by start_again."""
        self.folder = folder
        self.address = address
        self.launcher = list(launcher)
        self.port = free_port()
        self.user = user or getpass.getuser()
        self.host_key = folder / "host_ed25519"
        self.client_key = folder / "client_ed25519"
        host_public = keygen(self.host_key)
        client_public = keygen(self.client_key, client_passphrase)
        (folder / "authorized_keys").write_text(client_public + "\n")
        self.known_hosts = folder / "known_hosts"
        key_type, key_data = host_public.split()[:2]
        self.known_hosts.write_text(f"[{address}]:{self.port} {key_type} {key_data}\n")
        set_env = " ".join(f"{k}={v}" for k, v in (session_env or {}).items())
        config = [
            f"Port {self.port}",
            f"ListenAddress {address}",
            f"HostKey {self.host_key}",
            f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            f"PasswordAuthentication {'yes' if password_auth else 'no'}",
            f"KbdInteractiveAuthentication {'yes' if kbd_interactive else 'no'}",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            f"UsePAM {'yes' if kbd_interactive else 'no'}",  # Linux's keyboard-interactive
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
        ]
        if set_env:
            config.append(f"SetEnv {set_env}")
        self.config = folder / "sshd_config"
        self.config.write_text("\n".join(config) + "\n")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.log = folder / "sshd.log"
        self.proc = subprocess.Popen(self._command(), stderr=self.log.open("w"),
                                     stdout=subprocess.DEVNULL)
        wait_listening(self.port, self.proc, self.log, "sshd", host=address)

    def _command(self) -> list[str]:
        return [*self.launcher, SSHD, "-D", "-e", "-f", str(self.config)]

    def settings_env(self) -> dict[str, str]:
        """The gateway's .env keys for this box."""
        return {"SSH_HOST": self.address, "SSH_PORT": str(self.port), "SSH_USER": self.user,
                "SSH_KEY_PATH": str(self.client_key), "SSH_KNOWN_HOSTS": str(self.known_hosts)}

    def connection_pids(self) -> set[int]:
        """The per-connection sshd processes: one for each SSH connection open now."""
        pids = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                pids.add(int(entry.name))
        return pids

    def drop_connections(self) -> int:
        """Kill every per-connection sshd (the link drops as if the network went away)."""
        killed = 0
        for pid in self.connection_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # a session that was ending by itself: gone now
                continue
            killed += 1
        return killed

    def stop(self) -> None:
        """The box goes away: no listener, no session. The listener is frozen first: a client
        that reconnects the moment its session is killed (a gateway's box monitor does, within
        milliseconds) would otherwise get a new session from the still-running listener, and
        a stopped listener leaves its sessions running, so the box stayed reachable (a
        fresh-clone run saw a box never go down). Killed, not terminated: a frozen process
        handles no signal but SIGKILL."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)  # accepts and forks nothing from here on
        self.drop_connections()  # its sessions are still its children while it is frozen
        self.proc.kill()
        self.proc.wait(timeout=10)

    def start_again(self) -> None:
        """After stop(): the same server (port, keys, config) back, as a rebooted box."""
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(self._command(), stderr=log,
                                         stdout=subprocess.DEVNULL)
        wait_listening(self.port, self.proc, self.log, "sshd", host=self.address)
