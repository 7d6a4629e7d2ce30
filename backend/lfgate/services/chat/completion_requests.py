"""An OpenAI legacy completions request (/v1/completions) as turns: raw text (or token ids)
continued with no chat template, one turn per prompt, as vLLM serves them; what evaluation
harnesses (lm-eval's `local-completions`) send to score answers by log probability."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lfgate.remote import wrapper_protocol as wp
from lfgate.services.chat.openai_requests import IGNORED, _stop
from lfgate.services.errors import BadParameter

MAX_PROMPTS = 64  # prompts in one request (each is a turn of its own on the box)
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions
# Fields of a chat request that a completions request does not have, and its own that
# change nothing unless set.
COMPLETION_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1), "best_of": (None, 1), "suffix": (None, ""),
    "response_format": (None, {"type": "text"}),
}
COMPLETION_WHY_NOT = {
    "n": "one completion per prompt (send the prompt n times)",
    "best_of": "one completion per prompt",
    "suffix": "no fill-in-the-middle",
    "response_format": "a completion continues raw text; JSON mode and schemas are for chat "
                       "completions",
}


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompts: list[str | list[int]]  # each a text, or token ids
    echo: bool
    logprobs: int | None  # alternatives per token, or None: no log probabilities
    params: dict[str, Any]  # generation parameters as the wrapper takes them


def _prompts(value: Any) -> list[str | list[int]]:
    """OpenAI's four shapes: a text, texts, token ids, lists of token ids."""
    def ids(item: Any) -> bool:
        return isinstance(item, list) and bool(item) and all(
            isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in item)

    if isinstance(value, str):
        prompts: list[Any] = [value]
    elif ids(value):
        prompts = [value]
    elif isinstance(value, list) and value and all(
            isinstance(p, str) or ids(p) for p in value):
        prompts = list(value)
    else:
        raise BadParameter("prompt must be a string, a list of strings, a list of token ids "
                           "or a list of such lists", param="prompt")
    if len(prompts) > MAX_PROMPTS:
        raise BadParameter(f"prompt: at most {MAX_PROMPTS} prompts in one request",
                           param="prompt")
    if any(p == "" for p in prompts):
        raise BadParameter("prompt: an empty prompt has nothing to continue", param="prompt")
    return prompts


def completion_request(body: dict[str, Any], known: set[str], *, cli_mode: bool
                       ) -> CompletionRequest:
    """`body` is the validated request (types checked), `known` its schema's fields."""
    unknown = sorted(set(body) - known - IGNORED - set(COMPLETION_NEUTRAL))
    if unknown:
        raise BadParameter(f"unrecognized request argument supplied: {unknown[0]}",
                           param=unknown[0], code="unknown_parameter")
    for name, neutral in COMPLETION_NEUTRAL.items():
        if name in body and body[name] not in neutral:
            raise BadParameter(f"{name} is not supported with this model: "
                               f"{COMPLETION_WHY_NOT[name]}", param=name,
                               code="unsupported_parameter")
    if cli_mode:
        raise BadParameter("completions are not supported in CLI mode (llamafactory-cli chat "
                           "always applies the chat template); CHAT_MODE=script continues "
                           "raw text", param="prompt", code="unsupported_parameter")
    bias = body.get("logit_bias") or {}
    if any(not token.isdigit() for token in bias):
        raise BadParameter("logit_bias maps token ids (\"1234\") to biases", param="logit_bias")
    max_tokens = body.get("max_tokens")
    params: dict[str, Any] = {
        "temperature": body.get("temperature"), "top_p": body.get("top_p"),
        "top_k": body.get("top_k"), "repetition_penalty": body.get("repetition_penalty"),
        "max_new_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        "seed": body.get("seed"), "stop": _stop(body.get("stop")),
        "presence_penalty": body.get("presence_penalty") or None,
        "frequency_penalty": body.get("frequency_penalty") or None,
        "logit_bias": bias or None, "min_p": body.get("min_p") or None,
    }
    logprobs = body.get("logprobs")
    if logprobs is not None and not 0 <= logprobs <= wp.MAX_TOP_LOGPROBS:
        raise BadParameter(f"logprobs must be 0 to {wp.MAX_TOP_LOGPROBS}", param="logprobs")
    return CompletionRequest(body["model"], _prompts(body.get("prompt")),
                             bool(body.get("echo")), logprobs,
                             {k: v for k, v in params.items() if v is not None})
