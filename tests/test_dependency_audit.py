"""pip-audit over the gateway's venv (tests/rig/dep_audit.py), in `make test`: a known
vulnerability fails the run naming the package and the advisory; a vulnerability service
that cannot be reached, after three tries, is a skip whose reason says the dependencies
were not audited (pytest's summary lists it), never a failure. Then the audit's own
behaviour, with the real pip-audit against a stand-in advisory service on this machine."""

from __future__ import annotations

import json
import sys
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.rig import dep_audit
from tests.rig.ports import free_port

PINS = "jinja2==2.10\nsix==1.17.0\n"  # audited as written: no resolving, no index
ADVISORY = {
    "id": "GHSA-test-0001", "aliases": ["CVE-2099-0001"], "summary": "Sandbox escape",
    "affected": [{"package": {"name": "jinja2", "ecosystem": "PyPI"},
                  "ranges": [{"type": "ECOSYSTEM",
                              "events": [{"introduced": "0"}, {"fixed": "2.10.1"}]}]}],
}


def test_no_known_vulnerability_in_the_gateway_venv() -> None:
    outcome = dep_audit.audit(sys.executable)
    if outcome.kind in ("unreachable", "not_audited"):
        pytest.skip(outcome.message)
    assert outcome.kind == "clean", outcome.message
    if outcome.unaudited:
        warnings.warn(outcome.message, stacklevel=1)


class StandInOSV(ThreadingHTTPServer):
    """OSV's query API on 127.0.0.1: `advisories` by package name, the first `fail_first`
    queries answered 503; `queries` counts them all."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OSVHandler)
        self.advisories: dict[str, list[dict[str, Any]]] = {}
        self.fail_first = 0
        self.queries = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/query"


class _OSVHandler(BaseHTTPRequestHandler):
    server: StandInOSV

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.queries += 1
        if self.server.queries <= self.server.fail_first:
            self.send_response(503)
            self.end_headers()
            return
        vulns = self.server.advisories.get(query["package"]["name"], [])
        body = json.dumps({"vulns": vulns} if vulns else {}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def osv() -> Iterator[StandInOSV]:
    server = StandInOSV()
    # shutdown() waits for the loop to look at its flag: every 0.5 s by default, half a
    # second of each test's teardown.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def audit_pins(tmp_path: Path, url: str, **options: Any) -> dep_audit.Outcome:
    pins = tmp_path / "requirements.txt"
    pins.write_text(PINS)
    return dep_audit.audit(sys.executable, source=("-r", str(pins), "--no-deps",
                                                   "--disable-pip"),
                           service=("--vulnerability-service", "osv", "--osv-url", url),
                           pause_s=0, **options)


def test_a_known_vulnerability_fails_naming_package_advisory_and_fix(tmp_path, osv) -> None:
    osv.advisories["jinja2"] = [ADVISORY]
    outcome = audit_pins(tmp_path, osv.url)
    assert outcome.kind == "vulnerable"
    [finding] = outcome.findings  # its id first, then the aliases, as pip-audit orders them
    assert finding.startswith("jinja2 2.10: ") and finding.endswith(
        ", fixed in 2.10.1: Sandbox escape")
    assert "GHSA-test-0001" in finding and "CVE-2099-0001" in finding
    assert "1 known vulnerability" in outcome.message and "jinja2 2.10" in outcome.message


def test_clean_pins_pass(tmp_path, osv) -> None:
    outcome = audit_pins(tmp_path, osv.url)
    assert (outcome.kind, outcome.attempts) == ("clean", 1)
    assert outcome.message == "pip-audit: no known vulnerabilities in 2 packages"


def test_a_service_that_fails_once_is_asked_again(tmp_path, osv) -> None:
    osv.fail_first = 1  # a 503, as PyPI gives in an outage
    osv.advisories["jinja2"] = [ADVISORY]
    outcome = audit_pins(tmp_path, osv.url)
    assert (outcome.kind, outcome.attempts) == ("vulnerable", 2)


def test_an_unreachable_service_is_a_warning_after_three_tries(tmp_path) -> None:
    outcome = audit_pins(tmp_path, f"http://127.0.0.1:{free_port()}/v1/query")  # nobody
    assert (outcome.kind, outcome.attempts) == ("unreachable", 3)
    assert outcome.message.startswith("WARNING pip-audit: the vulnerability service did "
                                      "not answer (")
    assert outcome.message.endswith("the dependencies were NOT audited (tried 3 times)")


def test_a_broken_run_is_a_failure_not_a_warning(tmp_path, osv) -> None:
    outcome = dep_audit.audit(sys.executable, source=("--no-such-option",),
                              service=("--osv-url", osv.url), pause_s=0)
    assert (outcome.kind, outcome.attempts) == ("broken", 1)
    assert "--no-such-option" in outcome.message


def test_packages_the_service_does_not_know_are_not_a_pass() -> None:
    """A mirror that serves PyPI's project pages but not the per-release JSON: pip-audit
    skips every package and says "No known vulnerabilities found"; that is no audit."""
    skipped = {"dependencies": [
        {"name": "fastapi", "skip_reason": "Dependency not found on PyPI and could not be "
                                           "audited: fastapi (0.115.0)"},
        {"name": "lfgate", "skip_reason": "distribution marked as editable"}]}
    outcome = dep_audit.read_report(skipped)
    assert outcome.kind == "not_audited"
    assert "the dependencies were NOT audited" in outcome.message
    some = {"dependencies": [*skipped["dependencies"],
                             {"name": "six", "version": "1.17.0", "vulns": []}]}
    outcome = dep_audit.read_report(some)
    assert outcome.kind == "clean"
    assert outcome.message == ("pip-audit: no known vulnerabilities in 1 packages; not on "
                               "PyPI, so not audited: fastapi")
