"""An OpenAI chat-completions request as a turn: its messages as the wrapper takes them
(the system prompt apart, user and assistant alternating) and its settings as generation
parameters.

Fields a client sends that change nothing here (`user`, `metadata`, ...) are accepted; a
field that would change the answer and that the box cannot honour (`n` > 1, `tools`,
`logprobs`, images, penalties, ...) is refused with a BadParameter naming it, so nobody gets
an answer computed differently from what they asked for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from lfgate.remote import wrapper_protocol as wp
from lfgate.services.errors import BadParameter

# Accepted and ignored: they change nothing about the reply.
IGNORED = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls",
                     "prediction", "prompt_cache_key", "safety_identifier", "stream_options"})
# Accepted only at a value that changes nothing (what clients send by default); anything
# else would change the answer in a way this box cannot honour.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "response_format": (None, {"type": "text"}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "reasoning_effort": (None,),
    "verbosity": (None,),
    "web_search_options": (None,),
}
WHY_NOT: dict[str, str] = {
    "n": "one choice per request; send the request n times (or use compare)",
    "tools": "tool calling is not supported by this gateway",
    "tool_choice": "tool calling is not supported by this gateway",
    "functions": "function calling is not supported by this gateway",
    "function_call": "function calling is not supported by this gateway",
    "logprobs": "log probabilities are not returned by LlamaFactory's chat engine",
    "top_logprobs": "log probabilities are not returned by LlamaFactory's chat engine",
    "logit_bias": "LlamaFactory's chat engine takes no logit bias",
    "presence_penalty": "use repetition_penalty (an extra body field) instead",
    "frequency_penalty": "use repetition_penalty (an extra body field) instead",
    "response_format": "structured output is not supported; only {\"type\": \"text\"}",
    "modalities": "text only",
    "audio": "text only",
    "reasoning_effort": "use enable_thinking (an extra body field) instead",
    "verbosity": "not supported by LlamaFactory's chat engine",
    "web_search_options": "no web search here",
}
SYSTEM_ROLES = ("system", "developer")
logger = logging.getLogger("lfgate")


@dataclass(frozen=True)
class TurnRequest:
    model: str
    messages: list[dict[str, str]]  # user/assistant, alternating, ending with the user's
    params: dict[str, Any]  # generation parameters as GenParams has them (system included)


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


def _messages(raw: list[Any]) -> tuple[str | None, list[dict[str, str]]]:
    """The messages as clients send them, as the wrapper takes them (user and assistant
    alternating, starting with the user's, ending with the user's):

    - system (and developer) messages, wherever they are, make the system prompt, in order
      (one after the conversation began is logged: it is moved to the front);
    - consecutive messages of one role are one turn, their texts joined by a blank line
      (Open WebUI, after a failed reply, sends two user messages in a row; OpenAI takes them);
    - a conversation that opens with the assistant's message gets an empty user turn before
      it (a greeting a client shows first).
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadParameter(f"{where} must be an object", param=where)
        role = message.get("role")
        if role in SYSTEM_ROLES:
            if turns:
                logger.info("/v1: %s is a %s message after the conversation began; it is "
                            "part of the system prompt", where, role)
            system.append(_text(message.get("content"), where))
            continue
        if role in ("tool", "function") or message.get("tool_calls") or message.get(
                "function_call"):
            raise BadParameter(f"{where}: tool calling is not supported by this gateway",
                               param=where)
        if role not in ("user", "assistant"):
            raise BadParameter(f"{where}.role is {role!r}: one of system, developer, user, "
                               "assistant", param=f"{where}.role")
        text = _text(message.get("content"), where)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = f"{turns[-1]['content']}\n\n{text}"
        elif not turns and role == "assistant":
            turns += [{"role": "user", "content": ""}, {"role": role, "content": text}]
        else:
            turns.append({"role": role, "content": text})
    if not turns or turns[-1]["role"] != "user":
        raise BadParameter("messages: the last message must be the user's (there is "
                           "nothing to answer)", param="messages")
    return ("\n\n".join(system) if system else None), turns


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
    unknown = sorted(set(body) - known - IGNORED - set(NEUTRAL))
    if unknown:
        raise BadParameter(f"unrecognized request argument supplied: {unknown[0]}",
                           param=unknown[0], code="unknown_parameter")
    for name, neutral in NEUTRAL.items():
        if name in body and body[name] not in neutral:
            value = body[name]
            shown = name if isinstance(value, (list, dict)) else f"{name}={value!r}"
            raise BadParameter(f"{shown} is not supported: {WHY_NOT[name]}",
                               param=name, code="unsupported_parameter")
    if cli_mode and body.get("seed") is not None:
        raise BadParameter("seed is not supported in CLI mode (llamafactory-cli chat takes "
                           "no seed); CHAT_MODE=script honours it", param="seed",
                           code="unsupported_parameter")
    system, messages = _messages(body["messages"])
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    params: dict[str, Any] = {
        "temperature": body.get("temperature"), "top_p": body.get("top_p"),
        "top_k": body.get("top_k"), "repetition_penalty": body.get("repetition_penalty"),
        "max_new_tokens": max_tokens, "seed": body.get("seed"), "stop": _stop(body.get("stop")),
        "enable_thinking": _thinking(body), "system": system,
    }
    return TurnRequest(body["model"], messages,
                       {key: value for key, value in params.items() if value is not None})
