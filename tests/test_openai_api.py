"""The OpenAI-compatible /v1 over the scripted box double (the real wrapper loop and protocol,
no model): the official `openai` client's shapes and error classes, the SSE framing byte by
byte, refusals that name their parameter, the token, stored API chats, stop strings, a
client that goes away, and the concurrency bound. The real LlamaFactory path is in
tests/test_openai_gateway.py."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway_process import GatewayProcess
from tests.rig.saves_tree import make_saves
from tests.test_models_api import BASE, SCRIPTED_WRAPPER, Client, by_id, gateway

ECHO = "Echo #1 from tiny-base + no adapter: hi there"
HI = [{"role": "user", "content": "hi there"}]


@pytest.fixture
def saves(tmp_path: Path) -> Path:
    make_saves(tmp_path / "saves", BASE)
    return tmp_path / "saves"


def sdk(http: httpx.AsyncClient, api_key: str = "sk-anything") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://localhost/v1", api_key=api_key, http_client=http,
                              max_retries=0)


async def test_models_lists_every_usable_model_by_id(tmp_path, monkeypatch, saves):
    async with Client(gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))) as http:
        await http.post("/api/models/refresh")
        listing = (await http.get("/api/models")).json()
        usable = {m["id"] for m in listing["models"] if m["usable"]}
        broken = {m["id"] for m in listing["models"] if not m["usable"]}
        assert broken, "the saves tree has a broken adapter, which /v1 must leave out"
        models = [m async for m in sdk(http).models.list()]
        assert {m.id for m in models} == usable
        assert all(m.object == "model" and m.owned_by == "lfgate" and m.created > 0
                   for m in models)
        checkpoint = "tiny--lora--sft-b--checkpoint-100"
        one = await sdk(http).models.retrieve(checkpoint)
        assert one.id == checkpoint and one.parent == by_id(listing)[checkpoint]["base_id"]
        with pytest.raises(openai.NotFoundError):
            await sdk(http).models.retrieve("no-such-model")


async def test_a_model_that_can_never_answer_is_unusable_with_its_reason(tmp_path,
                                                                         monkeypatch):
    """Issue 25 (usable means answers): run b was trained with a template whose special
    tokens the base's tokenizer lacks. Its first request is a 400 naming why (a 503 was
    retried three times by the SDK for a failure that never clears); from then on it is
    listed unusable with that reason (left out of /v1/models), its status keeps the error,
    and a request is refused at once, also with a 400. Asking to load it again tries again."""
    make_saves(tmp_path / "saves", BASE, other_template="needs-tokens")
    model = "tiny--lora--sft-b"
    async with Client(gateway(tmp_path, monkeypatch,
                              adapter_dirs=str(tmp_path / "saves"))) as http:
        await http.post("/api/models/refresh")
        assert model in {m.id async for m in sdk(http).models.list()}
        with pytest.raises(openai.BadRequestError) as first:
            await sdk(http).chat.completions.create(model=model, messages=HI)
        assert first.value.code == "template_unusable"
        assert "needs special tokens" in first.value.message
        assert "chat with the base's own template" in first.value.message  # the hint

        assert model not in {m.id async for m in sdk(http).models.list()}
        listed = by_id((await http.get("/api/models")).json())[model]
        assert listed["usable"] is False and "needs special tokens" in listed["problems"][0]
        status = (await http.get(f"/api/models/{model}/status")).json()
        assert status["status"] == "error" and "needs special tokens" in status["error"]
        with pytest.raises(openai.BadRequestError) as again:
            await sdk(http).chat.completions.create(model=model, messages=HI)
        assert again.value.code == "model_unusable" and "needs special tokens" in \
            again.value.message
        # The others answer as before; a load asked for on purpose tries it again.
        ok = await sdk(http).chat.completions.create(model="tiny--lora--sft-a", messages=HI)
        assert ok.choices[0].message.content
        retried = await http.post(f"/api/models/{model}/load")
        assert retried.status_code == 202, retried.text
        assert model in {m.id async for m in sdk(http).models.list()}


async def test_a_prompt_over_the_window_is_a_400_naming_both_numbers(tmp_path, monkeypatch):
    """Issue 25 (context limits): the box refuses what its window cannot hold (counted with
    its own tokenizer and template; tests/test_wrappers_box.py has the real count) and /v1
    answers as OpenAI does: 400 context_length_exceeded, never a 200 of a truncated prompt."""
    from tests.rig.fake_wrappers.scripted_wrapper import OVERFLOW_MESSAGE

    async with Client(gateway(tmp_path, monkeypatch)) as http:
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as error:
                await sdk(http).chat.completions.create(
                    model="default", stream=stream,
                    messages=[{"role": "user", "content": "overflow " * 50}])
            assert error.value.code == "context_length_exceeded"
            assert OVERFLOW_MESSAGE in error.value.message
        ok = await sdk(http).chat.completions.create(model="default", messages=HI)
        assert ok.choices[0].message.content == ECHO


async def test_a_whole_completion_has_openais_shape_and_usage(tmp_path, monkeypatch):
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        reply = await sdk(http).chat.completions.create(
            model="default", messages=[{"role": "system", "content": "Be brief."}, *HI],
            user="someone", metadata={"run": "eval-3"}, store=False, n=1, seed=7)
        assert reply.object == "chat.completion" and reply.model == "default"
        assert reply.id.startswith("chatcmpl-")
        choice = reply.choices[0]
        assert (choice.message.role, choice.message.content, choice.finish_reason) == (
            "assistant", ECHO, "stop")
        # The double counts a prompt word and a streamed chunk as one token each.
        assert reply.usage.prompt_tokens == 4  # "hi there", "Be brief."
        assert reply.usage.completion_tokens == 9
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + 9


async def test_the_stream_is_framed_as_openai_frames_it(tmp_path, monkeypatch):
    """Byte by byte: `data: <json>` blocks separated by a blank line, nothing else, a first
    chunk with the role, one per piece, a last with finish_reason, the usage chunk, [DONE]."""
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        response = await http.post("/v1/chat/completions", json={
            "model": "default", "messages": HI, "stream": True,
            "stream_options": {"include_usage": True}})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        body = response.content
        assert body.endswith(b"\n\ndata: [DONE]\n\n")
        blocks = body.split(b"\n\n")
        assert blocks[-1] == b""  # every block ends with a blank line
        frames = blocks[:-1]
        assert all(re.fullmatch(rb"data: [^\n]+", frame) for frame in frames), frames
        chunks = [json.loads(frame[len(b"data: "):]) for frame in frames[:-1]]
        ids = {c["id"] for c in chunks}
        assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-")
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        first, *pieces, last, usage = chunks
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(p["choices"][0]["delta"]["content"] for p in pieces) == ECHO
        assert all(p["choices"][0]["finish_reason"] is None for p in [first, *pieces])
        assert last["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                      "finish_reason": "stop"}
        assert all(c["usage"] is None for c in [first, *pieces, last])
        assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(pieces)


async def test_the_sdk_streams_and_stops_at_a_stop_string(tmp_path, monkeypatch):
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        stream = await sdk(http).chat.completions.create(model="default", messages=HI,
                                                         stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        assert text == ECHO
        # "tiny" arrives split over two chunks ("from tin", "y-ba"): held back, never sent.
        stream = await sdk(http).chat.completions.create(
            model="default", messages=HI, stream=True, stop=["tiny", "never"])
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo #1 from "
        assert chunks[-1].choices[0].finish_reason == "stop"
        whole = await sdk(http).chat.completions.create(model="default", messages=HI,
                                                        stop="#1")
        assert whole.choices[0].message.content == "Echo "


@pytest.mark.parametrize("extra, param", [
    ({"n": 9}, "n"),  # choices are rows of one batch: at most 8
    ({"tools": [{"type": "function"}]}, "tools[0]"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),  # with no tools to call
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
    ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs: true
    ({"presence_penalty": 3}, "presence_penalty"),  # OpenAI's range is -2 to 2
    ({"logit_bias": {"the": 5}}, "logit_bias"),  # token ids, not words
    ({"response_format": {"type": "structural_tag"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format.json_schema.schema"),
    ({"temprature": 0.2}, "temprature"),  # a typo is refused, not ignored
    ({"temperature": "hot"}, "temperature"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
     "messages[0].content[1]"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]},
     "messages[1].role"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": None,
                    "tool_calls": [{"id": "c", "type": "function",
                                    "function": {"name": "f", "arguments": "{}"}}]}]},
     "messages"),  # ends with tool calls: their results must come back first
])
async def test_what_cannot_be_honoured_is_a_400_naming_it(tmp_path, monkeypatch, extra, param):
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        extra = dict(extra)
        messages = extra.pop("messages", HI)
        with pytest.raises(openai.BadRequestError) as error:  # sent as the client sends it
            await sdk(http).chat.completions.create(model="default", messages=messages,
                                                    extra_body=extra)
        assert error.value.status_code == 400
        assert error.value.param == param and param in error.value.message
        assert error.value.type == "invalid_request_error"
        # Nothing half-done: the gateway still answers.
        ok = await sdk(http).chat.completions.create(model="default", messages=HI)
        assert ok.choices[0].message.content == ECHO


async def test_content_parts_system_and_history_reach_the_box(tmp_path, monkeypatch):
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        reply = await sdk(http).chat.completions.create(model="default", messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "Echo #1 ..."},
            {"role": "user", "content": [{"type": "text", "text": "two"},
                                         {"type": "text", "text": "parts"}]}])
        assert reply.choices[0].message.content == (
            "Echo #2 from tiny-base + no adapter: two\nparts")


async def test_turns_are_taken_as_clients_send_them(tmp_path, monkeypatch):
    """Issue 25 (turns as clients send them): Open WebUI drops a failed reply and sends two
    user messages in a row, which OpenAI takes; so do we, as one turn. A system message
    later in the conversation joins the system prompt; a conversation that opens with the
    assistant's greeting gets an empty user turn before it."""
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        two = await sdk(http).chat.completions.create(model="default", messages=[
            {"role": "user", "content": "first try"}, {"role": "user", "content": "again"}])
        assert two.choices[0].message.content == (
            "Echo #1 from tiny-base + no adapter: first try\n\nagain")
        late = await sdk(http).chat.completions.create(model="default", messages=[
            {"role": "user", "content": "one"}, {"role": "system", "content": "Be brief."},
            {"role": "assistant", "content": "Echo"}, {"role": "assistant", "content": "#1"},
            {"role": "user", "content": "two"}])
        assert late.choices[0].message.content == "Echo #2 from tiny-base + no adapter: two"
        greeted = await sdk(http).chat.completions.create(model="default", messages=[
            {"role": "assistant", "content": "How can I help?"},
            {"role": "user", "content": "hello"}])
        assert greeted.choices[0].message.content == (
            "Echo #2 from tiny-base + no adapter: hello")


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
# Open WebUI (0.10 on) sends its built-in tools with every message, and no tool_choice.
MANY_TOOLS = [{"type": "function", "function": {
    "name": f"builtin_{index}", "description": f"built-in tool {index}",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}
    for index in range(28)]


async def test_a_tool_call_comes_back_in_openais_shape_whole_and_streamed(tmp_path,
                                                                          monkeypatch):
    """Issue 25, tool calls: the box's call (qwen's <tool_call> format, parsed there) is a
    `tool_calls` entry with finish_reason tool_calls; streamed, the words before it stream as
    they come and the call's own text never shows as content."""
    from tests.rig.fake_wrappers.scripted_wrapper import TOOL_ARGUMENTS, TOOL_LEAD

    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        whole = await sdk(http).chat.completions.create(model="default", messages=ask,
                                                        tools=[WEATHER])
        choice = whole.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == TOOL_LEAD
        [call] = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == TOOL_ARGUMENTS

        stream = await sdk(http).chat.completions.create(model="default", messages=ask,
                                                         tools=[WEATHER], stream=True)
        chunks = [c async for c in stream]
        words = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert words == TOOL_LEAD and "<tool_call>" not in words
        calls = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
        assert [(d.index, d.function.name, json.loads(d.function.arguments)) for d in calls] \
            == [(0, "get_weather", TOOL_ARGUMENTS)]
        assert chunks[-1].choices[0].finish_reason == "tool_calls"

        # The call and its result sent back: the box gets them as the template's function
        # and observation turns, and answers from the result.
        result = await sdk(http).chat.completions.create(model="default", tools=[WEATHER],
                                                         messages=[
            *ask, {"role": "assistant", "content": None, "tool_calls": [{
                "id": call.id, "type": "function", "function": {
                    "name": "get_weather", "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'}])
        assert result.choices[0].finish_reason == "stop"
        assert result.choices[0].message.content == 'The tool said: {"temperature": 21}'
        assert result.choices[0].message.tool_calls is None


async def test_n_choices_come_back_each_with_its_index_whole_and_streamed(tmp_path,
                                                                         monkeypatch):
    """n > 1 (issue 25, item 4): the replies are rows of one batch on the shared base, each
    a choice with its index; streamed, their chunks interleave as the rows make them."""
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        whole = await sdk(http).chat.completions.create(model="default", messages=HI, n=3)
        assert [c.index for c in whole.choices] == [0, 1, 2]
        assert all(c.message.content == ECHO and c.finish_reason == "stop"
                   for c in whole.choices)
        stream = await sdk(http).chat.completions.create(model="default", messages=HI, n=2,
                                                         stream=True,
                                                         stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        texts = {0: "", 1: ""}
        for chunk in chunks:
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
        assert texts == {0: ECHO, 1: ECHO}
        finished = [c.choices[0].index for c in chunks if c.choices and
                    c.choices[0].finish_reason]
        assert sorted(finished) == [0, 1]
        assert chunks[-1].usage.completion_tokens == 2 * whole.usage.completion_tokens / 3


async def test_tools_never_fail_a_request_the_model_answers_in_words(tmp_path, monkeypatch):
    """Open WebUI at its defaults: every message offers its ~28 built-in tools. A reply in
    words is a reply; tool_choice none offers no tools at all (as vLLM)."""
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        reply = await sdk(http).chat.completions.create(model="default", messages=HI,
                                                        tools=MANY_TOOLS)
        assert reply.choices[0].message.content == ECHO
        assert reply.choices[0].finish_reason == "stop"
        assert reply.choices[0].message.tool_calls is None
        unoffered = await sdk(http).chat.completions.create(
            model="default", tools=[WEATHER], tool_choice="none",
            messages=[{"role": "user", "content": "What is the weather in Paris?"}])
        assert unoffered.choices[0].message.tool_calls is None
        assert "Echo #1" in unoffered.choices[0].message.content
        one = await sdk(http).chat.completions.create(
            model="default", tools=[*MANY_TOOLS, WEATHER], parallel_tool_calls=False,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            messages=[{"role": "user", "content": "What is the weather in Paris?"}])
        assert [c.function.name for c in one.choices[0].message.tool_calls] == ["get_weather"]


async def test_a_page_chat_offers_its_tools_and_takes_the_tools_result_back(tmp_path,
                                                                          monkeypatch):
    """Issue 25, item 6 (the page's API): a chat's tools (its saved parameters, LlamaBoard's
    JSON list) are offered to the model; a reply that calls one says so (tool_calls, kept in
    its provenance), and the next message sent as the tool's result reaches the model as its
    template's observation turn, after the call as its function turn. A compare of that
    chat goes one model at a time (a batch takes no tools)."""
    from tests.rig.fake_wrappers.scripted_wrapper import TOOL_ARGUMENTS, TOOL_LEAD

    weather = WEATHER["function"]
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        chat = (await http.post("/api/chats", json={"params": {"tools": [weather]}})).json()
        asked = (await http.post("/api/chat", json={
            "chat_id": chat["id"], "message": "What is the weather in Paris?",
            "stream": False})).json()
        assert asked["content"] == TOOL_LEAD
        assert [(c["name"], json.loads(c["arguments"])) for c in asked["tool_calls"]] == [
            ("get_weather", TOOL_ARGUMENTS)]
        answered = (await http.post("/api/chat", json={
            "chat_id": chat["id"], "message": '{"temperature": 21}', "tool_result": True,
            "stream": False})).json()
        assert answered["content"] == 'The tool said: {"temperature": 21}'
        assert answered["tool_calls"] is None
        messages = (await http.get(f"/api/chats/{chat['id']}")).json()["messages"]
        assert messages[1]["provenance"]["tool_calls"][0]["name"] == "get_weather"
        assert messages[1]["provenance"]["tools"] == [weather]
        assert messages[2]["provenance"] == {"tool_result": True}
        refused = await http.post("/api/chats", json={"params": {"tools": [{"name": ""}]}})
        assert refused.status_code == 422 and "tools" in refused.text
        exported = (await http.get(f"/api/chats/{chat['id']}/export",
                                   params={"format": "md"})).text
        assert '*Calls* get_weather with {"city": "Paris"}' in exported, exported
        assert "## Tool result" in exported


async def test_cli_mode_answers_a_request_with_tools_in_words(tmp_path, monkeypatch):
    """llamafactory-cli chat takes no tools: the model answers without them (the box says
    so in the reply's notices), never a failed request."""
    async with Client(gateway(tmp_path, monkeypatch, "cli")) as http:
        reply = await sdk(http).chat.completions.create(
            model="default", tools=[WEATHER],
            messages=[{"role": "user", "content": "What is the weather in Paris?"}])
        assert reply.choices[0].message.tool_calls is None
        assert "Echo #1" in reply.choices[0].message.content


async def test_a_final_assistant_message_is_continued(tmp_path, monkeypatch):
    """vLLM's continue_final_message, Open WebUI's "continue": a conversation that ends with
    the assistant's words is continued from them (the real template's prompt is tested in
    tests/test_wrappers_box.py); CLI mode says it cannot."""
    from tests.rig.fake_wrappers.scripted_wrapper import CONTINUED

    partial = [{"role": "user", "content": "Tell me a story"},
               {"role": "assistant", "content": "Once upon a time"}]
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        reply = await sdk(http).chat.completions.create(model="default", messages=partial)
        assert reply.choices[0].message.content == CONTINUED
    async with Client(gateway(tmp_path / "cli", monkeypatch, "cli")) as http:
        with pytest.raises(openai.BadRequestError) as error:
            await sdk(http).chat.completions.create(model="default", messages=partial)
        assert error.value.param == "messages" and "CLI mode" in error.value.message


async def test_an_unknown_model_is_a_404_in_openais_shape(tmp_path, monkeypatch):
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        response = await http.post("/v1/chat/completions",
                                   json={"model": "nope", "messages": HI})
        assert response.status_code == 404
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "unknown_model" and "nope" in error["message"]
        with pytest.raises(openai.NotFoundError):
            await sdk(http).chat.completions.create(model="nope", messages=HI, stream=True)
        assert (await http.get("/v1/no-such-route")).json()["error"]["type"] == \
            "not_found_error"
        # Any method: a POST to a path no route serves is a 404 naming it (it was a 405 from
        # the page's static files), a known path asked with another method a 405.
        for method, path in (("POST", "/v1/embeddings"), ("PUT", "/v1/x"),
                             ("POST", "/api/nothing")):
            unknown = await http.request(method, path, json={})
            assert unknown.status_code == 404, unknown.text
            assert f"Unknown request URL: {method} {path}" in unknown.text
        wrong = await http.delete("/v1/models")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
        assert wrong.json()["error"]["type"] == "invalid_request_error"


async def test_a_box_that_cannot_serve_is_a_503_with_its_reason(tmp_path, monkeypatch):
    app = gateway(tmp_path, monkeypatch, base_model_path="/models/broken-base")
    async with Client(app) as http:
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as error:
                await sdk(http).chat.completions.create(model="default", messages=HI,
                                                        stream=stream)
            assert error.value.status_code == 503
            assert "base model path not found on the box: /models/broken-base" in \
                error.value.message
            assert error.value.code == "model_not_found"


async def test_gateway_token_is_required_when_set(tmp_path, monkeypatch):
    app = gateway(tmp_path, monkeypatch, gateway_token="s3cret-token")
    async with Client(app) as http:
        for key in ("wrong", "s3cret-tokenX", "s3cret-toke"):
            with pytest.raises(openai.AuthenticationError) as error:
                await sdk(http, api_key=key).models.list()
            assert "s3cret" not in error.value.message
        with pytest.raises(openai.AuthenticationError):
            await sdk(http, api_key="wrong").chat.completions.create(model="default",
                                                                    messages=HI)
        assert (await http.get("/v1/models")).status_code == 401  # no header at all
        reply = await sdk(http, api_key="s3cret-token").chat.completions.create(
            model="default", messages=HI)
        assert reply.choices[0].message.content == ECHO
    # Without a token, any key (clients insist on one) is accepted.
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        assert [m.id async for m in sdk(http, api_key="whatever").models.list()]


async def test_api_chats_are_kept_only_when_asked(tmp_path, monkeypatch):
    async with Client(gateway(tmp_path, monkeypatch)) as http:
        await sdk(http).chat.completions.create(model="default", messages=HI)
        assert (await http.get("/api/chats")).json()["chats"] == []
    async with Client(gateway(tmp_path, monkeypatch, store_api_chats=True)) as http:
        client = sdk(http)
        system = {"role": "system", "content": "Be brief."}
        first = await client.chat.completions.with_raw_response.create(
            model="default", messages=[system, *HI])
        chat_id = first.headers["x-lfgate-chat-id"]
        answer = first.parse().choices[0].message.content
        # The client's next request sends it all again: the same chat continues.
        history = [system, *HI, {"role": "assistant", "content": answer}]
        second = await client.chat.completions.with_raw_response.create(
            model="default", messages=[*history, {"role": "user", "content": "and more"}],
            stream=True)
        assert second.headers["x-lfgate-chat-id"] == chat_id
        _ = [c async for c in second.parse()]
        # A history the gateway did not write (few-shot, edited) is a chat of its own.
        other = await client.chat.completions.with_raw_response.create(
            model="default", messages=[system, {"role": "user", "content": "q"},
                                       {"role": "assistant", "content": "written by me"},
                                       {"role": "user", "content": "hi there"}])
        assert other.headers["x-lfgate-chat-id"] != chat_id

        chats = {c["id"]: c for c in (await http.get("/api/chats")).json()["chats"]}
        assert chats[chat_id]["source"] == "api" and chats[chat_id]["title"] == "hi there"
        kept = (await http.get(f"/api/chats/{chat_id}")).json()
        assert kept["system"] == "Be brief."
        branch = [(m["role"], m["content"], m["status"]) for m in kept["messages"]]
        assert branch == [("user", "hi there", "complete"), ("assistant", answer, "complete"),
                          ("user", "and more", "complete"),
                          ("assistant", "Echo #2 from tiny-base + no adapter: and more",
                           "complete")]
        assert kept["messages"][-1]["provenance"]["model"] == "default"
        copied = (await http.get(f"/api/chats/{other.headers['x-lfgate-chat-id']}")).json()
        assert [m["content"] for m in copied["messages"]][:2] == ["q", "written by me"]


@pytest.fixture
def slow_gateway(tmp_path: Path):
    """A real `lfgate serve` (a client's disconnect is seen only over a real socket) on the
    double, with replies that take seconds (400 chunks, 20 ms apart) and a bound of two."""
    env = {"SSH_HOST": "", "CHAT_MODE": "script", "CHAT_SCRIPT_PATH": str(SCRIPTED_WRAPPER),
           "REMOTE_PYTHON": sys.executable, "BASE_MODEL_PATH": BASE, "TEMPLATE": "qwen",
           "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gate.db'}",
           "RESCAN_INTERVAL": "0", "STORE_API_CHATS": "true", "MAX_CONCURRENT_TURNS": "2",
           "LFGATE_SCRIPTED_DELAY_S": "0.02", "LFGATE_SCRIPTED_LOAD_S": "0.05"}
    gw = GatewayProcess(env, tmp_path)
    yield gw
    assert gw.stop(), gw.log.read_text()[-3000:]


LONG = [{"role": "user", "content": "a long one please"}]


def _wait(check, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the state never came"
        time.sleep(0.05)


def test_a_client_that_goes_away_stops_the_reply_on_the_box(slow_gateway):
    gw = slow_gateway
    with gw.http.stream("POST", "/v1/chat/completions", json={
            "model": "default", "messages": LONG, "stream": True}) as response:
        chat_id = response.headers["x-lfgate-chat-id"]
        got = ""
        for line in response.iter_lines():
            if line.startswith("data: {"):
                got += json.loads(line[6:])["choices"][0]["delta"].get("content", "")
            if "sentence 2 " in got:
                break
    # The connection is closed here, after the first sentences: the box stops, and the reply
    # is kept as stopped with what was made, far short of the scripted 400 chunks.

    def last_reply() -> dict:
        return gw.http.get(f"/api/chats/{chat_id}").json()["messages"][-1]

    _wait(lambda: last_reply()["provenance"] is not None)
    reply = last_reply()
    assert reply["status"] == "stopped" and reply["provenance"]["finish_reason"] == "stopped"
    assert reply["content"].startswith(got) and "sentence 60 " not in reply["content"]


def test_more_replies_than_the_bound_get_a_429_with_retry_after(slow_gateway):
    gw = slow_gateway
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-x", max_retries=0)
    streams = [client.chat.completions.create(model="default", messages=LONG, stream=True)
               for _ in range(2)]
    for stream in streams:  # both are being answered (one by the box, one queued)
        next(iter(stream))
    with pytest.raises(openai.RateLimitError) as error:
        client.chat.completions.create(model="default", messages=HI)
    assert error.value.response.headers["retry-after"] == "2"
    assert "MAX_CONCURRENT_TURNS" in error.value.message
    busy = gw.http.post("/api/chat", json={"message": "hi", "stream": False})
    assert busy.status_code == 429 and busy.headers["retry-after"] == "2"
    for stream in streams:
        stream.close()
    _wait(lambda: gw.http.get("/api/models/default/status").json()["active_turns"] == 0)
    reply = client.chat.completions.create(model="default", messages=HI)
    assert reply.choices[0].message.content == ECHO


async def test_cli_mode_refuses_a_seed_it_cannot_honour(tmp_path, monkeypatch):
    async with Client(gateway(tmp_path, monkeypatch, mode="cli")) as http:
        with pytest.raises(openai.BadRequestError) as error:
            await sdk(http).chat.completions.create(model="default", messages=HI, seed=3)
        assert error.value.param == "seed" and "CLI mode" in error.value.message
        for extra in ({"presence_penalty": 0.5}, {"frequency_penalty": 1},
                      {"logit_bias": {"42": 3}}, {"min_p": 0.1},
                      {"response_format": {"type": "json_object"}}):
            with pytest.raises(openai.BadRequestError) as error:
                await sdk(http).chat.completions.create(model="default", messages=HI,
                                                        extra_body=extra)
            [name] = extra
            assert error.value.param == name and "CLI mode" in error.value.message
        # At the value that changes nothing, what clients send by default: accepted.
        neutral = await sdk(http).chat.completions.create(
            model="default", messages=HI, presence_penalty=0, frequency_penalty=0,
            logit_bias={}, response_format={"type": "text"})
        assert neutral.choices[0].message.content == ECHO
        reply = await sdk(http).chat.completions.create(model="default", messages=HI)
        assert reply.choices[0].message.content == ECHO


async def test_cli_mode_refuses_completions_by_name(tmp_path, monkeypatch):
    """llamafactory-cli chat always applies the chat template: raw text cannot be continued
    there, which the 400 says (script mode serves /v1/completions: test_tool_calls_box)."""
    async with Client(gateway(tmp_path, monkeypatch, mode="cli")) as http:
        with pytest.raises(openai.BadRequestError) as error:
            await sdk(http).completions.create(model="default", prompt="Once upon")
        assert error.value.param == "prompt" and "CLI mode" in error.value.message
        for bad, param in (({"prompt": [[]]}, "prompt"), ({"prompt": "x", "n": 2}, "n"),
                           ({"prompt": "x", "suffix": "y"}, "suffix"),
                           ({"prompt": "x", "logprobs": 21}, "logprobs")):
            answer = await http.post("/v1/completions", json={"model": "default", **bad})
            assert answer.status_code == 400 and answer.json()["error"]["param"] == param, \
                answer.text


async def test_an_oversized_body_is_a_413_in_openais_shape(tmp_path, monkeypatch):
    async with Client(gateway(tmp_path, monkeypatch, max_request_bytes=4096)) as http:
        big = [{"role": "user", "content": "x" * 5000}]
        with pytest.raises(openai.APIStatusError) as error:
            await sdk(http).chat.completions.create(model="default", messages=big)
        assert error.value.status_code == 413
        assert error.value.code == "body_too_large" and "MAX_REQUEST_BYTES" in \
            error.value.message


async def test_each_v1_refusal_is_one_log_line_with_its_reason(tmp_path, monkeypatch, caplog):
    """Issue 25: a 4xx's reason was not in the gateway's log (debugging Open WebUI took its
    own log). Now every /v1 refusal, whoever answered it, is a line naming the request, the
    status and the error's code and message; bounded, like the access log."""
    import logging

    from lfgate.api import refusal_log

    caplog.set_level(logging.INFO, logger="lfgate")
    monkeypatch.setattr(refusal_log, "WINDOW_S", 3600.0)  # one window for the whole test
    async with Client(gateway(tmp_path, monkeypatch, gateway_token="s3cret-token")) as http:
        auth = {"Authorization": "Bearer s3cret-token"}
        await http.post("/v1/chat/completions", headers=auth, json={
            "model": "default", "messages": HI, "modalities": ["audio"]})
        await http.get("/v1/models", headers={"Authorization": "Bearer wrong"})
        await http.post("/v1/chat/completions", headers=auth,
                        json={"model": "nope", "messages": HI})
        lines = [r.getMessage() for r in caplog.records if " /v1/" in r.getMessage()]
        assert lines[0].startswith("POST /v1/chat/completions 400 unsupported_parameter: "
                                   "modalities is not supported with this model"), lines
        assert lines[1].startswith("GET /v1/models 401 invalid_api_key: "), lines
        assert "wrong" not in lines[1]  # what the client sent as a key is never logged
        assert lines[2].startswith("POST /v1/chat/completions 404 unknown_model: "), lines
        ok = await http.get("/v1/models", headers=auth)
        assert ok.status_code == 200
        assert len([r for r in caplog.records if " /v1/" in r.getMessage()]) == 3
        caplog.clear()
        for _ in range(refusal_log.LINES + 30):
            await http.get("/v1/models", headers={"Authorization": "Bearer wrong"})
        assert len([r for r in caplog.records if " /v1/" in r.getMessage()]) == \
            refusal_log.LINES - 3  # the window's first three lines were the ones above


def test_the_finish_chunk_carries_the_logprobs_no_delta_did():
    """A stream's last chunk carries the part of done's whole list its deltas did not: all
    of it from a wrapper that streams none (before 0.6.1), the rest from one that does."""
    from lfgate.api.openai.stream import _rest

    whole = {"content": [{"token": "a"}, {"token": "b"}, {"token": ""}]}
    assert _rest(whole, 0) == whole
    assert _rest(whole, 2) == {"content": [{"token": ""}]}
    assert _rest(whole, 3) == {"content": []}
    assert _rest(None, 0) is None
