"""Any conversation an OpenAI client can send (issue 25): the turns lfgate builds from it are
ones LlamaFactory's templates take, or the request is a 400 naming what is wrong; never a
500 and never turns the box refuses. Property-based: /v1 messages and tools are an input
surface, and clients send every shape (Open WebUI after a failed turn, agents with parallel
calls, a greeting first, system messages anywhere)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from lfgate.remote import wrapper_protocol as wp
from lfgate.services.chat.completion_requests import completion_request
from lfgate.services.chat.openai_requests import turn_request
from lfgate.services.errors import BadParameter

texts = st.text(max_size=40)
calls = st.lists(st.fixed_dictionaries({
    "id": st.text(min_size=1, max_size=8), "type": st.just("function"),
    "function": st.fixed_dictionaries({
        "name": st.sampled_from(["get_weather", "search", ""]),
        "arguments": st.one_of(st.just('{"city": "Paris"}'), st.just("{}"), texts)})}),
    min_size=1, max_size=3)
message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "developer"]),
                           "content": texts}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.one_of(texts,
                                                                              st.none())}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none(),
                           "tool_calls": calls}),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": texts, "content": texts}),
    st.fixed_dictionaries({"role": st.sampled_from(["user", "tool"]),
                           "content": st.lists(st.fixed_dictionaries({
                               "type": st.just("text"), "text": texts}), max_size=2)}),
    # What a careless client sends.
    st.fixed_dictionaries({"role": st.sampled_from(["robot", None, 3])}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.integers()}),
    st.just("not a message"),
)
tool = st.one_of(
    st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries({
        "name": st.sampled_from(["get_weather", "search"]),
        "parameters": st.just({"type": "object"})})}),
    st.fixed_dictionaries({"type": st.sampled_from(["function", "retrieval"]),
                           "function": st.one_of(st.none(), st.fixed_dictionaries(
                               {"name": st.one_of(st.just(""), st.integers())}))}),
)
choice = st.one_of(st.none(), st.sampled_from(["auto", "none", "required", "any"]),
                   st.fixed_dictionaries({"type": st.just("function"),
                                          "function": st.fixed_dictionaries(
                                              {"name": st.sampled_from(["get_weather",
                                                                        "missing"])})}))


@settings(max_examples=400, deadline=None)
@given(messages=st.lists(message, min_size=1, max_size=8),
       tools=st.one_of(st.none(), st.lists(tool, max_size=3)), tool_choice=choice,
       cli_mode=st.booleans())
def test_any_conversation_becomes_turns_the_box_takes_or_a_400(messages, tools, tool_choice,
                                                               cli_mode):
    body = {"model": "default", "messages": messages}
    if tools is not None:
        body["tools"] = tools
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    try:
        request = turn_request(body, {"model", "messages"}, cli_mode=cli_mode)
    except BadParameter as exc:
        assert exc.message and exc.status_code == 400
        return
    # The wrapper's own check (protocol 5): alternating, starting with an asking turn,
    # ending with one (or with the assistant's words, to continue them).
    checked = wp.check_messages(request.messages, may_continue=True)
    assert checked == request.messages
    for turn in request.messages:
        if turn["role"] == wp.ROLE_FUNCTION:
            listed = json.loads(turn["content"])
            assert listed and all(set(call) == {"name", "arguments"} for call in listed)
    if request.tools is not None:
        assert wp.check_tools(request.tools) == request.tools
    # A call is forced (the box holds the reply to one) exactly for `required` or a named
    # function, and only with tools offered; the box takes the flag.
    assert request.params.get("force_tool_call", False) is (
        request.tools is not None and (tool_choice == "required" or isinstance(tool_choice,
                                                                               dict)))
    assert wp.check_params(request.params) == request.params
    if cli_mode:
        assert not request.continues


prompts = st.one_of(st.text(max_size=20), st.lists(st.text(max_size=10), max_size=3),
                    st.lists(st.integers(min_value=-2, max_value=10**6), max_size=4),
                    st.lists(st.lists(st.integers(min_value=0, max_value=99), max_size=3),
                             max_size=3),
                    st.integers(), st.none(), st.dictionaries(st.text(max_size=3), texts))


@settings(max_examples=300, deadline=None)
@given(prompt=prompts, echo=st.booleans(), logprobs=st.one_of(st.none(), st.integers(-1, 25)),
       max_tokens=st.one_of(st.none(), st.integers(0, 50)))
def test_any_completion_prompt_becomes_what_the_box_takes_or_a_400(prompt, echo, logprobs,
                                                                   max_tokens):
    body = {"model": "default", "prompt": prompt, "echo": echo}
    if logprobs is not None:
        body["logprobs"] = logprobs
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    try:
        request = completion_request(body, {"model", "prompt", "echo", "logprobs",
                                            "max_tokens"}, cli_mode=False)
    except BadParameter as exc:
        assert exc.message and exc.status_code == 400
        return
    for each in request.prompts:
        assert wp.check_completion({"prompt": each, "echo": request.echo,
                                    "logprobs": request.logprobs}) is not None
    assert wp.check_params(request.params) == request.params


schemas = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), texts,
              st.sampled_from([{"type": "object"}, {"type": "string"}, {"enum": ["a", "b"]}])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["type", "properties", "items",
                                                             "required", "x"]), inner,
                                            max_size=3)),
    max_leaves=12)
formats = st.one_of(
    st.none(), texts, st.integers(),
    st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema",
                                                    "structural_tag", "xml"])}),
    st.fixed_dictionaries({"type": st.just("json_schema"), "json_schema": st.one_of(
        st.none(), texts, st.fixed_dictionaries({"name": texts, "schema": schemas}),
        st.fixed_dictionaries({"name": texts, "strict": st.booleans(), "schema": schemas}))}))


@settings(max_examples=300, deadline=None)
@given(response_format=formats, cli_mode=st.booleans())
def test_any_response_format_is_a_schema_the_box_takes_or_a_400(response_format, cli_mode):
    """response_format as clients send it (and careless ones): JSON mode, a schema of any
    shape (xgrammar judges whether it can use it, on the box), or a 400 naming the field;
    never a 500, never a parameter the wrapper would refuse as malformed."""
    body = {"model": "default", "messages": [{"role": "user", "content": "Hi"}],
            "response_format": response_format}
    try:
        request = turn_request(body, {"model", "messages"}, cli_mode=cli_mode)
    except BadParameter as exc:
        assert exc.message and exc.status_code == 400
        assert exc.param.startswith("response_format")
        return
    assert wp.check_params(request.params) == request.params
    schema = request.params.get("json_schema")
    assert schema is None or (isinstance(schema, dict) and not cli_mode)
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    assert (schema is None) == (response_format is None or kind == "text")
