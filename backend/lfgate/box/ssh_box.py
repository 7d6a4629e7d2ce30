"""The box over SSH: one asyncssh connection, reused for every wrapper and every model.

Options are built once and reused on every reconnect. Host keys are always verified
(SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts; an empty or missing file trusts nothing).
Keepalives notice a dead link within interval x count seconds; the next request reconnects.
Channels are bounded below OpenSSH's default MaxSessions (10).
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import time
import uuid
from pathlib import Path

import asyncssh

from lfgate.box.box import Box
from lfgate.box.errors import (
    BoxAuthFailed,
    BoxError,
    BoxUnreachable,
    HostKeyRejected,
    WrapperUnavailable,
)
from lfgate.box.process import BoxProcess
from lfgate.box.wrapper_files import WrapperFiles
from lfgate.config import Settings

REMOTE_WRAPPER_ROOT = ".cache/lfgate/wrappers"  # under the box user's home
_COMPLETE_MARK = ".complete"


class SSHBox(Box):
    def __init__(self, settings: Settings, files: WrapperFiles | None = None) -> None:
        super().__init__(settings, files)
        self._options: asyncssh.SSHClientConnectionOptions | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connect_lock = asyncio.Lock()
        self._channels = asyncio.Semaphore(settings.ssh_max_channels)
        self._watcher: asyncio.Task[None] | None = None
        self.uploads = 0  # how many times the wrapper was uploaded (tests and /api/health)

    @staticmethod
    def _build_options(settings: Settings) -> asyncssh.SSHClientConnectionOptions:
        known_hosts = settings.ssh_known_hosts or str(Path("~/.ssh/known_hosts").expanduser())
        if not Path(known_hosts).expanduser().is_file():
            known_hosts_arg: object = b""  # trust nothing: refuse every key, with its fingerprint
        else:
            known_hosts_arg = str(Path(known_hosts).expanduser())
        options: dict[str, object] = {
            "known_hosts": known_hosts_arg,
            "keepalive_interval": settings.ssh_keepalive_interval,
            "keepalive_count_max": settings.ssh_keepalive_count_max,
            "connect_timeout": settings.ssh_connect_timeout,
            "host": settings.ssh_host,  # so ~/.ssh/config's Host blocks (alias, ProxyJump) apply
        }
        if settings.ssh_port:
            options["port"] = settings.ssh_port
        if settings.ssh_user:
            options["username"] = settings.ssh_user
        if settings.ssh_key_path:
            options["client_keys"] = [str(Path(settings.ssh_key_path).expanduser())]
        if settings.ssh_config_path:
            options["config"] = [str(Path(settings.ssh_config_path).expanduser())]
        return asyncssh.SSHClientConnectionOptions(**options)

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.is_closed()

    async def connect(self) -> None:
        async with self._connect_lock:
            if self.connected:
                return
            try:
                if self._options is None:  # reads config and key files: not on the event loop
                    self._options = await asyncio.to_thread(self._build_options, self.settings)
                self._conn = await asyncssh.connect(self.settings.ssh_host, options=self._options)
            except BoxError as exc:
                self._note(exc)
                raise
            except Exception as exc:  # mapped at the boundary: callers see our errors only
                error = await self._explain(exc)
                self._note(error)
                raise error from exc
            self.forget_wrapper()
            self._note(None)
            self._watcher = asyncio.create_task(self._watch(self._conn))

    async def _watch(self, conn: asyncssh.SSHClientConnection) -> None:
        """Note why the link dropped (keepalive timeout, box reboot) for /api/health."""
        with contextlib.suppress(Exception):
            await conn.wait_closed()
        if self._conn is conn:
            self._note(BoxUnreachable("the SSH connection was lost; the next request reconnects"))

    async def _explain(self, exc: Exception) -> BoxError:
        host = self.settings.ssh_host
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return await self._host_key_error(exc)
        if isinstance(exc, asyncssh.PermissionDenied):
            return BoxAuthFailed(f"{self.settings.host_label} refused our key: {exc.reason}")
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return BoxUnreachable(f"connecting to {self.settings.host_label} timed out")
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        return BoxUnreachable(f"cannot reach {host}: {reason}")

    async def _host_key_error(self, exc: Exception) -> HostKeyRejected:
        port = self.settings.ssh_port or 22
        host = self.settings.ssh_host
        fingerprint = "unknown"
        with contextlib.suppress(Exception):
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(host, options=self._options), 10)
            if key is not None:
                fingerprint = f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"
        where = f"[{host}]:{port}" if port != 22 else host
        known = self.settings.ssh_known_hosts or "~/.ssh/known_hosts"
        return HostKeyRejected(
            f"the host key of {where} is not trusted ({fingerprint}): "
            f"{getattr(exc, 'reason', exc)}",
            hint=f"If this is your box's key (compare the fingerprint with "
                 f"`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the box), trust it: "
                 f"`ssh-keyscan -p {port} {host} >> {known}`. If the key changed and you did "
                 f"not expect it, do not connect: someone may be in the middle.")

    async def round_trip_s(self) -> float:
        """One command's round trip over the open connection (`true` on the box)."""
        await self.connect()
        assert self._conn is not None
        async with self._channels:
            started = time.monotonic()
            try:
                await self._conn.run("true", check=False)
            except (asyncssh.Error, OSError) as exc:
                raise BoxUnreachable(f"a command over SSH failed: {exc}") from exc
            return time.monotonic() - started

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    async def _place_wrapper(self) -> str:
        assert self._conn is not None
        async with self._channels:
            try:
                async with self._conn.start_sftp_client() as sftp:
                    return await self._upload(sftp)
            except (asyncssh.Error, OSError) as exc:
                raise WrapperUnavailable(f"could not upload the wrapper over SFTP: {exc}") from exc

    async def _upload(self, sftp: asyncssh.SFTPClient) -> str:
        home = await sftp.realpath(".")
        folder = posixpath.join(home, REMOTE_WRAPPER_ROOT, self.files.digest)
        if await sftp.exists(posixpath.join(folder, _COMPLETE_MARK)):
            return folder
        staging = f"{folder}.tmp-{uuid.uuid4().hex[:8]}"
        await sftp.makedirs(staging, exist_ok=True)
        for name in self.files.names:
            await sftp.put(str(self.files.folder / name), posixpath.join(staging, name))
        async with sftp.open(posixpath.join(staging, _COMPLETE_MARK), "w") as mark:
            await mark.write(self.files.digest + "\n")
        try:
            await sftp.rename(staging, folder)
        except asyncssh.SFTPError:
            if not await sftp.exists(posixpath.join(folder, _COMPLETE_MARK)):
                raise
            await sftp.rmtree(staging)  # another gateway uploaded the same version first
        self.uploads += 1
        return folder

    async def _spawn(self, command: str) -> BoxProcess:
        assert self._conn is not None
        await self._channels.acquire()
        try:
            proc = await self._conn.create_process(command, encoding="utf-8", errors="replace")
        except Exception as exc:
            self._channels.release()
            raise WrapperUnavailable(f"cannot start the wrapper over SSH: {exc}") from exc
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._channels.release()

        async def wait_exit() -> None:
            try:
                await proc.wait_closed()
            finally:
                release()

        async def force_stop() -> None:
            try:
                proc.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait_closed(), 5)
            finally:
                release()

        return BoxProcess(proc.stdin, proc.stdout, proc.stderr, wait_exit=wait_exit,
                          force_stop=force_stop)
