"""A real PostgreSQL server for the storage tests, in a temporary cluster on 127.0.0.1.

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to the
`postgres` user that Debian's package creates. Binaries come from Debian's `postgresql`
package (installed by tests/rig/system_deps.sh).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.rig.ports import free_port, wait_listening


def find_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    return None


class TestPostgres:
    __test__ = False

    def __init__(self, folder: Path, bindir: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.data = folder / "data"
        as_root = os.geteuid() == 0
        self._runas = ["runuser", "-u", "postgres", "--"] if as_root else []
        self.folder.mkdir(parents=True, exist_ok=True)
        if as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "lfgate",
                  "--no-sync", "-E", "UTF8")
        self.log = folder / "postgres.log"
        self.proc = subprocess.Popen(
            [*self._runas, str(bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        wait_listening(self.port, self.proc, self.log, "postgres")
        time.sleep(0.3)  # accepting TCP comes a moment before accepting logins
        self._run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "lfgate", "lfgate")
        self.url = f"postgresql+asyncpg://lfgate@127.0.0.1:{self.port}/lfgate"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._runas, *argv], check=True, capture_output=True, cwd="/")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

