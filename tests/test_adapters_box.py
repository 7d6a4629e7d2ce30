"""Protocol 2 against the real LlamaFactory: one loaded base serving several adapters per chat.

The reference for every reply is LlamaFactory's own way: a `ChatModel` loaded with that one
adapter (merged into the weights), asked the same thing greedily.
"""

from __future__ import annotations

import pytest

from lfgate.remote import wrapper_protocol as wp
from tests.wrapper_process import WrapperProcess

pytestmark = pytest.mark.box

GREEDY = {"temperature": 0, "max_new_tokens": 24}
ASK = [{"role": "user", "content": "Hello, how are you today?"}]


def spec(tiny: dict[str, str], adapter: str | None, template: str | None = None) -> dict:
    return {"base_model_path": tiny["base"], "adapter_path": tiny[adapter] if adapter else None,
            "template": template or tiny["template"]}


@pytest.fixture(scope="module")
def shared(box_python, tiny, tmp_path_factory):
    """A script wrapper holding the base alone, to which the chats bring their adapters."""
    wrapper = WrapperProcess(box_python, "script", tmp_path_factory.mktemp("spy") / "s.jsonl")
    wrapper.send({"op": "load", "model": spec(tiny, None), "max_adapters": 3,
                  "timeout_s": 300})
    ready, _ = wrapper.until("ready", "error", timeout=320)
    assert ready["event"] == "ready", ready
    wrapper.ready = ready
    yield wrapper
    wrapper.kill()


@pytest.fixture(scope="module")
def solo(box_python, tmp_path_factory):
    """solo(): a script wrapper for the tests whose first step is a load of their own (the
    reference ChatModel of one adapter, a merged adapter, a base to put adapters on): that
    load replaces whatever an earlier test had loaded, so one process serves them all, and
    LlamaFactory's import (some 6.5 CPU seconds) is paid once. Started again if it died."""
    folder = tmp_path_factory.mktemp("solo")
    started: list[WrapperProcess] = []

    def get() -> WrapperProcess:
        if not started or not started[-1].running():
            started.append(WrapperProcess(box_python, "script",
                                          folder / f"spy-{len(started)}.jsonl"))
        return started[-1].settle()

    yield get
    for wrapper in started:
        wrapper.kill()


def ask(wrapper: WrapperProcess, turn_id: str, adapter: str | None, template: str | None = None,
        *, messages: list[dict] = ASK, params: dict = GREEDY) -> dict:
    """One chat naming its adapter (None: the base) and template; its `done`."""
    command = {"op": "chat", "id": turn_id, "messages": messages, "params": params,
               "adapter": adapter}
    if template:
        command["template"] = template
    wrapper.send(command)
    done, _ = wrapper.until("done", "error")
    assert done["event"] == "done", done
    return done


def test_hello_offers_adapters_in_script_mode_only(shared, box_python, tmp_path):
    assert shared.hello["protocol"] == wp.PROTOCOL_VERSION
    assert wp.FEATURE_ADAPTERS in shared.hello["features"]
    cli = WrapperProcess(box_python, "cli", tmp_path / "spy.jsonl")
    try:
        assert cli.hello["features"] == []
    finally:
        cli.kill()


def test_one_base_serves_base_and_three_adapters_as_merged_chat_models_would(
        shared, solo, tiny):
    cases = [(None, None), ("adapter", None), ("adapter2", None), ("adapter3", "default")]
    served = {}
    for index, (adapter, template) in enumerate(cases):
        done = ask(shared, f"s{index}", tiny[adapter] if adapter else None, template)
        served[(adapter, template)] = done
        assert done["held"]["base_loads"] == 1  # the base weights were loaded once, at load
    # Back to the first adapter: resident, nothing loaded.
    again = ask(shared, "s-again", tiny["adapter"])
    assert "adapter_load_s" not in again["timing"]
    assert again["content"] == served[("adapter", None)]["content"]
    assert served[("adapter", None)]["timing"]["adapter_load_s"] > 0
    replies = {done["content"] for done in served.values()}
    assert len(replies) == 4, "base and three adapters must answer differently"

    reference = solo()
    for index, (adapter, template) in enumerate(cases):
        ready = reference.load(spec(tiny, adapter, template), GREEDY)
        assert ready["event"] == "ready", ready
        done, _ = reference.chat(f"r{index}", ASK, GREEDY)
        assert done["content"] == served[(adapter, template)]["content"], (adapter, template)


def test_least_recently_used_adapter_is_put_away_at_the_bound(shared, tiny):
    for index, name in enumerate(("adapter", "adapter2", "adapter3", "adapter")):
        done = ask(shared, f"lru{index}", tiny[name])
    held = [a["path"] for a in done["held"]["adapters"]]
    assert len(held) == 3
    assert held[-1] == tiny["adapter"]  # most recently used last
    shared.send({"op": "load_adapter", "id": "la", "path": tiny["adapter2"]})
    loaded, _ = shared.until("adapter_loaded", "error")
    assert loaded["event"] == "adapter_loaded", loaded
    shared.send({"op": "unload_adapter", "id": "ua", "path": tiny["adapter3"]})
    unloaded, _ = shared.until("adapter_unloaded", "error")
    assert tiny["adapter3"] not in [a["path"] for a in unloaded["held"]["adapters"]]
    held = unloaded["held"]
    assert held["adapter_bytes"] == sum(a["bytes"] for a in held["adapters"]) > 0
    assert held["weight_bytes"] > held["adapter_bytes"]
    assert held["rss_bytes"] > held["weight_bytes"]


def test_a_missing_adapter_fails_its_turn_only(shared, tiny, tmp_path):
    shared.send({"op": "chat", "id": "gone", "messages": ASK, "params": GREEDY,
                 "adapter": str(tmp_path / "no-such-adapter")})
    error, _ = shared.until("done", "error")
    assert error["event"] == "error" and error["code"] == wp.E_ADAPTER_NOT_FOUND
    assert "no-such-adapter" in error["message"]
    assert ask(shared, "after-gone", None)["content"]


def test_an_unknown_template_is_a_clear_error(shared):
    shared.send({"op": "chat", "id": "tpl", "messages": ASK, "params": GREEDY,
                 "adapter": None, "template": "no-such-template"})
    error, _ = shared.until("done", "error")
    assert error["event"] == "error" and "no-such-template" in error["message"]


def test_a_template_whose_tokens_the_tokenizer_lacks_is_named_as_such(shared):
    """llama3's template needs <|eot_id|> and more, which the tiny (qwen) tokenizer lacks:
    no reply can be made with it, which the gateway must not pass off as the box being
    unavailable (a 503 the SDKs retry): its own code, and a hint that says what to do."""
    shared.send({"op": "chat", "id": "tokens", "messages": ASK, "params": GREEDY,
                 "adapter": None, "template": "llama3"})
    error, _ = shared.until("done", "error")
    assert error["event"] == "error" and error["code"] == wp.E_TEMPLATE_UNUSABLE, error
    assert "'llama3' needs special tokens" in error["message"]
    assert error["hint"] == wp.ERROR_HINTS[wp.E_TEMPLATE_UNUSABLE]
    assert ask(shared, "after-tokens", None)["content"]  # the base still answers


def test_a_wrapper_with_a_merged_adapter_refuses_another(solo, tiny):
    wrapper = solo()
    assert wrapper.load(spec(tiny, "adapter"), GREEDY)["event"] == "ready"
    wrapper.send({"op": "chat", "id": "x", "messages": ASK, "params": GREEDY,
                  "adapter": tiny["adapter2"]})
    error, _ = wrapper.until("done", "error")
    assert error["code"] == wp.E_NOT_SUPPORTED
    # Naming the adapter it holds is fine (the gateway does so for every turn).
    wrapper.send({"op": "chat", "id": "y", "messages": ASK, "params": GREEDY,
                  "adapter": tiny["adapter"]})
    done, _ = wrapper.until("done", "error")
    assert done["event"] == "done", done


@pytest.mark.parametrize("first", [True, False], ids=["first-adapter", "later-adapter"])
def test_an_adapter_for_another_base_fails_and_leaves_the_model_as_it_was(solo, tiny, first):
    """`other_adapter` was trained on `other_base`, whose shapes differ from `base`'s. Its
    failed load must leave nothing behind: the base and the adapters already on it answer as
    before, whether it was to be the first adapter (the PeftModel being made) or a later one."""
    wrapper = solo()
    wrapper.send({"op": "load", "model": spec(tiny, None), "timeout_s": 300})
    ready, _ = wrapper.until("ready", "error", timeout=320)
    assert ready["event"] == "ready", ready
    assert ready["held"]["adapters"] == [], ready  # a base of its own: no adapter on it yet
    before = {"base": ask(wrapper, "b0", None)["content"]}
    if not first:
        before["adapter"] = ask(wrapper, "a0", tiny["adapter"])["content"]
    wrapper.send({"op": "chat", "id": "bad", "messages": ASK, "params": GREEDY,
                  "adapter": tiny["other_adapter"]})
    error, _ = wrapper.until("done", "error")
    assert error["event"] == "error" and error["code"] == wp.E_ADAPTER_MISMATCH, error
    assert ask(wrapper, "b1", None)["content"] == before["base"]
    if not first:
        assert ask(wrapper, "a1", tiny["adapter"])["content"] == before["adapter"]
    done = ask(wrapper, "a2", tiny["adapter2"])  # a good one still loads
    assert [a["path"] for a in done["held"]["adapters"]][-1] == tiny["adapter2"]
    assert tiny["other_adapter"] not in [a["path"] for a in done["held"]["adapters"]]


def test_stop_and_history_work_for_an_adapter_on_a_shared_base(shared, tiny):
    """As for a model loaded alone: cancel ends generation within a step, and a multi-turn
    history reaches the adapter whole (the next greedy turn answers as if asked afresh)."""
    shared.send({"op": "chat", "id": "long", "adapter": tiny["adapter2"],
                 "messages": ASK, "params": {"temperature": 1.0, "max_new_tokens": 4000}})
    shared.until("delta")
    shared.send({"op": "cancel", "id": "long"})
    done, _ = shared.until("done", "error")
    assert done["event"] == "done" and done["finish_reason"] == "stopped", done
    assert done["usage"]["completion_tokens"] < 4000
    reply = ask(shared, "h1", tiny["adapter2"])["content"]
    history = [*ASK, {"role": "assistant", "content": reply},
               {"role": "user", "content": "And then?"}]
    shared.send({"op": "chat", "id": "h2", "messages": history, "params": GREEDY,
                 "adapter": tiny["adapter2"]})
    second, _ = shared.until("done", "error")
    assert second["event"] == "done" and second["content"], second
    spied = shared.spied()[-1]
    assert [m["content"] for m in spied["messages"]] == [m["content"] for m in history]
