"""Take the README's screenshots: the page, driven in Debian's Chromium, against a gateway on
the local demo box.  python -m tests.rig.screenshots  (needs `make box` and chromium)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.gateway_process import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _rig(script: str, *args: str) -> str:
    out = subprocess.run(["bash", str(ROOT / "tests" / "rig" / script), *args],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    python = _rig("box_env.sh")
    tiny = Path(_rig("tiny_model.sh", python))
    env = {"SSH_HOST": "", "REMOTE_PYTHON": python, "BASE_MODEL_PATH": str(tiny / "base"),
           "ADAPTER_PATH": str(tiny / "adapter"), "TEMPLATE": "qwen"}
    with tempfile.TemporaryDirectory() as workdir:
        gateway = GatewayProcess(env, Path(workdir))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1000, "height": 560})
                page.goto(gateway.url)
                page.fill("#message", "Hello! Which adapter are you?")
                page.keyboard.press("Enter")
                page.wait_for_selector(".meta:has-text('first token')", timeout=120_000)
                page.fill("#message", "Tell me more")
                page.keyboard.press("Enter")
                page.wait_for_function(
                    "document.querySelectorAll('.meta').length == 2 && "
                    "document.querySelectorAll('.meta')[1].textContent.includes('first token')",
                    timeout=60_000)
                page.screenshot(path=str(ROOT / "docs" / "screenshot-chat.png"))
                browser.close()
        finally:
            gateway.stop()


if __name__ == "__main__":
    main()
