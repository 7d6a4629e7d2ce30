"""The box over SSH: one asyncssh connection, reused for every wrapper and every model.

Options are built once and reused on every reconnect. Host keys are always verified
(SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts; an empty or missing file trusts nothing), the
ProxyJump hosts' too. Logins: SSH_KEY_PATH (SSH_KEY_PASSPHRASE if it is encrypted), the agent
at SSH_AUTH_SOCK, SSH_PASSWORD; the secrets go to asyncssh and nowhere else (no log line,
message or child process ever holds them).
Keepalives notice a dead link within interval x (count + 1) seconds of the box's last byte
(asyncssh, as OpenSSH, gives up at the tick after the last unanswered one); every session on
it then ends with LinkLost, and the next request reconnects. Channels are bounded below
OpenSSH's default MaxSessions (10).
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from lfgate.box.asyncssh_import import asyncssh
from lfgate.box.box import Box
from lfgate.box.errors import (
    BoxAuthFailed,
    BoxDiskFull,
    BoxError,
    BoxUnreachable,
    HostKeyRejected,
    KeyUnreadable,
    LinkLost,
    WrapperUnavailable,
)
from lfgate.box.process import END_NEWS_S, BoxProcess, ProcessEnd
from lfgate.box.wrapper_files import WrapperFiles
from lfgate.config import Settings

REMOTE_WRAPPER_ROOT = ".cache/lfgate/wrappers"  # under the box user's home
_COMPLETE_MARK = ".complete"
_PASSWORD_METHODS = ("keyboard-interactive", "password")  # the methods SSH_PASSWORD answers
# An upload that failed where less than the files' size plus this is free: the disk is full
# (OpenSSH's SFTP says only "Failure" for ENOSPC, so the free space is asked afterwards).
_ROOM_SLACK_BYTES = 1024 * 1024


def _known_hosts(settings: Settings) -> object:
    """SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts, for the box and every ProxyJump host alike;
    no such file: b"", which trusts nothing (every key refused, with its fingerprint)."""
    path = Path(settings.ssh_known_hosts or "~/.ssh/known_hosts").expanduser()
    return str(path) if path.is_file() else b""


def _jump_hosts(options: asyncssh.SSHClientConnectionOptions) -> list[str]:
    """The ProxyJump hosts the ssh config gives SSH_HOST, the first first ([user@]host[:port])."""
    jumps = getattr(options, "tunnel", None)  # asyncssh reads ProxyJump into `tunnel`
    return [hop.strip() for hop in jumps.split(",") if hop.strip()] if isinstance(jumps, str) \
        else []


def _known_with_another_key(settings: Settings, host: str, port: int,
                            key: asyncssh.SSHKey) -> bool:
    """Whether the known_hosts file holds keys for host:port and `key` is none of them: the
    box's key changed (a host with no entry at all is unknown, not changed)."""
    path = _known_hosts(settings)
    if not isinstance(path, str):
        return False
    keys = asyncssh.read_known_hosts(path).match(host, host, port)[0]
    return bool(keys) and all(known.public_data != key.public_data for known in keys)


def _split_hop(hop: str) -> tuple[str, str, str]:
    """A ProxyJump host as asyncssh reads one, [user@]host[:port]: (user, host, port)."""
    user, _, where = hop.rpartition("@")
    host, _, port = where.partition(":")
    return user, host, port


def _default_keys() -> list[Path]:
    """The keys asyncssh (as OpenSSH) tries when SSH_KEY_PATH is unset."""
    return sorted(key for key in Path("~/.ssh").expanduser().glob("id_*")
                  if key.suffix != ".pub")


def _key_error(settings: Settings, exc: Exception) -> KeyUnreadable:
    """The client key could not be read: encrypted with no or the wrong passphrase, or bcrypt
    (which OpenSSH's own encrypted key format needs) missing. Names the key, never a secret."""
    path = settings.ssh_key_path
    key = f"the key {path} (SSH_KEY_PATH)" if path else "an IdentityFile key of the ssh config"
    reason = str(exc)
    if "bcrypt" in reason:
        return KeyUnreadable(
            f"cannot decrypt {key}: {reason}",
            hint="Install the Python package bcrypt beside the gateway (`pip install "
                 "'asyncssh[bcrypt]'`), or load the key into an agent (`ssh-add KEY`) and "
                 "leave SSH_KEY_PATH unset.")
    if "Passphrase must be specified" in reason:
        return KeyUnreadable(
            f"{key} is encrypted and SSH_KEY_PASSPHRASE is not set",
            hint="Set SSH_KEY_PASSPHRASE in .env to the key's passphrase, or load the key into "
                 "an agent (`ssh-add KEY`) and leave SSH_KEY_PATH unset.")
    if isinstance(exc, asyncssh.KeyEncryptionError):
        return KeyUnreadable(
            f"SSH_KEY_PASSPHRASE does not decrypt {key} ({reason})",
            hint=f"Check SSH_KEY_PASSPHRASE: `ssh-keygen -y -f {path or 'KEY'}` asks for the "
                 "passphrase and prints the public key when it is right.")
    return KeyUnreadable(f"cannot read {key}: {reason}",
                         hint="SSH_KEY_PATH must be a private key file (not its .pub).")


@dataclass(frozen=True)
class SSHTarget:
    """Where SSH_HOST is, as the ssh config says: its address, the ProxyJump chain before it,
    and the address a login dials first (the first jump host's, itself resolved)."""

    host: str  # HostName, or SSH_HOST itself
    port: int
    jumps: tuple[str, ...]  # ProxyJump hosts ([user@]host[:port]), the first first
    first_hop: tuple[str, int]


def _resolved(settings: Settings, host: str, port: int | None
              ) -> asyncssh.SSHClientConnectionOptions:
    """`host` through the ssh config, without loading a key or trusting a host key: nothing
    is dialled with these options."""
    options: dict[str, object] = {"host": host, "known_hosts": b"", "client_keys": None,
                                  "agent_path": None}
    if port:
        options["port"] = port
    if settings.ssh_config_path:
        options["config"] = [str(Path(settings.ssh_config_path).expanduser())]
    return asyncssh.SSHClientConnectionOptions(**options)


def ssh_target(settings: Settings) -> SSHTarget:
    """SSH_HOST resolved through the ssh config (HostName, Port, ProxyJump). Reads files."""
    box = _resolved(settings, settings.ssh_host, settings.ssh_port)
    jumps = tuple(_jump_hosts(box))
    target = (str(box.host), int(box.port or 22))
    if not jumps:
        return SSHTarget(*target, jumps, target)
    _, host, port = _split_hop(jumps[0])
    first = _resolved(settings, host, int(port) if port else None)
    return SSHTarget(*target, jumps, (str(first.host), int(first.port or 22)))


class _Link(asyncssh.SSHClient):
    """One connection's client: keeps why asyncssh closed it (None while it is open or when
    we closed it; else a keepalive timeout, the box closing the socket, a disconnect)."""

    def __init__(self) -> None:
        self.lost: Exception | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc


async def _remove_staging(sftp: asyncssh.SFTPClient, staging: str) -> None:
    """A half-written upload is never used (it has no mark) but would fill the disk further:
    removed, best effort (a link that is gone cannot remove it; the next upload's name is new,
    so a leftover is only litter)."""
    with contextlib.suppress(asyncssh.Error, OSError):
        await sftp.rmtree(staging)


def _close_all(jumps: list[asyncssh.SSHClientConnection]) -> None:
    """Close ProxyJump connections, the last (tunnelled through the others) first."""
    for jump in reversed(jumps):
        jump.close()


class SSHBox(Box):
    def __init__(self, settings: Settings, files: WrapperFiles | None = None) -> None:
        super().__init__(settings, files)
        self._options: asyncssh.SSHClientConnectionOptions | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._link = _Link()  # the current connection's client
        self._connect_lock = asyncio.Lock()
        self._channels = asyncio.Semaphore(settings.ssh_max_channels)
        self._watcher: asyncio.Task[None] | None = None
        self._jumps: list[asyncssh.SSHClientConnection] = []  # ProxyJump hosts, first first
        self.uploads = 0  # how many times the wrapper was uploaded (tests and /api/health)
        # How the last login went: "publickey", "keyboard-interactive" or "password".
        self.login_method: str | None = None

    @staticmethod
    def _build_options(settings: Settings) -> asyncssh.SSHClientConnectionOptions:
        options: dict[str, object] = {
            "known_hosts": _known_hosts(settings),
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
        # No agent_path: asyncssh then asks the agent at SSH_AUTH_SOCK, as OpenSSH does, first.
        # A password answers password auth and a keyboard-interactive prompt for a password
        # (asyncssh sends it at most once a login); both only when set.
        if password := settings.ssh_password.get_secret_value():
            options["password"] = password
        if passphrase := settings.ssh_key_passphrase.get_secret_value():
            options["passphrase"] = passphrase
        return asyncssh.SSHClientConnectionOptions(**options)

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.is_closed()

    @property
    def password_login(self) -> bool:
        """The last login used SSH_PASSWORD (the doctor says a key is safer)."""
        return self.login_method in _PASSWORD_METHODS

    def login_description(self) -> str:
        """How the last login went, as the doctor says it (no secret)."""
        if self.password_login:
            return f"the password (SSH_PASSWORD, {self.login_method} auth)"
        agent = bool(getattr(self._options, "agent_path", None))
        if self.settings.ssh_key_path:
            return f"key {self.settings.ssh_key_path}" + (" or the agent's" if agent else "")
        return "a key of the agent (SSH_AUTH_SOCK)" if agent and not _default_keys() \
            else "a default key (~/.ssh/id_*) or the agent's"

    async def connect(self) -> None:
        async with self._connect_lock:
            if self.connected:
                return
            try:
                if self._options is None:  # reads config and key files: not on the event loop
                    self._options = await asyncio.to_thread(self._build_options, self.settings)
                self._conn = await self._dial(self._options)
            except BoxError as exc:
                self._note(exc)
                raise
            except Exception as exc:  # mapped at the boundary: callers see our errors only
                error = await self._explain(exc)
                self._note(error)
                raise error from exc
            # Once logged in, the method that worked heads asyncssh's list of the server's
            # methods (it works through them in order; tests/test_ssh_logins.py holds it to it).
            self.login_method = next(iter(self._conn.get_server_auth_methods()), None)
            self.forget_wrapper()
            self._note(None)
            self._watcher = asyncio.create_task(self._watch(self._conn, self._link,
                                                            self._jumps))

    async def _dial(self, options: asyncssh.SSHClientConnectionOptions
                    ) -> asyncssh.SSHClientConnection:
        """The box, through the ProxyJump hosts of its Host block if it has any: each is our
        own connection (its Host block's login, our known_hosts and timeouts; never
        SSH_PASSWORD, which is the box's), the next one tunnelled through it."""
        jumps: list[asyncssh.SSHClientConnection] = []
        try:
            for hop in _jump_hosts(options):
                jumps.append(await self._jump(hop, jumps[-1] if jumps else None))
            via = jumps[-1] if jumps else None
            link = _Link()
            try:
                conn = await asyncssh.connect(self.settings.ssh_host, tunnel=via or (),
                                              options=options, client_factory=lambda: link)
            except Exception as exc:
                raise await self._explain(exc, options, via) from exc
        except BaseException:
            _close_all(jumps)
            raise
        self._jumps, self._link = jumps, link
        return conn

    @staticmethod
    def _jump_options(settings: Settings, hop: str) -> asyncssh.SSHClientConnectionOptions:
        """A ProxyJump host's options: its Host block's login, our known_hosts and timeouts."""
        user, host, port = _split_hop(hop)
        options: dict[str, object] = {
            "host": host, "known_hosts": _known_hosts(settings),
            "connect_timeout": settings.ssh_connect_timeout,
            "keepalive_interval": settings.ssh_keepalive_interval,
            "keepalive_count_max": settings.ssh_keepalive_count_max}
        if port:
            options["port"] = int(port)
        if user:
            options["username"] = user
        if settings.ssh_config_path:
            options["config"] = [str(Path(settings.ssh_config_path).expanduser())]
        if passphrase := settings.ssh_key_passphrase.get_secret_value():
            options["passphrase"] = passphrase  # for its IdentityFile, decrypted here
        return asyncssh.SSHClientConnectionOptions(**options)

    async def _jump(self, hop: str, via: asyncssh.SSHClientConnection | None
                    ) -> asyncssh.SSHClientConnection:
        options = None
        try:
            options = await asyncio.to_thread(self._jump_options, self.settings, hop)
            return await asyncssh.connect(_split_hop(hop)[1], tunnel=via or (), options=options)
        except Exception as exc:
            raise await self._explain(exc, options, via, jump=hop) from exc

    async def _watch(self, conn: asyncssh.SSHClientConnection, link: _Link,
                     jumps: list[asyncssh.SSHClientConnection]) -> None:
        """Note why the link dropped (keepalive timeout, box reboot) for /api/health."""
        with contextlib.suppress(Exception):
            await conn.wait_closed()
        _close_all(jumps)
        if self._conn is conn:
            self._note(self._lost_error(link))

    def _lost_error(self, link: _Link) -> LinkLost:
        """The link dropped under open sessions: why, as asyncssh saw it (never a secret:
        asyncssh's reason is its own text or the box's disconnect message)."""
        settings = self.settings
        reason = getattr(link.lost, "reason", None) or str(link.lost or "") or "closed"
        if "keepalive" in reason:
            why = (f"the box did not answer {settings.ssh_keepalive_count_max} keepalives sent "
                   f"{settings.ssh_keepalive_interval:g} s apart (SSH_KEEPALIVE_INTERVAL, "
                   "SSH_KEEPALIVE_COUNT_MAX): the network to it dropped, or it hangs")
        else:
            why = (f"{reason.rstrip('.')}: the box's sshd was restarted, the box rebooted, or "
                   "the network dropped the connection")
        return LinkLost(f"the SSH link to {settings.host_label} was lost: {why}")

    async def _explain(self, exc: Exception,
                       options: asyncssh.SSHClientConnectionOptions | None = None,
                       via: asyncssh.SSHClientConnection | None = None, jump: str = ""
                       ) -> BoxError:
        """`exc` as our error, naming the box or the ProxyJump host `jump` it came from."""
        if isinstance(exc, (asyncssh.KeyImportError, asyncssh.KeyEncryptionError)):
            return _key_error(self.settings, exc)
        host = f"the jump host {jump}" if jump else self.settings.ssh_host
        label = f"the jump host {jump}" if jump else self.settings.host_label
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return await self._host_key_error(exc, options, via, jump)
        if isinstance(exc, asyncssh.PermissionDenied):
            return self._auth_error(label, options, jump)
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return BoxUnreachable(f"connecting to {label} timed out")
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        return BoxUnreachable(f"cannot reach {host}: {reason}")

    def _auth_error(self, label: str, options: asyncssh.SSHClientConnectionOptions | None,
                    jump: str) -> BoxAuthFailed:
        """Which logins were tried and how to fix each; the method and key names only."""
        if jump:
            return BoxAuthFailed(
                f"{label} refused the login",
                hint="A jump host logs in with its own Host block in SSH_CONFIG_PATH (User, "
                     "IdentityFile), a default key (~/.ssh/id_*) or the agent's; SSH_KEY_PATH "
                     "and SSH_PASSWORD are the box's. Try `ssh -J` to it by hand.")
        settings = self.settings
        tried, hints = [], []
        port = getattr(options, "port", None) or settings.ssh_port or 22
        target = f"-p {port} {getattr(options, 'username', None) or settings.ssh_user or 'user'}" \
                 f"@{getattr(options, 'host', None) or settings.ssh_host}"
        if getattr(options, "agent_path", None):
            tried.append("the agent's keys (SSH_AUTH_SOCK)")
            hints.append("`ssh-add -l` lists the agent's keys: one must be in the box's "
                         "~/.ssh/authorized_keys.")
        if settings.ssh_key_path:
            tried.append(f"key file {settings.ssh_key_path} (SSH_KEY_PATH)")
            hints.append(f"Put its public key in the box's ~/.ssh/authorized_keys "
                         f"(`ssh-copy-id -i {settings.ssh_key_path} {target}`), or set SSH_USER "
                         "and SSH_KEY_PATH to the pair the box accepts.")
        elif keys := _default_keys():
            tried.append(f"default keys ({', '.join(key.name for key in keys)} in ~/.ssh)")
            hints.append(f"Put one in the box's ~/.ssh/authorized_keys (`ssh-copy-id {target}`),"
                         " or set SSH_KEY_PATH to the key the box accepts.")
        if settings.ssh_password.get_secret_value():
            tried.append("the password (SSH_PASSWORD), by keyboard-interactive and password "
                         "auth")
            hints.append("Check SSH_USER and SSH_PASSWORD; a box may also refuse passwords "
                         "altogether (PasswordAuthentication no). A key is safer than a "
                         "password: `ssh-copy-id` one while the password works.")
        if not tried:
            return BoxAuthFailed(
                f"{self.settings.host_label}: no key, agent or password to log in with",
                hint="Set SSH_KEY_PATH to a key the box accepts (safest), or SSH_PASSWORD to "
                     "the password the box came with; or start an agent (SSH_AUTH_SOCK).")
        return BoxAuthFailed(f"{label} refused the login; tried {', '.join(tried)}",
                             hint=" ".join(hints))

    async def _host_key_error(self, exc: Exception,
                              options: asyncssh.SSHClientConnectionOptions | None,
                              via: asyncssh.SSHClientConnection | None, jump: str
                              ) -> HostKeyRejected:
        host = getattr(options, "host", None) or self.settings.ssh_host
        port = getattr(options, "port", None) or self.settings.ssh_port or 22
        fingerprint, changed = "unknown", False
        with contextlib.suppress(Exception):
            key = await asyncio.wait_for(asyncssh.get_server_host_key(
                _split_hop(jump)[1] if jump else self.settings.ssh_host,
                tunnel=via or (), options=options), 10)
            if key is not None:
                fingerprint = f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"
                changed = _known_with_another_key(self.settings, host, port, key)
        where = f"[{host}]:{port}" if port != 22 else host
        known = self.settings.ssh_known_hosts or "~/.ssh/known_hosts"
        which = f"the jump host {jump} ({where})" if jump else where
        if changed:  # known_hosts holds a key for it, and this is not that key
            return HostKeyRejected(
                f"the host key of {which} has CHANGED: it now shows {fingerprint}, not the "
                f"key {known} holds for it; not connecting",
                hint=f"If you know why it changed (the box was rebuilt or reinstalled), "
                     f"compare the fingerprint with `ssh-keygen -lf "
                     f"/etc/ssh/ssh_host_ed25519_key.pub` on the box, remove the old key "
                     f"(`ssh-keygen -R '{where}' -f {known}`) and trust the new one "
                     f"(`ssh-keyscan -p {port} {host} >> {known}`). If you do not, do not "
                     f"connect: someone may be in the middle.")
        return HostKeyRejected(
            f"the host key of {which} is not trusted ({fingerprint}): "
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
        jumps, self._jumps = self._jumps, []
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()
        _close_all(jumps)
        for jump in jumps:
            with contextlib.suppress(Exception):
                await jump.wait_closed()

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
        try:
            await sftp.makedirs(staging, exist_ok=True)
            for name in self.files.names:
                await sftp.put(str(self.files.folder / name), posixpath.join(staging, name))
            async with sftp.open(posixpath.join(staging, _COMPLETE_MARK), "w") as mark:
                await mark.write(self.files.digest + "\n")
        except asyncssh.SFTPError as exc:
            await _remove_staging(sftp, staging)
            raise await self._upload_error(sftp, exc, posixpath.dirname(folder), home) \
                from exc
        except (asyncssh.Error, OSError):
            await _remove_staging(sftp, staging)
            raise
        try:
            await sftp.rename(staging, folder)
        except asyncssh.SFTPError:
            if not await sftp.exists(posixpath.join(folder, _COMPLETE_MARK)):
                raise
            await sftp.rmtree(staging)  # another gateway uploaded the same version first
        self.uploads += 1
        return folder

    async def _upload_error(self, sftp: asyncssh.SFTPClient, exc: asyncssh.SFTPError,
                            root: str, home: str) -> WrapperUnavailable:
        """Why an upload failed: a full disk says so, with the room there and needed."""
        need = self.files.size
        free = None
        for where in (root, home):  # the wrappers' folder may not exist yet
            with contextlib.suppress(asyncssh.Error, OSError):
                attrs = await sftp.statvfs(where)
                free = attrs.bavail * attrs.frsize
                break
        full = isinstance(exc, asyncssh.SFTPNoSpaceOnFilesystem) or (
            free is not None and free < need + _ROOM_SLACK_BYTES)
        if not full:
            return WrapperUnavailable(f"could not upload the wrapper over SFTP to {root}: {exc}")
        room = "" if free is None else f": {free // 1024} KiB free, the wrapper needs " \
                                       f"{-(-need // 1024)} KiB"
        return BoxDiskFull(
            f"no space left on the box's disk for the wrapper upload to {root}{room} (SFTP "
            f"said: {exc.reason or exc})",
            hint=f"Free space on the box's disk that holds {root} (`df -h {root}` there; old "
                 "checkpoints under saves/ and the Hugging Face cache are the usual culprits),"
                 " or deploy the wrapper yourself and set CHAT_SCRIPT_PATH. The next request "
                 "uploads it again.")

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

        link = self._link

        async def ended() -> ProcessEnd:
            """The link lost, or how the box said the process ended (its exit status or
            signal comes over the channel just after the end of its output)."""
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait_closed(), END_NEWS_S)
            if link.lost is not None:
                return ProcessEnd(lost=self._lost_error(link))
            signal = proc.exit_signal
            return ProcessEnd(status=None if signal else proc.exit_status,
                              signal=signal[0] if signal else None)

        return BoxProcess(proc.stdin, proc.stdout, proc.stderr, wait_exit=wait_exit,
                          force_stop=force_stop, ended=ended)
