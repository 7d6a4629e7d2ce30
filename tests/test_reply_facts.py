"""What a reply carries besides its text: its streaming rate, the box's notices about it, and
a stop stored at once; over a real `lfgate serve` (the scripted box double, or the real box)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "remote"))

from tests.rig.fake_wrappers.scripted_wrapper import NOTICE_MESSAGE
from tests.test_ui_rig import stream_until_deltas
from tests.ui_rig import start_scripted_gateway

from wrapper_serve import rate_per_s


@pytest.mark.parametrize("count, first, last, rate", [
    (None, 1.0, 2.0, None),   # nothing counted (CLI mode counts chunks instead)
    (0, None, None, None),    # stopped before the first token
    (1, 5.0, 5.0, None),      # one token has no rate (was 8,333 tok/s)
    (2, 5.0, 5.0, None),      # two tokens at once: no time between them, no rate
    (11, 1.0, 3.0, 5.0),      # ten tokens after the first, over two seconds
])
def test_rate_counts_what_came_after_the_first_over_first_to_last(count, first, last, rate):
    assert rate_per_s(count, first, last) == rate


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory):
    """`lfgate serve` on the scripted box double, for the tests whose chats need no gateway
    of their own (not the first chat's load: test_a_one_chunk_reply... needs a fresh one)."""
    gateway = start_scripted_gateway(tmp_path_factory.mktemp("gateway"))
    yield gateway
    gateway.stop()


def _last_reply(gateway, chat_id: str) -> dict:
    return gateway.http.get(f"/api/chats/{chat_id}").json()["messages"][-1]


def test_a_one_chunk_reply_has_no_rate_and_a_long_one_has_one(scripted_gateway):
    one, events = scripted_gateway.chat({"message": "hello", "params": {"max_new_tokens": 1}})
    assert one["usage"]["completion_tokens"] == 1
    assert one["box_timing"]["tokens_per_s"] is None
    chat_id = events[0][1]["chat_id"]
    assert _last_reply(scripted_gateway, chat_id)["provenance"]["box_timing"][
        "tokens_per_s"] is None
    # Another chat, without params: the first chat's max_new_tokens (which came with the load)
    # must not stick to it.
    many, _ = scripted_gateway.chat({"message": "show code"})
    tokens, timing = many["usage"]["completion_tokens"], many["box_timing"]
    assert many["finish_reason"] == "stop" and tokens > 20
    # At most the count over the whole reply time: the rate leaves out the wait for the first.
    assert timing["tokens_per_s"] >= (tokens - 1) / (timing["total_ms"] / 1000) > 0


def test_a_stopped_reply_counts_only_what_arrived(shared_gateway):
    gateway = shared_gateway  # the double's own pace: 0.02 s a chunk
    meta, texts, stream = stream_until_deltas(gateway, {"message": "a long story"}, 10)
    gateway.http.post(f"/api/chat/{meta['turn_id']}/stop")
    events = list(stream)
    done = events[-1][1]
    assert events[-1][0] == "done" and done["finish_reason"] == "stopped"
    arrived = len(texts) + sum(1 for name, _, _ in events if name == "delta")
    assert done["usage"]["completion_tokens"] == arrived < 400
    assert done["box_timing"]["tokens_per_s"] > 0


def test_a_stop_is_stored_at_once_even_before_the_first_token(make_scripted_gateway):
    """A page reloaded mid-reply stops it; the chat it reads right after must say so."""
    gateway = make_scripted_gateway(load_s=5)  # the model is still loading
    stream = gateway.stream({"message": "hello"})
    name, meta, _ = next(stream)
    assert name == "meta"
    assert _last_reply(gateway, meta["chat_id"])["status"] == "streaming"
    assert gateway.http.post(f"/api/chat/{meta['turn_id']}/stop").status_code == 200
    assert _last_reply(gateway, meta["chat_id"])["status"] == "stopped"  # no waiting
    assert [name for name, _, _ in stream][-1] == "done"
    reply = _last_reply(gateway, meta["chat_id"])
    assert reply["status"] == "stopped" and reply["content"] == ""


def test_the_box_notices_about_a_reply_are_kept_with_it(shared_gateway):
    _, events = shared_gateway.chat({"message": "show the notice"})
    assert ("info", {"code": "cli_restarted", "message": NOTICE_MESSAGE}) in events
    reply = _last_reply(shared_gateway, events[0][1]["chat_id"])
    assert reply["provenance"]["notices"] == [{"code": "cli_restarted",
                                               "message": NOTICE_MESSAGE}]
