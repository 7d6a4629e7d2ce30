"""The wrapper's output lines as an input surface (issue 24's guards): whatever a wrapper
writes (a custom CHAT_SCRIPT_PATH one, a newer or broken one), the gateway's side of the
protocol (lfgate.box.session) either passes on events whose fields have the types the
protocol names, with text a store can keep, or ends the wrapper with a protocol_mismatch that
names the line. A turn waiting on it always ends (done or error), never hangs, and the
reader task never dies of an exception. Hypothesis writes the lines; the session reads them
from a real asyncio stream as it reads a wrapper's stdout."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lfgate.box.process import BoxProcess
from lfgate.box.session import WrapperSession
from lfgate.remote import wrapper_protocol as wp
from lfgate.storage.storable import why_unstorable

TURN = "t1"
MESSAGES = [{"role": "user", "content": "hi"}]

text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                    st.floats(allow_nan=False), text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)), max_leaves=8)
names = st.sampled_from([wp.EV_DELTA, wp.EV_DONE, wp.EV_ERROR, wp.EV_INFO, wp.EV_READY,
                         wp.EV_PONG, "something_newer"])


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """An event for the waiting turn: mostly well formed, with any field possibly missing,
    extra, or of another type, and text holding NULs and lone surrogates."""
    name = draw(names)
    good: dict[str, Any] = {"event": name, "id": TURN}
    if name == wp.EV_DELTA:
        good["text"] = draw(text)
    elif name == wp.EV_DONE:
        good.update(content=draw(text), finish_reason=draw(st.sampled_from(["stop", "length"])),
                    timing={"ttft_ms": draw(st.none() | st.floats(0, 1e6))},
                    usage={"completion_tokens": draw(st.integers(0, 10**6))})
    elif name in (wp.EV_ERROR, wp.EV_INFO):
        good.update(code=draw(text), message=draw(text))
    for field in draw(st.lists(st.sampled_from(sorted(good)), max_size=2)):
        if draw(st.booleans()):
            good.pop(field, None)
        else:
            good[field] = draw(json_values)
    return good


lines = st.one_of(
    events().map(lambda e: json.dumps(e)),  # ensure_ascii: surrogates as \\udXXX escapes
    json_values.map(json.dumps),  # JSON, but maybe no event
    text.filter(lambda t: "\n" not in t and "\r" not in t),  # not JSON at all
)


class _NoInput:
    """The wrapper's stdin: the session's commands go nowhere."""

    def write(self, data: Any) -> None:
        pass

    async def drain(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def _read_as_session(written: list[str]) -> tuple[list[dict[str, Any]], WrapperSession]:
    stdout, stderr = asyncio.StreamReader(), asyncio.StreamReader()
    for line in written:
        stdout.feed_data((line + "\n").encode("utf-8", "surrogatepass"))
    stdout.feed_eof()
    stderr.feed_eof()

    async def nothing() -> None:
        return None
    process = BoxProcess(_NoInput(), stdout, stderr, wait_exit=nothing, force_stop=nothing)
    session = WrapperSession(process, {"event": wp.EV_HELLO, "protocol": wp.PROTOCOL_VERSION})
    got = []
    async with asyncio.timeout(10):  # never a hang: the output ends, so the turn ends
        async for event in session.chat(TURN, MESSAGES, {}, idle_timeout_s=10):
            got.append(event)
    return got, session


def _all_text(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_all_text(k), *_all_text(v))]
    if isinstance(value, list):
        return [t for item in value for t in _all_text(item)]
    return []


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(written=st.lists(lines, max_size=6))
def test_any_output_ends_the_turn_with_typed_storable_events(written):
    got, session = asyncio.run(_read_as_session(written))
    assert got and got[-1]["event"] in (wp.EV_DONE, wp.EV_ERROR)
    assert sum(e["event"] in (wp.EV_DONE, wp.EV_ERROR) for e in got) == 1
    for event in got[:-1] if got[-1].get("code") == "protocol_mismatch" else got:
        assert wp.event_problem(event) is None, event
    for event in got:
        assert all(why_unstorable(t) is None for t in _all_text(event)), event
    if got[-1].get("code") == "protocol_mismatch":
        assert "broke the protocol" in got[-1]["message"] and not session.alive
    assert session._reader.done() and session._reader.exception() is None


@pytest.mark.parametrize(("line", "says"), [
    ('{"event": "delta", "id": "t1"}', 'delta: "text" is missing'),
    ('{"event": "delta", "id": "t1", "text": 5}', 'delta: "text" must be a string'),
    ('{"event": "done", "id": "t1", "content": "x", "finish_reason": "stop", '
     '"timing": {"ttft_ms": "fast"}}', 'done: "timing.ttft_ms" must be a number or null'),
    ('{"event": "done", "id": "t1", "content": "x", "finish_reason": "stop", "timing": {}, '
     '"usage": []}', 'done: "usage" must be an object'),
    ('{"id": "t1"}', 'an event needs an "event" name'),
    ("[1, 2, 3]", "an event must be a JSON object, not list"),
])
def test_an_event_of_the_wrong_shape_is_named_with_its_line(line, says):
    """Named cases of the class issue 24 finding 17 began: not only a JSON line that is no
    object, but any event the gateway would fail on later (a `timing` of text reached every
    export as text) ends the wrapper at once, naming what is wrong and the line."""
    got, session = asyncio.run(_read_as_session([line]))
    assert [e["event"] for e in got] == ["error"]
    assert got[0]["code"] == "protocol_mismatch", got
    assert says in got[0]["message"] and line[:40] in got[0]["message"]
    assert not session.alive


def test_text_a_store_cannot_keep_arrives_as_u_fffd():
    delta = json.dumps({"event": "delta", "id": TURN, "text": "a\x00b\udce9c"})
    done = json.dumps({"event": "done", "id": TURN, "content": "a\x00b\udce9c",
                       "finish_reason": "stop", "timing": {}})
    got, _ = asyncio.run(_read_as_session([delta, done]))
    assert [e.get("text") or e.get("content") for e in got] == ["a\ufffdb\ufffdc"] * 2
