"""A box: somewhere the wrapper can run. Subclasses say how to reach it (SSH or this machine);
this class places the wrapper, builds the command and opens sessions the same way for both."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lfgate.box.command import explain_start_failure, wrapper_command
from lfgate.box.errors import BoxError, BoxTimeout, WrapperExited, WrapperUnavailable
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

    async def placed_folder(self) -> str:
        """Our files on the box (uploaded once per version)."""
        async with self._place_lock:
            if self._wrapper_dir is None:
                self._wrapper_dir = await self._place_wrapper()
        return self._wrapper_dir

    async def wrapper_path(self) -> str:
        """Where the wrapper for CHAT_MODE is on the box: CHAT_SCRIPT_PATH, or our upload."""
        if self.settings.chat_script_path:
            return self.settings.chat_script_path
        return f"{await self.placed_folder()}/{SCRIPTS[self.settings.chat_mode]}"

    async def run_program(self, script: str, job: dict[str, Any], timeout_s: float
                          ) -> dict[str, Any]:
        """Run one of our box-side programs once over the box's connection: the job goes as
        JSON on its stdin, one JSON object comes back (a scan of saves/ is one such call)."""
        try:
            await self.connect()
            path = f"{await self.placed_folder()}/{script}"
            process = await self._spawn(wrapper_command(self.settings, path, arg=""))
        except BoxError as exc:
            self._note(exc)
            raise
        try:
            # A program that dies at once (no Python) closes its stdin before the job is
            # written: then its stderr, below, says why, not the broken pipe.
            with contextlib.suppress(WrapperExited):
                await process.send_line(json.dumps(job) + "\n")
            await process.end_input()
            line = await asyncio.wait_for(process.read_line(), timeout_s)
        except TimeoutError:
            raise BoxTimeout(f"{script} said nothing in {timeout_s:.0f} s") from None
        finally:
            await process.close()
        try:
            answer = json.loads(line or "")
        except ValueError:
            answer = None
        if answer is None:  # it never ran: conda or the folder, said in the box's words
            explained = explain_start_failure(self.settings, process.stderr.tail())
            if explained is not None:
                raise explained
        if not isinstance(answer, dict) or "error" in answer:
            detail = (answer or {}).get("error") if isinstance(answer, dict) else None
            raise WrapperUnavailable(
                f"{script} failed on the box: {detail or process.stderr.tail() or 'no output'}")
        return answer

    async def round_trip_s(self) -> float:
        """One trivial command's round trip (`true` on the box), over the open connection."""
        await self.connect()
        started = time.monotonic()
        process = await self._spawn("true")
        await process.close()
        return time.monotonic() - started

    def variant(self, **changes: Any) -> Box:
        """This box, its connection and uploaded files shared, running commands with other
        settings: the doctor tries the wrapper's command without CONDA_ENV or
        REMOTE_WORK_DIR to tell which of them is at fault. Not to be closed."""
        clone = copy.copy(self)
        clone.settings = self.settings.model_copy(update=changes)
        return clone

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
