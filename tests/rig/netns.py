"""A link a test can cut: a network namespace joined to this one by a veth pair, so a server
started inside it (`TestSSHD(..., address=link.box_address, launcher=link.exec_prefix)`) is
reached over a real interface that `link.down()` takes away and `link.up()` brings back.

Needs root (`ip netns`). Names are unique per run (`lfgate-<pid>-<random>`, veths
`lfg<random>h`/`lfg<random>b`) and the /30 is one no interface of this machine uses, chosen
under a lock, so test sessions running at once on one machine never meet. The namespace and
the veth pair are always deleted on the way out, and a namespace left by a run that was killed
(its pid is gone) is swept by the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PREFIX = "lfgate-"  # our namespaces: lfgate-<pid of the test session>-<random>
POOL = ipaddress.ip_network("10.213.0.0/16")  # the /30s links are cut from
_LOCK = Path("/run/lock/lfgate-netns.lock")  # one session picks an address at a time


class NetnsUnavailable(RuntimeError):
    """`ip netns` cannot be used here (not root, no iproute2, no CAP_SYS_ADMIN/NET_ADMIN)."""


@dataclass(frozen=True)
class Link:
    namespace: str
    host_veth: str  # this side's end
    box_veth: str  # the end inside the namespace
    host_address: str
    box_address: str  # where a server in the namespace listens

    @property
    def exec_prefix(self) -> list[str]:
        """Runs a command inside the namespace (exec'd in place: same pid)."""
        return ["ip", "netns", "exec", self.namespace]

    def down(self) -> None:
        """Cut the link: this side's interface down (its route goes with it)."""
        _ip("link", "set", self.host_veth, "down")

    def up(self) -> None:
        _ip("link", "set", self.host_veth, "up")


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale() -> None:
    """Namespaces of ours whose test session is gone (killed before it could clean up)."""
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if name.startswith(PREFIX) and len(parts) == 3 and parts[1].isdigit() \
                and not _alive(int(parts[1])):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network an interface of this machine (any namespace we can see) holds."""
    used = []
    for line in _ip("-o", "-4", "addr", "show").splitlines():
        fields = line.split()
        if "inet" in fields:
            used.append(ipaddress.ip_interface(fields[fields.index("inet") + 1]).network)
    return used


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    candidates = list(POOL.subnets(new_prefix=30))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(net) for net in used):
            return subnet
    raise RuntimeError(f"no free /30 left in {POOL}")


def _check_permitted() -> None:
    if shutil.which("ip") is None:
        raise NetnsUnavailable("`ip` (iproute2) is not installed: the link-cut test needs "
                               "`ip netns` and a veth pair")
    if os.geteuid() != 0:
        raise NetnsUnavailable("`ip netns` needs root: run the tests as root (as CI does) "
                               "to cut a real link")


@contextlib.contextmanager
def cuttable_link() -> Iterator[Link]:
    """A fresh namespace and veth pair with a private /30, up; always deleted afterwards.
    Raises NetnsUnavailable (a test skips on it) where namespaces cannot be made."""
    _check_permitted()
    token = secrets.token_hex(3)
    namespace = f"{PREFIX}{os.getpid()}-{token}"
    host_veth, box_veth = f"lfg{token}h", f"lfg{token}b"
    created = False
    try:
        _LOCK.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held while the address is picked and taken
            _sweep_stale()
            try:
                _ip("netns", "add", namespace)
            except RuntimeError as exc:
                raise NetnsUnavailable(f"`ip netns add` is not permitted here: {exc}") from exc
            created = True
            subnet = _free_subnet()
            host_address, box_address = (str(a) for a in list(subnet.hosts())[:2])
            try:
                _ip("link", "add", host_veth, "type", "veth", "peer", "name", box_veth)
            except RuntimeError as exc:
                raise NetnsUnavailable(f"a veth pair cannot be made here: {exc}") from exc
            _ip("link", "set", box_veth, "netns", namespace)
            _ip("addr", "add", f"{host_address}/30", "dev", host_veth)
            _ip("link", "set", host_veth, "up")
            inside = ["netns", "exec", namespace, "ip"]
            _ip(*inside, "addr", "add", f"{box_address}/30", "dev", box_veth)
            _ip(*inside, "link", "set", box_veth, "up")
            _ip(*inside, "link", "set", "lo", "up")
        yield Link(namespace, host_veth, box_veth, host_address, box_address)
    finally:
        # Deleting either end deletes the pair; the namespace goes once nothing runs in it
        # (stop its servers first: a process inside keeps it, and its veth end, alive).
        subprocess.run(["ip", "link", "delete", host_veth], capture_output=True, check=False)
        if created:
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True,
                           check=False)
