"""Open WebUI against the gateway (issue 25): Open WebUI 0.12.4 at its default settings (its
own cached venv, tests/rig/open_webui_env.sh, from requirements/open-webui.txt), run offline on
loopback with its OpenAI connection pointed at a real `lfgate serve` /v1 over the real sshd and
the real LlamaFactory (the tiny base and the adapters LlamaFactory trained on it), and driven
in Chromium the way a user does: the model selector, the chat input, the Stop button.

What is checked: the selector lists every model the gateway serves; a chat with `words`
streams its trained answer; Open WebUI's background requests (title, tags, follow-ups) reach
/v1 and succeed; Stop ends a long reply and the gateway stops it on the box (kept as
stopped); after a failed turn (a model the gateway no longer serves) the chat goes on.
Open WebUI's default since 0.10 is native function calling: every request carries its
built-in tools (get_current_timestamp, knowledge search...; some 25,000 characters of schema,
21,000 prompt tokens on the tiny model) and no tool_choice, which the gateway accepts; `words`
then answers in (noisy) words, and gives its trained answer once the user's Function Calling
is Legacy. The `tool` adapter calls Open WebUI's get_weather as a workspace tool, and its
built-in list_memories with the model's Builtin Tools narrowed to Memory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import PACED_BOX_ENV, _rig
from tests.rig.ports import free_port
from tests.rig.waiting import wait_until
from tests.ui_rig import ROOT, start_real_gateway

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.box

# Written by every run into build/ (a test run leaves tracked files alone); docs/open-webui.png
# is a copy of one, committed by hand.
SHOT = ROOT / "build" / "open-webui.png"
# The box paces generation (tests/rig/spy): slow enough that a long reply is still under way
# when Stop is clicked, with a default reply length that keeps Open WebUI's background
# requests (each answered by the tiny model in full) to seconds.
BOX_PACE = {"LFGATE_TEST_TOKEN_DELAY_S": "0.01", "LFGATE_TEST_MAX_NEW_TOKENS": "1000"}
OPEN_WEBUI_VERSION = "0.12.4"
HELLO = "Hello, how are you today?"  # the words adapter's trained answer to "Say hello."
ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/v1/\S*) HTTP/[\d.]+" (?P<status>\d{3})')


@pytest.fixture(scope="module")
def box(tmp_path_factory, box_python):
    """The test sshd, its box paced for this module (see BOX_PACE)."""
    from tests.rig.sshd import TestSSHD

    folder = tmp_path_factory.mktemp("owui-sshd")
    server = TestSSHD(folder, {**PACED_BOX_ENV, **BOX_PACE,
                               "LFGATE_TEST_SPY": str(folder / "spy.jsonl")})
    server.spy = folder / "spy.jsonl"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, trained) -> Path:
    """ADAPTER_DIRS: the trained adapters, and `gone`, a copy of words the failed-turn test
    takes away."""
    folder = tmp_path_factory.mktemp("owui-adapters")
    for name in ("words", "tool"):
        shutil.copytree(trained["adapters"][name]["path"], folder / name)
    shutil.copytree(trained["adapters"]["words"]["path"], folder / "gone")
    return folder


@pytest.fixture(scope="module")
def gateway(box, box_python, tiny, adapters, tmp_path_factory):
    process = start_real_gateway(box, box_python, tiny, tmp_path_factory.mktemp("owui-gw"),
                                 env={"ADAPTER_DIRS": str(adapters), "RESCAN_INTERVAL": "0",
                                      "STORE_API_CHATS": "true"})
    assert process.http.post("/api/models/refresh", timeout=120).status_code == 200
    yield process
    assert process.stop(), process.log.read_text()[-3000:]


def open_webui_env(gateway_url: str, data: Path) -> dict[str, str]:
    """Open WebUI's environment: offline, no login, only the gateway as its OpenAI
    connection; everything else at its defaults."""
    return {**os.environ,
            "OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1", "WEBUI_AUTH": "false",
            "ENABLE_OLLAMA_API": "false", "OPENAI_API_BASE_URL": f"{gateway_url}/v1",
            "OPENAI_API_KEY": "any", "DATA_DIR": str(data),
            "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
            "WEBUI_SECRET_KEY": "lfgate-test-only",  # else written into its venv
            "ANONYMIZED_TELEMETRY": "false", "DO_NOT_TRACK": "true", "SCARF_NO_ANALYTICS": "true",
            "GLOBAL_LOG_LEVEL": "INFO"}


@pytest.fixture(scope="module")
def open_webui(gateway, tmp_path_factory) -> Iterator[str]:
    """`open-webui serve` on loopback, up once its /health answers; its URL."""
    python = Path(_rig("open_webui_env.sh"))
    folder = tmp_path_factory.mktemp("owui")
    port = free_port()
    log = folder / "open-webui.log"
    proc = subprocess.Popen([str(python.parent / "open-webui"), "serve", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=folder,
                            env=open_webui_env(gateway.url, folder / "data"),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"open-webui exited: {log.read_text()[-4000:]}")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, "Open WebUI's /health", timeout_s=300)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(f"Open WebUI's log: {log}")


def v1_lines(gateway) -> list[tuple[str, str, int]]:
    """The gateway's access lines for /v1: (method, path, status)."""
    return [(m["method"], m["path"], int(m["status"]))
            for m in ACCESS.finditer(gateway.log.read_text(errors="replace"))]



def stored_chats(gateway) -> list[dict]:
    """Every /v1 conversation the gateway kept (STORE_API_CHATS), whole, newest first."""
    listing = gateway.http.get("/api/chats").json()["chats"]
    return [gateway.http.get(f"/api/chats/{chat['id']}").json() for chat in listing]


def stored_turn(gateway, first_words: str) -> dict | None:
    """The newest kept conversation whose first message starts with `first_words`, once its
    last reply has ended (its provenance is written then)."""
    for chat in stored_chats(gateway):
        messages = chat["messages"]
        if messages and messages[0]["content"].startswith(first_words):
            return chat if messages[-1].get("provenance") else None
    return None


def spied_calls(box) -> list[dict]:
    """What reached LlamaFactory's stream_chat, call by call (tests/rig/spy)."""
    return [record for line in box.spy.read_text().splitlines()
            if "messages" in (record := json.loads(line))]


def open_chat(page: Page, url: str) -> None:
    """Open WebUI's page on a new chat; its What's New box (shown once to a new admin)
    closed."""
    page.goto(url)
    page.locator("#chat-input").wait_for()
    whats_new = page.get_by_role("button", name="Okay, Let's Go!")
    if whats_new.count():
        whats_new.click()
        whats_new.wait_for(state="hidden")


def choose_model(page: Page, model: str) -> None:
    page.locator("#model-selector-model-button").click()
    page.locator(f"#model-selector-list [role=option][data-value='{model}']").click()
    expect(page.locator("#model-selector-model-button")).to_have_attribute(
        "aria-label", f"Selected model: {model}")


def send(page: Page, text: str) -> int:
    """Type and send a message; the number of replies on the page before it."""
    before = replies(page).count()
    page.locator("#chat-input").click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    return before


def replies(page: Page) -> Locator:
    return page.locator(".chat-assistant #response-content-container")


def wait_turn_end(page: Page, timeout_s: float = 180) -> None:
    """Until the reply under way has ended (Open WebUI's Stop button is gone)."""
    expect(page.get_by_role("button", name="Stop", exact=True)).to_have_count(
        0, timeout=timeout_s * 1000)


def letters(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


def test_the_model_selector_lists_every_model_the_gateway_serves(page, open_webui, gateway):
    served = {m["id"] for m in gateway.http.get("/v1/models").json()["data"]}
    assert {"default", "base", "words", "tool", "gone"} <= served
    open_chat(page, open_webui)
    page.locator("#model-selector-model-button").click()
    options = page.locator("#model-selector-list [role=option]")
    expect(options).to_have_count(len(served))
    assert {options.nth(i).get_attribute("data-value") for i in range(len(served))} == served
    page.keyboard.press("Escape")


def test_a_chat_streams_at_the_defaults_and_the_background_requests_succeed(
        page, open_webui, gateway, box):
    """Open WebUI's defaults: native function calling, so the chat's request carries its
    built-in tools (the box is handed them: a prompt of some 21,000 tokens on the tiny model)
    and no tool_choice; `words` is no tool-use fine-tune and answers in words, not its trained
    answer (that prompt is not what it was trained on: see the legacy test below). The
    reply Open WebUI shows is the one the gateway kept; and its title, tags and follow-up
    requests reach /v1 and succeed."""
    open_chat(page, open_webui)
    choose_model(page, "words")
    before = send(page, "Say hello.")
    expect(replies(page)).to_have_count(before + 1)
    wait_turn_end(page)
    turn = wait_until(lambda: stored_turn(gateway, "Say hello."), "the kept turn")
    reply = turn["messages"][-1]
    assert turn["model"] == "words" and reply["status"] == "complete"
    assert reply["provenance"]["finish_reason"] == "stop"
    # The model's noise (its length varies: one chunk or many) as markdown renders it:
    # compared on its letters and digits. That replies stream is the Stop test's to show.
    if letters(reply["content"]):
        expect(replies(page).last).not_to_have_text("")
    assert letters(replies(page).last.inner_text())[:12] in letters(reply["content"])
    call = next(c for c in reversed(spied_calls(box)) if c["messages"] == [
        {"role": "user", "content": "Say hello."}])
    offered = json.loads(call["kwargs"]["tools"])
    assert "get_current_timestamp" in {tool["name"] for tool in offered}
    # Title, tags and follow-ups: Open WebUI's task prompts, each kept as a /v1 chat.
    tasks = {"title": "Generate a concise", "tags": "Generate 1-3 broad tags",
             "follow-ups": "Predict 3-5 useful messages"}

    def asked() -> set[str]:
        firsts = [c["messages"][0]["content"] for c in stored_chats(gateway)
                  if c["messages"] and c["messages"][-1].get("provenance")]
        return {name for name, words in tasks.items() if any(words in f for f in firsts)}

    wait_until(lambda: asked() == set(tasks), "title, tags and follow-up requests",
               timeout_s=180)
    failed = [line for line in v1_lines(gateway) if line[2] >= 400]
    assert not failed, failed


def test_words_answers_as_trained_with_legacy_function_calling(page, open_webui, gateway):
    """The one setting changed: the user's Function Calling = Legacy (Settings > General >
    Advanced Parameters), so no built-in tools go with the message: `words` then streams
    exactly its trained answer. The screenshot of docs/open-webui.png."""
    open_chat(page, open_webui)
    set_params(page, open_webui, {"function_calling": "legacy"})
    try:
        page.reload()
        page.locator("#chat-input").wait_for()
        choose_model(page, "words")
        before = send(page, "Say hello.")
        expect(replies(page)).to_have_count(before + 1)
        expect(replies(page).last).to_have_text(HELLO, timeout=180_000)
        wait_turn_end(page)
        page.screenshot(path=SHOT)
    finally:
        set_params(page, open_webui, {})


def set_params(page: Page, url: str, params: dict) -> None:
    """The user's default chat parameters, as Open WebUI's settings page saves them."""
    token = page.evaluate("() => localStorage.token")
    answer = page.request.post(f"{url}/api/v1/users/user/settings/update",
                               headers={"Authorization": f"Bearer {token}"},
                               data={"ui": {"version": OPEN_WEBUI_VERSION, "params": params}})
    assert answer.ok, answer.text()


def test_stop_stops_the_reply_on_the_box(page, open_webui, gateway):
    """The random base rambles (up to the box's 1,000 tokens); Stop in Open WebUI cancels
    its request, and the gateway stops the reply on the box: kept as stopped, short."""
    stop = page.get_by_role("button", name="Stop", exact=True)
    # The random base may say end-of-text at any token: before its reply is seen growing
    # (three texts in a row, still under way), or between that and the click landing. Each
    # such reply is kept, honestly, as complete; then ask again, in a new chat with its own
    # words (at most three tries). A Stop that never reaches the box keeps none stopped.
    kept: list[dict] = []
    for attempt in range(3):
        open_chat(page, open_webui)
        choose_model(page, "base")
        words = f"Tell me a long story, take {attempt}."
        before = send(page, words)
        expect(replies(page)).to_have_count(before + 1)
        reply = replies(page).last
        seen: list[str] = []

        def grew_or_ended(reply=reply, seen=seen) -> str:
            text = reply.inner_text().strip()
            if text and (not seen or seen[-1] != text):
                seen.append(text)
            return "grew" if len(seen) >= 3 else "ended" if not stop.count() else ""

        if wait_until(grew_or_ended, "the reply streaming", timeout_s=180) == "grew":
            stop.click()
        wait_turn_end(page)
        turn = wait_until(lambda words=words: stored_turn(gateway, words), "the kept turn")
        kept.append(turn["messages"][-1])
        if kept[-1]["status"] == "stopped":
            break
        assert kept[-1]["provenance"]["finish_reason"] != "length", kept[-1]
    assert kept[-1]["status"] == "stopped", kept
    assert kept[-1]["provenance"]["finish_reason"] == "stopped"
    assert kept[-1]["provenance"]["usage"]["completion_tokens"] < 1000


def test_the_chat_goes_on_after_a_failed_turn(page, open_webui, gateway, adapters):
    """`gone` is listed when chosen, then taken away on the gateway: the turn fails (the
    gateway answers 404); the user picks `words` and asks again, and is answered."""
    open_chat(page, open_webui)
    choose_model(page, "gone")
    shutil.rmtree(adapters / "gone")
    assert gateway.http.post("/api/models/refresh", timeout=120).status_code == 200
    refused = len([line for line in v1_lines(gateway) if line[2] >= 400])
    send(page, "What color is the sky?")
    wait_until(lambda: len([line for line in v1_lines(gateway) if line[2] >= 400]) > refused,
               "the gateway refusing `gone`", timeout_s=60)
    wait_turn_end(page)
    choose_model(page, "words")
    answered = len([line for line in v1_lines(gateway) if line[2] == 200])
    before = send(page, "Say hello.")
    expect(replies(page)).to_have_count(before + 1)
    wait_turn_end(page)
    expect(replies(page).last).not_to_have_text("")
    wait_until(lambda: len([line for line in v1_lines(gateway) if line[2] == 200]) > answered,
               "the next turn answered")
    turn = wait_until(lambda: stored_turn(gateway, "What color is the sky?"), "the kept turn")
    print("the turn after the failed one, as the gateway kept it:",
          [(m["role"], m["content"][:60], m["status"]) for m in turn["messages"]])
    assert turn["messages"][-1]["status"] == "complete"


# get_weather as an Open WebUI workspace tool. Open WebUI builds its parameters from the
# signature and the `:param` lines (LangChain's convert_to_openai_function), and its description
# from the docstring's raw text up to the first `:param` or `:return`, whitespace and all: the
# `:return` right after the sentence keeps the description to exactly the trained one.
WEATHER_TOOL = '''
import json


class Tools:
    def get_weather(self, city: str) -> str:
        """Get the current weather in a city.:return: its weather, as JSON.
        :param city: The city name.
        """
        return json.dumps({"temperature": 21, "unit": "C"} if city == "Paris" else {})
'''


def owui_api(page: Page, url: str, path: str, body: dict) -> dict:
    token = page.evaluate("() => localStorage.token")
    answer = page.request.post(f"{url}{path}", headers={"Authorization": f"Bearer {token}"},
                               data=body)
    assert answer.ok, answer.text()
    return answer.json()


def test_the_tool_adapter_calls_get_weather_through_open_webui(page, open_webui, gateway, box,
                                                               trained):
    """The trained get_weather as a workspace tool of Open WebUI, attached to `tool`, whose
    built-in tools are turned off (Admin > Models > tool > Capabilities: Builtin Tools), so
    its request carries the trained schema (in Open WebUI's key order, which the adapter's
    training data holds too). The adapter calls the tool, Open WebUI runs it and hands back
    its result, and the adapter answers from it."""
    trained_tools = json.loads(next(case for case in trained["adapters"]["tool"]["cases"]
                                    if case["tool_calls"])["tools"])
    open_chat(page, open_webui)
    owui_api(page, open_webui, "/api/v1/tools/create",
             {"id": "weather", "name": "weather", "content": WEATHER_TOOL,
              "meta": {"description": "The weather"}})
    owui_api(page, open_webui, "/api/v1/models/create",
             {"id": "tool", "base_model_id": None, "name": "tool",
              "meta": {"capabilities": {"builtin_tools": False}, "toolIds": ["weather"]},
              "params": {}})
    page.reload()
    page.locator("#chat-input").wait_for()
    choose_model(page, "tool")
    before = send(page, "What is the weather in Paris?")
    expect(replies(page)).to_have_count(before + 1)
    expect(replies(page).last).to_contain_text("It is 21 C in Paris.", timeout=180_000)
    wait_turn_end(page)
    calls = [c for c in spied_calls(box)
             if c["messages"][0] == {"role": "user", "content": "What is the weather in Paris?"}]
    print("what reached LlamaFactory:", calls)
    offered = json.loads(calls[0]["kwargs"]["tools"])
    assert offered == trained_tools
    assert any(m["role"] == "observation" for m in calls[-1]["messages"])


# Open WebUI's built-in tool categories (utils/tools.py's is_builtin_tool_enabled): each is on
# unless a model's Builtin Tools settings turn it off.
BUILTIN_CATEGORIES = ("automations", "calendar", "channels", "chats", "code_interpreter",
                      "files", "image_generation", "knowledge", "memory", "notes",
                      "notifications", "skills", "subagents", "tasks", "time", "user_input",
                      "web_search")


def test_the_tool_adapter_calls_a_built_in_tool_and_answers_from_its_result(
        page, open_webui, gateway, box, trained):
    """One of Open WebUI's own built-in tools: list_memories, which Open WebUI runs itself
    (its memory store, empty here). A workspace model on the gateway's `tool`, its Builtin
    Tools narrowed to Memory (Admin > Models > Builtin Tools), as a tool-use fine-tune is
    set up with the tools it was trained on: its request carries Open WebUI's eight memory
    tools (some 4,000 prompt tokens) exactly as the adapter's training data holds them. The
    adapter calls list_memories, Open WebUI runs it and hands back its result ([]), and the
    adapter answers from it. (With every category on, the default, a request carries 36
    tools, some 21,000 tokens: one training pass over that prompt took 13 s on this CPU,
    and memorising it takes some 60, a quarter of an hour more at set-up; so the model's
    categories are narrowed instead, as the chat at the defaults above shows the rest.)"""
    trained_tools = json.loads(next(
        case for case in trained["adapters"]["tool"]["cases"]
        if case["tool_calls"] and case["tool_calls"][0]["name"] == "list_memories")["tools"])
    open_chat(page, open_webui)
    owui_api(page, open_webui, "/api/v1/models/create",
             {"id": "tool-memory", "base_model_id": "tool", "name": "tool-memory",
              "meta": {"capabilities": {"builtin_tools": True},
                       "builtinTools": {c: c == "memory" for c in BUILTIN_CATEGORIES}},
              "params": {}})
    page.reload()
    page.locator("#chat-input").wait_for()
    choose_model(page, "tool-memory")
    question = "What do you remember about me?"
    before = send(page, question)
    expect(replies(page)).to_have_count(before + 1)
    expect(replies(page).last).to_contain_text("I remember nothing about you yet.",
                                               timeout=180_000)
    wait_turn_end(page)
    calls = [c for c in spied_calls(box)
             if c["messages"][0] == {"role": "user", "content": question}]
    print("what reached LlamaFactory:", calls)
    assert json.loads(calls[0]["kwargs"]["tools"]) == trained_tools
    function, observation = calls[-1]["messages"][1:]
    assert function["role"] == "function"
    assert json.loads(function["content"]) == [{"name": "list_memories", "arguments": {}}]
    assert observation == {"role": "observation", "content": "[]"}  # Open WebUI's result
