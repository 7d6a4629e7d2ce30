"""Protocol 6's `json_schema` (/v1's response_format) against the real LlamaFactory: the tiny
base has random weights, so only the constraint can make its replies JSON of the schema; the
same turns without it are not. xgrammar holds each reply token by token (remote/json_grammar.py),
alone and in a batch (a row ended early is no longer held)."""

from __future__ import annotations

import json

import pytest

from lfgate.remote import wrapper_protocol as wp
from tests import test_batch_box
from tests.test_batch_box import run_batch

pytestmark = pytest.mark.box

PICK = {"type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]},
                       "count": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["color", "count"]}
ASK = [{"role": "user", "content": "Pick a color and a count."}]
SAMPLED = {"temperature": 1.0, "max_new_tokens": 40}
# The batch tests' fixtures: this module's own script wrapper holding the tiny base.
loaded = test_batch_box.loaded
shared = test_batch_box.shared


def picked(text: str) -> dict:
    """The reply as PICK holds it: exactly its two properties, each in its range."""
    value = json.loads(text)
    assert set(value) == {"color", "count"}, text
    assert value["color"] in ("red", "green", "blue"), text
    assert type(value["count"]) is int and 0 <= value["count"] <= 9, text
    return value


def is_pick(text: str) -> bool:
    try:
        picked(text)
    except (ValueError, AssertionError):
        return False
    return True


def test_every_sampled_reply_is_json_of_the_schema_and_none_without_it(shared):
    held, free = [], []
    for seed in range(6):
        done, events = shared.chat(f"s{seed}", ASK, {**SAMPLED, "seed": seed,
                                                      "json_schema": PICK})
        assert done["event"] == wp.EV_DONE, done
        assert done["finish_reason"] == wp.FINISH_STOP, done  # ended by the JSON's end
        assert "".join(e["text"] for e in events if e["event"] == wp.EV_DELTA) == \
            done["content"]
        held.append(picked(done["content"]))
        done, _ = shared.chat(f"f{seed}", ASK, {**SAMPLED, "seed": seed})
        free.append(done["content"])
    assert len({json.dumps(v) for v in held}) > 1, held  # sampled, not one fixed answer
    assert not any(is_pick(text) for text in free), free


def test_json_object_is_any_object(shared):
    for seed in range(3):
        done, _ = shared.chat(f"o{seed}", ASK, {"temperature": 1.0, "seed": seed,
                                                 "max_new_tokens": 200,
                                                 "json_schema": {"type": "object"}})
        if done["finish_reason"] == wp.FINISH_STOP:
            assert isinstance(json.loads(done["content"]), dict), done
        else:  # cut at max tokens: still the start of an object
            assert done["content"].startswith("{"), done


def test_each_row_of_a_batch_is_held_and_a_row_stopped_early_leaves_the_rest_held(shared):
    """A row cancelled mid-JSON is fed padding the grammar refuses: it is let go, and the
    other rows are still held to the schema (xgrammar's own processor would raise)."""
    rows = [{"id": f"b{n}", "messages": ASK, "adapter": None} for n in range(4)]
    ends, _ = run_batch(shared, rows, {**SAMPLED, "seed": 7, "json_schema": PICK},
                        stop_after={"b0": 2})
    assert ends["b0"]["event"] == wp.EV_DONE and ends["b0"]["finish_reason"] == "stopped"
    for row in ("b1", "b2", "b3"):
        assert ends[row]["event"] == wp.EV_DONE, ends[row]
        picked(ends[row]["content"])


def test_a_schema_xgrammar_cannot_use_is_a_bad_request_before_anything_is_made(shared):
    done, events = shared.chat("bad", ASK, {"json_schema": {"type": "nonsense"}})
    assert done["event"] == wp.EV_ERROR and done["code"] == wp.E_BAD_REQUEST, done
    assert "response_format" in done["message"]
    assert not [e for e in events if e["event"] == wp.EV_DELTA]
    done, _ = shared.chat("after", ASK, {**SAMPLED, "seed": 1, "json_schema": PICK})
    picked(done["content"])  # the wrapper goes on


# A completion's messages as the gateway sends them: the protocol's, unused.
COMPLETING = [{"role": "user", "content": ""}]


def test_a_completion_takes_no_schema(shared):
    done, _ = shared.chat("c", COMPLETING, {"max_new_tokens": 4, "json_schema": PICK},
                          completion={"prompt": "Hello", "echo": False, "logprobs": None})
    assert done["event"] == wp.EV_ERROR and done["code"] == wp.E_BAD_REQUEST, done
    assert "json_schema holds a chat's whole reply" in done["message"]


def test_a_schema_holds_its_own_generate_call_only(shared):
    """A batch's schema (an `n` > 1 request) is gone when its generate call ends: the next
    completion and chat are made exactly as before it (greedy), not held to JSON."""
    completion = {"prompt": "Hello", "echo": False, "logprobs": None}
    # With a sampling parameter of its own, so the hook on generate adds processors.
    completing = {"max_new_tokens": 12, "temperature": 0, "presence_penalty": 0.5}
    before, _ = shared.chat("c1", COMPLETING, completing, completion=completion)
    chat_before, _ = shared.chat("t1", ASK, {"max_new_tokens": 12, "temperature": 0})
    rows = [{"id": f"j{n}", "messages": ASK, "adapter": None} for n in range(2)]
    ends, _ = run_batch(shared, rows, {**SAMPLED, "seed": 3, "json_schema": PICK})
    assert ends["j0"]["event"] == wp.EV_DONE, ends
    picked(ends["j0"]["content"])
    after, _ = shared.chat("c2", COMPLETING, completing, completion=completion)
    chat_after, _ = shared.chat("t2", ASK, {"max_new_tokens": 12, "temperature": 0})
    assert before["event"] == after["event"] == wp.EV_DONE, (before, after)
    assert after["content"] == before["content"] and not is_pick(after["content"]), after
    assert chat_after["content"] == chat_before["content"]
