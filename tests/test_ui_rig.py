"""The browser-test rig works: the scripted box double behind a real `lfgate serve`, the
browser fixtures, and async tests still running after a browser test in the same session."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ui_rig
from tests.gateway_process import GatewayProcess
from tests.ui_rig import (
    SCRIPTED_ADAPTER,
    SCRIPTED_BASE,
    module_gateway,
    on_shared,
)

ROOT = Path(__file__).resolve().parent.parent


shared_gateway_process = module_gateway("ui-rig")


@pytest.fixture
def scripted_gateway(shared_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    """Here the module's scripted gateway (tests/ui_rig.py shared_scripted_gateway): each
    test reads the chats it made itself (the newest, right after it made it)."""
    yield from on_shared(shared_gateway_process)


def stream_until_deltas(gateway, body: dict, count: int) -> tuple[dict, list[str], object]:
    """Start a streamed turn; return its meta, the first `count` deltas and the stream."""
    stream = gateway.stream(body)
    name, meta, _ = next(stream)
    assert name == "meta", (name, meta)
    texts: list[str] = []
    for name, data, _ in stream:
        assert name == "delta", (name, data)
        texts.append(data["text"])
        if len(texts) == count:
            break
    return meta, texts, stream


def test_the_scripted_gateway_serves_the_page_models_and_health(scripted_gateway):
    page = scripted_gateway.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    models = scripted_gateway.http.get("/api/models").json()["models"]
    assert [(m["id"], m["base_model_path"], m["adapter_path"]) for m in models] == [
        ("default", SCRIPTED_BASE, SCRIPTED_ADAPTER), ("base", SCRIPTED_BASE, None)]
    health = scripted_gateway.http.get("/api/health").json()
    assert health["mode"] == "script" and health["remote"]["host"] == "local"


def test_code_streams_the_scripted_markdown_in_small_chunks(scripted_gateway):
    done, events = scripted_gateway.chat({"message": "Show me some code"})
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert events[-1][0] == "done" and done["finish_reason"] == "stop"
    assert done["content"] == "".join(deltas) and len(deltas) > 20
    assert all(1 <= len(text) <= 8 for text in deltas)
    for part in ("## Scripted code sample", "**bold text**", "- second item", "```python\n",
                 "def greet(name: str) -> str:", "$E=mc^2$", "$$\\int_0^1 x\\,dx$$"):
        assert part in done["content"], part


def test_echo_names_the_turn_and_the_model_and_other_triggers_answer(scripted_gateway):
    first, _ = scripted_gateway.chat({"message": "hello"})
    assert first["content"] == "Echo #1 from tiny-base + tiny-adapter: hello"
    chat_id = scripted_gateway.http.get("/api/chats").json()["chats"][0]["id"]
    second, _ = scripted_gateway.chat({"message": "again", "chat_id": chat_id})
    assert second["content"] == "Echo #2 from tiny-base + tiny-adapter: again"
    base, _ = scripted_gateway.chat({"message": "hi", "model": "base"})
    assert base["content"] == "Echo #1 from tiny-base + no adapter: hi"

    think, _ = scripted_gateway.chat({"message": "think first"})
    assert think["content"].startswith(
        "<think>Let me reason about this step by step.</think>")
    xss, _ = scripted_gateway.chat({"message": "xss please"})
    for attack in ('<img src=x onerror="window.__xss=1">', "<script>window.__xss=2</script>",
                   "[click me](javascript:window.__xss=3)",
                   '<a href="javascript:window.__xss=4">raw link</a>'):
        assert attack in xss["content"]
    short, _ = scripted_gateway.chat({"message": "code", "params": {"max_new_tokens": 4}})
    assert short["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 4


def test_error_ends_the_stream_with_the_box_error_after_some_text(scripted_gateway):
    end, events = scripted_gateway.chat({"message": "trigger an error"})
    assert events[-1][0] == "error"
    assert end["code"] == "generation_failed"
    assert end["message"] == "scripted failure: the box ran out of memory"
    assert any(name == "delta" for name, _ in events)
    chat = scripted_gateway.http.get("/api/chats").json()["chats"][0]
    messages = scripted_gateway.http.get(f"/api/chats/{chat['id']}").json()["messages"]
    assert messages[-1]["status"] == "error" and messages[-1]["content"]


def test_long_can_be_stopped_mid_reply(scripted_gateway):
    meta, texts, stream = stream_until_deltas(scripted_gateway, {"message": "a long one"}, 5)
    stopped = scripted_gateway.http.post(f"/api/chat/{meta['turn_id']}/stop")
    assert stopped.status_code == 200
    rest = list(stream)
    name, done, _ = rest[-1]
    assert name == "done" and done["finish_reason"] == "stopped"
    texts += [data["text"] for name, data, _ in rest if name == "delta"]
    assert done["content"] == "".join(texts)
    assert 5 <= len(texts) < 100  # of 400
    chat = scripted_gateway.http.get(f"/api/chats/{meta['chat_id']}").json()
    assert chat["messages"][-1]["status"] == "stopped"


def test_a_broken_base_path_loads_slowly_then_fails_naming_the_path(make_scripted_gateway):
    gateway = make_scripted_gateway(base_model_path="/models/broken-base", load_s=1.0)
    started = time.monotonic()
    assert gateway.http.post("/api/models/default/load").json()["status"] == "loading"
    assert gateway.http.get("/api/models/default/status").json()["status"] == "loading"
    status = gateway.wait_status("default", "ready", timeout=30)
    assert time.monotonic() - started >= 0.9
    assert status["status"] == "error"
    assert "/models/broken-base" in status["error"] and status["hint"]
    end, events = gateway.chat({"message": "hello"})
    assert events[-1][0] == "error" and end["code"] == "model_not_found"
    assert "/models/broken-base" in end["message"]


def test_a_gateway_restarts_on_the_same_port_with_the_same_database(make_scripted_gateway,
                                                                     tmp_path):
    first = make_scripted_gateway(tmp_path / "kept")
    first.chat({"message": "remember me"})
    assert first.stop()
    again = make_scripted_gateway(tmp_path / "kept", port=first.port)
    assert again.url == first.url
    chats = again.http.get("/api/chats").json()["chats"]
    assert [c["title"] for c in chats] == ["remember me"]


def test_the_browser_opens_the_gateway_and_collects_page_errors(scripted_gateway, page):
    response = page.goto(scripted_gateway.url)
    assert response is not None and response.ok
    assert page.evaluate("document.title") == page.title() and page.title()
    with page.expect_event("pageerror"):  # waits for the thrown error, not for a time
        # Run by Playwright: the page's CSP refuses inline <script> (tests/test_ui_csp.py).
        page.evaluate("setTimeout(() => { throw new Error('boom') }, 0);"
                      "console.error('console says no')")
    assert any("boom" in error for error in page.js_errors), page.js_errors
    assert any("console says no" in error for error in page.js_errors), page.js_errors


def test_without_chromium_browser_tests_skip_but_fail_on_ci(monkeypatch):
    monkeypatch.setattr(ui_rig, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"system_deps\.sh"):
        ui_rig.need_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run"):
        ui_rig.need_chromium()


def test_no_loop_is_left_running_after_a_browser_test():
    assert asyncio._get_running_loop() is None


async def test_async_tests_still_run_after_a_browser_test():
    await asyncio.sleep(0.01)


@pytest.mark.box
def test_the_real_box_over_ssh_answers_and_serves_the_page(real_gateway_over_ssh, sshd, page):
    gateway = real_gateway_over_ssh
    health = gateway.http.get("/api/health").json()
    assert health["remote"]["host"] == f"{sshd.user}@127.0.0.1:{sshd.port}"
    done, events = gateway.chat({"message": "Hello!",
                                 "params": {"temperature": 0, "max_new_tokens": 12}})
    assert events[-1][0] == "done" and done["content"]
    assert page.goto(gateway.url).ok


FAILING_BROWSER_TEST = '''
def test_fails_in_the_page(page):
    page.set_content("<h1>the page as the test left it</h1>")
    page.evaluate("console.error('an error the page logged')")
    assert False, "a planted failure"
'''


@pytest.mark.parametrize("trace", ["", "1"], ids=["default", "LFGATE_TRACE=1"])
def test_a_failed_browser_test_keeps_its_pages_last_state(tmp_path, trace: str) -> None:
    """What a flake leaves to read: each page's screenshot, DOM and console errors, and with
    LFGATE_TRACE=1 the Playwright trace (off by default: it doubled the browser's CPU)."""
    test = tmp_path / "test_planted.py"
    test.write_text(FAILING_BROWSER_TEST)
    out = tmp_path / "kept"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-q", "-n", "0", str(test)], cwd=ROOT, capture_output=True, text=True, timeout=300,
        check=False, env={**os.environ, "LFGATE_TRACE_DIR": str(out), "LFGATE_TRACE": trace})
    assert done.returncode == 1 and "a planted failure" in done.stdout, done.stdout[-3000:]
    shots = list(out.glob("*test_fails_in_the_page*-page0.png"))
    assert len(shots) == 1, sorted(p.name for p in out.iterdir())
    assert shots[0].read_bytes().startswith(b"\x89PNG")
    stem = str(shots[0]).removesuffix(".png")
    assert "the page as the test left it" in Path(f"{stem}.html").read_text()
    assert "an error the page logged" in Path(f"{stem}.errors.txt").read_text()
    assert len(list(out.glob("*.zip"))) == (1 if trace else 0)
