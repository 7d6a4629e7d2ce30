"""Shared fixtures: the real box (LlamaFactory in its own venv) and the tiny model it serves;
gateways on the scripted box double and a browser for UI tests (helpers in tests/ui_rig.py)."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

from tests.gateway_process import GatewayProcess
from tests.rig.hermetic import interruptible, isolate
from tests.rig.reliability import TestRows, merge, results_path
from tests.ui_rig import (
    PLAYWRIGHT_LOOP,
    VIEWPORT,
    PlaywrightLoop,
    launch_chromium,
    need_chromium,
    start_real_gateway,
    start_scripted_gateway,
    watch_errors,
)
from tests.wrapper_process import SPY_DIR

# Hypothesis's timing checks (a slow draw, a slow example) measure the machine's load, not the
# code: under make test's two workers one failed a property test whose draws took 1.2 s. Every
# property test runs with them off (its own @settings still set the rest); tests/test_hermetic.py
# holds this.
settings.register_profile("lfgate", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("lfgate")

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

ROOT = Path(__file__).resolve().parent.parent
RIG = ROOT / "tests" / "rig"
# Paces the real box's generation over the test sshd (tests/rig/spy): tests that stop, drop
# or kill a reply mid-way need it still running, whatever the CPU.
TOKEN_DELAY_S = "0.004"
# torch keeps to one thread on every box the tests start (the tiny model gains nothing from
# more, and two workers' boxes spinning OpenMP threads on two cores cost a tenth of the run).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
# What a test box's SSH sessions see: the spy on the path, generation paced, and replies that
# name no length stopping at 128 new tokens (LlamaFactory's default is 1,024, which the tiny
# random model, almost never saying end-of-text, ran to; paced, 128 still stream for half a
# second). Tests that need a long reply ask for its length (tests/rig/spy/sitecustomize.py).
# Wrappers a test starts on this machine are not paced, so they keep LlamaFactory's default:
# 128 unpaced tokens can arrive in one read, and a test of streaming needs pieces.
PACED_BOX_ENV = {"PYTHONPATH": str(SPY_DIR),
                 "LFGATE_TEST_TOKEN_DELAY_S": TOKEN_DELAY_S, "LFGATE_TEST_MAX_NEW_TOKENS": "128",
                 **ONE_THREAD}
CALL_REPORT = pytest.StashKey[pytest.TestReport]()
RELIABILITY = pytest.StashKey[dict[str, TestRows]]()  # docs/reliability.md's rows, by test
OUTCOMES = pytest.StashKey[dict[str, str]]()  # passed, failed or skipped, by test


def _rig(script: str, *args: str) -> str:
    result = subprocess.run(
        ["bash", str(RIG / script), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{script} failed:\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def box_python() -> str:
    """The box's Python: a venv with the real LlamaFactory, built once and cached."""
    return os.environ.get("LFGATE_BOX_PYTHON") or _rig("box_env.sh")


@pytest.fixture(scope="session")
def tiny(box_python: str) -> dict[str, str]:
    """Paths of the tiny base model, its adapters and a base the adapters do not fit."""
    folder = Path(_rig("tiny_model.sh", box_python))
    info = json.loads((folder / "tiny.json").read_text())
    paths = {name: str(folder / name) for name in ("base", "adapter", "adapter2", "adapter3",
                                                    "other_base", "other_adapter")}
    return {**paths, "template": info["template"]}


@pytest.fixture(scope="session")
def trained(box_python: str, tiny: dict[str, str]) -> dict[str, Any]:
    """LoRA adapters trained on the tiny base (tests/rig/train_adapters.sh): trained.json, with
    adapters.words and adapters.tool, each a path and cases (messages, tools, the exact answer)."""
    folder = Path(_rig("train_adapters.sh", box_python, str(Path(tiny["base"]).parent)))
    return json.loads((folder / "trained.json").read_text())


def spied_sshd(folder: Path):
    """A real OpenSSH server on 127.0.0.1 whose sessions load the test spy (its records in
    `server.spy`)."""
    from tests.rig.sshd import TestSSHD
    spy = folder / "spy.jsonl"
    server = TestSSHD(folder, {**PACED_BOX_ENV, "LFGATE_TEST_SPY": str(spy)})
    server.spy = spy
    return server


@pytest.fixture(scope="session")
def sshd(tmp_path_factory, box_python):
    """The test box: a real sshd whose sessions load the test spy."""
    server = spied_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL (Debian's package); skipped, with the reason, where it is missing."""
    import tempfile

    from tests.rig.postgres import TestPostgres, find_bindir

    url = os.environ.get("LFGATE_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian package `postgresql`); "
                    "tests/rig/system_deps.sh installs it")
    server = TestPostgres(Path(tempfile.mkdtemp(prefix="lfgate-pg-")), bindir)
    yield server.url
    server.stop()


@pytest.fixture
def postgres_database(postgres_server: str) -> str:
    """A fresh, empty database on the test PostgreSQL server (for a gateway process)."""
    import asyncio
    import uuid

    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("postgresql+asyncpg://", "postgresql://")

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def gateway_database_url(request, tmp_path) -> str:
    """A fresh, empty database of each kind, for a gateway process the test starts."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path):
    """A fresh, empty database of each kind for one test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'lfgate.db'}"
        return
    import uuid

    import asyncpg

    server_url = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = server_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    yield server_url.rsplit("/", 1)[0] + f"/{name}"


def _is_xdist_controller(config: pytest.Config) -> bool:
    """The process that hands tests to pytest-xdist's workers (`-n N`) and runs none itself.
    It must not move into the empty work dir before the workers start: they start where it
    is, and would find neither the configuration nor the tests."""
    workers = getattr(config.option, "numprocesses", None)
    return bool(workers) and not hasattr(config, "workerinput")


# --- Browser tests -------------------------------------------------------------------------
# Sync Playwright marks its loop as the main thread's running loop between calls; these hooks
# keep that mark to browser code only, so async tests still run after a browser test.


def pytest_configure(config: pytest.Config) -> None:
    interruptible()  # Ctrl-C tests test the product, however the run was started
    os.environ.update(ONE_THREAD)  # local boxes and wrappers the tests start inherit it
    if not _is_xdist_controller(config):  # its workers run the tests, each isolating itself
        isolate()  # before any test: no user .env, ~/.ssh or SSH_*/GATEWAY_* variable reaches one
    config.stash[PLAYWRIGHT_LOOP] = PlaywrightLoop()
    config.stash[RELIABILITY] = {}
    config.stash[OUTCOMES] = {}


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> TestRows:
    """Record a row of docs/reliability.md: `reliability.record(area, case, outcome)` with
    what the test injected and what the product answered; kept only if the test passes."""
    rows = TestRows(request.node.nodeid)
    request.config.stash[RELIABILITY][rows.test] = rows
    return rows


def pytest_sessionfinish(session: pytest.Session) -> None:
    tests = session.config.stash.get(RELIABILITY, {})
    if not tests:
        return
    outcomes = session.config.stash[OUTCOMES]
    # A skipped test says nothing either way: its rows from an earlier run stay. A test
    # that failed in any phase (teardown too) loses its rows.
    ran = {test for test in tests if outcomes.get(test) != "skipped"}
    passed = {test: tests[test].rows for test in tests if outcomes.get(test) == "passed"}
    merge(passed, ran, results_path())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
                         ) -> object:
    guard = request.config.stash[PLAYWRIGHT_LOOP]
    if not guard.uses_browser(fixturedef.argname, fixturedef.argnames):
        return (yield)
    guard.users.add(fixturedef.argname)
    fixturedef.addfinalizer(guard.park)  # finalizers run last-in first-out: after its teardown
    try:
        with guard.marked():
            return (yield)
    finally:
        fixturedef.addfinalizer(guard.resume)  # before its teardown


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    guard = item.config.stash[PLAYWRIGHT_LOOP]
    sync_test = not inspect.iscoroutinefunction(getattr(item, "obj", None))
    if sync_test and "browser" in getattr(item, "fixturenames", ()):
        with guard.marked():
            return (yield)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> object:
    try:
        return (yield)
    finally:
        item.config.stash[PLAYWRIGHT_LOOP].park()


@pytest.fixture(scope="session")
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    """Debian's Chromium under Playwright's sync API, one for the session. Skipped without
    /usr/bin/chromium, except with CI set, where that fails."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    guard = request.config.stash[PLAYWRIGHT_LOOP]
    playwright = sync_playwright().start()
    guard.started()
    try:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        guard.stopped()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> pytest.TestReport:
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report  # fixtures read it at teardown (traces)
    outcomes = item.config.stash[OUTCOMES]
    if report.failed:
        outcomes[item.nodeid] = "failed"
    elif report.skipped and outcomes.get(item.nodeid) != "failed":
        outcomes[item.nodeid] = "skipped"
    elif report.when == "call" and item.nodeid not in outcomes:
        outcomes[item.nodeid] = "passed"
    return report


# LFGATE_TRACE=1 records a Playwright trace of every browser context (screenshots and DOM
# snapshots at each step), kept for the tests that fail. Off by default: recording took half
# of Chromium's CPU, and the browser is most of a test run's (measured on four streaming tests:
# Chromium and Playwright's driver 48.8 CPU s traced, 22.4 s not). A failed test keeps each
# page's last screenshot, DOM and console errors either way.
TRACE = os.environ.get("LFGATE_TRACE", "") not in ("", "0")


def _keep_what_failed(context: BrowserContext, index: int, name: str, folder: Path,
                      trace: bool) -> None:
    """A failed test's context: its trace (when recorded), and each page's screenshot, DOM and
    errors. Best effort: a page that crashed must not hide the test's own failure."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{name}-{index}"
    if trace:
        context.tracing.stop(path=f"{stem}.zip")
        print(f"Playwright trace of the failed test: {stem}.zip")
    for number, page in enumerate(context.pages):
        shot = f"{stem}-page{number}"
        try:
            page.screenshot(path=f"{shot}.png", full_page=True, timeout=10_000)
            Path(f"{shot}.html").write_text(page.content())
            Path(f"{shot}.errors.txt").write_text(
                "\n".join(getattr(page, "js_errors", [])) + "\n")
            print(f"The failed test's page, as it was at the end: {shot}.png (.html, "
                  ".errors.txt)")
        except Exception as exc:  # a closed or crashed page: say so, go on
            print(f"could not keep page {number} of the failed test: {exc}")


@pytest.fixture
def make_page(browser: Browser, request: pytest.FixtureRequest
              ) -> Iterator[Callable[..., Page]]:
    """make_page(**context_options): a page in a fresh context (1200x800 unless told).
    `page.js_errors` collects uncaught exceptions and console errors. When the test fails,
    each page's last screenshot, DOM and errors are kept in LFGATE_TRACE_DIR (default
    test-results/), and with LFGATE_TRACE=1 each context's Playwright trace too, so a flake
    can be read afterwards: `playwright show-trace FILE`."""
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> Page:
        context = browser.new_context(**{"viewport": VIEWPORT, **options})
        if TRACE:
            context.tracing.start(screenshots=True, snapshots=True)
        contexts.append(context)
        new_page = context.new_page()
        new_page.js_errors = watch_errors(new_page)
        return new_page

    yield make
    report = request.node.stash.get(CALL_REPORT, None)
    failed = report is None or report.failed
    folder = Path(os.environ.get("LFGATE_TRACE_DIR") or ROOT / "test-results")
    name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)[-150:]
    for index, context in enumerate(contexts):
        if failed:
            _keep_what_failed(context, index, name, folder, TRACE)
        elif TRACE:
            context.tracing.stop()
        context.close()


@pytest.fixture
def page(make_page: Callable[..., Page]) -> Page:
    """A fresh context and page (1200x800) per test (see make_page)."""
    return make_page()


@pytest.fixture
def scripted_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """`lfgate serve` on the scripted box double (models `default` = base + adapter, `base`),
    with a fresh database in tmp_path/gateway."""
    gateway = start_scripted_gateway(tmp_path / "gateway")
    yield gateway
    gateway.stop()


@pytest.fixture
def make_scripted_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """make(folder=None, *, port=None, env=None, base_model_path=..., adapter_path=...,
    load_s=None, delay_s=None, mode="script"): more scripted gateways, all stopped at the end.
    The same folder and port as a stopped one restarts it on its database and URL."""
    started: list[GatewayProcess] = []

    def make(folder: Path | None = None, **options: Any) -> GatewayProcess:
        gateway = start_scripted_gateway(folder or tmp_path / f"gateway-{len(started) + 1}",
                                         **options)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


@pytest.fixture(scope="module")
def real_gateway_over_ssh(sshd, box_python: str, tiny: dict[str, str],
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """`lfgate serve` on the real LlamaFactory box behind the test sshd, script mode, serving
    the tiny model (`default`) and its base (`base`). Tests using it are `pytest.mark.box`."""
    gateway = start_real_gateway(sshd, box_python, tiny, tmp_path_factory.mktemp("real-gw"))
    yield gateway
    assert gateway.stop(), gateway.log.read_text()[-3000:]
