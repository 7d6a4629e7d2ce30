"""The box is this machine (SSH_HOST empty): the same command, run by /bin/sh locally."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from lfgate.box.box import Box
from lfgate.box.errors import WrapperUnavailable
from lfgate.box.process import END_NEWS_S, BoxProcess, ProcessEnd

_LINE_LIMIT_BYTES = 64 * 1024 * 1024  # one protocol line holds a whole reply


class LocalBox(Box):
    @property
    def connected(self) -> bool:
        return True

    async def connect(self) -> None:
        return None

    async def _place_wrapper(self) -> str:
        return str(self.files.folder)  # the package's own copy: nothing to upload

    async def _spawn(self, command: str) -> BoxProcess:
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                limit=_LINE_LIMIT_BYTES, start_new_session=True,
            )
        except OSError as exc:
            raise WrapperUnavailable(f"cannot start the local wrapper: {exc}") from exc

        async def force_stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

        async def ended() -> ProcessEnd:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), END_NEWS_S)
            code = proc.returncode
            if code is not None and code < 0:  # `exec` in the command: the wrapper's own
                with contextlib.suppress(ValueError):
                    return ProcessEnd(signal=signal.Signals(-code).name.removeprefix("SIG"))
            return ProcessEnd(status=code)

        return BoxProcess(proc.stdin, proc.stdout, proc.stderr, wait_exit=proc.wait,
                          force_stop=force_stop, ended=ended)
