"""Tool calls over the real path (issue 25): the `openai` SDK -> `lfgate serve` /v1 ->
asyncssh -> the real OpenSSH sshd -> the script-mode wrapper -> the real LlamaFactory, with
adapters trained by LlamaFactory itself on the tiny base (tests/rig/train_adapters.sh):
`tool` calls get_weather in the qwen template's tool format and answers from the tool's
result; `words` answers a few prompts in plain words. Their exact answers are asserted."""

from __future__ import annotations

import json

import openai
import pytest

from tests.ui_rig import start_real_gateway

pytestmark = pytest.mark.box


@pytest.fixture(scope="module")
def gateway(sshd, box_python, tiny, trained, tmp_path_factory):
    """`default` is the tool adapter on the tiny base; the trained folder is ADAPTER_DIRS,
    so `words` (and `tool` again) are listed by id too."""
    adapters = trained["adapters"]
    process = start_real_gateway(sshd, box_python, tiny, tmp_path_factory.mktemp("gw-tools"),
                                 env={"ADAPTER_PATH": adapters["tool"]["path"],
                                      "ADAPTER_DIRS": str(adapters["words"]["path"]).rsplit(
                                          "/", 1)[0], "RESCAN_INTERVAL": "0"})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="any", timeout=300,
                         max_retries=0)


def cases(trained, adapter: str, *, calls: bool) -> list[dict]:
    return [case for case in trained["adapters"][adapter]["cases"]
            if bool(case["tool_calls"]) == calls]


def openai_messages(messages: list[dict]) -> list[dict]:
    """A case's LlamaFactory turns as an OpenAI client sends them: a function turn is the
    assistant's tool_calls (arguments as JSON text), an observation is a tool message."""
    sent: list[dict] = []
    for index, message in enumerate(messages):
        if message["role"] == "function":
            sent.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{index}_{n}", "type": "function",
                 "function": {"name": call["name"],
                              "arguments": json.dumps(call["arguments"])}}
                for n, call in enumerate(json.loads(message["content"]))]})
        elif message["role"] == "observation":
            sent.append({"role": "tool", "tool_call_id": f"call_{index - 1}_0",
                         "content": message["content"]})
        else:
            sent.append(message)
    return sent


def tools_of(case: dict) -> list[dict]:
    return [{"type": "function", "function": tool} for tool in json.loads(case["tools"])] \
        if isinstance(case["tools"], str) else [{"type": "function", "function": tool}
                                                 for tool in case["tools"]]


GREEDY = {"temperature": 0, "max_tokens": 96}


def test_the_tool_adapter_calls_its_tool_whole_and_streamed(client, trained):
    case = cases(trained, "tool", calls=True)[0]
    tools = tools_of(case)
    whole = client.chat.completions.create(model="default", messages=case["messages"],
                                           tools=tools, **GREEDY)
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert not choice.message.content  # the call alone: its text is not content
    assert [(c.function.name, json.loads(c.function.arguments))
            for c in choice.message.tool_calls] == [
        (call["name"], json.loads(call["arguments"])) for call in case["tool_calls"]]

    chunks = list(client.chat.completions.create(model="default", messages=case["messages"],
                                                 tools=tools, stream=True, **GREEDY))
    words = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert words == "" and "<tool_call>" not in words
    streamed = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert [(d.function.name, json.loads(d.function.arguments)) for d in streamed] == [
        (call["name"], json.loads(call["arguments"])) for call in case["tool_calls"]]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_the_tools_result_handed_back_is_answered_in_words(client, trained):
    """The call and its result sent back as an OpenAI client sends them (assistant
    tool_calls, then a tool message) reach the template as its function and observation
    turns: the adapter answers from the result, exactly as trained."""
    answered = [c for c in trained["adapters"]["tool"]["cases"]
                if c["messages"][-1]["role"] == "observation"]
    assert answered
    for case in answered:
        reply = client.chat.completions.create(
            model="default", messages=openai_messages(case["messages"]),
            tools=tools_of(case), **GREEDY)
        assert reply.choices[0].finish_reason == "stop"
        assert reply.choices[0].message.content == case["answer"]
        assert reply.choices[0].message.tool_calls is None


def test_a_model_that_is_no_tool_fine_tune_answers_in_words(client, trained):
    """Open WebUI's default sends its tools with every message: the words adapter, offered
    them, still answers in words (never a failed request); and as trained without them."""
    ids = {m.id for m in client.models.list()}
    words = next(i for i in ids if i.endswith("words"))
    tools = tools_of(cases(trained, "tool", calls=True)[0])
    for case in cases(trained, "words", calls=False)[:2]:
        plain = client.chat.completions.create(model=words, messages=case["messages"],
                                               **GREEDY)
        assert plain.choices[0].message.content == case["answer"]
        offered = client.chat.completions.create(model=words, messages=case["messages"],
                                                 tools=tools, **GREEDY)
        assert offered.choices[0].finish_reason in ("stop", "length")
        assert offered.choices[0].message.tool_calls is None
