"""A box: somewhere the wrapper can run. Subclasses say how to reach it (SSH or this machine);
this class places the wrapper, builds the command and opens sessions the same way for both."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from lfgate.box.command import explain_start_failure, wrapper_command
from lfgate.box.errors import BoxError, WrapperExited
from lfgate.box.process import BoxProcess
from lfgate.box.session import WrapperSession
from lfgate.box.wrapper_files import SCRIPTS, WrapperFiles
from lfgate.config import Settings


@dataclass(frozen=True)
class BoxStatus:
    connected: bool
    host: str
    error: str | None


class Box(abc.ABC):
    def __init__(self, settings: Settings, files: WrapperFiles | None = None) -> None:
        self.settings = settings
        self.files = files or WrapperFiles.packaged()
        self.last_error: BoxError | None = None
        self._wrapper_dir: str | None = None
        self._place_lock = asyncio.Lock()

    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...

    @abc.abstractmethod
    async def connect(self) -> None:
        """Make sure the box can be reached; raise a BoxError saying why not."""

    @abc.abstractmethod
    async def _place_wrapper(self) -> str:
        """Put the wrapper files on the box (if missing); return their folder there."""

    @abc.abstractmethod
    async def _spawn(self, command: str) -> BoxProcess: ...

    async def close(self) -> None:  # noqa: B027 - a box with nothing to close is fine
        pass

    def status(self) -> BoxStatus:
        error = None if self.last_error is None else self.last_error.message
        return BoxStatus(self.connected, self.settings.host_label, error)

    def _note(self, error: BoxError | None) -> None:
        self.last_error = error

    async def wrapper_path(self) -> str:
        """Where the wrapper for CHAT_MODE is on the box: CHAT_SCRIPT_PATH, or our upload."""
        script = SCRIPTS[self.settings.chat_mode]
        if self.settings.chat_script_path:
            return self.settings.chat_script_path
        async with self._place_lock:
            if self._wrapper_dir is None:
                self._wrapper_dir = await self._place_wrapper()
        return f"{self._wrapper_dir}/{script}"

    def forget_wrapper(self) -> None:
        """After a reconnect the box may have changed (a new machine under the same name)."""
        self._wrapper_dir = None

    async def start_wrapper(self, phases: dict[str, float] | None = None) -> WrapperSession:
        """Connect, place the wrapper, start it and check its hello. `phases` gets the
        seconds each step took (connect, upload, start), for status and benchmarks."""
        phases = {} if phases is None else phases
        try:
            with _timed(phases, "connect_s"):
                await self.connect()
            with _timed(phases, "upload_s"):
                path = await self.wrapper_path()
            with _timed(phases, "start_s"):
                process = await self._spawn(wrapper_command(self.settings, path))
                try:
                    session = await WrapperSession.open(process, self.settings.chat_mode)
                except WrapperExited as exc:
                    explained = explain_start_failure(self.settings, process.stderr.tail())
                    if explained is None:
                        raise
                    raise explained from exc
        except BoxError as exc:
            self._note(exc)
            raise
        self._note(None)
        return session


@contextlib.contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        phases[name] = round(time.monotonic() - started, 3)
