"""Tool calls over the real path (issue 25): the `openai` SDK -> `lfgate serve` /v1 ->
asyncssh -> the real OpenSSH sshd -> the script-mode wrapper -> the real LlamaFactory, with
adapters trained by LlamaFactory itself on the tiny base (tests/rig/train_adapters.sh):
`tool` calls get_weather in the qwen template's tool format and answers from the tool's
result; `words` answers a few prompts in plain words. Their exact answers are asserted.
LangChain (`langchain-openai`) is driven against the same gateway: bind_tools and an agent
loop with a Python tool, whole and streamed; with_structured_output's methods, json_schema
held to its schema on the box (xgrammar)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

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
    # The first scan of ADAPTER_DIRS runs in the background: done before any test lists.
    assert process.http.post("/api/models/refresh", timeout=120).status_code == 200
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


# LangChain (langchain-openai) as a real client: bind_tools, an agent loop, structured output.

def weather_cases(trained) -> list[dict]:
    """Each city the tool adapter was trained on: the question, the tool as the training
    offered it, the call it answers with, the tool's result and the trained answer to it."""
    found = []
    for case in trained["adapters"]["tool"]["cases"]:
        if case["messages"][-1]["role"] != "observation":
            continue
        question, function, observation = case["messages"]
        if json.loads(function["content"])[0]["name"] != "get_weather":
            continue  # Open WebUI's list_memories (test_open_webui_box)
        found.append({"question": question["content"], "tools": case["tools"],
                      "call": json.loads(function["content"])[0],
                      "result": observation["content"], "answer": case["answer"]})
    assert found
    return found


def weather_tool(trained):
    """get_weather as a LangChain tool: a Python function answering with the trained results.
    Its schema is the trained one as given (the JSON text the adapter's prompt held, key order
    included): the schema `@tool` derives from a signature orders its keys otherwise
    (properties, required, type), and this tiny adapter knows its training prompt only."""
    cities = weather_cases(trained)
    spec = json.loads(cities[0]["tools"])[0]
    results = {case["call"]["arguments"]["city"]: case["result"] for case in cities}

    @tool(spec["name"], description=spec["description"], args_schema=spec["parameters"])
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return results[city]

    return get_weather


@pytest.fixture(scope="module")
def langchain_chat(gateway):
    return ChatOpenAI(base_url=f"{gateway.url}/v1", api_key="any", model="default",
                      temperature=0, max_retries=0, timeout=300, max_tokens=96)


def streamed(runnable, messages) -> AIMessage:
    """A streamed reply as LangChain clients take one: its AIMessageChunks added up."""
    chunks = list(runnable.stream(messages))
    assert chunks
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    return whole


def test_langchain_tool_schema_is_the_trained_one(trained):
    get_weather = weather_tool(trained)
    sent = convert_to_openai_tool(get_weather)
    assert sent["type"] == "function"
    assert json.dumps([sent["function"]], ensure_ascii=False) == \
        weather_cases(trained)[0]["tools"]


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_langchain_agent_loop_runs_the_python_tool_and_answers(langchain_chat, trained, mode):
    """bind_tools, then the agent loop by hand: the reply's tool_calls are run by the Python
    tool, its ToolMessage goes back, and the adapter answers from it, exactly as trained.
    Streamed, the call comes as tool_call_chunks that add up to the same call."""
    get_weather = weather_tool(trained)
    llm = langchain_chat.bind_tools([get_weather])
    for case in weather_cases(trained):
        messages: list = [HumanMessage(case["question"])]
        for _ in range(3):
            reply = llm.invoke(messages) if mode == "invoke" else streamed(llm, messages)
            messages.append(reply)
            if not reply.tool_calls:
                break
            messages.extend(get_weather.invoke(call) for call in reply.tool_calls)
        _asked, called, result, answer = messages  # one call, one answer: no more rounds
        assert isinstance(called, AIMessage) and called.content == ""
        assert [(c["name"], c["args"]) for c in called.tool_calls] == [
            (case["call"]["name"], case["call"]["arguments"])]
        assert called.tool_calls[0]["id"].startswith("call_")
        assert not called.invalid_tool_calls
        assert called.response_metadata["finish_reason"] == "tool_calls"
        if mode == "stream":
            assert [(c["name"], json.loads(c["args"]), c["id"])
                    for c in called.tool_call_chunks] == [
                (case["call"]["name"], case["call"]["arguments"], called.tool_calls[0]["id"])]
        assert isinstance(result, ToolMessage)
        assert result.content == case["result"]
        assert result.tool_call_id == called.tool_calls[0]["id"]
        assert isinstance(answer, AIMessage)
        assert answer.content == case["answer"]
        assert not answer.tool_calls and not answer.invalid_tool_calls
        assert answer.response_metadata["finish_reason"] == "stop"


class Weather(BaseModel):
    city: str


class Pick(BaseModel):
    color: Literal["red", "green", "blue"]
    count: int = Field(ge=0, le=9)


def test_langchain_structured_output_by_json_schema_is_held_to_the_schema(langchain_chat):
    """with_structured_output's default method sends response_format json_schema: the box
    holds the reply to it (xgrammar), so even the tool adapter, never trained on this,
    answers with a Pick. Also as a JSON Schema dict, and streamed."""
    assert isinstance(langchain_chat.with_structured_output(Pick).invoke("Pick one."), Pick)
    as_dict = langchain_chat.with_structured_output(Pick.model_json_schema())
    assert Pick.model_validate(as_dict.invoke("Pick one."))
    chunks = list(langchain_chat.with_structured_output(Pick).stream("Pick again."))
    assert isinstance(chunks[-1], Pick)


def test_the_sdk_parses_a_reply_held_to_its_model_and_json_mode_is_an_object(client):
    """The openai SDK's chat.completions.parse (strict json_schema from a pydantic model) on
    the random base, sampled: only the constraint can make that a Pick. json_object: any
    object, whole or streamed."""
    for seed in range(3):
        made = client.chat.completions.parse(
            model="base", messages=[{"role": "user", "content": "Pick one."}],
            response_format=Pick, temperature=1.0, seed=seed, max_tokens=40)
        assert made.choices[0].finish_reason == "stop"
        assert isinstance(made.choices[0].message.parsed, Pick)
    whole = client.chat.completions.create(
        model="base", messages=[{"role": "user", "content": "JSON, please."}],
        response_format={"type": "json_object"}, temperature=0, max_tokens=200)
    text = whole.choices[0].message.content
    assert text.startswith("{")
    if whole.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    streamed_text = "".join(
        chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
            model="base", messages=[{"role": "user", "content": "JSON, please."}],
            response_format={"type": "json_object"}, temperature=0, max_tokens=200,
            stream=True) if chunk.choices)
    assert streamed_text == text


def test_langchain_structured_output_by_function_calling_is_the_tools_arguments(
        langchain_chat, trained):
    """method="function_calling" goes by tools (tool_choice naming the function,
    parallel_tool_calls false): with the schema the adapter was trained to call, the
    structured output is the call's arguments."""
    for case in weather_cases(trained):
        spec = json.loads(case["tools"])[0]
        structured = langchain_chat.with_structured_output(spec, method="function_calling")
        assert structured.invoke(case["question"]) == case["call"]["arguments"]


def test_a_forced_call_is_held_to_the_template_format_and_the_tools_schema(
        client, langchain_chat, trained):
    """tool_choice `required` or naming a function forces a call (as vLLM does by structured
    output): the box holds the reply to one call in the template's own tool format, its
    arguments to the function's parameters (xgrammar). The words adapter, no tool-use
    fine-tune, answers in words unforced and with a call forced; the tool
    adapter, asked the weather with another tool offered too, calls the one named; and
    LangChain's function-calling structured output works on a model never trained on it."""
    ids = {m.id for m in client.models.list()}
    words = next(i for i in ids if i.endswith("words"))
    case = cases(trained, "words", calls=False)[0]
    weather = tools_of(cases(trained, "tool", calls=True)[0])
    # A closed set of values: a model that was never trained on a tool writes a free
    # string on and on (held to JSON, but not to any length).
    clock = {"type": "function", "function": {
        "name": "get_time", "description": "The time in a time zone.",
        "parameters": {"type": "object", "properties": {
            "zone": {"type": "string", "enum": ["UTC", "CET", "EST"]}}, "required": ["zone"]}}}
    for stream in (False, True):
        asked = {"model": words, "messages": case["messages"], "tools": [clock], **GREEDY}
        plain = client.chat.completions.create(**asked)
        assert plain.choices[0].message.tool_calls is None  # words (noisy: tools offered)
        forced = reply_of(client, stream, **asked, tool_choice="required")
        assert forced["finish_reason"] == "tool_calls", forced
        [(name, arguments)] = forced["calls"]
        assert name == "get_time" and arguments["zone"] in ("UTC", "CET", "EST")
        assert set(arguments) == {"zone"}, arguments
    question = cases(trained, "tool", calls=True)[0]["messages"]
    named = reply_of(client, False, model="default", messages=question,
                     tools=[*weather, clock], **GREEDY,
                     tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert named["finish_reason"] == "tool_calls"
    assert [name for name, _ in named["calls"]] == ["get_time"]
    assert named["calls"][0][1]["zone"] in ("UTC", "CET", "EST")
    pick = {"name": "pick", "description": "Pick a color and a count.",
            "parameters": Pick.model_json_schema()}
    picked = langchain_chat.bind(model=words).with_structured_output(
        pick, method="function_calling").invoke("Pick one.")
    assert Pick.model_validate(picked)


def reply_of(client, stream: bool, **request) -> dict:
    """A chat completion's finish reason and calls ((name, arguments), in order), whole or
    streamed."""
    if not stream:
        choice = client.chat.completions.create(**request).choices[0]
        return {"finish_reason": choice.finish_reason,
                "calls": [(c.function.name, json.loads(c.function.arguments))
                          for c in choice.message.tool_calls or []]}
    chunks = [c for c in client.chat.completions.create(**request, stream=True) if c.choices]
    return {"finish_reason": chunks[-1].choices[0].finish_reason,
            "calls": [(d.function.name, json.loads(d.function.arguments))
                      for c in chunks for d in c.choices[0].delta.tool_calls or []]}


def test_completions_continue_raw_text_and_score_it_for_harnesses(client, gateway):
    """/v1/completions over the real path (issue 25, item 4): raw text continued with no
    template, as vLLM serves it. lm-eval's loglikelihood request (token ids, echo,
    max_tokens 1, logprobs 1) scores the prompt's tokens; a greedy continuation's tokens
    are the likeliest at each step; several prompts are one choice each; streamed, the
    text comes in chunks and the log probabilities with the last."""
    made = client.completions.create(model="base", prompt="The quick brown fox",
                                     max_tokens=5, temperature=0, logprobs=2)
    [choice] = made.choices
    assert choice.finish_reason in ("length", "stop") and made.object == "text_completion"
    assert made.usage.completion_tokens == len(choice.logprobs.tokens) <= 5
    for chosen, top in zip(choice.logprobs.token_logprobs, choice.logprobs.top_logprobs,
                           strict=True):
        assert chosen == pytest.approx(max(top.values()), abs=1e-5)

    scored = client.completions.create(model="base", prompt=[[40, 41, 42, 43]], echo=True,
                                       max_tokens=1, temperature=0, logprobs=1)
    logprobs = scored.choices[0].logprobs
    assert len(logprobs.token_logprobs) == 5 and logprobs.token_logprobs[0] is None
    assert all(lp <= 0 for lp in logprobs.token_logprobs[1:])
    assert scored.usage.prompt_tokens == 4

    two = client.completions.create(model="default", prompt=["Hello", "The sky"],
                                    max_tokens=3, temperature=0)
    assert [c.index for c in two.choices] == [0, 1]
    streamed = list(client.completions.create(model="base", prompt="The quick brown fox",
                                              max_tokens=5, temperature=0, logprobs=2,
                                              stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == choice.text
    assert streamed[-1].choices[0].finish_reason == choice.finish_reason
    assert streamed[-1].choices[0].logprobs.token_logprobs == pytest.approx(
        choice.logprobs.token_logprobs, abs=1e-5)


def test_chat_logprobs_are_the_models_own_for_each_reply_token(client, trained):
    """logprobs / top_logprobs on chat (issue 25, item 4): each token of the reply with its
    log probability and alternatives, whole, and streamed as OpenAI streams them: each
    chunk carries the tokens its text completed, never a token whose text has not been
    sent yet, and together they are the whole list. The words adapter on a prompt it was
    trained on: greedy, so each token is its step's likeliest, and confident (it learned
    the answer)."""
    ids = {m.id for m in client.models.list()}
    words = next(i for i in ids if i.endswith("words"))
    case = cases(trained, "words", calls=False)[0]
    whole = client.chat.completions.create(model=words, messages=case["messages"],
                                           logprobs=True, top_logprobs=2, **GREEDY)
    choice = whole.choices[0]
    assert choice.message.content == case["answer"]
    content = choice.logprobs.content
    assert "".join(t.token for t in content) == case["answer"]
    for token in content:
        assert len(token.top_logprobs) <= 2 and token.bytes == list(token.token.encode())
        assert token.logprob == pytest.approx(max(t.logprob for t in token.top_logprobs),
                                              abs=1e-5)
    assert sum(t.logprob for t in content) / len(content) > -0.5  # it learned the answer
    chunks = list(client.chat.completions.create(model=words, messages=case["messages"],
                                                 logprobs=True, stream=True, **GREEDY))
    text, scored, carrying = "", [], 0
    for chunk in chunks:
        if not chunk.choices:
            continue
        text += chunk.choices[0].delta.content or ""
        if chunk.choices[0].logprobs is not None:
            scored += chunk.choices[0].logprobs.content
            carrying += bool(chunk.choices[0].delta.content
                             and chunk.choices[0].logprobs.content)
        assert text.startswith("".join(t.token for t in scored)), (text, scored)
    assert text == case["answer"]
    assert [(t.token, t.logprob) for t in scored] == [
        (t.token, pytest.approx(t.logprob, abs=1e-5)) for t in content]
    assert all(t.top_logprobs == [] for t in scored)
    # Streamed with the text, not saved for the end (the words come a piece at a time).
    assert carrying >= 2, [c.choices[0].logprobs for c in chunks if c.choices]


def test_n_greedy_choices_are_rows_of_one_batch_that_answer_alike(client, sshd, trained):
    """n = 3 on the words adapter (a shared base): one generate call with three rows (the
    box's spy counts them), each the trained answer (greedy), each a choice with its index."""
    words = next(m.id for m in client.models.list() if m.id.endswith("words"))
    case = cases(trained, "words", calls=False)[0]
    calls = sshd.spy.with_name(sshd.spy.name + ".generate.jsonl")
    seen = len(calls.read_text().splitlines()) if calls.exists() else 0
    reply = client.chat.completions.create(model=words, messages=case["messages"], n=3,
                                           **GREEDY)
    assert [(c.index, c.message.content) for c in reply.choices] == [
        (index, case["answer"]) for index in range(3)]
    made = [json.loads(line) for line in calls.read_text().splitlines()[seen:]]
    assert [call["rows"] for call in made] == [3]


def test_a_final_assistant_message_is_continued_from_its_words(client, trained):
    """vLLM's continue_final_message over the real template: the words adapter, given the
    first words of its trained answer as the assistant's message, continues with exactly
    the rest of it (the prompt is the template's, the reply's own end left off)."""
    words = next(m.id for m in client.models.list() if m.id.endswith("words"))
    for case in cases(trained, "words", calls=False)[:2]:
        # Cut between words, where its tokens were cut in training (" capital" is one).
        said = case["answer"].split(" ")
        begun = " ".join(said[:len(said) // 2])
        reply = client.chat.completions.create(
            model=words, messages=[*case["messages"], {"role": "assistant", "content": begun}],
            **GREEDY)
        assert begun + reply.choices[0].message.content == case["answer"]
        assert reply.choices[0].finish_reason == "stop"


# Simon Willison's `llm` as its users run it: extra-openai-models.yaml, as docs/openai.md says.
@pytest.fixture(scope="module")
def llm_cli(gateway, client, tmp_path_factory):
    """`llm` with a configuration folder of its own (LLM_USER_PATH) holding the gateway's
    `words` and `base` as docs/openai.md writes them; a function that runs it."""
    folder = tmp_path_factory.mktemp("llm")
    words = next(m.id for m in client.models.list() if m.id.endswith("words"))
    entries = [{"model_id": name, "model_name": model, "api_base": f"{gateway.url}/v1",
                "supports_schema": True} for name, model in
               (("lfgate-words", words), ("lfgate-base", "base"))]
    (folder / "extra-openai-models.yaml").write_text(json.dumps(entries))  # JSON is YAML
    program = Path(sys.executable).with_name("llm")

    def run(*args: str) -> str:
        done = subprocess.run([str(program), *args], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "LLM_USER_PATH": str(folder),
                                                "OPENAI_API_KEY": ""})
        assert done.returncode == 0, done.stderr
        return done.stdout.rstrip("\n")

    return run


def test_llm_answers_streamed_and_whole_with_its_options(llm_cli, trained):
    case = cases(trained, "words", calls=False)[0]
    question = case["messages"][-1]["content"]
    assert llm_cli("-m", "lfgate-words", question, "-o", "temperature", "0") == case["answer"]
    assert llm_cli("-m", "lfgate-words", "--no-stream", question, "-o", "temperature", "0",
                   "-o", "max_tokens", "96") == case["answer"]
    sampled = ["-m", "lfgate-base", "Tell me a story.", "-o", "temperature", "1",
               "-o", "seed", "7", "-o", "max_tokens", "20", "-o", "presence_penalty", "0.5"]
    assert llm_cli(*sampled) == llm_cli(*sampled)  # seeded on the box: the same sample


def test_llm_json_object_and_schema_are_held_on_the_box(llm_cli):
    """`-o json_object 1` and `--schema` (response_format json_object and json_schema) on the
    random base: JSON only because the box holds the reply to it."""
    made = llm_cli("-m", "lfgate-base", "JSON, please.", "-o", "json_object", "1",
                   "-o", "temperature", "0", "-o", "max_tokens", "200")
    assert made.startswith("{")
    schema = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
                                               "count": {"type": "integer", "minimum": 0,
                                                         "maximum": 9}},
              "required": ["color", "count"]}
    picked = json.loads(llm_cli("-m", "lfgate-base", "--schema", json.dumps(schema), "Pick.",
                                "-o", "max_tokens", "40"))
    assert picked["color"] in ("red", "green", "blue") and 0 <= picked["count"] <= 9
