"""The one protocol between the gateway and a wrapper on the box, defined here once.

JSON lines: one command per line on the wrapper's stdin (key ``op``), one event per line on
its stdout (key ``event``). docs/protocol.md describes it for people. This module is stdlib
only because it is uploaded to the box; the gateway imports the same file, so the names below
are the single source of truth for both sides.
"""

from __future__ import annotations

import json
import re
from typing import Any

# 2: adapters on a loaded base, chosen per chat (load_adapter, ...).
# 3: params `stop` and `seed`; done's usage carries prompt_tokens.
# 4: chat_batch: several chats (rows) answered by one generate call on the loaded base.
# 5: tool calls: chat's `tools`, the roles `function` and `observation` in messages, done's
#    `tool_calls`; OpenAI's sampling parameters; a chat's `completion` (raw text, echo and
#    log probabilities: /v1/completions) and done's `logprobs`.
# 6: params `json_schema` (a reply held to a JSON schema: /v1's response_format); a chat's
#    `fit` (drop_oldest: earliest turns left out of a prompt over the window) and done's
#    `left_out` and `usage.context_window`; params `force_tool_call` (a reply that is one
#    call of the chat's tools: tool_choice required or named); a chat's log probabilities
#    also streamed, each delta's `logprobs` holding the tokens its text completed (done's
#    are still whole).
PROTOCOL_VERSION = 6
WRAPPER_VERSION = "0.7.0"

# Commands (gateway -> wrapper).
OP_LOAD = "load"  # {"op", "model": ModelSpec, "params"?, "timeout_s"?, "max_adapters"?}
# {"op", "id", "messages", "params"?, "adapter"?: path|null, "template"?, "tools"?,
#  "completion"?: {"prompt": text | [token ids], "echo"?, "logprobs"?}, "fit"?}
OP_CHAT = "chat"
OP_CANCEL = "cancel"  # {"op", "id"}
OP_UNLOAD = "unload"  # {"op"}
OP_PING = "ping"  # {"op", "id"?}
OP_LOAD_ADAPTER = "load_adapter"  # {"op", "id"?, "path"}: onto the loaded base, unmerged
OP_UNLOAD_ADAPTER = "unload_adapter"  # {"op", "id"?, "path"}
# {"op", "id", "rows": [{"id", "messages", "adapter"?, "template"?}], "params"?}: every row
# a chat of its own (its own events under its id; `cancel` stops one row), one generate call.
OP_CHAT_BATCH = "chat_batch"
OPS = (OP_LOAD, OP_CHAT, OP_CANCEL, OP_UNLOAD, OP_PING, OP_LOAD_ADAPTER, OP_UNLOAD_ADAPTER,
       OP_CHAT_BATCH)
MAX_BATCH_ROWS = 8

# Events (wrapper -> gateway).
EV_HELLO = "hello"  # {"event", "protocol", "wrapper", "mode", "python", "pid", "features"}
EV_LOADING = "loading"  # {"event", "model"}
EV_READY = "ready"  # {"event", "load_seconds", "model", "held"}
EV_DELTA = "delta"  # {"event", "id", "text", "logprobs"?}
EV_INFO = "info"  # {"event", "id"?, "code", "message"}: something the user should know
# {"event", "id", "content", "finish_reason", "timing", "usage"?, "held"?, "tool_calls"?}
EV_DONE = "done"
EV_ERROR = "error"  # {"event", "id"?, "code", "message", "hint"}
EV_PONG = "pong"  # {"event", "id"?, "state", "held"}
EV_UNLOADED = "unloaded"  # {"event"}
EV_ADAPTER_LOADED = "adapter_loaded"  # {"event", "id"?, "path", "load_seconds", "held"}
EV_ADAPTER_UNLOADED = "adapter_unloaded"  # {"event", "id"?, "path", "held"}

# What a wrapper can do beyond protocol 1 (hello's "features").
FEATURE_ADAPTERS = "adapters"  # serves a loaded base's adapters per chat (script mode, LoRA)
FEATURE_BATCH = "batch"  # answers chat_batch (script mode, Hugging Face engine)
FEATURE_TOOLS = "tools"  # formats a chat's tools and parses the calls (script mode)
FEATURE_COMPLETE = "complete"  # continues raw text, with log probabilities (script mode)
FEATURE_LIVE_BATCH = "live_batch"  # chats that overlap generate together (issue 26)
MAX_TOP_LOGPROBS = 20  # alternatives per token a completion may ask for (OpenAI's bound)

# finish_reason values in EV_DONE.
FINISH_STOP = "stop"  # the model ended its reply
FINISH_LENGTH = "length"  # max_new_tokens reached
FINISH_STOPPED = "stopped"  # cancelled by the gateway; content holds the text so far

# EV_INFO codes.
INFO_CLI_RESTARTED = "cli_restarted"  # CLI mode: settings changed, the CLI was restarted
INFO_CONTEXT_RESET = "context_reset"  # the model no longer holds earlier turns of this chat
INFO_MESSAGE_ADJUSTED = "message_adjusted"  # CLI mode: text changed so the CLI accepts it
INFO_PARAM_IGNORED = "param_ignored"  # a parameter this engine cannot honour (CLI mode: seed)

# Roles in a chat's messages, as LlamaFactory's templates name them: `function` is the
# assistant's tool call(s) (content: a JSON list of {"name", "arguments"}), `observation` a
# tool's result handed back. Turns alternate: user or observation, then assistant or function.
ROLE_USER, ROLE_ASSISTANT = "user", "assistant"
ROLE_FUNCTION, ROLE_OBSERVATION = "function", "observation"
ASKING_ROLES = (ROLE_USER, ROLE_OBSERVATION)  # at even places, and last
ANSWERING_ROLES = (ROLE_ASSISTANT, ROLE_FUNCTION)  # at odd places
# Tools a chat offers the model: function definitions ({"name", "description"?,
# "parameters"?}), formatted by the template's own tool format (script mode).
MAX_TOOLS = 128
MAX_TOOLS_CHARS = 256_000

# Generation parameters a chat may set; `system` and `enable_thinking` travel with them.
GEN_PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": (int,),
    "max_new_tokens": (int,),
    "repetition_penalty": (int, float),
    "system": (str,),
    "enable_thinking": (bool,),
    "stop": (list,),  # up to MAX_STOP strings: the reply ends before the first one it makes
    "seed": (int,),  # sampling seed, where the engine honours it (script mode)
    # Version 5, script mode (logits processors on the Hugging Face engine), as OpenAI and
    # vLLM define them: each token's logit less presence_penalty once it appears in the reply
    # and frequency_penalty per time it does; logit_bias adds to given token ids ({"id":
    # bias}); min_p drops tokens below min_p times the likeliest one's probability.
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "logit_bias": (dict,),
    "min_p": (int, float),
    # Chat log probabilities (version 5): each reply token's, and this many likeliest
    # alternatives (0 to MAX_TOP_LOGPROBS); done's `logprobs` is OpenAI's chat shape.
    "logprobs": (int,),
    # Version 6: the reply is JSON valid against this schema ({"type": "object"}: any
    # object, OpenAI's JSON mode), held to it token by token (xgrammar on the box).
    "json_schema": (dict,),
    # Version 6: the reply is one call to one of the chat's tools, in the template's tool
    # format, its arguments held to the tool's parameters (xgrammar): tool_choice required,
    # or a named function (the gateway then offers that one alone).
    "force_tool_call": (bool,),
}
# Parameters llamafactory-cli chat cannot take: refused in CLI mode (the gateway says so).
SCRIPT_ONLY_PARAMS = ("seed", "presence_penalty", "frequency_penalty", "logit_bias", "min_p",
                      "logprobs", "json_schema")
MAX_JSON_SCHEMA_CHARS = 64_000
MAX_LOGIT_BIAS = 300  # token ids in one logit_bias, as OpenAI allows
MAX_STOP = 4
MAX_STOP_CHARS = 256

# Error codes: each one a user can act on, with the fix in ERROR_HINTS.
E_BAD_REQUEST = "bad_request"
E_NOT_LOADED = "not_loaded"
E_BUSY = "busy"
E_CLI_NOT_FOUND = "cli_not_found"
E_PEXPECT_MISSING = "pexpect_missing"
E_LLAMAFACTORY_MISSING = "llamafactory_missing"
E_MODEL_NOT_FOUND = "model_not_found"
E_ADAPTER_NOT_FOUND = "adapter_not_found"
E_ADAPTER_MISMATCH = "adapter_mismatch"
E_OUT_OF_MEMORY = "out_of_memory"
E_TIMEOUT = "timeout"
E_MESSAGE_TOO_LONG = "message_too_long"
E_CONTEXT_TOO_LONG = "context_length_exceeded"  # OpenAI's code: prompt + reply over the window
E_LOAD_FAILED = "load_failed"
E_GENERATION_FAILED = "generation_failed"
E_CLI_EXITED = "cli_exited"
E_NOT_SUPPORTED = "not_supported"
E_TEMPLATE_UNUSABLE = "template_unusable"  # the template needs tokens the tokenizer lacks
E_ENGINE_MISSING = "engine_missing"  # INFER_BACKEND=vllm/sglang without that package

ERROR_HINTS: dict[str, str] = {
    E_BAD_REQUEST: "The gateway sent a command this wrapper does not understand; "
    "check that the gateway and wrapper versions match.",
    E_NOT_LOADED: "Load the model first.",
    E_BUSY: "Another command is still running; retry when it has finished.",
    E_CLI_NOT_FOUND: "Install LlamaFactory on the box, or set LLAMAFACTORY_CLI_PATH (or "
    "CONDA_ENV / REMOTE_PYTHON) so the wrapper can find `llamafactory-cli`.",
    E_PEXPECT_MISSING: "CLI mode needs pexpect in the box's Python: `pip install pexpect`, "
    "or use CHAT_MODE=script.",
    E_LLAMAFACTORY_MISSING: "Script mode needs LlamaFactory in the box's Python: "
    "`pip install llamafactory`, or point REMOTE_PYTHON / CONDA_ENV at the env that has it.",
    E_MODEL_NOT_FOUND: "Check BASE_MODEL_PATH: it must be a model directory on the box "
    "(or a hub id the box can download).",
    E_ADAPTER_NOT_FOUND: "Check ADAPTER_PATH: it must be an adapter directory on the box "
    "(the one holding adapter_config.json).",
    E_ADAPTER_MISMATCH: "The adapter was trained on a different base model: point "
    "BASE_MODEL_PATH at the model the adapter was trained from.",
    E_OUT_OF_MEMORY: "The box ran out of GPU or host memory: unload other models, "
    "lower max_new_tokens, or use a quantised or smaller model.",
    E_TIMEOUT: "The box did not answer in time: raise CHAT_TIMEOUT, or check the box's "
    "load (nvidia-smi, free -h).",
    E_CONTEXT_TOO_LONG: "Shorten the conversation (a new chat, or fewer earlier turns) or ask "
    "for fewer new tokens (max_new_tokens / max_tokens).",
    E_MESSAGE_TOO_LONG: "Shorten the message, or use CHAT_MODE=script, which has no "
    "terminal line limit.",
    E_LOAD_FAILED: "LlamaFactory could not load the model; the message has its last words.",
    E_GENERATION_FAILED: "LlamaFactory failed while generating; the message has its last "
    "words.",
    E_CLI_EXITED: "llamafactory-cli exited; the message has its last output. The next "
    "message restarts it.",
    E_TEMPLATE_UNUSABLE: "The template this model names needs special tokens the loaded "
    "base's tokenizer does not have, so no reply can be made with it: chat with the base's "
    "own template (set this run's template, or TEMPLATE), or load a base whose tokenizer "
    "has them.",
    E_NOT_SUPPORTED: "This wrapper cannot do what was asked (CLI mode, a merged adapter, or "
    "another engine): the message says what can; an adapter can be loaded as its own model.",
    E_ENGINE_MISSING: "INFER_BACKEND=vllm or sglang runs LlamaFactory's vLLM or SGLang engine, "
    "which must be installed beside LlamaFactory in the box's Python (`pip install vllm`, or "
    "`pip install \"sglang[all]\"`; both need GPUs), or set INFER_BACKEND=huggingface.",
}

# Errors of a model that cannot answer as it is (the same files give the same error): the
# gateway lists it unusable with the reason, and /v1 refuses it with a 400 (never a status a
# client retries) until its files change or it is loaded again on purpose.
MODEL_UNUSABLE_CODES = frozenset({E_TEMPLATE_UNUSABLE, E_ADAPTER_MISMATCH})


class WrapperError(Exception):
    """An error the wrapper reports as an EV_ERROR event, with a code a program can act on."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint if hint is not None else ERROR_HINTS.get(code, "")

    def event(self, turn_id: str | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event": EV_ERROR,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }
        if turn_id is not None:
            event["id"] = turn_id
        return event


_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))
_OPTIONAL_TEXT = (str, type(None))
# What the gateway reads of each event: field -> (required, the types it may have). An event
# of another name (a newer wrapper's) is passed on as it is; a field not named here too.
EVENT_FIELDS: dict[str, dict[str, tuple[bool, tuple[type, ...]]]] = {
    EV_READY: {"load_seconds": (False, _OPTIONAL_NUMBER), "held": (False, (dict,))},
    EV_DELTA: {"id": (True, (str,)), "text": (True, (str,)), "logprobs": (False, (dict,))},
    EV_INFO: {"id": (False, _OPTIONAL_TEXT), "code": (True, (str,)), "message": (True, (str,))},
    EV_DONE: {"id": (True, (str,)), "content": (True, (str,)), "finish_reason": (True, (str,)),
              "timing": (True, (dict,)), "usage": (False, (dict,)), "batch": (False, (dict,)),
              "held": (False, (dict,)), "tool_calls": (False, (list,)),
              "logprobs": (False, (dict,))},
    EV_ERROR: {"id": (False, _OPTIONAL_TEXT), "code": (False, _OPTIONAL_TEXT),
               "message": (False, _OPTIONAL_TEXT), "hint": (False, _OPTIONAL_TEXT)},
    EV_PONG: {"id": (False, _OPTIONAL_TEXT), "held": (False, (dict,))},
    EV_ADAPTER_LOADED: {"id": (False, _OPTIONAL_TEXT), "path": (False, (str,)),
                        "load_seconds": (False, _OPTIONAL_NUMBER), "held": (False, (dict,))},
    EV_ADAPTER_UNLOADED: {"id": (False, _OPTIONAL_TEXT), "path": (False, (str,)),
                          "held": (False, (dict,))},
}
# Numbers inside these objects (a `timing` of text would reach every export as text).
NUMBER_MAPS = ("timing", "usage")


def event_problem(event: Any) -> str | None:
    """What is wrong with an event a wrapper wrote (a person reads it), or None."""
    if not isinstance(event, dict):
        return f"an event must be a JSON object, not {type(event).__name__}"
    name = event.get("event")
    if not isinstance(name, str):
        return "an event needs an \"event\" name (a string)"
    if "id" in event and not isinstance(event["id"], _OPTIONAL_TEXT):
        return f"{name}: \"id\" must be a string"
    for field, (required, types) in EVENT_FIELDS.get(name, {}).items():
        if field not in event:
            if required:
                return f"{name}: \"{field}\" is missing"
            continue
        value = event[field]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            said = {"dict": "an object", "str": "a string", "int": "a number",
                    "float": "a number", "NoneType": "null"}
            return f"{name}: \"{field}\" must be " + " or ".join(
                dict.fromkeys(said.get(t.__name__, t.__name__) for t in types))
        if field in NUMBER_MAPS:
            for key, number in value.items():
                if isinstance(number, bool) or not isinstance(number, _OPTIONAL_NUMBER):
                    return f"{name}: \"{field}.{key}\" must be a number or null"
        if field == "tool_calls":
            for index, call in enumerate(value):
                if not isinstance(call, dict) or not all(
                        isinstance(call.get(key), str) for key in ("name", "arguments")):
                    return (f"{name}: \"tool_calls[{index}]\" must be an object with string "
                            "\"name\" and \"arguments\"")
    return None


_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


def as_text(value: Any) -> Any:
    """`value` with every string in it (keys too) Unicode text a store can keep: each lone
    surrogate and each NUL is U+FFFD. A path whose name is not UTF-8 comes as the box's
    Python names it (each such byte a lone surrogate, opened exactly); echoed back in `held`
    or an error's message it goes as text, as the gateway lists it (docs/protocol.md,
    "Paths"). Both sides apply it: the wrapper to what it writes, the gateway to what it
    reads (a custom wrapper's output too)."""
    if isinstance(value, str):
        return _NOT_TEXT.sub("\ufffd", value) if _NOT_TEXT.search(value) else value
    if isinstance(value, dict):
        return {as_text(k): as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # the box's Python may be 3.9
        return [as_text(item) for item in value]
    return value


def encode(message: dict[str, Any]) -> str:
    """One message as one line; ensure_ascii keeps the line free of exotic separators."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":")) + "\n"


def decode(line: str | bytes) -> dict[str, Any]:
    """Parse one line; anything but a JSON object is a bad request."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WrapperError(E_BAD_REQUEST, f"not a JSON line: {exc}") from exc
    if not isinstance(message, dict):
        raise WrapperError(E_BAD_REQUEST, "a protocol line must be a JSON object")
    return message


def check_params(params: Any) -> dict[str, Any]:
    """Validate generation parameters; None values mean "use the default" and are dropped."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise WrapperError(E_BAD_REQUEST, "params must be an object")
    checked: dict[str, Any] = {}
    for key, value in params.items():
        if key not in GEN_PARAM_TYPES:
            raise WrapperError(E_BAD_REQUEST, f"unknown parameter {key!r}")
        if value is None:
            continue
        types = GEN_PARAM_TYPES[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise WrapperError(E_BAD_REQUEST, f"parameter {key!r} must be {names}")
        if key == "stop":
            value = check_stop(value)
        if key == "logit_bias":
            value = check_logit_bias(value)
        if key == "json_schema" and len(json.dumps(value)) > MAX_JSON_SCHEMA_CHARS:
            raise WrapperError(E_BAD_REQUEST, f"parameter 'json_schema' is over "
                               f"{MAX_JSON_SCHEMA_CHARS} characters as JSON")
        if key == "logprobs" and not 0 <= value <= MAX_TOP_LOGPROBS:
            raise WrapperError(E_BAD_REQUEST, f"parameter 'logprobs' must be 0 to "
                               f"{MAX_TOP_LOGPROBS} (alternatives per token)")
        checked[key] = value
    return checked


def check_logit_bias(value: dict[Any, Any]) -> dict[str, float]:
    """{token id (a decimal string, as JSON keys are): bias from -100 to 100}."""
    if len(value) > MAX_LOGIT_BIAS:
        raise WrapperError(E_BAD_REQUEST, f"logit_bias takes at most {MAX_LOGIT_BIAS} tokens")
    for key, bias in value.items():
        if not (isinstance(key, str) and key.isdigit()) or isinstance(bias, bool) \
                or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
            raise WrapperError(E_BAD_REQUEST, "logit_bias maps token ids (\"1234\") to biases "
                               "from -100 to 100")
    return {key: float(bias) for key, bias in value.items()}


def check_stop(value: list[Any]) -> list[str]:
    """Stop strings: 1 to MAX_STOP non-empty strings (duplicates dropped)."""
    if not value or len(value) > MAX_STOP or not all(
            isinstance(item, str) and 0 < len(item) <= MAX_STOP_CHARS for item in value):
        raise WrapperError(E_BAD_REQUEST, f"parameter 'stop' must be 1 to {MAX_STOP} non-empty "
                           f"strings of at most {MAX_STOP_CHARS} characters")
    return list(dict.fromkeys(value))


def check_messages(messages: Any, *, may_continue: bool = False) -> list[dict[str, str]]:
    """A chat history: turns alternating (user or observation, then assistant or function),
    ending with a user message or a tool's result (observation); with `may_continue`
    (version 5), or with the assistant's words, which the reply continues."""
    if not isinstance(messages, list) or not messages:
        raise WrapperError(E_BAD_REQUEST, "messages must be a non-empty list")
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise WrapperError(E_BAD_REQUEST, f"messages[{index}] must be an object")
        role, content = message.get("role"), message.get("content")
        expected = ASKING_ROLES if index % 2 == 0 else ANSWERING_ROLES
        if role not in expected:
            raise WrapperError(
                E_BAD_REQUEST,
                f"messages[{index}].role must be {' or '.join(map(repr, expected))} (turns "
                "alternate, starting with the user; the system prompt goes in params.system)",
            )
        if not isinstance(content, str):
            raise WrapperError(E_BAD_REQUEST, f"messages[{index}].content must be a string")
        checked.append({"role": role, "content": content})
    if checked[-1]["role"] not in ASKING_ROLES and not (
            may_continue and checked[-1]["role"] == ROLE_ASSISTANT):
        raise WrapperError(E_BAD_REQUEST, "the last message must be the user's (or a tool's "
                           "result)")
    return checked


# A prompt over the model's window (version 6): refused (context_too_long, OpenAI's way),
# or its earliest turns left out until it fits (the page's way: done says how many).
FIT_REFUSE = "refuse"
FIT_DROP_OLDEST = "drop_oldest"


def check_fit(value: Any) -> str:
    if value is None:
        return FIT_REFUSE
    if value not in (FIT_REFUSE, FIT_DROP_OLDEST):
        raise WrapperError(E_BAD_REQUEST, f"fit must be {FIT_REFUSE!r} or {FIT_DROP_OLDEST!r}")
    return value


def check_completion(value: Any) -> dict[str, Any] | None:
    """A chat that continues raw text rather than a conversation (version 5, /v1/completions):
    `prompt` (text, or token ids), `echo` (the prompt's tokens are scored and returned too),
    `logprobs` (None: none; n: each token's log probability and its n likeliest
    alternatives, 0 to MAX_TOP_LOGPROBS)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"prompt", "echo", "logprobs"}:
        raise WrapperError(E_BAD_REQUEST, "completion must be {prompt, echo?, logprobs?}")
    prompt = value.get("prompt")
    ids = isinstance(prompt, list) and prompt and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt)
    if not (isinstance(prompt, str) and prompt) and not ids:
        raise WrapperError(E_BAD_REQUEST, "completion.prompt must be non-empty text or a "
                           "list of token ids")
    echo, top = value.get("echo", False), value.get("logprobs")
    if not isinstance(echo, bool):
        raise WrapperError(E_BAD_REQUEST, "completion.echo must be true or false")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int)
                            or not 0 <= top <= MAX_TOP_LOGPROBS):
        raise WrapperError(E_BAD_REQUEST, f"completion.logprobs must be 0 to "
                           f"{MAX_TOP_LOGPROBS}")
    return {"prompt": prompt, "echo": echo, "logprobs": top}


def check_tools(tools: Any) -> list[dict[str, Any]] | None:
    """The function definitions a chat offers (None or [] for none): objects with a
    string `name`, at most MAX_TOOLS of them, MAX_TOOLS_CHARS as JSON."""
    if tools is None or tools == []:
        return None
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise WrapperError(E_BAD_REQUEST, f"tools must be a list of at most {MAX_TOOLS} "
                           "function definitions")
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) \
                or not tool["name"]:
            raise WrapperError(E_BAD_REQUEST, f"tools[{index}] must be an object with a "
                               "non-empty string name")
    if len(json.dumps(tools, ensure_ascii=False)) > MAX_TOOLS_CHARS:
        raise WrapperError(E_BAD_REQUEST, f"tools are over {MAX_TOOLS_CHARS} characters")
    return tools


_MODEL_DEFAULTS: dict[str, Any] = {
    "adapter_path": None,
    "template": "default",
    "finetuning_type": "lora",
    "infer_backend": "huggingface",
    "cli_path": None,
    "extra_args": {},
}


def check_model(spec: Any) -> dict[str, Any]:
    """A model to load: base path, optional adapter(s), template and LlamaFactory options."""
    if not isinstance(spec, dict):
        raise WrapperError(E_BAD_REQUEST, "model must be an object")
    unknown = set(spec) - set(_MODEL_DEFAULTS) - {"base_model_path"}
    if unknown:
        raise WrapperError(E_BAD_REQUEST, f"unknown model key(s): {', '.join(sorted(unknown))}")
    base = spec.get("base_model_path")
    if not isinstance(base, str) or not base.strip():
        raise WrapperError(E_BAD_REQUEST, "model.base_model_path must be a non-empty string")
    checked = {**_MODEL_DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
    for key in ("adapter_path", "template", "finetuning_type", "infer_backend", "cli_path"):
        value = checked[key]
        if value is not None and not isinstance(value, str):
            raise WrapperError(E_BAD_REQUEST, f"model.{key} must be a string")
    if checked["adapter_path"] == "":
        checked["adapter_path"] = None
    if not isinstance(checked["extra_args"], dict):
        raise WrapperError(E_BAD_REQUEST, "model.extra_args must be an object")
    return checked


def check_adapter_choice(command: dict[str, Any]) -> tuple[bool, str | None, str | None]:
    """A chat's choice of adapter and template on the loaded base (protocol 2).

    Returns (chosen, adapter, template): `chosen` is False when the chat names neither, and
    the loaded model answers as it was loaded (protocol 1); `adapter` None is the base alone.
    """
    chosen = "adapter" in command or "template" in command
    adapter, template = command.get("adapter"), command.get("template")
    if adapter is not None and (not isinstance(adapter, str) or not adapter.strip()):
        raise WrapperError(E_BAD_REQUEST, "adapter must be a non-empty path, or null for the base")
    if template is not None and (not isinstance(template, str) or not template.strip()):
        raise WrapperError(E_BAD_REQUEST, "template must be a non-empty template name")
    return chosen, adapter, template


def check_batch_rows(rows: Any) -> list[dict[str, Any]]:
    """A chat_batch's rows: 1 to MAX_BATCH_ROWS chats with distinct string ids."""
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_BATCH_ROWS:
        raise WrapperError(E_BAD_REQUEST, f"rows must be a list of 1 to {MAX_BATCH_ROWS} chats")
    ids = [row.get("id") if isinstance(row, dict) else None for row in rows]
    if not all(isinstance(i, str) and i for i in ids) or len(set(ids)) != len(ids):
        raise WrapperError(E_BAD_REQUEST, "every row needs its own string id")
    return rows
