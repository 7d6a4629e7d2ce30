"""Known vulnerabilities in the gateway's installed dependencies, by pip-audit against PyPI's
advisory data (tests/test_dependency_audit.py runs it in `make test`; by hand:
`.venv/bin/python -m tests.rig.dep_audit`). Only the gateway's venv: the box's packages are
the box owner's.

What each outcome means for a run:
  vulnerable   a dependency has a known advisory: a failure naming package, version,
               advisory and the fixed release.
  unreachable  PyPI did not answer (no route, timeout, 429 or 5xx), three tries a few seconds
               apart: a loud warning, not a failure. An outage is not a fault of the code
               under test, and a check that goes red on someone else's bad day teaches
               people to ignore red.
  not_audited  PyPI answered, but for none of the packages (a mirror or proxy that serves
               the project pages but not the per-release JSON pip-audit reads): the same
               warning. pip-audit itself calls this "No known vulnerabilities found" and
               exits 0, so this is checked here, not left to its exit status.
  broken       pip-audit failed in any other way: a failure, with its last words.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# The whole venv the tests run in (gateway plus test tools), not the editable lfgate itself.
LOCAL_VENV = ("--local", "--skip-editable")
PYPI = ("--vulnerability-service", "pypi")
ATTEMPTS = 3
PAUSE_S = 5.0  # before the second try; twice that before the third
REQUEST_TIMEOUT_S = 20  # each request to the service
RUN_TIMEOUT_S = 150  # a whole run; PyPI answers for the ~100 packages in seconds
# pip-audit's words (or the requests traceback it lets through) when the service is down.
UNREACHABLE = re.compile(
    r"requests\.exceptions\.(ConnectionError|ConnectTimeout|ReadTimeout|Timeout|ProxyError|"
    r"SSLError|ChunkedEncodingError)|Could not connect to|not redirecting properly|"
    r"HTTPError: (429|5\d\d) ")

Kind = Literal["clean", "vulnerable", "unreachable", "not_audited", "broken"]


@dataclass
class Outcome:
    kind: Kind
    message: str
    findings: list[str] = field(default_factory=list)
    unaudited: list[str] = field(default_factory=list)  # packages PyPI had no record of
    attempts: int = 1


def read_report(report: dict[str, Any]) -> Outcome:
    """An Outcome from pip-audit's JSON report (`--format json`)."""
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if "skip_reason" in d]
    unaudited = [f"{d['name']}: {d['skip_reason']}" for d in skipped
                 if "editable" not in d["skip_reason"]]
    audited = [d for d in deps if "skip_reason" not in d]
    findings = []
    for dep in audited:
        for vuln in dep.get("vulns", []):
            aliases = f" ({', '.join(vuln['aliases'])})" if vuln.get("aliases") else ""
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed release yet"
            findings.append(f"{dep['name']} {dep['version']}: {vuln['id']}{aliases}, "
                            f"fixed in {fixed}: {vuln.get('description', '')[:160]}")
    if findings:
        return Outcome("vulnerable", f"pip-audit: {len(findings)} known vulnerabilit"
                       f"{'y' if len(findings) == 1 else 'ies'} in the gateway's "
                       "dependencies:\n  " + "\n  ".join(findings), findings, unaudited)
    if not audited and unaudited:
        first = unaudited[0].split(": ", 1)[1]
        return Outcome("not_audited", f"WARNING pip-audit: the service knew none of the "
                       f"{len(unaudited)} packages (\"{first}\", and the same for the rest); "
                       "the dependencies were NOT audited", unaudited=unaudited)
    note = (f"; not on PyPI, so not audited: {', '.join(u.split(':')[0] for u in unaudited)}"
            if unaudited else "")
    return Outcome("clean", f"pip-audit: no known vulnerabilities in {len(audited)} "
                   f"packages{note}", unaudited=unaudited)


def run_once(command: list[str]) -> tuple[Outcome, bool]:
    """One pip-audit run: its outcome, and whether trying again might help."""
    with tempfile.TemporaryDirectory(prefix="lfgate-audit-") as folder:
        output = Path(folder) / "report.json"
        # Its caches (pip-audit's, pip's) in the folder too: nothing is left in HOME.
        env = {**os.environ, "HOME": folder, "XDG_CACHE_HOME": f"{folder}/cache"}
        try:
            result = subprocess.run([*command, "--output", str(output), "--cache-dir",
                                     f"{folder}/cache/pip-audit"], capture_output=True,
                                    text=True, timeout=RUN_TIMEOUT_S, check=False, env=env)
        except subprocess.TimeoutExpired:
            return Outcome("unreachable", f"WARNING pip-audit: the vulnerability service took "
                           f"over {RUN_TIMEOUT_S} s; the dependencies were NOT audited"), True
        if result.returncode in (0, 1) and output.exists():  # 1: it found something
            return read_report(json.loads(output.read_text())), False
    said = result.stderr.strip().splitlines()
    last = said[-1] if said else f"exit {result.returncode}, nothing on stderr"
    if UNREACHABLE.search(result.stderr):
        return Outcome("unreachable", f"WARNING pip-audit: the vulnerability service did not "
                       f"answer ({last}); the dependencies were NOT audited"), True
    return Outcome("broken", f"pip-audit failed (exit {result.returncode}):\n  "
                   + "\n  ".join(said[-15:])), False


def audit(python: str = sys.executable, *, source: tuple[str, ...] = LOCAL_VENV,
          service: tuple[str, ...] = PYPI, attempts: int = ATTEMPTS,
          pause_s: float = PAUSE_S) -> Outcome:
    """Audit what `source` names (default: the venv of `python`) against `service`."""
    command = [python, "-m", "pip_audit", *source, *service, "--format", "json",
               "--progress-spinner", "off", "--timeout", str(REQUEST_TIMEOUT_S)]
    attempt = 1
    outcome, again = run_once(command)
    while again and attempt < attempts:
        time.sleep(pause_s * attempt)  # a network retry's back-off, not a wait on state
        attempt += 1
        outcome, again = run_once(command)
    outcome.attempts = attempt
    if outcome.kind == "unreachable":
        outcome.message += f" (tried {attempt} times)"
    return outcome


def main() -> int:
    outcome = audit(sys.argv[1] if len(sys.argv) > 1 else sys.executable)
    print(outcome.message)
    return 1 if outcome.kind in ("vulnerable", "broken") else 0


if __name__ == "__main__":
    sys.exit(main())
