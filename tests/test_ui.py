"""The web page in a real browser (Debian's Chromium under Playwright) against a real
`lfgate serve`: on the scripted box double for deterministic content, and once on the real
LlamaFactory box behind the test sshd."""

from __future__ import annotations

import math
import re
import signal
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Route, expect

from tests.gateway_process import GatewayProcess
from tests.rig.waiting import wait_until
from tests.ui_rig import (
    FAST_PACE_S,
    SCRIPTED_ADAPTER,
    module_gateway,
    on_shared,
    set_pace,
)

expect.set_options(timeout=20_000)

REPLY = "article[aria-label='Reply']"
LAST_REPLY = f"{REPLY} >> nth=-1"
SEND = "button[aria-label='Send message']"
STOP = "button[aria-label='Stop generating']"
# The header's model picker: a button naming the model, and its popover's list.
MODEL = "button.model-trigger[aria-haspopup='listbox']"
MODELS = "[role='listbox'][aria-label='Models']"


def open_page(page: Page, gateway: GatewayProcess) -> None:
    page.goto(gateway.url)
    expect(page.locator(".connection")).to_contain_text("Box")


def send(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.keyboard.press("Enter")


def wait_reply_done(page: Page, count: int | None = None, timeout: float = 20_000) -> None:
    """The last reply finished streaming (the Send button is back)."""
    if count is not None:
        expect(page.locator(REPLY)).to_have_count(count)
    expect(page.locator(SEND)).to_be_visible(timeout=timeout)
    expect(page.locator(f"{REPLY}[aria-busy='true']")).to_have_count(0)
    # Not a stored reply still being written (shown without its turn, as a new chat once
    # was for a moment, with Send back): the test would read it half-way.
    expect(page.locator(f"{REPLY}.status-streaming")).to_have_count(0)


def wait_for_polls(page: Page) -> None:
    """Until the page has polled /api/health and /api/models once more and rendered what
    they said (state to wait on, instead of a sleep past the poll interval). Both waited
    for at once, from now: the two polls run on their own timers, in either order."""
    with (page.expect_response(lambda response: response.url.endswith("/api/health"),
                               timeout=15_000),
          page.expect_response(lambda response: response.url.endswith("/api/models"),
                               timeout=15_000)):
        pass
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => done()))")


def open_picker(page: Page) -> None:
    """Open the model picker (it rescans the box) and wait for its list."""
    if page.locator(MODEL).get_attribute("aria-expanded") != "true":
        page.click(MODEL)
    expect(page.locator(MODELS)).to_be_visible()


def model_option(page: Page, model_id: str):
    return page.locator(f"{MODELS} [role='option'][data-model='{model_id}']")


def pick_model(page: Page, model_id: str) -> None:
    """Choose a model in the picker, as a user does: open it, click the model's row."""
    open_picker(page)
    model_option(page, model_id).click()
    expect(page.locator(MODELS)).to_have_count(0)
    expect(page.locator(MODEL)).to_contain_text(model_id)


def current_chat(page: Page, gateway: GatewayProcess) -> dict:
    chat_id = re.search(r"#/chat/([\w-]+)$", page.url)[1]
    return gateway.http.get(f"/api/chats/{chat_id}").json()


shared_gateway_process = module_gateway("ui")


@pytest.fixture
def shared_gateway(shared_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    """The module's scripted gateway (tests/ui_rig.py shared_scripted_gateway), for tests
    that only look at chats of their own."""
    yield from on_shared(shared_gateway_process)


def test_send_and_see_a_streamed_markdown_reply(page: Page, make_scripted_gateway) -> None:
    gateway = make_scripted_gateway(delay_s=0.06)
    open_page(page, gateway)
    expect(page.locator(".empty-state")).to_contain_text("tiny-adapter")
    page.fill("#message", "Show me some code")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    page.keyboard.press("Control+Enter")

    expect(page.locator("article[aria-label='Your message'] .user-text")).to_have_text(
        "Show me some code\nsecond line")
    streaming = page.locator(f"{REPLY}[aria-busy='true']")
    expect(streaming).to_have_count(1)
    expect(page.locator(STOP)).to_be_visible()
    # Mid-stream, with the code fence still open: already a code block, never raw backticks.
    expect(streaming.locator("pre code")).to_contain_text("def greet")
    assert "```" not in streaming.locator(".markdown").inner_text()
    assert streaming.locator(".hljs-keyword").count() == 0  # highlighting waits for the end
    set_pace(gateway, FAST_PACE_S)  # seen mid-stream: the rest at once

    wait_reply_done(page, 1)
    reply = page.locator(LAST_REPLY)
    expect(reply.locator("h2")).to_have_text("Scripted code sample")
    expect(reply.locator("strong")).to_have_text("bold text")
    expect(reply.locator("li")).to_have_count(3)
    expect(reply.locator("pre code .hljs-keyword").first).to_be_visible()
    expect(reply.locator(".code-head")).to_contain_text("python")
    expect(reply.locator("button.copy-code")).to_be_visible()
    expect(reply.locator(".katex").first).to_be_visible()
    expect(reply.locator(".katex-display")).to_have_count(1)
    meta = reply.locator(".reply-meta")
    expect(meta).to_contain_text("default · tiny-adapter")
    expect(meta).to_contain_text("to first token")
    expect(meta).to_contain_text("tok/s")
    assert "Adapter: /runs/tiny-adapter" in meta.get_attribute("title")

    # Copy buttons put the text on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    reply.locator("button.copy-code").click()
    assert page.evaluate("navigator.clipboard.readText()").startswith("def greet(name: str)")
    reply.locator("button[aria-label='Copy reply']").click()
    assert page.evaluate("navigator.clipboard.readText()").startswith("## Scripted code sample")

    # The sidebar names the chat after its first message; the reply is stored as shown.
    expect(page.locator(".chat-link")).to_have_text(["Show me some code"])
    stored = current_chat(page, gateway)["messages"]
    assert [m["status"] for m in stored] == ["complete", "complete"]
    assert page.js_errors == []


def test_stop_mid_reply_with_the_button_and_with_esc(page: Page, shared_gateway) -> None:
    gateway = shared_gateway
    set_pace(gateway, 0.03)  # 400 chunks: about 12 s to press Stop in
    open_page(page, gateway)
    send(page, "Tell me a long story")
    expect(page.locator(LAST_REPLY)).to_contain_text("sentence 3")
    page.click(STOP)
    wait_reply_done(page, 1)
    expect(page.locator(LAST_REPLY).locator(".notice.stopped")).to_have_text("Stopped")
    first = current_chat(page, gateway)["messages"][-1]
    assert first["status"] == "stopped"
    assert 0 < len(first["content"]) < 2000  # the whole scripted reply is ~20,000 chars

    send(page, "Another long one")
    expect(page.locator(LAST_REPLY)).to_contain_text("sentence 3")
    page.keyboard.press("Escape")
    wait_reply_done(page, 2)
    assert current_chat(page, gateway)["messages"][-1]["status"] == "stopped"
    assert page.js_errors == []


def test_sidebar_create_rename_search_archive_delete(page: Page, scripted_gateway) -> None:
    open_page(page, scripted_gateway)
    send(page, "alpha apples")
    wait_reply_done(page, 1)
    page.click("text=+ New chat")
    expect(page.locator(".empty-state")).to_be_visible()
    send(page, "beta bananas")
    wait_reply_done(page, 1)
    links = page.locator(".chat-link")
    expect(links).to_have_text(["beta bananas", "alpha apples"])  # newest first
    expect(page.locator(".day h2")).to_have_text(["Today"])

    page.click("button[aria-label='Rename alpha apples']")
    rename = page.locator("input[aria-label='Chat title']")
    rename.fill("Fruit notes")
    rename.press("Enter")
    expect(links).to_have_text(["Fruit notes", "beta bananas"])  # a rename is a change
    chats = {c["title"] for c in scripted_gateway.http.get("/api/chats").json()["chats"]}
    assert chats == {"beta bananas", "Fruit notes"}
    page.click("button[aria-label='Rename beta bananas']")  # Esc leaves the title alone
    page.locator("input[aria-label='Chat title']").fill("nope")
    page.locator("input[aria-label='Chat title']").press("Escape")
    expect(links).to_have_text(["Fruit notes", "beta bananas"])

    # Search as you type asks the server, which also searches message text.
    page.fill("input[aria-label='Search chats']", "apples")
    expect(links).to_have_text(["Fruit notes"])
    page.fill("input[aria-label='Search chats']", "zzz-nothing")
    expect(page.locator(".empty-list")).to_have_text("No chat matches your search.")
    page.fill("input[aria-label='Search chats']", "")
    expect(links).to_have_count(2)

    page.click("button[aria-label='Archive Fruit notes']")
    expect(links).to_have_text(["beta bananas"])
    page.click("text=Archived chats")
    expect(links).to_have_text(["Fruit notes"])
    page.click("button[aria-label='Unarchive Fruit notes']")
    expect(links).to_have_count(0)
    page.click("text=← All chats")
    expect(links).to_have_count(2)

    page.click("button[aria-label='Delete beta bananas']")
    dialog = page.locator("[role='alertdialog']")
    expect(dialog).to_contain_text("Delete “beta bananas”?")
    dialog.locator("text=Cancel").click()
    expect(links).to_have_count(2)
    page.click("button[aria-label='Delete beta bananas']")
    # While the confirm row is up, the chat's link is hidden: wait for the row to go.
    page.locator("[role='alertdialog'] button", has_text="Delete").click()
    expect(page.locator("[role='alertdialog']")).to_have_count(0)
    expect(links).to_have_text(["Fruit notes"])
    titles = [c["title"] for c in scripted_gateway.http.get("/api/chats").json()["chats"]]
    assert titles == ["Fruit notes"]
    assert page.js_errors == []


def test_regenerate_edit_and_branch_arrows(page: Page, shared_gateway) -> None:
    scripted_gateway = shared_gateway
    open_page(page, scripted_gateway)
    send(page, "hello")
    wait_reply_done(page, 1)
    send(page, "again")
    wait_reply_done(page, 2)
    expect(page.locator(LAST_REPLY)).to_contain_text("Echo #2")

    page.locator(LAST_REPLY).locator("button[aria-label='Regenerate reply']").click()
    wait_reply_done(page, 2)
    arrows = page.locator(LAST_REPLY).locator(".branch-pos")
    expect(arrows).to_have_text("2/2")
    with page.expect_response(lambda r: r.request.method == "PATCH") as patched:
        page.locator(LAST_REPLY).locator("button[aria-label='Previous version']").click()
    assert patched.value.ok
    expect(arrows).to_have_text("1/2")
    assert current_chat(page, scripted_gateway)["active_leaf_id"] == page.locator(
        LAST_REPLY).get_attribute("data-message-id")

    # Edit the first message: a new branch from there, answered afresh.
    first_user = page.locator("article[aria-label='Your message']").first
    first_user.locator("button[aria-label='Edit message']").click()
    page.fill("textarea[aria-label='Edit message']", "hello, edited")
    page.locator(".edit-box >> text=Send").click()
    wait_reply_done(page, 1)
    expect(page.locator(".user-text")).to_have_text(["hello, edited"])
    expect(page.locator(REPLY)).to_contain_text(
        "Echo #1 from tiny-base + tiny-adapter: hello, edited")
    user_arrows = page.locator("article[aria-label='Your message'] .branch-pos")
    expect(user_arrows).to_have_text("2/2")
    with page.expect_response(lambda r: r.request.method == "PATCH") as patched:
        page.locator("article[aria-label='Your message'] button[aria-label='Previous version']"
                     ).click()
    assert patched.value.ok
    expect(user_arrows).to_have_text("1/2")
    expect(page.locator(".user-text")).to_have_text(["hello", "again"])  # the old branch, whole

    page.reload()  # the branch on screen is the chat's stored active branch
    expect(page.locator(".user-text")).to_have_text(["hello", "again"])
    expect(page.locator(LAST_REPLY).locator(".branch-pos")).to_have_text("1/2")
    assert page.js_errors == []


def test_model_switch_loads_with_a_spinner_and_the_seconds(page: Page,
                                                           make_scripted_gateway) -> None:
    gateway = make_scripted_gateway(load_s=2.5)
    open_page(page, gateway)
    open_picker(page)
    groups = page.locator(f"{MODELS} [role='group']")
    expect(groups).to_have_count(1)  # one base: the base alone, and .env's adapter on it
    assert groups.evaluate_all(
        "gs => gs.map(g => [...g.querySelectorAll('[role=option]')].map(o => o.dataset.model))"
    ) == [["base", "default"]]
    expect(model_option(page, "base").locator(".pick-status")).to_have_text("not loaded")
    model_option(page, "base").click()
    status = page.locator(".model-status")
    expect(status.locator(".spinner")).to_be_visible()
    expect(status).to_contain_text(re.compile(r"Loading base… [12] s"))
    expect(status).to_contain_text(re.compile(r"Ready · loaded in \d\.\d s"))
    open_picker(page)
    expect(model_option(page, "base").locator(".pick-status")).to_have_text("loaded")
    page.keyboard.press("Escape")
    expect(page.locator(MODELS)).to_have_count(0)
    send(page, "which model")
    wait_reply_done(page, 1)
    expect(page.locator(REPLY)).to_contain_text("Echo #1 from tiny-base + no adapter")
    expect(page.locator(".reply-meta")).to_contain_text("base · no adapter")
    assert current_chat(page, gateway)["model"] == "base"
    assert page.js_errors == []


def test_a_model_that_fails_to_load_shows_the_box_message(page: Page,
                                                          make_scripted_gateway) -> None:
    gateway = make_scripted_gateway(base_model_path="/models/broken-base")
    open_page(page, gateway)
    pick_model(page, "base")
    expect(page.locator(".load-error")).to_have_text("Load failed")  # the reason: below, once
    assert "/models/broken-base" in page.locator(".load-error").get_attribute("title")
    failure = page.locator(".load-failure")
    expect(failure).to_contain_text("base did not load")
    expect(failure).to_contain_text("/models/broken-base")
    assert page.locator("body").inner_text().count("/models/broken-base") == 1
    hint = gateway.http.get("/api/models/base/status").json()["hint"]
    assert hint and hint in failure.inner_text()  # the box's hint, word for word
    with page.expect_request(lambda r: r.url.endswith("/api/models/base/load")):
        failure.locator("button", has_text="Retry loading").click()
    expect(failure).to_contain_text("base did not load")


def test_unload_frees_the_model_on_the_box(page: Page, shared_gateway) -> None:
    # Shared: the other tests on this gateway expect no model loaded, nor unloaded (their
    # first message loads it again).
    gateway = shared_gateway
    open_page(page, gateway)
    send(page, "load it")
    wait_reply_done(page, 1)
    status = page.locator(".model-status")
    expect(status).to_contain_text("Ready")
    status.locator("button[aria-label='Unload default']").click()
    expect(status).to_contain_text("Not loaded")
    assert gateway.http.get("/api/models/default/status").json()["status"] == "unloaded"
    send(page, "and again")  # the next message loads it again
    wait_reply_done(page, 2)
    expect(page.locator(LAST_REPLY)).to_contain_text("Echo #2")


def test_import_a_chat_from_json_and_refuse_a_bad_file(page: Page, scripted_gateway,
                                                       tmp_path) -> None:
    scripted_gateway.chat({"message": "exported words"})
    chat_id = scripted_gateway.http.get("/api/chats").json()["chats"][0]["id"]
    exported = scripted_gateway.http.get(f"/api/chats/{chat_id}/export?format=json").text
    good = tmp_path / "chat.json"
    good.write_text(exported)
    bad = tmp_path / "notes.json"
    bad.write_text('{"format": "something else"}')
    # The page's first load of the chat list is held until the refused import has shown its
    # error: a list load that ends after an action's error must not wipe it (it once did,
    # when a slow first load raced the import).
    held: list[Route] = []

    def chat_list(url: str) -> bool:
        return "/api/chats?" in url

    page.route(chat_list, lambda route: held.append(route))
    open_page(page, scripted_gateway)
    # (Playwright calls route handlers only while the test is in one of its calls.)
    wait_until(lambda: page.wait_for_timeout(20) or held,
               what="the page's first load of the chat list")
    chooser = page.locator("input[aria-label='Chat file to import']")
    chooser.set_input_files(str(bad))
    error = page.locator(".sidebar .notice.error")
    expect(error).to_contain_text("notes.json")
    for route in held:
        route.continue_()
    page.unroute(chat_list)
    expect(page.locator(".chat-link")).to_have_count(1)  # nothing was created
    expect(error).to_contain_text("notes.json")  # the list has loaded, the error stays
    chooser.set_input_files(str(good))
    expect(page.locator(".chat-link")).to_have_count(2)
    expect(page.locator(".user-text")).to_have_text(["exported words"])
    assert current_chat(page, scripted_gateway)["id"] != chat_id


def test_a_refused_sidebar_action_stays_said_until_dismissed(page: Page,
                                                             scripted_gateway) -> None:
    """Archiving a chat deleted meanwhile (by another tab) is refused: the error stays in
    the sidebar after the list has reloaded without that chat, until dismissed."""
    scripted_gateway.chat({"message": "gone elsewhere"})
    chat_id = scripted_gateway.http.get("/api/chats").json()["chats"][0]["id"]
    open_page(page, scripted_gateway)
    expect(page.locator(".chat-link")).to_have_count(1)
    assert scripted_gateway.http.delete(f"/api/chats/{chat_id}").status_code == 204
    page.locator("button[aria-label='Archive gone elsewhere']").click()
    error = page.locator(".sidebar .notice.error")
    expect(error).to_be_visible()
    expect(page.locator(".chat-link")).to_have_count(0)  # the list has reloaded
    expect(error).to_be_visible()
    assert "No chats yet." not in page.locator(".sidebar").inner_text()
    error.locator("button[aria-label='Dismiss this error']").click()
    expect(error).to_have_count(0)
    expect(page.locator(".sidebar .empty-list")).to_have_text("No chats yet.")


def test_shortcut_for_a_new_chat_and_the_scroll_to_bottom_button(page: Page,
                                                                 shared_gateway) -> None:
    page.set_viewport_size({"width": 700, "height": 500})
    open_page(page, shared_gateway)
    set_pace(shared_gateway, FAST_PACE_S)  # only its height counts here, not its pace
    send(page, "a long one")  # about 2,000 characters: taller than this window
    wait_reply_done(page, 1)
    page.locator(".conversation").evaluate("box => box.scrollTo(0, 0)")
    to_bottom = page.locator("button[aria-label='Scroll to the latest message']")
    to_bottom.click()
    expect(to_bottom).to_have_count(0)
    page.wait_for_function("""() => { const box = document.querySelector('.conversation');
        return box.scrollHeight - box.scrollTop - box.clientHeight < 5; }""")  # smooth scroll
    page.keyboard.press("Control+Shift+O")
    expect(page.locator(".empty-state")).to_be_visible()
    expect(page.locator("#message")).to_be_focused()


def test_reload_keeps_the_chat_and_the_unsent_text(page: Page, shared_gateway) -> None:
    open_page(page, shared_gateway)
    send(page, "remember me")
    wait_reply_done(page, 1)
    page.fill("#message", "half-written thought\nwith two lines")
    page.reload()
    expect(page.locator(".user-text")).to_have_text(["remember me"])
    expect(page.locator(REPLY)).to_contain_text("Echo #1")
    expect(page.locator("#message")).to_have_value("half-written thought\nwith two lines")
    expect(page.locator(".chat-item.current")).to_contain_text("remember me")
    # A new chat keeps its own draft, apart from this chat's.
    page.click("text=+ New chat")
    expect(page.locator("#message")).to_have_value("")
    assert page.js_errors == []


def test_model_output_renders_inert(page: Page, shared_gateway) -> None:
    open_page(page, shared_gateway)
    send(page, "xss please")
    wait_reply_done(page, 1)
    reply = page.locator(REPLY)
    expect(reply).to_contain_text('<img src=x onerror="window.__xss=1">')
    expect(reply).to_contain_text("<script>window.__xss=2</script>")
    assert page.evaluate("window.__xss") is None
    assert reply.locator("img, script, iframe, [onerror]").count() == 0
    hrefs = reply.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs and not any(h and h.lower().startswith("javascript") for h in hrefs)
    reply.locator("a", has_text="click me").click()
    # The click's tasks have run once two frames have passed (a javascript: URL runs as one).
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => "
                  "requestAnimationFrame(() => done())))")
    assert page.evaluate("window.__xss") is None
    assert page.js_errors == []


def test_thinking_block_is_open_while_thinking_and_closed_when_done(
        page: Page, shared_gateway) -> None:
    gateway = shared_gateway
    set_pace(gateway, 0.2)  # the thinking streams for seconds: checked while it does
    open_page(page, gateway)
    page.check("text=Thinking")  # saved on the chat as enable_thinking
    send(page, "think about it")
    block = page.locator(f"{REPLY} details.thinking")
    expect(block.locator("summary")).to_have_text("Thinking…")
    assert block.get_attribute("open") is not None
    assert "<thi" not in page.locator(REPLY).inner_text()
    held = page.evaluate("""async () => {
        const { splitThinking } = await import('./markdown.js');
        return [splitThinking('Hi <thi', { final: false }).answer,
                splitThinking('<think>plan</thi', { final: false }).thinking,
                splitThinking('Hi <thi', { final: true }).answer]; }""")
    assert held == ["Hi ", "plan", "Hi <thi"]  # held back only while streaming
    set_pace(gateway, FAST_PACE_S)
    wait_reply_done(page, 1)
    expect(block.locator("summary")).to_have_text("Thinking")
    expect(block).to_have_count(1)
    assert block.get_attribute("open") is None
    expect(page.locator(f"{REPLY} > .reply > .markdown")).to_have_text("The answer is 42.")
    block.locator("summary").click()
    expect(block.locator(".thinking-body")).to_contain_text("step by step")
    assert current_chat(page, gateway)["params"] == {"enable_thinking": True}


def test_box_errors_and_429_are_shown_and_nothing_typed_is_lost(page: Page,
                                                                shared_gateway) -> None:
    open_page(page, shared_gateway)
    send(page, "please raise an error")
    wait_reply_done(page, 1)
    alert = page.locator(f"{REPLY} .notice.error")
    expect(alert).to_contain_text("generation_failed")
    expect(alert).to_contain_text("scripted failure: the box ran out of memory")
    retry = page.locator(f"{REPLY} button", has_text="Retry")
    expect(retry).to_be_visible()
    retry.click()  # the same message again: the double fails it again, as a new branch
    wait_reply_done(page, 1)
    expect(page.locator(f"{REPLY} .branch-pos")).to_have_text("2/2")

    page.route("**/api/chat", lambda route: route.fulfill(
        status=429, content_type="application/json",
        body='{"detail": {"code": "rate_limited", "message": "Slow down: 3 requests a minute"}}'))
    send(page, "this one is refused")
    expect(page.locator(".banner")).to_contain_text("Slow down: 3 requests a minute")
    expect(page.locator("#message")).to_have_value("this one is refused")
    page.unroute("**/api/chat")
    page.reload()  # and it survives a reload
    expect(page.locator("#message")).to_have_value("this one is refused")


def test_a_dropped_stream_keeps_what_arrived_and_retries(page: Page, tmp_path,
                                                         make_scripted_gateway) -> None:
    """The gateway itself dies mid-reply: the page keeps what arrived and tries to reattach
    until a gateway is back on the same database, which stored the reply as interrupted."""
    folder = tmp_path / "dropped"
    gateway = make_scripted_gateway(folder, delay_s=0.05)
    open_page(page, gateway)
    send(page, "a long story please")
    expect(page.locator(LAST_REPLY)).to_contain_text("sentence 2")
    chat_id = current_chat(page, gateway)["id"]
    # Killed once the database holds the first sentence (saved once a second: on a loaded
    # machine the page had shown two sentences while the last save held "This is ").
    wait_until(lambda: "sentence 1 of" in gateway.http.get(f"/api/chats/{chat_id}")
               .json()["messages"][-1]["content"], "the first sentence stored")
    gateway.proc.send_signal(signal.SIGKILL)  # the gateway dies mid-reply
    gateway.proc.wait()
    reply = page.locator(LAST_REPLY)
    expect(reply.locator(".reconnecting")).to_have_text("Reconnecting…")
    expect(reply).to_contain_text("sentence 1 of a very long scripted reply")
    expect(page.locator(".connection")).to_contain_text("reconnecting", timeout=30_000)

    make_scripted_gateway(folder, port=gateway.port, delay_s=0.05)
    expect(page.locator(".connection")).to_contain_text("Box", timeout=30_000)
    # Reattached: the reply as the dead gateway had stored it (saved at least once a second),
    # marked interrupted when it started again.
    expect(reply.locator(".notice.interrupted")).to_contain_text("Interrupted")
    expect(reply.locator(".reconnecting")).to_have_count(0)
    kept = current_chat(page, gateway)["messages"][-1]
    assert kept["status"] == "interrupted" and kept["content"].startswith("This is sentence 1")
    assert reply.locator(".reply > .markdown").text_content().strip() == kept["content"].strip()
    reply.locator("button", has_text="Retry").click()
    expect(page.locator(STOP)).to_be_visible()
    expect(page.locator(LAST_REPLY)).to_contain_text("sentence 2")
    page.click(STOP)
    wait_reply_done(page, 1)
    expect(page.locator(f"{REPLY} .branch-pos")).to_have_text("2/2")
    statuses = [m["status"] for m in current_chat(page, gateway)["messages"]]
    assert sorted(statuses) == ["complete", "interrupted", "stopped"]


def test_parameters_are_saved_per_chat_and_used(page: Page, shared_gateway) -> None:
    scripted_gateway = shared_gateway
    open_page(page, scripted_gateway)
    page.click("text=Parameters")
    drawer = page.locator("[role='dialog'][aria-label='Generation settings']")
    drawer.locator("input[aria-label='Top k']").fill("1.5")
    drawer.locator("text=Save").click()
    expect(drawer.locator(".notice.error")).to_contain_text("Top k: a whole number")
    drawer.locator("input[aria-label='Top k']").fill("20")
    drawer.locator("input[aria-label='Temperature']").fill("0.3")
    drawer.get_by_label("System prompt").fill("You are terse.")
    drawer.locator("text=Save").click()
    expect(drawer).to_have_count(0)
    send(page, "with settings")
    wait_reply_done(page, 1)
    chat = current_chat(page, scripted_gateway)
    assert chat["system"] == "You are terse."
    assert chat["params"] == {"temperature": 0.3, "top_k": 20}
    used = chat["messages"][-1]["provenance"]["params"]
    assert used["temperature"] == 0.3 and used["top_k"] == 20 and used["system"] == "You are terse."
    # Another chat starts from the defaults; this one keeps its settings.
    page.click("text=+ New chat")
    page.click("text=Parameters")
    expect(drawer.locator("input[aria-label='Temperature']")).to_have_value("")
    drawer.locator("button[aria-label='Close settings']").click()
    page.locator(".chat-link", has_text="with settings").click()
    page.click("text=Parameters")
    expect(drawer.locator("input[aria-label='Temperature']")).to_have_value("0.3")
    drawer.locator("input[aria-label='Temperature']").fill("0.9")
    wait_for_polls(page)  # past a health and a models poll: unsaved edits must stay
    expect(drawer.locator("input[aria-label='Temperature']")).to_have_value("0.9")
    assert page.js_errors == []


def test_narrow_screen_and_dark_theme(make_page, shared_gateway) -> None:
    page = make_page(viewport={"width": 375, "height": 740}, color_scheme="dark")
    open_page(page, shared_gateway)
    sidebar = page.locator("nav[aria-label='Chats']")
    expect(sidebar).not_to_be_visible()
    send(page, "small screen")
    wait_reply_done(page, 1)
    menu = page.locator("button[aria-label='Show chats']")
    menu.click()
    expect(sidebar).to_be_visible()
    assert menu.get_attribute("aria-expanded") == "true"
    page.click("text=+ New chat")
    expect(sidebar).not_to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways: {width}px"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(22, 24, 29)"  # the dark theme's --bg


def test_keyboard_only_use(page: Page, scripted_gateway) -> None:
    """Every control is reachable with Tab and named for screen readers."""
    open_page(page, scripted_gateway)
    unnamed = page.evaluate("""() => [...document.querySelectorAll(
        'button, select, input, textarea, a[href]')].filter(el => {
          const label = el.getAttribute('aria-label') || el.textContent.trim()
            || (el.labels && el.labels[0] && el.labels[0].textContent.trim());
          return !label; }).map(el => el.outerHTML)""")
    assert unnamed == []
    expect(page.locator("#message")).to_be_focused()  # the page opens ready to type
    page.keyboard.press("Shift+Tab")  # backwards through the header to the first control
    visited = []
    for _ in range(12):
        visited.append(page.evaluate("document.activeElement.getAttribute('aria-label') || "
                                     "document.activeElement.textContent.trim()"))
        if page.evaluate("document.activeElement.classList.contains('skip')"):
            break
        page.keyboard.press("Shift+Tab")
    assert any(name.startswith("Model:") for name in visited), visited  # the model picker
    assert "Parameters" in visited and "Search chats" in visited
    expect(page.locator("a.skip")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_be_focused()
    page.keyboard.type("typed without a mouse")
    page.keyboard.press("Enter")
    wait_reply_done(page, 1)
    expect(page.locator(REPLY)).to_contain_text("typed without a mouse")


@pytest.mark.box
def test_real_box_over_ssh_streams_into_the_page(page: Page, real_gateway_over_ssh) -> None:
    """The whole path: Chromium → lfgate → sshd → script wrapper → LlamaFactory."""
    gateway = real_gateway_over_ssh
    open_page(page, gateway)
    expect(page.locator(MODEL)).to_contain_text("default")
    send(page, "Hello! Which adapter are you?")
    expect(page.locator(f"{REPLY}[aria-busy='true']")).to_have_count(1)
    wait_reply_done(page, 1, timeout=240_000)  # the first message loads the model
    meta = page.locator(".reply-meta")
    expect(meta).to_contain_text("default · adapter")
    expect(meta).to_contain_text("to first token")
    expect(page.locator(".connection")).to_contain_text("Box reachable")
    expect(page.locator(".connection .badge")).to_have_text("script")
    stored = current_chat(page, gateway)["messages"][-1]
    assert stored["status"] == "complete" and stored["content"]
    assert stored["provenance"]["host"].startswith(gateway.http.get("/api/health").json()[
        "remote"]["host"].split(":")[0])
    shown = page.locator(REPLY).inner_text()
    assert stored["content"].split()[0][:3] in shown  # what streamed is what was stored
    assert SCRIPTED_ADAPTER not in shown
    assert page.js_errors == []


@pytest.mark.box
def test_real_box_settings_stop_and_model_switch(page: Page, real_gateway_over_ssh) -> None:
    """On the real box: settings from the drawer reach LlamaFactory, Stop stops it there, and
    picking the base in the model picker switches to it, ready on the box."""
    gateway = real_gateway_over_ssh
    open_page(page, gateway)
    page.click("text=+ New chat")
    page.click("text=Parameters")
    drawer = page.locator("[role='dialog'][aria-label='Generation settings']")
    drawer.locator("input[aria-label='Temperature']").fill("0")  # greedy: a long, sure reply
    drawer.locator("input[aria-label='Max new tokens']").fill("1500")
    drawer.locator("text=Save").click()
    send(page, "Tell me a very long story")
    expect(page.locator(f"{REPLY}[aria-busy='true'] .markdown")).not_to_be_empty(timeout=120_000)
    page.click(STOP)
    wait_reply_done(page, 1)
    stored = current_chat(page, gateway)["messages"][-1]
    assert stored["status"] == "stopped"
    assert stored["provenance"]["params"]["temperature"] == 0
    assert stored["provenance"]["finish_reason"] == "stopped"

    pick_model(page, "base")
    status = page.locator(".model-status")
    # In script mode the base's weights are already loaded under `default`'s adapter (a
    # shared base): the switch is ready at once, its spinner (if any) too short to wait on.
    # The spinner and the seconds of a real load: test_model_switch_loads_with_a_spinner...
    expect(status).to_contain_text(re.compile(r"Ready( · loaded in [\d.]+ s)?"),
                                   timeout=180_000)
    expect(status.locator(".spinner")).to_have_count(0)
    send(page, "Hello")  # greedy, up to 1,500 tokens on a shared CPU
    wait_reply_done(page, 2, timeout=240_000)
    expect(page.locator(".reply-meta").last).to_contain_text("base · no adapter")


# The header while `default` loads (its text and spinner), and the reply's text at that moment.
_LOADING_AND_REPLY = """() => {
  const status = document.querySelector(".model-status")?.textContent ?? "";
  if (!/Loading default… \\d+ s/.test(status.replace(/\\s+/g, " "))) return null;
  const reply = document.querySelector("article[aria-label='Reply'] .reply > .markdown");
  return { status, spinner: Boolean(document.querySelector(".model-status .spinner")),
           reply: reply?.textContent ?? "" };
}"""


@pytest.mark.box
def test_real_box_first_message_shows_the_whole_load_live(page: Page,
                                                          real_gateway_over_ssh) -> None:
    """Issue 23: the first message to a model that is not loaded (its base neither). The
    header says it is loading, with a live counter, before the reply, then how long the whole
    load took: at least the base's load (wrapper start and LlamaFactory's load), not the
    adapter's few milliseconds."""
    gateway = real_gateway_over_ssh
    assert gateway.http.post("/api/models/base/unload").json()["status"] == "unloaded"
    assert gateway.http.get("/api/models/default/status").json()["status"] == "unloaded"
    open_page(page, gateway)
    page.click("text=+ New chat")
    status = page.locator(".model-status")
    expect(status).to_contain_text("Not loaded (loads on first message)")
    send(page, "Hello there")
    seen = page.wait_for_function(_LOADING_AND_REPLY, timeout=120_000).json_value()
    assert seen["spinner"] and seen["reply"] == "", seen  # loading, before any of the reply
    wait_reply_done(page, 1, timeout=240_000)

    took = gateway.http.get("/api/models/default/status").json()
    assert took["status"] == "ready" and took["base_already_loaded"] is False, took
    base_s = sum(took["load_phases"][k] for k in ("connect_s", "upload_s", "start_s", "load_s"))
    expect(status).to_contain_text(re.compile(r"Ready · loaded in [\d.]+ s"), timeout=30_000)
    shown = float(re.search(r"loaded in ([\d.]+) s", status.inner_text())[1])
    # The page shows tenths below 10 s and whole seconds above: the base's time, so cut.
    assert shown >= (math.floor(base_s * 10) / 10 if base_s < 10 else math.floor(base_s)), (
        shown, took)
    assert page.js_errors == []
