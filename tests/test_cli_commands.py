"""`lfgate models` and `lfgate chat` (issue 23): the real command against a real gateway
process (`lfgate serve` on the scripted box double, and once on the real LlamaFactory box
behind the test sshd), the interactive chat typed at on a terminal of its own (a pty: Ctrl-C
is the terminal's SIGINT); `--env-file`, `--help` and `--version` of the whole command."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from lfgate import __version__
from lfgate.cli import build_parser
from lfgate.commands.chat import terminal_safe
from lfgate.commands.chat_input import Dropped, read_message
from lfgate.remote.wrapper_protocol import PROTOCOL_VERSION, WRAPPER_VERSION
from tests.gateway_process import LFGATE, GatewayProcess, sse_events
from tests.rig.ports import free_port, wait_listening
from tests.rig.terminal import CTRL_C, CTRL_D, ENTER, Terminal
from tests.ui_rig import SCRIPTED_ADAPTER, SCRIPTED_BASE, scripted_env, start_scripted_gateway

ECHO = f"from {Path(SCRIPTED_BASE).name} + {Path(SCRIPTED_ADAPTER).name}: "
LONG_START = "This is sentence 1 of a very long scripted reply."
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
PACE_S = 0.05  # the double's time per chunk: its "long" reply takes 20 s unless stopped


def lfgate(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The installed command, with this (hermetic) environment, in `cwd`."""
    return subprocess.run([LFGATE, *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=300, check=False,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


@pytest.fixture(scope="module")
def shared_scripted_gateway(tmp_path_factory: pytest.TempPathFactory
                            ) -> Iterator[GatewayProcess]:
    gateway = start_scripted_gateway(tmp_path_factory.mktemp("scripted-gateway"))
    yield gateway
    gateway.stop()


@pytest.fixture
def scripted_gateway(shared_scripted_gateway: GatewayProcess) -> GatewayProcess:
    """`lfgate serve` on the scripted box double (`default` = base + adapter, `base`), one for
    the module's tests that only read it and add chats of their own (each test sees only the
    chats it made: new_chats), rather than a gateway started for each."""
    gateway = shared_scripted_gateway
    gateway.earlier_chats = {c["id"] for c in gateway.http.get("/api/chats").json()["chats"]}
    return gateway


def new_chats(gateway: GatewayProcess) -> list[dict[str, Any]]:
    """The chats this test made on the gateway (on a shared one, those made before it are
    not this test's)."""
    earlier = getattr(gateway, "earlier_chats", set())
    return [c for c in gateway.http.get("/api/chats").json()["chats"] if c["id"] not in earlier]


def the_chat(gateway: GatewayProcess) -> dict[str, Any]:
    """The test's only chat on the gateway, with its messages."""
    [summary] = new_chats(gateway)
    return gateway.http.get(f"/api/chats/{summary['id']}").json()


@contextlib.contextmanager
def chat_terminal(gateway: GatewayProcess, *args: str, tmp_path: Path,
                  sigint_ignored: bool = False) -> Iterator[Terminal]:
    """`lfgate chat ARGS --url GATEWAY` on a terminal of its own, closed at the end; a failure
    on it comes with what the gateway logged meanwhile (a gateway that went away shows
    there)."""
    terminal = Terminal([LFGATE, "chat", *args, "--url", gateway.url],
                        env={**os.environ, "TERM": "xterm"}, cwd=tmp_path,
                        sigint_ignored=sigint_ignored)
    try:
        yield terminal
    except AssertionError as exc:
        log = gateway.log.read_text()[-3000:]
        raise AssertionError(f"{exc}\n--- the gateway's log:\n{log}") from None
    finally:
        terminal.close()


def replies(chat: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in chat["messages"] if m["role"] == "assistant"]


# --- Against a running gateway: the scripted box double --------------------------------------

def test_models_lists_the_gateways_models_as_json_and_as_a_table(scripted_gateway, tmp_path):
    listed = scripted_gateway.http.get("/api/models").json()
    result = lfgate("models", "--json", "--url", scripted_gateway.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["models"] == listed["models"]
    assert [m["id"] for m in listed["models"]] == ["default", "base"]

    table = lfgate("models", "--url", scripted_gateway.url, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    head, *rows = table.stdout.splitlines()
    assert head.split() == ["ID", "BOX", "KIND", "BASE", "STATUS", "TEMPLATE", "STEP", "LOSS"]
    assert [row.split()[:4] for row in rows] == [["default", "main", "adapter", "base"],
                                                 ["base", "main", "base", "-"]]
    assert all(row.split()[5] == "qwen" for row in rows)


def test_chat_with_a_prompt_prints_the_stored_reply_and_exits(scripted_gateway, tmp_path):
    result = lfgate("chat", "default", "Hello there", "--url", scripted_gateway.url,
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    chat = the_chat(scripted_gateway)
    [reply] = replies(chat)
    assert reply["status"] == "complete"
    assert reply["content"] == f"Echo #1 {ECHO}Hello there"
    assert result.stdout == reply["content"] + "\n"  # the reply alone: for scripts
    assert result.stderr == ""


def test_chat_reads_a_prompt_from_stdin_with_a_system_prompt(scripted_gateway, tmp_path):
    """No MODEL: the gateway's default model; -s is the chat's system prompt, as the page
    saves it; and --chat goes on with that chat (its history, its system prompt)."""
    result = lfgate("chat", "-s", "Be terse.", "-o", "max_new_tokens", "200",
                    "--url", scripted_gateway.url, cwd=tmp_path, stdin="From stdin\n")
    assert result.returncode == 0, result.stderr
    chat = the_chat(scripted_gateway)
    assert (chat["model"], chat["system"]) == ("default", "Be terse.")
    assert result.stdout == f"Echo #1 {ECHO}From stdin\n"
    provenance = replies(chat)[0]["provenance"]
    assert provenance["params"]["system"] == "Be terse."
    assert provenance["params"]["max_new_tokens"] == 200

    again = lfgate("chat", "--chat", chat["id"], "default", "And again",
                   "--url", scripted_gateway.url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"Echo #2 {ECHO}And again\n"  # the box saw the first turn too
    assert replies(the_chat(scripted_gateway))[1]["provenance"]["params"]["system"] == \
        "Be terse."
    assert [m["content"] for m in the_chat(scripted_gateway)["messages"]] == [
        "From stdin", f"Echo #1 {ECHO}From stdin", "And again", f"Echo #2 {ECHO}And again"]


def test_the_page_shows_a_terminal_chat_and_names_the_box_wrapper(scripted_gateway, tmp_path,
                                                                  page: Page):
    """A chat from the terminal is one of the page's chats; the reply's provenance names the
    box wrapper as `lfgate --version` does ("box wrapper 0.4.0 (protocol 4)")."""
    result = lfgate("chat", "default", "From the terminal", "--url", scripted_gateway.url,
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    chat = the_chat(scripted_gateway)
    page.goto(f"{scripted_gateway.url}/#/chat/{chat['id']}")
    reply = page.locator("article[aria-label='Reply']")
    expect(reply).to_have_count(1)
    expect(reply.locator(".markdown")).to_have_text(f"Echo #1 {ECHO}From the terminal")
    expect(reply.locator(".reply-meta")).to_have_attribute(
        "title", re.compile(re.escape(f"Box wrapper: {WRAPPER_VERSION} (protocol "
                                      f"{PROTOCOL_VERSION})")))
    assert page.js_errors == []


def test_an_unknown_model_is_one_line_naming_the_models(scripted_gateway, tmp_path):
    result = lfgate("chat", "defualt", "hi", "--url", scripted_gateway.url, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (f"lfgate: the gateway at {scripted_gateway.url} has no model "
                             "'defualt'; it has: default, base (`lfgate models` lists them)\n")
    assert new_chats(scripted_gateway) == []


def test_interactive_chat_keeps_its_history_and_ctrl_c_stops_a_reply(
        make_scripted_gateway, tmp_path):
    """Typed at on a terminal: a message over two lines (a trailing backslash), a second
    message (answered with the first in its history: one stored chat), a long reply stopped
    with Ctrl-C (stopped on the box and stored as stopped, as the page's Stop does) and the
    prompt back, another message in the same chat, then Ctrl-C at the empty prompt ends it."""
    gateway = make_scripted_gateway(delay_s=PACE_S)
    with chat_terminal(gateway, tmp_path=tmp_path) as terminal:
        assert "Chatting with default at" in terminal.expect(">>> ")
        terminal.type("First line\\" + ENTER)
        terminal.expect("... ")
        terminal.type("second line" + ENTER)
        terminal.expect(f"Echo #1 {ECHO}First line\nsecond line\n")
        terminal.expect(">>> ")
        terminal.type("And a second message" + ENTER)
        terminal.expect(f"Echo #2 {ECHO}And a second message\n")
        terminal.expect(">>> ")

        terminal.type("Tell a long story" + ENTER)
        terminal.expect(LONG_START)
        terminal.type(CTRL_C)
        terminal.expect("[stopped]\n")
        terminal.expect(">>> ")
        chat = the_chat(gateway)
        stopped = replies(chat)[-1]
        assert stopped["status"] == "stopped"
        assert stopped["provenance"]["finish_reason"] == "stopped"
        assert stopped["content"].startswith(LONG_START)
        assert len(stopped["content"]) < 400 * 3  # far from the 400 chunks of the whole

        terminal.type("Still here" + ENTER)  # the chat is free again: no 409
        terminal.expect(f"Echo #4 {ECHO}Still here\n")
        terminal.expect(">>> ")
        terminal.type(CTRL_C)
        terminal.expect(f"go on with `lfgate chat --chat {chat['id']}`")
        assert terminal.wait() == 0
    chat = the_chat(gateway)
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"] * 4
    assert chat["messages"][0]["content"] == "First line\nsecond line"
    assert [m["status"] for m in replies(chat)] == ["complete", "complete", "stopped",
                                                    "complete"]


def test_ctrl_c_at_the_prompt_ends_the_chat_even_when_started_with_sigint_ignored(
        scripted_gateway, tmp_path):
    """A chat started from a script's background job inherits SIGINT ignored, and Python then
    installs no handler: Ctrl-C at the prompt did nothing (found when `make test` ran from a
    background job). The chat takes SIGINT back for itself."""
    with chat_terminal(scripted_gateway, tmp_path=tmp_path, sigint_ignored=True) as terminal:
        terminal.expect(">>> ")
        terminal.type("Hello" + ENTER)
        terminal.expect(f"Echo #1 {ECHO}Hello\n")
        terminal.expect(">>> ")
        terminal.type(CTRL_C)
        terminal.expect("go on with `lfgate chat --chat ")
        assert terminal.wait() == 0


def test_interactive_chat_takes_a_block_and_ends_at_ctrl_d(scripted_gateway, tmp_path):
    """A message between lines of triple quotes is one message, and so is a paste of several
    lines; Ctrl-C half-way through one drops it; Ctrl-D at the prompt ends the chat. Started
    on an existing chat (--chat), it goes on with it."""
    first = lfgate("chat", "default", "Opening", "--url", scripted_gateway.url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    chat_id = the_chat(scripted_gateway)["id"]
    with chat_terminal(scripted_gateway, "--chat", chat_id, tmp_path=tmp_path) as terminal:
        assert f"in chat {chat_id}" in terminal.expect(">>> ")
        terminal.type("Never sent\\" + ENTER)
        terminal.expect("... ")
        terminal.type(CTRL_C)  # half-way through a message: dropped, the prompt again
        terminal.expect(">>> ")
        terminal.type('"""' + ENTER)
        terminal.expect("... ")
        terminal.type("one" + ENTER)
        terminal.expect("... ")
        terminal.type('two"""' + ENTER)
        terminal.expect(f"Echo #2 {ECHO}one\ntwo\n")
        terminal.expect(">>> ")
        if marks_pastes():  # as a terminal sends a paste: between ESC[200~ and ESC[201~
            terminal.type(f"{PASTE_START}pasted one\npasted two{PASTE_END}" + ENTER)
            terminal.expect(f"Echo #3 {ECHO}pasted one\npasted two\n")
            terminal.expect(">>> ")
        terminal.type(CTRL_D)
        terminal.expect(f"go on with `lfgate chat --chat {chat_id}`")
        assert terminal.wait() == 0
    sent = [m["content"] for m in the_chat(scripted_gateway)["messages"] if m["role"] == "user"]
    assert sent == ["Opening", "one\ntwo"] + (["pasted one\npasted two"] if marks_pastes()
                                              else [])


def marks_pastes() -> bool:
    """Whether input() here takes a marked paste whole: GNU readline 8.1 or later turns
    bracketed paste on (libedit, as on macOS, does not)."""
    try:
        import readline
    except ImportError:
        return False
    version = getattr(readline, "_READLINE_LIBRARY_VERSION", "")
    if "libedit" in (readline.__doc__ or "") or not re.fullmatch(r"\d+\.\d+", version):
        return False
    return tuple(map(int, version.split("."))) >= (8, 1)


def test_no_gateway_is_one_line_and_exit_status_1(tmp_path):
    """Nothing listens at the gateway's address (here from --env-file, as from ./.env):
    one line saying so and how to start one, never a traceback."""
    port = free_port()
    (tmp_path / "other.env").write_text(f"GATEWAY_PORT={port}\n")
    for args in (["models"], ["chat", "default", "hi"], ["chat"]):
        result = lfgate(*args, "--env-file", "other.env", cwd=tmp_path)
        assert (result.returncode, result.stdout) == (1, ""), result
        assert result.stderr == (f"lfgate: no gateway at http://127.0.0.1:{port}: start it "
                                 "with `lfgate serve` (or make run)\n")


def test_env_file_is_read_instead_of_the_dot_env(scripted_gateway, tmp_path):
    """./.env points at a port where nothing listens; --env-file names the gateway's."""
    (tmp_path / ".env").write_text(f"GATEWAY_PORT={free_port()}\n")
    (tmp_path / "gateway.env").write_text(f"GATEWAY_HOST=127.0.0.1\n"
                                          f"GATEWAY_PORT={scripted_gateway.port}\n")
    assert lfgate("models", cwd=tmp_path).returncode == 1
    result = lfgate("models", "--json", "--env-file", "gateway.env", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [m["id"] for m in json.loads(result.stdout)["models"]] == ["default", "base"]


def test_the_token_of_the_settings_is_sent(make_scripted_gateway, tmp_path):
    """A gateway with GATEWAY_TOKEN: the command sends the settings' token as Bearer; with
    a wrong one it says what to set, in one line."""
    gateway = make_scripted_gateway(env={"GATEWAY_TOKEN": "s3cret-token-for-the-test"})
    (tmp_path / "right.env").write_text(f"GATEWAY_PORT={gateway.port}\n"
                                        "GATEWAY_TOKEN=s3cret-token-for-the-test\n")
    (tmp_path / "wrong.env").write_text(f"GATEWAY_PORT={gateway.port}\nGATEWAY_TOKEN=nope\n")
    result = lfgate("chat", "default", "With the token", "--env-file", "right.env",
                    cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"Echo #1 {ECHO}With the token\n")
    refused = lfgate("models", "--env-file", "wrong.env", cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("lfgate: unauthorized: ")
    assert refused.stderr.endswith("(set GATEWAY_TOKEN, in .env or the environment, to the "
                                   "gateway's token)\n")
    assert "nope" not in refused.stderr


def test_serve_reads_its_port_from_env_file(tmp_path):
    """`lfgate serve --env-file` listens where that file says (no ./.env where it runs), and
    its doctor (GET /api/doctor) reports on that file."""
    port = free_port()
    env_file = tmp_path / "elsewhere" / "box.env"
    env_file.parent.mkdir()
    env_file.write_text(f"GATEWAY_PORT={port}\n")
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([LFGATE, "serve", "--env-file", str(env_file)], cwd=work,
                                env={**os.environ, **scripted_env(tmp_path / "data")},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc, log, "lfgate serve", timeout=120)
        result = lfgate("models", "--json", "--url", f"http://127.0.0.1:{port}", cwd=work)
        assert result.returncode == 0, result.stderr + log.read_text()[-2000:]
        assert [m["id"] for m in json.loads(result.stdout)["models"]] == ["default", "base"]
        assert env_file_finding(f"http://127.0.0.1:{port}").startswith(
            f"{env_file.resolve()} parses: 1 keys")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def env_file_finding(url: str) -> str:
    """What the gateway's doctor found of its .env (its first check; the rest not awaited)."""
    with httpx.Client(base_url=url, timeout=httpx.Timeout(120, connect=5)) as http, \
            http.stream("GET", "/api/doctor/stream") as response:
        for name, data, _ in sse_events(response):
            if name == "finding" and data["name"] == ".env":
                return data["found"]
    raise AssertionError("the doctor reported nothing of the .env")


@pytest.mark.parametrize("command", ["serve", "doctor", "models", "chat"])
def test_a_missing_env_file_is_an_error_naming_it(command, tmp_path):
    result = lfgate(command, "--env-file", "no-such.env", cwd=tmp_path)
    assert result.returncode == 2
    assert f"lfgate {command}: error: argument --env-file: no such file: no-such.env" \
        in result.stderr


def test_doctor_reads_env_file(tmp_path):
    """The doctor judges the file it is given: its bad CHAT_MODE, not ./.env's good one."""
    (tmp_path / ".env").write_text("BASE_MODEL_PATH=/m\n")
    (tmp_path / "bad.env").write_text("BASE_MODEL_PATH=/m\nCHAT_MODE=gui\n")
    result = lfgate("doctor", "--json", "--env-file", "bad.env", cwd=tmp_path)
    report = json.loads(result.stdout)
    assert result.returncode == 1 and not report["ok"]
    assert any("CHAT_MODE" in f["found"] for f in report["findings"] if f["status"] == "fail")


# --- Help and version ------------------------------------------------------------------------

def subcommands() -> dict[str, argparse.ArgumentParser]:
    [commands] = [a for a in build_parser()._actions
                  if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_subcommands_are_serve_doctor_models_and_chat(tmp_path):
    assert list(subcommands()) == ["serve", "doctor", "models", "chat"]
    result = lfgate("--help", cwd=tmp_path)
    assert result.returncode == 0
    for name in subcommands():
        assert f"\n    {name} " in result.stdout
    assert "examples:\n  lfgate serve" in result.stdout


@pytest.mark.parametrize("name", ["serve", "doctor", "models", "chat"])
def test_each_subcommands_help_documents_every_option(name, tmp_path):
    result = lfgate(name, "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for action in subcommands()[name]._actions:
        assert action.help, f"lfgate {name}: {action.dest} has no help"
        for option in action.option_strings:
            assert option in result.stdout
        if action.help != argparse.SUPPRESS:
            assert " ".join(action.help.split()) in text
    assert "\nexamples:\n  " in result.stdout


def test_chat_help_says_how_to_type_several_lines_and_stop(tmp_path):
    help_text = lfgate("chat", "--help", cwd=tmp_path).stdout
    for fact in ("A line ending in \\ goes on", '"""', "a paste of several lines is one message",
                 "Ctrl-C while a", "Ctrl-D"):
        assert fact in help_text


def test_version_names_the_gateway_and_the_box_wrapper(tmp_path):
    result = lfgate("--version", cwd=tmp_path)
    assert result.stdout == (f"lfgate {__version__} (gateway), box wrapper {WRAPPER_VERSION} "
                             f"(protocol {PROTOCOL_VERSION})\n")


# --- Pieces -------------------------------------------------------------------------------

def typed(*lines: str | type[BaseException]):
    """A stand-in for input(): each call the next line (or raises the exception given)."""
    answers = iter(lines)

    def read_line(prompt: str) -> str:
        answer = next(answers)
        if isinstance(answer, type):
            raise answer
        return answer
    return read_line


@pytest.mark.parametrize("lines, message", [
    (["hello"], "hello"),
    (["one\\", "two\\", "three"], "one\ntwo\nthree"),
    (['"""', "a", "", "b", '"""'], "a\n\nb"),
    (['"""first', 'last"""'], "first\nlast"),
    (['"""inline"""'], "inline"),
    (["one\\", EOFError], "one"),  # Ctrl-D half-way: sent as it is
    ([EOFError], None),  # Ctrl-D at the prompt: the end
])
def test_read_message(lines, message):
    assert read_message(typed(*lines)) == message


@pytest.mark.parametrize("lines", [["one\\", KeyboardInterrupt],
                                   ['"""', "a", KeyboardInterrupt]])
def test_ctrl_c_half_way_through_a_message_drops_it(lines):
    with pytest.raises(Dropped):
        read_message(typed(*lines))


def test_read_message_leaves_ctrl_c_at_the_prompt_to_the_chat():
    with pytest.raises(KeyboardInterrupt):
        read_message(typed(KeyboardInterrupt))


def test_model_output_cannot_drive_the_terminal():
    assert terminal_safe("ok\n\tline\x1b]52;c;ZXZpbA==\x07\x9b2J") == \
        "ok\n\tline^[]52;c;ZXZpbA==^G<0x9b>2J"


# --- The real box -------------------------------------------------------------------------

@pytest.mark.box
def test_models_and_chat_over_the_real_box(real_gateway_over_ssh, tmp_path):
    """The same over `lfgate serve` on the real LlamaFactory behind the test sshd."""
    gateway = real_gateway_over_ssh
    listed = lfgate("models", "--json", "--url", gateway.url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {"default", "base"} <= {m["id"] for m in json.loads(listed.stdout)["models"]}

    before = {c["id"] for c in gateway.http.get("/api/chats").json()["chats"]}
    result = lfgate("chat", "default", "Hi", "-o", "temperature", "0",
                    "-o", "max_new_tokens", "12", "--url", gateway.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [new] = [c for c in gateway.http.get("/api/chats").json()["chats"] if c["id"] not in before]
    [reply] = replies(gateway.http.get(f"/api/chats/{new['id']}").json())
    assert reply["status"] == "complete" and reply["content"]
    assert result.stdout == reply["content"] + "\n"
