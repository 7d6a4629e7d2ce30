"""Protocol 4 against the real LlamaFactory: several chats answered by one `generate` call on
one loaded base, each row its own adapter (or the base), template and history, streamed to
its own id and stoppable alone. Every greedy row must equal the same chat asked alone."""

from __future__ import annotations

import pytest

from lfgate.remote import wrapper_protocol as wp
from tests.test_adapters_box import ask
from tests.wrapper_process import WrapperProcess

pytestmark = pytest.mark.box

GREEDY = {"temperature": 0, "max_new_tokens": 24}
ASK = [{"role": "user", "content": "Hello, how are you today?"}]
LATER = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."},
         {"role": "user", "content": "Tell me about the sea."}]


@pytest.fixture(scope="module")
def loaded(box_python, tiny, tmp_path_factory):
    """One script wrapper holding the base for the module (its start and load, LlamaFactory's
    import among them, cost some 8 CPU seconds): every test here ends every row it starts."""
    wrapper = WrapperProcess(box_python, "script",
                             tmp_path_factory.mktemp("batch") / "spy.jsonl")
    ready = wrapper.load({"base_model_path": tiny["base"], "template": tiny["template"]})
    assert ready["event"] == "ready", ready
    yield wrapper
    wrapper.kill()


@pytest.fixture
def shared(loaded):
    """The module's wrapper, with nothing an earlier test left unread."""
    assert loaded.running(), "".join(loaded.stderr[-40:])
    return loaded.settle()


def run_batch(wrapper: WrapperProcess, rows: list[dict], params: dict,
              stop_after: dict[str, int] | None = None) -> tuple[dict[str, dict], list[dict]]:
    """Send a batch; `stop_after` cancels a row once it streamed that many deltas. Returns
    each row's done (or error) and every event in order."""
    wrapper.send({"op": wp.OP_CHAT_BATCH, "id": "b1", "rows": rows, "params": params})
    ends: dict[str, dict] = {}
    events: list[dict] = []
    deltas: dict[str, int] = {}
    while len(ends) < len(rows):
        event = wrapper.next()
        events.append(event)
        if event["event"] == wp.EV_DELTA:
            deltas[event["id"]] = deltas.get(event["id"], 0) + 1
            if stop_after and deltas[event["id"]] == stop_after.get(event["id"]):
                wrapper.send({"op": wp.OP_CANCEL, "id": event["id"]})
        elif event["event"] in (wp.EV_DONE, wp.EV_ERROR):
            ends[event["id"]] = event
    return ends, events


def alone(wrapper: WrapperProcess, turn_id: str, messages: list[dict], adapter: str | None,
          template: str | None, params: dict) -> str:
    """The same chat asked on its own (not in a batch): its reply."""
    return ask(wrapper, turn_id, adapter, template, messages=messages, params=params)["content"]


def test_one_generate_call_answers_every_row_as_each_chat_alone_would(shared, tiny):
    rows = [
        {"id": "r-base", "messages": ASK, "adapter": None},
        {"id": "r-a", "messages": ASK, "adapter": tiny["adapter"]},
        {"id": "r-b", "messages": LATER, "adapter": tiny["adapter2"]},
        {"id": "r-c", "messages": ASK, "adapter": tiny["adapter3"], "template": "default"},
    ]
    assert wp.FEATURE_BATCH in shared.hello["features"]
    before = len(shared.generate_calls())
    ends, events = run_batch(shared, rows, {**GREEDY, "system": "Be kind."})
    calls = shared.generate_calls()[before:]
    assert [c["rows"] for c in calls] == [4], calls  # one call served every row
    for row in rows:
        done = ends[row["id"]]
        assert done["event"] == "done", done
        streamed = "".join(e["text"] for e in events
                           if e["event"] == wp.EV_DELTA and e["id"] == row["id"])
        assert streamed == done["content"] and done["content"]
        assert done["batch"] == {"id": "b1", "rows": 4}
        assert done["usage"]["completion_tokens"] > 0 and done["usage"]["prompt_tokens"] > 0
        assert done["finish_reason"] in (wp.FINISH_STOP, wp.FINISH_LENGTH)
    assert ends["r-a"]["held"]["base_loads"] == 1
    assert len({ends[r["id"]]["content"] for r in rows}) == 4
    # Rows interleave: the stream is not one reply after another.
    order = [e["id"] for e in events if e["event"] == wp.EV_DELTA]
    assert order.index("r-c") < len(order) - order[::-1].index("r-base") - 1

    for row in rows:
        single = alone(shared, f"alone-{row['id']}", row["messages"], row["adapter"],
                       row.get("template"), {**GREEDY, "system": "Be kind."})
        assert single == ends[row["id"]]["content"], row["id"]


def test_stopping_one_row_leaves_the_others_running(shared, tiny):
    long = {"temperature": 0, "max_new_tokens": 200}
    story = [{"role": "user", "content": "Tell me a very long story"}]
    rows = [{"id": "keep-1", "messages": story, "adapter": None},
            {"id": "stop-me", "messages": story, "adapter": tiny["adapter"]},
            {"id": "keep-2", "messages": story, "adapter": tiny["adapter2"]}]
    ends, events = run_batch(shared, rows, long, stop_after={"stop-me": 3})
    assert ends["stop-me"]["finish_reason"] == wp.FINISH_STOPPED
    # The stopped row says so at once, while the others are still generating.
    ended = [e["id"] for e in events if e["event"] == wp.EV_DONE]
    assert ended[0] == "stop-me", ended
    later = events.index(next(e for e in events if e["event"] == wp.EV_DONE))
    assert any(e["event"] == wp.EV_DELTA for e in events[later:])
    stopped_text = ends["stop-me"]["content"]
    assert stopped_text == "".join(e["text"] for e in events
                                   if e["event"] == wp.EV_DELTA and e["id"] == "stop-me")
    for kept in ("keep-1", "keep-2"):
        assert ends[kept]["finish_reason"] in (wp.FINISH_STOP, wp.FINISH_LENGTH)
        assert ends[kept]["usage"]["completion_tokens"] > ends["stop-me"]["usage"][
            "completion_tokens"]
        assert ends[kept]["content"] == alone(shared, f"alone-{kept}", story,
                                              next(r["adapter"] for r in rows
                                                   if r["id"] == kept), None, long)


def test_a_bad_batch_is_every_rows_error_and_the_wrapper_goes_on(shared, tiny):
    rows = [{"id": "x1", "messages": ASK, "adapter": None},
            {"id": "x2", "messages": ASK, "adapter": "/nowhere/adapter"}]
    ends, _ = run_batch(shared, rows, GREEDY)
    assert {e["event"] for e in ends.values()} == {wp.EV_ERROR}
    assert all(e["code"] == wp.E_ADAPTER_NOT_FOUND for e in ends.values())
    assert alone(shared, "after", ASK, None, None, GREEDY)


# -- continuous batching (issue 26): plain chats that overlap generate together ------------

def solo_reference(wrapper: WrapperProcess, turn_id: str, messages: list[dict],
                   adapter: str | None, params: dict) -> str:
    """The chat answered by LlamaFactory's own stream_chat: `logprobs` is a setting only the
    solo path honours, and it changes no token."""
    done, _ = wrapper.chat(turn_id, messages, {**params, "logprobs": 0}, adapter=adapter)
    assert done["event"] == "done", done
    return done["content"]


def test_chats_sent_together_generate_together_and_answer_as_alone(shared, tiny):
    """Three chats sent at once (the base and two adapters, one seeded and sampled) are
    answered in one running batch: their deltas interleave, and each reply is exactly
    LlamaFactory's own answer to it alone."""
    seeded = {"temperature": 0.9, "top_p": 0.8, "top_k": 30, "seed": 5, "max_new_tokens": 24}
    chats = [("t-base", ASK, None, GREEDY), ("t-a", LATER, tiny["adapter"], GREEDY),
             ("t-b", ASK, tiny["adapter2"], seeded)]
    for turn_id, messages, adapter, params in chats:
        shared.send({"op": "chat", "id": turn_id, "messages": messages, "params": params,
                     "adapter": adapter})
    ends: dict[str, dict] = {}
    events: list[tuple[str, str]] = []
    while len(ends) < len(chats):
        event = shared.next()
        if event["event"] in (wp.EV_DELTA, wp.EV_DONE, wp.EV_ERROR):
            events.append((event["event"], event["id"]))
        if event["event"] in (wp.EV_DONE, wp.EV_ERROR):
            ends[event["id"]] = event
    assert all(end["event"] == "done" for end in ends.values()), ends
    # Together, not one after another: every reply had begun before the first one ended.
    first_end = next(i for i, (name, _) in enumerate(events) if name != wp.EV_DELTA)
    begun = {turn_id for name, turn_id in events[:first_end] if name == wp.EV_DELTA}
    assert begun == set(ends), events
    for turn_id, messages, adapter, params in chats:
        reference = solo_reference(shared, f"solo-{turn_id}", messages, adapter, params)
        assert ends[turn_id]["content"] == reference, turn_id
        assert ends[turn_id]["usage"]["completion_tokens"] > 0


def test_a_chat_that_arrives_mid_reply_joins_at_the_next_step(shared, tiny):
    """A long reply is under way; a second chat sent then gets its first token before the
    first reply ends (it joins rather than waits), and both answer as they would alone; the
    first one stopped half-way leaves and the second goes on."""
    long = {"temperature": 0, "max_new_tokens": 300}
    shared.send({"op": "chat", "id": "j-long", "messages": ASK, "params": long,
                 "adapter": tiny["adapter"]})
    shared.until(wp.EV_DELTA)
    shared.send({"op": "chat", "id": "j-late", "messages": LATER, "params": GREEDY,
                 "adapter": None})
    late_started = False
    while True:
        event = shared.next()
        if event["event"] == wp.EV_DELTA and event["id"] == "j-late":
            late_started = True
            shared.send({"op": wp.OP_CANCEL, "id": "j-long"})
        if event["event"] in (wp.EV_DONE, wp.EV_ERROR) and event["id"] == "j-long":
            long_end = event
            break
    assert late_started, "the late chat waited for the long reply to end"
    assert long_end["finish_reason"] == wp.FINISH_STOPPED, long_end
    late_end, _ = shared.until(wp.EV_DONE, wp.EV_ERROR)
    assert late_end["id"] == "j-late" and late_end["event"] == "done", late_end
    assert late_end["content"] == solo_reference(shared, "solo-late", LATER, None, GREEDY)


def test_the_end_of_input_mid_batch_stops_every_row_and_the_wrapper(box_python, tiny, tmp_path):
    """Input closed (the gateway went away) while rows generate: each row ends stopped, and
    the wrapper exits rather than waiting for a command that never comes."""
    wrapper = WrapperProcess(box_python, "script", tmp_path / "spy.jsonl")
    try:
        ready = wrapper.load({"base_model_path": tiny["base"], "template": tiny["template"]})
        assert ready["event"] == "ready", ready
        for turn_id in ("e1", "e2"):
            wrapper.send({"op": "chat", "id": turn_id, "messages": ASK,
                          "params": {"temperature": 0, "max_new_tokens": 4000}})
        wrapper.until(wp.EV_DELTA)
        wrapper.proc.stdin.close()
        assert wrapper.proc.wait(timeout=60) == 0
        ends = []
        while (event := wrapper.events.get(timeout=10)) is not None:
            if event["event"] in (wp.EV_DONE, wp.EV_ERROR):
                ends.append(event)
        assert sorted(e["id"] for e in ends) == ["e1", "e2"], ends
        assert {e.get("finish_reason") for e in ends} == {wp.FINISH_STOPPED}, ends
    finally:
        wrapper.kill()


def test_chats_over_the_row_limit_wait_their_turn_in_line(shared, tiny):
    """MAX_BATCH_ROWS (the load's max_batch_rows): at 1, a second chat sent with a first
    begins only once the first has ended, and both answer."""
    def load(rows: int) -> None:
        shared.send({"op": "load", "timeout_s": 300, "max_batch_rows": rows, "params": {},
                     "model": {"base_model_path": tiny["base"], "template": tiny["template"]}})
        ready, _ = shared.until("ready", "error", timeout=320)
        assert ready["event"] == "ready", ready

    load(1)
    try:
        for turn_id in ("w1", "w2"):
            shared.send({"op": "chat", "id": turn_id, "messages": ASK, "params": GREEDY,
                         "adapter": None})
        seen: list[tuple[str, str]] = []
        while sum(1 for name, _ in seen if name == wp.EV_DONE) < 2:
            event = shared.next()
            seen.append((event["event"], event.get("id", "")))
            assert event["event"] != wp.EV_ERROR, event
        first_w2 = seen.index((wp.EV_DELTA, "w2"))
        assert seen.index((wp.EV_DONE, "w1")) < first_w2, seen
    finally:
        load(16)
