"""Take the README's screenshots of the page's main states, in Debian's Chromium, against a
gateway on the scripted box double (so the content is the same every time; its box is this
machine, with a stand-in `nvidia-smi` on the PATH that prints real captured output: two A100s,
one busy training):

    python -m tests.rig.screenshots      (or: make screenshots)   -> docs/screenshots/*.png
    python -m tests.rig.screenshots tool-call context       -> only those groups' shots

Each group starts its own gateway (GROUPS names them and their shots).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from tests.rig.hermetic import isolate
from tests.rig.saves_tree import make_saves
from tests.ui_rig import (
    fits_the_phone,
    launch_chromium,
    stand_in_nvidia_smi,
    start_scripted_gateway,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "screenshots"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 375, "height": 760}
GPUS: dict[str, str] = {}  # the gateways' PATH, with the stand-in nvidia-smi first (main())
# The tool of the tool-call shots (as tests/test_ui_tools.py offers it): the scripted box
# calls it when a message says "weather".
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
# The context shots' two questions, 15 words each (the scripted box counts a word a token).
CONTEXT_MESSAGES = ("Summarise what the SFT run changed in eval replies, in three lines for "
                    "the team",
                    "Now list the prompts that got worse at step 1200, with one reason for "
                    "each")


def _send(page: Page, text: str, *, wait: bool = True) -> None:
    page.fill("#message", text)
    page.keyboard.press("Enter")
    if wait:
        expect(page.locator("button[aria-label='Send message']")).to_be_visible(timeout=30_000)


def _seed(gateway) -> None:
    """A few chats in the list, so the sidebar looks like a day's work."""
    for message in ("Compare the SFT checkpoints on the eval prompts",
                    "Does the adapter keep the system prompt?",
                    "hello from the base model"):
        gateway.chat({"message": message})


def _loading_and_picker(browser, folder: Path) -> None:
    """On a box with nothing loaded yet (once loaded, the base is shared by the adapters):
    a model loading; then the model picker open on a LlamaFactory saves/ tree, one
    checkpoint loaded."""
    saves = folder / "saves"
    make_saves(saves, "/models/Qwen2.5-7B")
    gateway = start_scripted_gateway(folder / "picker", base_model_path="/models/Qwen2.5-7B",
                                     adapter_path="/runs/qwen-sft-lora/checkpoint-1200",
                                     load_s=6, env={"ADAPTER_DIRS": str(saves), **GPUS})
    try:
        page = browser.new_page(viewport=WIDE)
        page.goto(gateway.url)
        page.click(".model-trigger")
        page.locator("[role='option'][data-model='base']").click()
        # Any second of the load: one exact second can fall between two of expect's polls.
        expect(page.locator(".model-status")).to_contain_text(
            re.compile(r"Loading base… [2-4] s"), timeout=10_000)
        page.screenshot(path=str(OUT / "loading.png"), clip={
            "x": 0, "y": 0, "width": WIDE["width"], "height": 220})
        expect(page.locator(".model-status")).to_contain_text("Ready", timeout=30_000)
        page.close()

        checkpoint = "tiny--lora--sft-a--checkpoint-20"
        _, events = gateway.chat({"message": "Compare the SFT checkpoints", "model": checkpoint})
        chat_id = next(data["chat_id"] for event, data in events if event == "meta")
        for name, viewport in (("picker", WIDE), ("picker-phone", NARROW)):
            page = browser.new_page(viewport=viewport)
            page.goto(f"{gateway.url}/#/chat/{chat_id}")
            expect(page.locator("article[aria-label='Reply']")).to_have_count(1)
            expect(page.locator(".model-trigger")).to_contain_text(checkpoint)
            page.click(".model-trigger")
            expect(page.locator(f"[data-model='{checkpoint}'] .pick-status")).to_have_text(
                "loaded")
            expect(page.locator(".pick-foot")).to_contain_text("Scanned")
            page.wait_for_timeout(300)
            page.screenshot(path=str(OUT / f"{name}.png"))
            page.close()
    finally:
        gateway.stop()


def _compare_and_leaderboard(browser, folder: Path) -> None:
    """The compare view (three columns on one base: the base, a checkpoint and a run's final
    adapter, a turn voted), a blind compare before its vote, and the leaderboard its votes and
    some more make."""
    saves = folder / "compare-saves"
    make_saves(saves, "/models/Qwen2.5-7B", broken=False)
    gateway = start_scripted_gateway(folder / "compare", base_model_path="/models/Qwen2.5-7B",
                                     adapter_path="/runs/qwen-sft-lora/checkpoint-1200",
                                     delay_s=0.01, env={"ADAPTER_DIRS": str(saves), **GPUS})
    final, step20, step100 = ("tiny--lora--sft-a", "tiny--lora--sft-a--checkpoint-20",
                              "tiny--lora--sft-b--checkpoint-100")
    try:
        gateway.http.post("/api/models/refresh")
        # Votes from earlier compares, for the leaderboard and the chat list.
        for message, models, winner in (
                ("Summarise the eval prompt in one line", ["base", final], "1"),
                ("Translate the release notes to French", ["base", step20], "1"),
                ("Does it keep the system prompt?", [step20, final], "1"),
                ("Write a haiku about gradient descent", [final, step100], "0"),
                ("What is 17 × 23?", [step100, "base"], "tie"),
                ("Fix the off-by-one in this loop", [step20, step100], "0"),
                ("Name three risks of overfitting", ["base", final, step20], "1"),
                ("Draft a polite reminder email", [final, step20], "tie"),
                ("Explain the LoRA rank to a teammate", [step100, final], "1"),
                ("SFT or DPO, in two lines", ["base", step100], "1")):
            _, events = gateway.chat_at("/api/compare", {"message": message, "models": models})
            head = events[0][1]
            gateway.http.post(f"/api/chats/{head['chat_id']}/votes",
                              json={"compare_id": head["compare_id"], "winner": winner})

        page = browser.new_page(viewport=WIDE)
        page.goto(gateway.url)
        page.get_by_role("button", name="Compare", exact=True).click()
        page.click("button[aria-label='Add a column']")
        for letter, model in zip("ABC", ("base", step20, final), strict=True):
            page.locator(f".cmp-heads [aria-label='Column {letter}'] .model-trigger").click()
            page.locator(f"[role='option'][data-model='{model}']").click()
        for turn, text in enumerate(("Explain LoRA in one line",
                                     "And what does its rank control?"), start=1):
            _send(page, text)
            expect(page.locator(f"[aria-label='Vote on turn {turn}']")).to_be_visible(
                timeout=30_000)
            if turn == 1:
                bar = page.locator("[aria-label='Vote on turn 1']")
                bar.get_by_label("Reason for the vote on turn 1 (optional)").fill(
                    "names the adapter")
                bar.get_by_role("button", name="C is best").click()
                expect(page.locator("[aria-label='Your vote on turn 1']")).to_be_visible()
        page.locator(".cmp-turns").evaluate("box => box.scrollTo(0, 0)")
        page.wait_for_timeout(400)
        page.screenshot(path=str(OUT / "compare.png"))
        page.close()

        page = browser.new_page(viewport=WIDE)
        page.goto(gateway.url)
        page.get_by_role("button", name="Compare", exact=True).click()
        page.click("button[aria-label='Add a column']")
        for letter, model in zip("ABC", (step20, final, step100), strict=True):
            page.locator(f".cmp-heads [aria-label='Column {letter}'] .model-trigger").click()
            page.locator(f"[role='option'][data-model='{model}']").click()
        page.get_by_label("Blind").check()
        _send(page, "Show me some code for the energy formula")
        expect(page.locator("[aria-label='Vote on turn 1']")).to_be_visible(timeout=30_000)
        page.wait_for_timeout(400)
        page.screenshot(path=str(OUT / "compare-blind.png"))
        page.close()

        page = browser.new_page(viewport=WIDE)
        page.goto(f"{gateway.url}/#/leaderboard")
        expect(page.locator("table.winrate")).to_be_visible()
        page.wait_for_timeout(300)
        page.screenshot(path=str(OUT / "leaderboard.png"))
        page.close()
    finally:
        gateway.stop()


def _prompt_sets(browser, folder: Path) -> None:
    """A finished run of a prompt set over three models on one base: the progress, the
    average scores as bars and numbers, and the table of replies, a row voted."""
    saves = folder / "sets-saves"
    make_saves(saves, "/models/Qwen2.5-7B", broken=False)
    gateway = start_scripted_gateway(folder / "sets", base_model_path="/models/Qwen2.5-7B",
                                     adapter_path="/runs/qwen-sft-lora/checkpoint-1200",
                                     delay_s=0.01, env={"ADAPTER_DIRS": str(saves), **GPUS})
    final, step20 = "tiny--lora--sft-a", "tiny--lora--sft-a--checkpoint-20"
    try:
        gateway.http.post("/api/models/refresh")
        prompts = ["Summarise the eval prompt in one line", "What does the LoRA rank control?",
                   "Translate the release notes to French", "Name three risks of overfitting",
                   "SFT or DPO, in two lines"]
        # References in the words of the final adapter, so the checkpoints score below it.
        records = [{"prompt": p, "reference": f"Echo #1 from Qwen2.5-7B + sft-a: {p}"}
                   for p in prompts]
        created = gateway.http.post("/api/prompt-sets", json={
            "name": "eval-split.jsonl", "filename": "eval-split.jsonl",
            "content": "".join(json.dumps(r) + "\n" for r in records)}).json()
        run = gateway.http.post(f"/api/prompt-sets/{created['id']}/runs", json={
            "models": ["base", step20, final],
            "params": {"temperature": 0.7, "max_new_tokens": 256}}).json()
        page = browser.new_page(viewport=WIDE)
        page.goto(f"{gateway.url}/#/run/{run['id']}")
        expect(page.locator(".run-head .run-status")).to_have_text("complete", timeout=60_000)
        expect(page.locator("svg.score-chart")).to_be_visible()
        page.get_by_role("button", name=f"{final} is best on prompt 1").click()
        expect(page.locator("tr[aria-label='Prompt 1'] .row-voted")).to_be_visible()
        page.locator(".run-table-wrap").evaluate("box => { box.scrollLeft = 0; }")
        page.locator("main[aria-label='Run']").evaluate("box => box.scrollTo(0, 0)")
        page.wait_for_timeout(400)
        page.screenshot(path=str(OUT / "prompt-sets.png"))
        page.close()
    finally:
        gateway.stop()


def _doctor_and_box_status(browser, folder: Path) -> None:
    """The header's box status opened (two GPUs, one busy; a base and its adapter loaded), at
    1280 px and on a phone; and the doctor's report on a box whose model folder is missing
    (the scripted box has no LlamaFactory either): marks, fixes, the summary."""
    gateway = start_scripted_gateway(folder / "status", base_model_path="/models/Qwen2.5-7B",
                                     adapter_path="/runs/qwen-sft-lora/checkpoint-1200",
                                     env={**GPUS, "BOX_STATUS_INTERVAL": "1"})
    try:
        _, events = gateway.chat({"message": "Which checkpoint is this?"})
        chat_id = next(data["chat_id"] for event, data in events if event == "meta")
        for name, viewport in (("box-status", WIDE), ("box-status-phone", NARROW)):
            page = browser.new_page(viewport=viewport)
            page.goto(f"{gateway.url}/#/chat/{chat_id}")
            expect(page.locator("article[aria-label='Reply']")).to_have_count(1)
            page.click("button.box-pill")
            details = page.locator("[role='dialog'].box-pop")
            expect(details.locator(".box-loaded li")).to_have_count(2, timeout=10_000)
            expect(details.locator(".box-gpu")).to_have_count(2)
            page.wait_for_timeout(300)
            page.screenshot(path=str(OUT / f"{name}.png"))
            page.close()

        page = browser.new_page(viewport=WIDE)
        page.goto(f"{gateway.url}/#/doctor/run")
        expect(page.locator(".doctor-summary")).to_be_visible(timeout=60_000)
        page.locator("main.doctor").evaluate("box => box.scrollTo(0, box.scrollHeight)")
        page.wait_for_timeout(300)
        page.screenshot(path=str(OUT / "doctor.png"))
        page.close()
    finally:
        gateway.stop()


def _chat(browser, folder: Path) -> None:
    """The chat page: empty, a reply streaming, finished (code and math), thinking, the
    parameters drawer, dark, and at 375 px (the chat list folded, then out)."""
    gateway = start_scripted_gateway(folder, base_model_path="/models/Qwen2.5-7B",
                                     adapter_path="/runs/qwen-sft-lora/checkpoint-1200",
                                     load_s=6, delay_s=0.05, env=GPUS)
    try:
        _seed(gateway)
        page = browser.new_page(viewport=WIDE)
        page.goto(gateway.url)
        expect(page.locator(".chat-link")).to_have_count(3)
        page.wait_for_timeout(500)
        page.screenshot(path=str(OUT / "empty.png"))

        _send(page, "Show me some code, and the formula for the energy", wait=False)
        expect(page.locator("[aria-busy='true'] pre code")).to_contain_text("return",
                                                                            timeout=30_000)
        page.screenshot(path=str(OUT / "streaming.png"))
        expect(page.locator("button[aria-label='Send message']")).to_be_visible(
            timeout=30_000)
        page.locator(".reply-meta").last.hover()
        page.wait_for_timeout(300)
        page.screenshot(path=str(OUT / "code.png"))

        page.check("text=Thinking")
        _send(page, "Now think it through: is it right?")
        page.locator("details.thinking summary").last.click()
        page.evaluate("document.querySelector('.conversation').scrollTop = 1e9")
        page.wait_for_timeout(200)
        page.screenshot(path=str(OUT / "thinking.png"))

        chat_url = page.url

        page.click("text=Parameters")
        drawer = page.locator("[role='dialog'][aria-label='Generation settings']")
        drawer.locator("input[aria-label='Temperature']").fill("0.3")
        drawer.locator("input[aria-label='Max new tokens']").fill("512")
        page.wait_for_timeout(200)
        page.screenshot(path=str(OUT / "parameters.png"))
        drawer.locator("button[aria-label='Close settings']").click()

        dark = browser.new_page(viewport=WIDE, color_scheme="dark")
        dark.goto(chat_url)
        expect(dark.locator(".hljs-keyword").first).to_be_visible()
        dark.wait_for_timeout(400)
        dark.screenshot(path=str(OUT / "dark.png"))

        narrow = browser.new_page(viewport=NARROW)
        narrow.goto(chat_url)
        expect(narrow.locator(".hljs-keyword").first).to_be_visible()
        narrow.wait_for_timeout(400)
        narrow.screenshot(path=str(OUT / "narrow.png"))
        narrow.click("button[aria-label='Show chats']")
        narrow.wait_for_timeout(400)
        narrow.screenshot(path=str(OUT / "narrow-chats.png"))
        for shown in (page, dark, narrow):
            shown.close()
    finally:
        gateway.stop()


def _tool_call(browser, folder: Path) -> None:
    """A chat with a tool (its Tools set in the Parameters drawer, as a JSON list) whose reply
    called it: the call as a block, its name and pretty arguments, and "Tool's result" ticked
    under the message box for the next message. At 1280 px and on a phone."""
    gateway = start_scripted_gateway(folder / "tools", base_model_path="/models/Qwen2.5-7B",
                                     adapter_path="/runs/qwen-sft-lora/checkpoint-1200",
                                     delay_s=0.01, env=GPUS)
    try:
        _seed(gateway)
        page = browser.new_page(viewport=WIDE)
        page.goto(gateway.url)
        page.click("text=Parameters")
        drawer = page.locator("[role='dialog'][aria-label='Generation settings']")
        drawer.get_by_label("Tools").fill(json.dumps([WEATHER], indent=2))
        drawer.locator("text=Save").click()
        expect(drawer).to_have_count(0)
        _send(page, "What is the weather in Paris?")
        expect(page.locator(".tool-calls pre")).to_contain_text('"city": "Paris"')
        expect(page.get_by_label("Tool's result")).to_be_checked()
        chat_url = page.url
        page.wait_for_timeout(300)
        page.screenshot(path=str(OUT / "tool-call.png"))
        page.close()

        page = browser.new_page(viewport=NARROW)
        page.goto(chat_url)
        calls = page.locator(".tool-calls")
        expect(calls.locator("pre")).to_contain_text('"city": "Paris"')
        expect(page.get_by_label("Tool's result")).to_be_checked()
        fits_the_phone(page, calls, page.locator(".tool-result-toggle"))
        page.wait_for_timeout(400)
        page.screenshot(path=str(OUT / "tool-call-phone.png"))
        page.close()
    finally:
        gateway.stop()


def _context(browser, folder: Path) -> None:
    """A model with a small window (CUTOFF_LEN: 60 words on the scripted box): the meter under
    the message box, and a reply whose prompt left out the chat's first question and its
    reply, saying so under it. At 1280 px and on a phone."""
    gateway = start_scripted_gateway(folder / "context", base_model_path="/models/Qwen2.5-7B",
                                     adapter_path="/runs/qwen-sft-lora/checkpoint-1200",
                                     delay_s=0.01, env={**GPUS, "CUTOFF_LEN": "60"})
    try:
        _seed(gateway)
        # Two messages of 15 words: with the first reply, over the 45 a prompt may hold (the
        # last quarter of the window is kept for the reply).
        _, events = gateway.chat({"message": CONTEXT_MESSAGES[0]})
        chat_id = next(data["chat_id"] for event, data in events if event == "meta")
        done, _ = gateway.chat({"message": CONTEXT_MESSAGES[1], "chat_id": chat_id})
        assert done.get("left_out") == 2, done
        for name, viewport in (("context", WIDE), ("context-phone", NARROW)):
            page = browser.new_page(viewport=viewport)
            page.goto(f"{gateway.url}/#/chat/{chat_id}")
            expect(page.locator("article[aria-label='Reply']")).to_have_count(2)
            note = page.locator("article[aria-label='Reply'] >> nth=-1").locator(".left-out")
            expect(note).to_contain_text("The first 2 messages were left out")
            meter = page.locator(".context-meter")
            expect(meter).to_contain_text("/ 60")
            if viewport is NARROW:
                fits_the_phone(page, note, meter)
            page.wait_for_timeout(400)
            page.screenshot(path=str(OUT / f"{name}.png"))
            page.close()
    finally:
        gateway.stop()


# Each group of shots, by name (python -m tests.rig.screenshots NAME...: only those).
GROUPS = {
    "chat": _chat,  # empty, streaming, code, thinking, parameters, dark, narrow, narrow-chats
    "picker": _loading_and_picker,  # loading, picker, picker-phone
    "compare": _compare_and_leaderboard,  # compare, compare-blind, leaderboard
    "prompt-sets": _prompt_sets,
    "box-status": _doctor_and_box_status,  # box-status, box-status-phone, doctor
    "tool-call": _tool_call,  # tool-call, tool-call-phone
    "context": _context,  # context, context-phone
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP",
                        help=f"only these groups of shots (default: all): {', '.join(GROUPS)}")
    chosen = parser.parse_args(argv).groups or list(GROUPS)
    unknown = [name for name in chosen if name not in GROUPS]
    if unknown:
        parser.error(f"no such group: {', '.join(unknown)} (groups: {', '.join(GROUPS)})")
    isolate()  # the user's .env and SSH_* stay out of the screenshots' gateway
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        tools = stand_in_nvidia_smi(Path(folder) / "tools")
        GPUS["PATH"] = f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                for name in chosen:
                    GROUPS[name](browser, Path(folder))
            finally:
                browser.close()
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()
