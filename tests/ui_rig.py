"""Helpers for browser tests: gateways on the scripted box double or the real box over sshd,
Debian's Chromium driven by Playwright's sync API, and the guard that lets that API share a
pytest session with pytest-asyncio (the fixtures themselves are in tests/conftest.py).

Why the guard: between two sync calls Playwright leaves its own event loop marked as the
running loop of the main thread (it is suspended mid-run in a greenlet), so once a browser is
up every later async test failed with "Runner.run() cannot be called from a running event
loop". The mark is now set only while browser code runs: in the setup and teardown of
fixtures that depend on `browser`, and in the call of tests that use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.gateway_process import GatewayProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Playwright

ROOT = Path(__file__).resolve().parent.parent
SCRIPTED_WRAPPER = ROOT / "tests" / "rig" / "fake_wrappers" / "scripted_wrapper.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run",
                 # Another site's names that reach this machine: the DNS rebinding test's.
                 "--host-resolver-rules=MAP *.attacker.test 127.0.0.1"]
VIEWPORT = {"width": 1200, "height": 800}

# What the scripted gateway serves unless told otherwise: `default` (base + adapter), `base`.
SCRIPTED_BASE = "/models/tiny-base"
SCRIPTED_ADAPTER = "/runs/tiny-adapter"
PLAYWRIGHT_LOOP = pytest.StashKey["PlaywrightLoop"]()  # the session's guard, on config.stash
PACE_FILE = "scripted-pace"  # in the gateway's folder: see set_pace
# A long reply's rest once a test has checked what it needed mid-stream: 400 chunks in about
# a second, still hundreds of renders on the page (tests count texts shown as it grew).
FAST_PACE_S = 0.002


def scripted_env(folder: Path, *, base_model_path: str = SCRIPTED_BASE,
                 adapter_path: str | None = SCRIPTED_ADAPTER, load_s: float | None = None,
                 delay_s: float | None = None, mode: str = "script") -> dict[str, str]:
    """The gateway's environment for the scripted box on this machine, its database and
    data in `folder`. In the environment, not .env: the double reads CHAT_MODE and its
    timings from the environment it inherits from the gateway."""
    env = {"SSH_HOST": "", "CHAT_MODE": mode, "REMOTE_PYTHON": sys.executable,
           "CHAT_SCRIPT_PATH": str(SCRIPTED_WRAPPER), "BASE_MODEL_PATH": base_model_path,
           "ADAPTER_PATH": adapter_path or "", "TEMPLATE": "qwen",
           "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'lfgate.db'}",
           "LFGATE_DATA_DIR": str(folder / "data"), "CHAT_TIMEOUT": "60"}
    # Always set: "" is the double's default, and a developer's own value stays out.
    env["LFGATE_SCRIPTED_LOAD_S"] = "" if load_s is None else str(load_s)
    env["LFGATE_SCRIPTED_DELAY_S"] = "" if delay_s is None else str(delay_s)
    # Read by the double before every chunk, written by set_pace (none: the delay above).
    env["LFGATE_SCRIPTED_PACE_FILE"] = str(folder / PACE_FILE)
    return env


def start_scripted_gateway(folder: Path, *, port: int | None = None,
                           env: dict[str, str] | None = None, **options: Any) -> GatewayProcess:
    """A gateway on the scripted box. Same `folder` and `port` as a stopped one: a restart
    with the same database at the same URL. `options` go to scripted_env; `env` wins.
    `gateway.pace_file` is its box's pace (set_pace)."""
    folder.mkdir(parents=True, exist_ok=True)
    gateway = GatewayProcess({**scripted_env(folder, **options), **(env or {})}, folder,
                             port=port)
    gateway.pace_file = folder / PACE_FILE
    return gateway


def set_pace(gateway: GatewayProcess, seconds: float | None) -> None:
    """The scripted box's wait before each chunk from now on, replies under way included
    (None: its LFGATE_SCRIPTED_DELAY_S again). A test paces a long reply while it checks it
    mid-stream (the budget it had before), then lets the rest come at FAST_PACE_S instead of
    waiting out seconds of it. Written whole (a rename), so the box never reads half of it."""
    path: Path = gateway.pace_file
    staged = path.with_name(path.name + ".new")
    staged.write_text("" if seconds is None else repr(float(seconds)))
    os.replace(staged, path)


@contextlib.contextmanager
def shared_scripted_gateway(folder: Path, **options: Any) -> Iterator[GatewayProcess]:
    """A scripted gateway for the tests of one module that only add chats (sets, runs) of
    their own and open the page on a new chat or on one of theirs: starting one per test
    was a second or more each. Tests that restart the gateway, need other settings, or look
    at what the whole gateway holds (the chat list, the leaderboard, what is loaded) start
    their own. Use it through on_shared."""
    gateway = start_scripted_gateway(folder, **options)
    try:
        yield gateway
    finally:
        gateway.stop()


def module_gateway(name: str, *, with_saves: bool = False, env: dict[str, str] | None = None,
                   **options: Any) -> Any:
    """A module-scoped fixture, to assign as the module's `shared_gateway_process`: its
    scripted gateway (shared_scripted_gateway, `options` to scripted_env), in a folder named
    `name`; `with_saves`: ADAPTER_DIRS is a saves tree of its own on the scripted base; `env`:
    settings of its own. A function-scoped fixture of the module then yields from
    on_shared(it)."""
    from tests.rig.saves_tree import make_saves

    @pytest.fixture(scope="module")
    def shared_gateway_process(tmp_path_factory: pytest.TempPathFactory
                               ) -> Iterator[GatewayProcess]:
        folder = tmp_path_factory.mktemp(name)
        settings = dict(env or {})
        if with_saves:
            make_saves(folder / "saves", SCRIPTED_BASE)
            settings["ADAPTER_DIRS"] = str(folder / "saves")
        with shared_scripted_gateway(folder / "gateway", env=settings or None,
                                     **options) as gateway:
            yield gateway

    return shared_gateway_process


def on_shared(gateway: GatewayProcess) -> Iterator[GatewayProcess]:
    """One test's turn on a shared gateway (a function-scoped fixture yields from it): its
    box at the gateway's own pace to begin with, and whatever reply a test left running
    (one that failed before its Stop) hurried to its end after it, not into the next test."""
    set_pace(gateway, None)
    yield gateway
    set_pace(gateway, 0)


def stand_in_nvidia_smi(folder: Path) -> Path:
    """A folder holding an `nvidia-smi` that answers the box status query with real captured
    output (two A100s, one busy training, one whose utilisation reads [N/A]; see
    tests/test_box_status.py). Put it first on a scripted gateway's PATH: its box is local."""
    from tests.test_box_status import NVIDIA_SMI_OUTPUT

    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\n"
                   '[ "$1" = "--query-gpu=index,name,memory.total,memory.used,'
                   'utilization.gpu" ] && [ "$2" = "--format=csv,noheader,nounits" ] '
                   "|| { echo \"unexpected: $*\" >&2; exit 2; }\n"
                   f"cat <<'OUT'\n{NVIDIA_SMI_OUTPUT}OUT\n")
    smi.chmod(0o755)
    return folder


def real_ssh_env(sshd: Any, box_python: str, tiny: dict[str, str], folder: Path, *,
                 mode: str = "script") -> dict[str, str]:
    """The gateway's .env for the real LlamaFactory box behind the test sshd (as
    tests/test_gateway_e2e.py builds it), with the tiny model and its adapter."""
    return {**sshd.settings_env(), "CHAT_MODE": mode, "REMOTE_PYTHON": box_python,
            "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'lfgate.db'}",
            "LFGATE_DATA_DIR": str(folder / "data"), "BASE_MODEL_PATH": tiny["base"],
            "ADAPTER_PATH": tiny["adapter"], "TEMPLATE": tiny["template"],
            "CHAT_TIMEOUT": "120"}


def start_real_gateway(sshd: Any, box_python: str, tiny: dict[str, str], folder: Path, *,
                       mode: str = "script", port: int | None = None,
                       env: dict[str, str] | None = None) -> GatewayProcess:
    """`env` adds to (or overrides) the .env, e.g. ADAPTER_DIRS."""
    folder.mkdir(parents=True, exist_ok=True)
    dotenv = {**real_ssh_env(sshd, box_python, tiny, folder, mode=mode), **(env or {})}
    return GatewayProcess({}, folder, dotenv=dotenv, port=port)


def need_chromium() -> None:
    """Skip without Debian's Chromium, except on CI, where a missing browser is a failure."""
    if os.access(CHROMIUM, os.X_OK):
        return
    reason = (f"{CHROMIUM} is missing (Debian package `chromium`; tests/rig/system_deps.sh "
              "installs it)")
    if os.environ.get("CI"):
        pytest.fail(reason + "; CI must run the browser tests")
    pytest.skip(reason)


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def watch_errors(page: Page) -> list[str]:
    """Uncaught exceptions and console errors of the page, as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda message: errors.append(f"console.error: {message.text}")
            if message.type == "error" else None)
    return errors


class PlaywrightLoop:
    """Where sync Playwright's event loop may be marked running on the main thread.

    `users` are the fixtures known to depend on `browser` (filled as they are set up, since
    a fixture's dependencies are set up before it). Only the mark of Playwright's own loop
    is ever cleared, never pytest-asyncio's.
    """

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.users: set[str] = {"browser"}

    def started(self) -> None:
        """Call right after sync_playwright().start(): the loop it marked is its own."""
        self.loop = asyncio._get_running_loop()

    def stopped(self) -> None:
        self.park()
        self.loop = None

    def uses_browser(self, argname: str, argnames: tuple[str, ...]) -> bool:
        return argname in self.users or any(name in self.users for name in argnames)

    def resume(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            asyncio._set_running_loop(self.loop)

    def park(self) -> None:
        if self.loop is not None and asyncio._get_running_loop() is self.loop:
            asyncio._set_running_loop(None)

    @contextlib.contextmanager
    def marked(self) -> Iterator[None]:
        """Browser code runs inside; the thread is left as it was found."""
        before = asyncio._get_running_loop()
        self.resume()
        try:
            yield
        finally:
            if self.loop is None or asyncio._get_running_loop() is self.loop:
                asyncio._set_running_loop(before)


# Every text a streaming reply shows, render by render (a MutationObserver, installed before
# the page's own scripts and again on every load): a reply that reattached after a reload or
# a dropped connection must only ever have shown a beginning of what is stored, else a chunk
# came twice or went missing. Kept by the reply's id (a chat's reply, a compare's column).
_RECORD_STREAMED = """(() => {
  window.streamed = {};
  const note = () => {
    for (const article of document.querySelectorAll("article[aria-busy='true']")) {
      const id = article.dataset.messageId;
      const text = (article.querySelector(".reply > .markdown")?.textContent ?? "").trim();
      if (!id || !text) continue;
      const seen = (window.streamed[id] ??= []);
      if (seen.at(-1) !== text) seen.push(text);
    }
  };
  new MutationObserver(note).observe(document, { subtree: true, childList: true,
                                                 characterData: true });
})();"""


def record_streamed(page: Page) -> None:
    """From the page's next load on, keep every text its streaming replies show (streamed())."""
    page.add_init_script(_RECORD_STREAMED)


def streamed(page: Page, reply_id: str) -> list[str]:
    """What reply `reply_id` showed while streaming since the page last loaded, a text per
    change."""
    return page.evaluate("(id) => window.streamed[id] ?? []", reply_id)


def errors_but_network(page: Page) -> list[str]:
    """page.js_errors without the lines Chromium logs for a request whose connection failed
    (a test that cuts connections causes those); uncaught exceptions always count."""
    return [e for e in page.js_errors
            if not (e.startswith("console.error: Failed to load resource: net::ERR_"))]


PHONE = {"width": 375, "height": 740}


def fits_the_phone(page: Page, *shown: Locator) -> None:
    """Each of `shown` is on screen, whole and inside a PHONE's width, nothing in it cut off
    at its right edge; the page does not scroll sideways. (`.app` hides overflow, so the page's
    scroll width alone misses a control pushed past the edge: the boxes catch it.)"""
    from playwright.sync_api import expect

    for locator in shown:
        expect(locator).to_be_in_viewport(ratio=1)
        box = locator.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], \
            box
        assert locator.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "cut off inside"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways: {width}px"
