"""An OpenAI chat-completions request as a turn: its messages as the wrapper takes them
(the system prompt apart, turns alternating as LlamaFactory's templates take them: user or
a tool's result, then the assistant's words or its tool calls), its tools as function
definitions, and its settings as generation parameters.

Fields a client sends that change nothing here (`user`, `metadata`, ...) are accepted; a
field that would change the answer and that the box cannot honour (images, structured
output in CLI mode, the script-only sampling parameters there, ...) is refused with a
BadParameter naming it, so nobody gets an answer computed differently from what they asked
for (docs/openai.md's table says which, and what vLLM does).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from lfgate.remote import wrapper_protocol as wp
from lfgate.services.errors import BadParameter

# Accepted and ignored: they change nothing about the reply.
IGNORED = frozenset({"user", "metadata", "store", "service_tier", "prediction",
                     "prompt_cache_key", "safety_identifier", "stream_options"})
# Read here, not generation parameters: tools and how they may be called.
TOOL_FIELDS = frozenset({"tools", "tool_choice", "parallel_tool_calls"})
# Read here: the reply's format (JSON mode and JSON schemas, held by xgrammar on the box).
FORMAT_FIELDS = frozenset({"response_format"})
# Accepted only at a value that changes nothing (what clients send by default); anything
# else would change the answer in a way this box cannot honour.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "reasoning_effort": (None,),
    "verbosity": (None,),
    "web_search_options": (None,),
}
WHY_NOT: dict[str, str] = {
    "functions": "the deprecated functions field is not supported; send tools instead",
    "function_call": "the deprecated function_call field is not supported; send tool_choice "
                     "instead",
    "modalities": "text only",
    "audio": "text only",
    "reasoning_effort": "use enable_thinking (an extra body field) instead",
    "verbosity": "not supported by LlamaFactory's chat engine",
    "web_search_options": "no web search here",
}
SYSTEM_ROLES = ("system", "developer")
# OpenAI's roles as LlamaFactory's templates name them; each turn is asking (user, a tool's
# result) or answering (the assistant's words, its tool calls), and the two alternate.
ROLES = {"user": wp.ROLE_USER, "assistant": wp.ROLE_ASSISTANT, "tool": wp.ROLE_OBSERVATION,
         "function": wp.ROLE_OBSERVATION}
ASKING = frozenset(wp.ASKING_ROLES)
logger = logging.getLogger("lfgate")


@dataclass(frozen=True)
class TurnRequest:
    model: str
    # Alternating: user or observation (a tool's result), then assistant or function (its
    # calls, as JSON); ending with a user message or a tool's result.
    messages: list[dict[str, str]]
    params: dict[str, Any]  # generation parameters as GenParams has them (system included)
    # Function definitions the model is offered ({"name", "description"?, "parameters"?}),
    # None for none; `parallel_tool_calls` False: only a reply's first call is returned.
    tools: list[dict[str, Any]] | None = None
    parallel_tool_calls: bool = True
    n: int = 1  # replies (choices) to the conversation

    @property
    def continues(self) -> bool:
        """It ends with the assistant's words: the reply continues them."""
        return self.messages[-1]["role"] == wp.ROLE_ASSISTANT


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts (joined by newlines)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadParameter(f"{where}.content must be a string or a list of text parts",
                           param=f"{where}.content")
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            shown = kind if isinstance(kind, str) else type(part).__name__
            raise BadParameter(
                f"{where}.content[{index}] is of type {shown!r}: only text parts are "
                "supported (LlamaFactory's text models take no images, audio or files)",
                param=f"{where}.content[{index}]")
        texts.append(part["text"])
    return "\n".join(texts)


def _calls(message: dict[str, Any], where: str) -> str:
    """An assistant message's tool calls as LlamaFactory's `function` turn holds them: a
    JSON list of {"name", "arguments"}, the arguments as an object where they parse (the
    template's formatter encodes them itself; a JSON text would be encoded twice)."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list) or not calls:
        raise BadParameter(f"{where}.tool_calls must be a non-empty list",
                           param=f"{where}.tool_calls")
    listed = []
    for index, call in enumerate(calls):
        at = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadParameter(f"{at} must be an object with function.name",
                               param=f"{at}.function")
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):  # else kept as the text the model wrote
                arguments = json.loads(arguments or "{}")
        listed.append({"name": function["name"], "arguments": arguments})
    return json.dumps(listed, ensure_ascii=False)


def _turn(message: Any, where: str) -> tuple[str, str]:
    """One non-system message as (LlamaFactory role, text)."""
    if not isinstance(message, dict):
        raise BadParameter(f"{where} must be an object", param=where)
    role = message.get("role")
    if role not in ROLES:
        raise BadParameter(f"{where}.role is {role!r}: one of system, developer, user, "
                           "assistant, tool", param=f"{where}.role")
    if role == "assistant" and message.get("tool_calls"):
        if message.get("content"):
            logger.info("/v1: %s holds words and tool calls; the template's function turn "
                        "holds the calls only", where)
        return wp.ROLE_FUNCTION, _calls(message, where)
    if role == "assistant" and message.get("function_call"):
        raise BadParameter(f"{where}.function_call is deprecated and not supported: send "
                           "tool_calls", param=f"{where}.function_call")
    content = message.get("content")
    return ROLES[role], "" if content is None and role == "assistant" else _text(content, where)


def _messages(raw: list[Any]) -> tuple[str | None, list[dict[str, str]]]:
    """The messages as clients send them, as the wrapper takes them (asking and answering
    turns alternating, starting with an asking one, ending with one):

    - system (and developer) messages, wherever they are, make the system prompt, in order
      (one after the conversation began is logged: it is moved to the front);
    - consecutive messages on one side are one turn, their texts joined by a blank line
      (Open WebUI, after a failed reply, sends two user messages in a row; OpenAI takes them;
      a reply's tool results, one `tool` message per call, are one observation);
    - a conversation that opens with the assistant's message gets an empty user turn before
      it (a greeting a client shows first);
    - one that ends with the assistant's words is continued from them (vLLM's
      continue_final_message; Open WebUI's "continue").
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if isinstance(message, dict) and message.get("role") in SYSTEM_ROLES:
            if turns:
                logger.info("/v1: %s is a %s message after the conversation began; it is "
                            "part of the system prompt", where, message.get("role"))
            system.append(_text(message.get("content"), where))
            continue
        role, text = _turn(message, where)
        if turns and (turns[-1]["role"] in ASKING) == (role in ASKING):
            turns[-1] = _joined(turns[-1], role, text)
        elif not turns and role not in ASKING:
            turns += [{"role": wp.ROLE_USER, "content": ""}, {"role": role, "content": text}]
        else:
            turns.append({"role": role, "content": text})
    if not turns or turns[-1]["role"] == wp.ROLE_FUNCTION:
        raise BadParameter("messages: the last message must be the user's, a tool's "
                           "result, or the assistant's words to continue (not its tool "
                           "calls: send their results)", param="messages")
    return ("\n\n".join(system) if system else None), turns


def _joined(before: dict[str, str], role: str, text: str) -> dict[str, str]:
    """Two messages on one side as one turn. Tool calls win over words (a function turn is
    calls only); a tool's result and the user's words keep the first one's role."""
    if before["role"] == wp.ROLE_FUNCTION or role == wp.ROLE_FUNCTION:
        if before["role"] == role:  # two messages of calls: one list
            calls = json.loads(before["content"]) + json.loads(text)
            return {"role": role, "content": json.dumps(calls, ensure_ascii=False)}
        return before if before["role"] == wp.ROLE_FUNCTION else {"role": role, "content": text}
    separator = "\n" if before["role"] == role == wp.ROLE_OBSERVATION else "\n\n"
    return {"role": before["role"], "content": f"{before['content']}{separator}{text}"}


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, bool, bool]:
    """The function definitions the model is offered, after tool_choice, whether calls may
    come in parallel, and whether the reply must be a call: `none` offers none (the model
    does not see them), a named function offers that one alone and forces a call to it,
    `required` offers them all and forces a call to one, `auto` offers them all. A forced
    call is held to the template's tool format on the box (xgrammar, script mode)."""
    tools = body.get("tools")
    if tools is None or tools == []:
        if body.get("tool_choice") not in (None, "none", "auto"):
            raise BadParameter("tool_choice needs tools", param="tool_choice")
        return None, True, False
    if not isinstance(tools, list) or len(tools) > wp.MAX_TOOLS:
        raise BadParameter(f"tools must be a list of at most {wp.MAX_TOOLS} tools",
                           param="tools")
    functions = []
    for index, tool in enumerate(tools):
        at = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" \
                or not isinstance(function, dict):
            raise BadParameter(f"{at} must be {{\"type\": \"function\", \"function\": {{...}}}}",
                               param=at)
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise BadParameter(f"{at}.function.name must be a non-empty string",
                               param=f"{at}.function.name")
        if "parameters" in function and not isinstance(function["parameters"], dict):
            raise BadParameter(f"{at}.function.parameters must be a JSON Schema object",
                               param=f"{at}.function.parameters")
        functions.append({key: function[key] for key in ("name", "description", "parameters")
                          if function.get(key) is not None})
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise BadParameter("parallel_tool_calls must be true or false",
                           param="parallel_tool_calls")
    forced = choice == "required"
    if choice == "none":
        functions = []
    elif isinstance(choice, dict) and choice.get("type") == "function" \
            and isinstance(choice.get("function"), dict):
        wanted = choice["function"].get("name")
        functions = [f for f in functions if f["name"] == wanted]
        if not functions:
            raise BadParameter(f"tool_choice names {wanted!r}, which is not in tools",
                               param="tool_choice")
        forced = True
    elif choice not in (None, "auto", "required"):
        raise BadParameter("tool_choice must be none, auto, required or "
                           "{\"type\": \"function\", \"function\": {\"name\": ...}}",
                           param="tool_choice")
    if len(json.dumps(functions, ensure_ascii=False)) > wp.MAX_TOOLS_CHARS:
        raise BadParameter(f"tools are over {wp.MAX_TOOLS_CHARS} characters as JSON",
                           param="tools")
    return functions or None, parallel is not False, forced


def _stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise BadParameter("stop must be a string or a list of strings", param="stop")
    if len(stops) > wp.MAX_STOP or any(len(s) > wp.MAX_STOP_CHARS for s in stops):
        raise BadParameter(f"stop takes at most {wp.MAX_STOP} strings of at most "
                           f"{wp.MAX_STOP_CHARS} characters", param="stop")
    stops = [s for s in stops if s]
    return stops or None


def response_schema(value: Any, *, cli_mode: bool) -> dict[str, Any] | None:
    """The JSON schema OpenAI's response_format asks the reply to match: `json_object` is
    any object (JSON mode), `json_schema` its `schema` (strict or not, the reply is held to
    it: a valid reply is valid either way); `text` (the default) none."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind not in ("json_object", "json_schema"):
        # OpenAI's own wording, which LangChain recognises.
        raise BadParameter(f"'response_format' of type {str(kind)!r} is not supported with "
                           "this model: text, json_object or json_schema",
                           param="response_format", code="unsupported_parameter")
    if cli_mode:
        raise BadParameter(f"'response_format' of type {kind!r} is not supported in CLI mode "
                           "(llamafactory-cli chat cannot hold a reply to a format); "
                           "CHAT_MODE=script holds it", param="response_format",
                           code="unsupported_parameter")
    if kind == "json_object":
        return {"type": "object"}
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise BadParameter("response_format.json_schema.schema must be a JSON Schema object",
                           param="response_format.json_schema.schema")
    if len(json.dumps(schema, ensure_ascii=False)) > wp.MAX_JSON_SCHEMA_CHARS:
        raise BadParameter(f"response_format's schema is over {wp.MAX_JSON_SCHEMA_CHARS} "
                           "characters as JSON", param="response_format.json_schema.schema")
    return schema


def _thinking(body: dict[str, Any]) -> bool | None:
    """LlamaFactory's `enable_thinking`, as an extra field or in vLLM's chat_template_kwargs."""
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None:
        if not isinstance(kwargs, dict) or set(kwargs) - {"enable_thinking"}:
            raise BadParameter("chat_template_kwargs may hold only enable_thinking",
                               param="chat_template_kwargs")
        if "enable_thinking" in kwargs and body.get("enable_thinking") is None:
            return kwargs["enable_thinking"]
    return body.get("enable_thinking")


def turn_request(body: dict[str, Any], known: set[str], *, cli_mode: bool) -> TurnRequest:
    """`body` is the validated request (field types checked), `known` the fields its schema
    names; anything else is a field we do not know, refused like OpenAI refuses it."""
    unknown = sorted(set(body) - known - IGNORED - TOOL_FIELDS - FORMAT_FIELDS - set(NEUTRAL))
    if unknown:
        raise BadParameter(f"unrecognized request argument supplied: {unknown[0]}",
                           param=unknown[0], code="unknown_parameter")
    for name, neutral in NEUTRAL.items():
        if name in body and body[name] not in neutral:
            value = body[name]
            shown = name if isinstance(value, (list, dict)) else f"{name}={value!r}"
            raise BadParameter(f"{shown} is not supported with this model: {WHY_NOT[name]}",
                               param=name, code="unsupported_parameter")
    for name in wp.SCRIPT_ONLY_PARAMS:
        if cli_mode and body.get(name) not in (None, {}, 0, 0.0):
            raise BadParameter(f"{name} is not supported in CLI mode (llamafactory-cli chat "
                               f"takes no {name}); CHAT_MODE=script honours it", param=name,
                               code="unsupported_parameter")
    bias = body.get("logit_bias") or {}
    if any(not token.isdigit() for token in bias):
        raise BadParameter("logit_bias maps token ids (\"1234\") to biases",
                           param="logit_bias")
    if body.get("top_logprobs") and not body.get("logprobs"):
        raise BadParameter("top_logprobs needs logprobs: true", param="top_logprobs")
    system, messages = _messages(body["messages"])
    if cli_mode and messages[-1]["role"] == wp.ROLE_ASSISTANT:
        raise BadParameter("messages: continuing the assistant's last message is not "
                           "supported in CLI mode (llamafactory-cli chat answers typed "
                           "messages); CHAT_MODE=script continues it", param="messages",
                           code="unsupported_parameter")
    tools, parallel, forced = _tools(body)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    params: dict[str, Any] = {
        "temperature": body.get("temperature"), "top_p": body.get("top_p"),
        "top_k": body.get("top_k"), "repetition_penalty": body.get("repetition_penalty"),
        "max_new_tokens": max_tokens, "seed": body.get("seed"), "stop": _stop(body.get("stop")),
        "enable_thinking": _thinking(body), "system": system,
        # Zero is no penalty: not sent, so a CLI-mode box or a batch sees nothing new.
        "presence_penalty": body.get("presence_penalty") or None,
        "frequency_penalty": body.get("frequency_penalty") or None,
        "logit_bias": bias or None, "min_p": body.get("min_p") or None,
        # The box's `logprobs`: alternatives per token (0: the chosen token's alone).
        "logprobs": (body.get("top_logprobs") or 0) if body.get("logprobs") else None,
        "json_schema": response_schema(body.get("response_format"), cli_mode=cli_mode),
        "force_tool_call": forced or None,
    }
    return TurnRequest(body["model"], messages,
                       {key: value for key, value in params.items() if value is not None},
                       tools, parallel, body.get("n") or 1)
