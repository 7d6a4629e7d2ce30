#!/usr/bin/env python3
"""Script mode (CHAT_MODE=script): answer turns with LlamaFactory's `ChatModel`, loaded once.

    python3 chat_inference.py '{"base_model_path": ..., "template": ..., "message": ...}'
    python3 chat_inference.py --serve     # JSON lines, docs/protocol.md

Runs on the box with the box's Python: stdlib plus llamafactory (and what it brings).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import json
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wrapper_protocol as wp
import wrapper_serve
from json_grammar import JsonGrammars, grammar_processor
from live_batch import LiveBatch
from step_batch import RowSpec, can_batch
from text_stream import IncrementalText
from wrapper_serve import ChatOutcome, Turn

_GENERATE_EXIT_WAIT_S = 5.0  # after the stream ends, how long `generate` may take to return
_GEN_KEYS = ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty")
# Honoured by our own hook on `generate` (LlamaFactory's engine passes none of them on).
SAMPLING_KEYS = ("presence_penalty", "frequency_penalty", "logit_bias", "min_p", "logprobs",
                 "json_schema", "force_tool_call")


class _GenerationRecord:
    """What the wrapped `generate` saw: kept so the turn can report length, tokens and errors."""

    def __init__(self) -> None:
        self.completion_tokens: int | None = None
        self.prompt_tokens: int | None = None
        self.hit_eos = False
        self.error: BaseException | None = None
        self.finished = threading.Event()  # the streamer ends before `generate` returns
        self.tokens_before_cancel = 0  # counted per generation step, until a stop
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.reply_ids: list[int] = []  # what generate made (eos included), when observed
        # Chat logprobs, when asked for: each step's raw logits (the model's forward, before
        # any sampling setting) and its token, as generation goes, so the reply's tokens
        # are scored while it streams; each token's entry is made once (`entry`).
        self.step_logits: list[Any] | None = None
        self.step_tokens: list[int] = []
        self._entries: dict[int, dict[str, Any]] = {}

    def entry(self, tokenizer: Any, step: int, token: int, top: int) -> dict[str, Any]:
        """Step `step`'s token in OpenAI's chat shape {token, logprob, bytes, top_logprobs}
        (made once: a streamed entry and the reply's whole list are the same)."""
        made = self._entries.get(step)
        if made is None:
            assert self.step_logits is not None
            _, logprob, alternatives = _scored(tokenizer, self.step_logits[step][0].float(),
                                               token, max(top, 1))
            text = tokenizer.decode([token], skip_special_tokens=True)
            made = self._entries[step] = {
                "token": text, "logprob": logprob, "bytes": list(text.encode()),
                "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())}
                                 for t, v in list((alternatives or {}).items())[:top]]}
        return made

    def step(self, cancelled: bool) -> None:
        """One generation step made one token; those after a stop never reach the user."""
        if cancelled:
            return
        self.last_token_at = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = self.last_token_at
        self.tokens_before_cancel += 1

    def observe(self, prompt: Any, output: Any, generation_config: Any) -> None:
        sequences = getattr(output, "sequences", output)
        if prompt is None or not hasattr(sequences, "shape"):
            return
        self.prompt_tokens = int(prompt.shape[-1])
        generated = sequences[0, prompt.shape[-1]:]
        self.completion_tokens = int(generated.shape[-1])
        self.reply_ids = [int(t) for t in generated]
        eos = getattr(generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.hit_eos = bool(len(generated)) and int(generated[-1]) in eos_ids


_PROBE_NAME = "tool_call_marker_probe"


def tool_call_marker(template: Any) -> str:
    """Where a call begins in this template's tool format: the text its function formatter
    puts before a call's name, up to the call's JSON (`<tool_call>` for qwen, `Action:` for
    the default template, `{"` where a call is bare JSON). "" when the format starts with
    the name itself (glm4): then a reply that offers tools is held whole."""
    try:
        slots = template.format_function.apply(
            content=json.dumps([{"name": _PROBE_NAME, "arguments": {}}]))
    except Exception:  # a template without a tool format
        return ""
    text = "".join(slot for slot in slots if isinstance(slot, str))
    at = text.find(_PROBE_NAME)
    if at < 0:
        return ""
    prefix = text[:at].lstrip()
    brace = prefix.find("{")
    if brace == 0:
        return '{"'
    if brace > 0:
        prefix = prefix[:brace]
    return prefix.strip()


_PROBE_ARGUMENTS = {"tool_call_probe_key": "tool_call_probe_value"}


def forced_call_layouts(template: Any, functions: list[dict[str, Any]], ends: list[str]
                        ) -> list[tuple[str, dict[str, Any], str]] | None:
    """What a call to each offered function looks like in this template's tool format, for
    a reply held to one call (tool_choice required or named): the text before the call's
    arguments (the name is in it), their JSON schema, and the text after them up to the
    turn's end (`ends`: the template's stop words; the stop token itself ends the reply).
    None where the format cannot be held so: it writes the arguments other than as one
    piece of JSON, puts a special token before their end, or its own parser cannot read
    the call back (a template whose formatter and parser disagree)."""
    probe = json.dumps(_PROBE_ARGUMENTS, ensure_ascii=False)
    layouts = []
    for function in functions:
        try:
            slots = template.format_function.apply(content=json.dumps(
                [{"name": function["name"], "arguments": _PROBE_ARGUMENTS}], ensure_ascii=False))
        except Exception:  # a template without a tool format
            return None
        text = ""
        for slot in slots:
            if not isinstance(slot, str):
                break  # a special token (eos): the turn ends there
            text += slot
        at = text.find(probe)
        if at < 0 or text.find(probe, at + 1) >= 0:
            return None
        after = text[at + len(probe):]
        for end in ends:
            if end and end in after:
                after = after[:after.index(end)]
        after = after.rstrip("\n")
        read = tool_calls_in(template, text[:at] + probe + after)
        if not read or read[0]["name"] != function["name"]:
            return None  # its own parser cannot read what its formatter writes
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        layouts.append((text[:at], schema, after))
    return layouts


def tool_calls_in(template: Any, text: str) -> list[dict[str, str]] | None:
    """The calls the template's own parser finds in a reply, or None (words)."""
    try:
        found = template.extract_tool(text)
    except Exception:  # a parser that trips on odd text: the reply is words
        return None
    if not isinstance(found, list) or not found:
        return None
    calls = []
    for call in found:
        arguments = call.arguments if isinstance(call.arguments, str) else json.dumps(
            call.arguments, ensure_ascii=False)
        calls.append({"name": str(call.name), "arguments": arguments})
    return calls


def context_window(model: Any, model_spec: dict[str, Any]) -> int | None:
    """How many tokens the model can attend to: its config's max_position_embeddings,
    or LlamaFactory's cutoff_len when the model is loaded with a smaller one."""
    config = getattr(model, "config", None)
    window = getattr(config, "max_position_embeddings", None)
    cutoff = (model_spec.get("extra_args") or {}).get("cutoff_len")
    limits = [n for n in (window, cutoff) if isinstance(n, int) and n > 0]
    return min(limits) if limits else None


# The most tokens a template adds around a message, and around a conversation (its slots'
# special tokens and words: "<|im_start|>user\n...<|im_end|>\n" is about 5).
TEMPLATE_TOKENS_PER_MESSAGE = 32
TEMPLATE_TOKENS_FIXED = 64


class TokenCounts:
    """Each text's token count, kept (the last MAX_COUNTED texts, by digest): a chat sends
    its whole history every turn, so only the new message is tokenized, and a 30k-token
    history is checked in about a millisecond instead of the ~20 ms of counting the whole
    prompt."""

    MAX_COUNTED = 4096
    # Where a message meets its template slot, tokenizing the two apart can differ from
    # tokenizing them together by a token or two on each side.
    BOUNDARY_TOKENS = 4

    def __init__(self) -> None:
        self._counts: OrderedDict[tuple[int, bytes], int] = OrderedDict()

    def most(self, tokenizer: Any, template: Any, messages: list[dict[str, str]],
             system: str | None, tools: str | None) -> int:
        """An upper bound on the prompt's tokens: the template's own part, exact (the same
        conversation with the texts left empty: its slots, system prompt and tools), plus
        each text's own tokens and a boundary allowance. A function turn (tool calls, which
        the template reformats) stays whole in that part."""
        skeleton = [m if m["role"] == wp.ROLE_FUNCTION else {"role": m["role"], "content": ""}
                    for m in messages]
        prompt, _ = template.encode_oneturn(
            tokenizer, [*skeleton, {"role": "assistant", "content": ""}], system, tools)
        total = len(prompt) + self.BOUNDARY_TOKENS * len(messages)
        for message in messages:
            if message["role"] != wp.ROLE_FUNCTION:
                total += self._count(tokenizer, message["content"])
        return total

    def _count(self, tokenizer: Any, text: str) -> int:
        key = (id(tokenizer), hashlib.blake2b(
            text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
        count = self._counts.get(key)
        if count is None:
            count = len(tokenizer.encode(text, add_special_tokens=False))
            self._counts[key] = count
            if len(self._counts) > self.MAX_COUNTED:
                self._counts.popitem(last=False)
        else:
            self._counts.move_to_end(key)
        return count

    def clear(self) -> None:
        self._counts.clear()


def most_tokens(texts: list[str]) -> int:
    """An upper bound on the prompt's tokens, without tokenizing (counting a 30k-token
    history costs tens of milliseconds, and the engine tokenizes it again): a tokenizer
    makes at most one token per byte (byte-level BPE; SentencePiece's byte fallback), twice
    that allowing for word-boundary pieces, plus what the template adds."""
    return (2 * sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
            + TEMPLATE_TOKENS_PER_MESSAGE * len(texts) + TEMPLATE_TOKENS_FIXED)


def fit_context(window: int | None, prompt_tokens: int, kwargs: dict[str, Any],
                default_new_tokens: int | None) -> None:
    """Refuse a prompt the window cannot hold, as OpenAI and vLLM do, rather than let the
    model run past its positions (a 37,776-token prompt was answered by a 512-position model);
    without an asked-for max_new_tokens, the reply may use what the window has left."""
    if window is None:
        return
    asked = kwargs.get("max_new_tokens")
    if prompt_tokens >= window or (asked is not None and prompt_tokens + asked > window):
        wanted = f"{prompt_tokens} in the messages" + (
            f" and {asked} asked for the reply" if asked is not None else "")
        raise wp.WrapperError(wp.E_CONTEXT_TOO_LONG, f"this model's context window is {window} "
                              f"tokens, but the request needs {prompt_tokens + (asked or 0)} "
                              f"({wanted})")
    if asked is None and (default_new_tokens is None
                          or prompt_tokens + default_new_tokens > window):
        kwargs["max_new_tokens"] = window - prompt_tokens


def check_bias_ids(params: dict[str, Any], model: Any) -> None:
    """A logit_bias token id outside the model's vocabulary is a bad request (OpenAI's
    answer too), said before anything is generated."""
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    outside = sorted(int(t) for t in params.get("logit_bias") or {}
                     if isinstance(vocab, int) and int(t) >= vocab)
    if outside:
        raise wp.WrapperError(wp.E_BAD_REQUEST, f"logit_bias: token id {outside[0]} is not in "
                              f"this model's vocabulary (ids 0 to {vocab - 1})")


def sampling_processors(params: dict[str, Any], prompt_len: int) -> list[Any]:
    """Logits processors for OpenAI's presence_penalty, frequency_penalty and logit_bias
    (LlamaFactory's chat engine takes none of them): counted over the reply's tokens only,
    the prompt's left out, as OpenAI and vLLM count them."""
    import torch
    from transformers import LogitsProcessor

    presence = float(params.get("presence_penalty") or 0)
    frequency = float(params.get("frequency_penalty") or 0)
    bias = {int(token): value for token, value in (params.get("logit_bias") or {}).items()}

    class _Penalties(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            reply = input_ids[:, prompt_len:]
            if reply.shape[-1]:
                counts = torch.zeros_like(scores).scatter_add_(
                    1, reply, torch.ones_like(reply, dtype=scores.dtype))
                scores = scores - frequency * counts - presence * (counts > 0).to(scores.dtype)
            return scores

    class _Bias(LogitsProcessor):
        def __init__(self) -> None:
            self.ids = torch.tensor(list(bias), dtype=torch.long)
            self.values = torch.tensor(list(bias.values()))

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            scores = scores.clone()
            scores[:, self.ids.to(scores.device)] += self.values.to(scores.device, scores.dtype)
            return scores

    processors: list[Any] = []
    if presence or frequency:
        processors.append(_Penalties())
    if bias:
        processors.append(_Bias())
    return processors


def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _strip_adapter_layers(model: Any) -> None:
    """Put back the plain layers peft wrapped in place: what a PeftModel that failed to load
    its first adapter leaves in the base model."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())


def _innermost(model: Any) -> Any:
    """The model whose forward `generate` runs at each step: a peft model's base (peft's
    generate hands the call down to it), else the model itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _scored(tokenizer: Any, logits: Any, token: int, top: int | None
            ) -> tuple[int, float, dict[str, float] | None]:
    """A token's log probability under `logits` (the step's, unprocessed) and its `top`
    likeliest alternatives by their text."""
    import torch

    logprobs = torch.log_softmax(logits, dim=-1)
    alternatives = None
    if top:
        values, indices = torch.topk(logprobs, top)
        alternatives = {}
        for value, index in zip(values.tolist(), indices.tolist(), strict=True):
            # Likeliest first: two tokens that decode alike keep the likelier's value.
            alternatives.setdefault(tokenizer.decode([int(index)]), float(value))
    return token, float(logprobs[token]), alternatives


def _chat_logprobs(tokenizer: Any, record: _GenerationRecord, top: int, shown: int
                   ) -> dict[str, Any]:
    """OpenAI's chat shape, {"content": [{token, logprob, bytes, top_logprobs}]}, for the
    reply's tokens: its end-of-turn token left out, and none past the text the reply kept
    (a stop string cuts it). The entries streamed with the deltas (_StreamedLogprobs) are
    its first ones."""
    assert record.step_logits is not None
    content, length = [], 0
    for step, token in enumerate(record.reply_ids[:len(record.step_logits)]):
        if length >= shown and step:
            break
        entry = record.entry(tokenizer, step, token, top)
        if not entry["token"] and step == len(record.reply_ids) - 1 and record.hit_eos:
            break  # the end-of-turn token: not part of the reply
        length += len(entry["token"])
        content.append(entry)
    return {"content": content}


class _StreamedLogprobs:
    """The log probabilities each delta carries, as OpenAI streams them with each chunk:
    called with how much of the reply's text has gone out, the entries of the tokens that
    text now covers and no earlier delta carried. A token is covered once its whole text
    has gone out (text held back, a stop string's prefix or a possible tool call, holds its
    tokens back too); a token without text (a special one) goes with the next that has
    text. What no delta carried is the rest of done's whole list (the reply's end-of-turn
    token, a token scored after its text went out)."""

    def __init__(self, tokenizer: Any, record: _GenerationRecord, top: int) -> None:
        self._tokenizer, self._record, self._top = tokenizer, record, top
        self._next = 0  # the first step no delta carried
        self._covered = 0  # the characters of the tokens before it

    def __call__(self, sent: int) -> list[dict[str, Any]]:
        record, out = self._record, []
        if record.step_logits is None:  # generate has not begun
            return out
        step, covered, pending = self._next, self._covered, []
        # Both lists grow in generate's thread; a step counts once it has both.
        while step < min(len(record.step_tokens), len(record.step_logits)):
            entry = record.entry(self._tokenizer, step, record.step_tokens[step], self._top)
            if covered + len(entry["token"]) > sent:
                break
            pending.append(entry)
            step, covered = step + 1, covered + len(entry["token"])
            if entry["token"]:
                out += pending
                pending = []
                self._next, self._covered = step, covered
        return out


def _legacy_logprobs(tokenizer: Any, scored: list[tuple[int, float | None, Any]]
                     ) -> dict[str, Any]:
    """OpenAI's legacy completions shape: each token's text, log probability, likeliest
    alternatives and where it starts in the returned text (the echoed prompt first)."""
    tokens = [tokenizer.decode([token]) for token, _, _ in scored]
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return {"tokens": tokens, "token_logprobs": [lp for _, lp, _ in scored],
            "top_logprobs": [alt for _, _, alt in scored], "text_offset": offsets}


class _TextStreamer:
    """A transformers streamer for one row of raw text: the prompt once, then each new
    token, decoded as it comes (IncrementalText: a few tokens per call; a character cut
    between tokens waits for its rest)."""

    def __init__(self, tokenizer: Any, turn: Turn) -> None:
        self._turn = turn
        self._prompt_seen = False
        self._text = IncrementalText(tokenizer)
        self.first_at: float | None = None
        self.last_at: float | None = None

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.last_at = time.monotonic()
        self.first_at = self.first_at or self.last_at
        for token in value.reshape(-1).tolist():
            piece = self._text.add(int(token))
            if piece and not self._turn.cancelled.is_set():
                self._turn.emit_text(piece)

    def end(self) -> None:
        rest = self._text.finish()
        if rest and not self._turn.cancelled.is_set():
            self._turn.emit_text(rest)


class _BatchRow:
    """One row of a batch: its turn, its tokens so far, and what it has streamed."""

    def __init__(self, turn: Turn, tokenizer: Any, gen_kwargs: dict[str, Any],
                 params: dict[str, Any],
                 on_done: Callable[[Turn, ChatOutcome], None] | None) -> None:
        self.turn = turn
        self._params = params
        self._on_done = on_done  # told as soon as this row ends, before the batch does
        self.tokenizer = tokenizer
        self.gen_kwargs = gen_kwargs
        self.prompt = gen_kwargs["inputs"]
        eos = gen_kwargs["generation_config"].eos_token_id
        self.eos_ids: list[int] = list(eos) if isinstance(eos, (list, tuple)) else [eos]
        self._text = IncrementalText(tokenizer, getattr(
            gen_kwargs["generation_config"], "skip_special_tokens", True))
        self.ids: list[int] = self._text.ids
        # The row's own most tokens (what its window leaves it), where less than the batch's.
        self.most: int | None = None
        self.done = False
        self.hit_eos = False
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None

    def take(self, token: int) -> None:
        if self.done:
            return  # HF pads finished rows
        if self.turn.cancelled.is_set():
            self._end()
            return
        now = time.monotonic()
        self.first_token_at = self.first_token_at or now
        self.last_token_at = now
        if token in self.eos_ids:
            self.hit_eos = True
            self._end()
            return
        piece = self._text.add(token)
        if piece:
            self.turn.emit_text(piece)
        if self.most is not None and len(self.ids) >= self.most:
            self._end()  # its window is full: the others go on

    def _end(self) -> None:
        """The row is over while others go on: its turn hears so now."""
        self.finish()
        self.done = True
        if self._on_done is not None:
            self._on_done(self.turn, self.outcome(self._params))

    def finish(self) -> None:
        rest = self._text.finish()
        if rest and not self.turn.cancelled.is_set():
            self.turn.emit_text(rest)

    def outcome(self, params: dict[str, Any]) -> ChatOutcome:
        """Finish reasons as for one chat; the token count is what the row made."""
        tokens = len(self.ids) + (1 if self.hit_eos else 0)
        if self.turn.cancelled.is_set():
            finish = wp.FINISH_STOPPED
        else:
            finish = wp.FINISH_STOP if self.hit_eos else wp.FINISH_LENGTH
        return ChatOutcome(self._text.text(), finish, tokens, self.first_token_at,
                           self.last_token_at, int(self.prompt.shape[-1]))


class _BatchStreamer:
    """A transformers streamer for a batch: `put` gets the prompt once, then one token per
    row per step."""

    def __init__(self, rows: list[_BatchRow]) -> None:
        self._rows = rows
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for row, token in zip(self._rows, value.reshape(-1).tolist(), strict=True):
            row.take(int(token))

    def end(self) -> None:
        for row in self._rows:
            if not row.done:
                row.finish()


class ScriptEngine:
    """One `ChatModel` kept in memory; every turn sends the whole history and its own params.

    Loaded without an adapter, it serves the base and any number of LoRA adapters on the
    same weights (protocol 2): the first adapter wraps the model in a `PeftModel`, later ones
    join it by name, and each turn switches to its own (the base runs with the adapter
    layers off). Unmerged, so one copy of the base serves them all.
    """

    mode = "script"
    takes_tools = True  # protocol 5: the template formats them and parses the calls

    def __init__(self) -> None:
        self.load_seconds: float | None = None
        self.base_loads = 0
        self.weight_bytes: int | None = None
        self._chat_model: Any = None
        self._cancel = threading.Event()
        self._record = _GenerationRecord()
        self._model_spec: dict[str, Any] = {}
        self._peft: Any = None  # the PeftModel holding the adapters, once there is one
        self._names: dict[str, str] = {}  # adapter path -> its name inside the PeftModel
        self._named = 0
        self._templates: dict[str, tuple[Any, Any]] = {}  # name -> (tokenizer, template)
        self._hooked = False  # `generate` is ours (the Hugging Face engine only)
        self._sampling: dict[str, Any] = {}  # the turn's SAMPLING_KEYS, for the hook
        self._grammars = JsonGrammars()
        self._counted = TokenCounts()
        # The turn's json_schema compiled, one per row of its generate call (None: no schema).
        self._schemas: list[Any] | None = None
        self._live: LiveBatch | None = None  # the chats generating together

    @property
    def serves_adapters(self) -> bool:
        spec = self._model_spec
        return (self._chat_model is not None and not spec.get("adapter_path")
                and spec.get("finetuning_type") == "lora"
                and spec.get("infer_backend") == "huggingface")

    def load(self, model: dict[str, Any], params: dict[str, Any], timeout_s: float) -> None:
        try:
            from llamafactory.chat import ChatModel
        except ImportError as exc:
            raise wp.WrapperError(wp.E_LLAMAFACTORY_MISSING,
                                  f"cannot import llamafactory in {sys.executable}: {exc}") from exc
        wrapper_serve.check_paths(model)
        self.unload()
        started = time.monotonic()
        if model["infer_backend"] == "sglang":
            os.environ["PATH"] = wrapper_serve.engine_path(os.path.dirname(sys.executable),
                                                           os.environ.get("PATH", ""))
        try:
            self._chat_model = ChatModel(wrapper_serve.llamafactory_args(model))
        except Exception as exc:
            raise wrapper_serve.unexpected_error(exc, wp.E_LOAD_FAILED) from exc
        self.load_seconds = time.monotonic() - started
        self.base_loads += 1
        self._model_spec = model
        engine = self._chat_model.engine
        self._templates = {model["template"]: (engine.tokenizer, engine.template)}
        weights = getattr(engine, "model", None)
        if weights is not None and hasattr(weights, "parameters"):
            self.weight_bytes = _tensor_bytes(weights.parameters()) + _tensor_bytes(
                weights.buffers())
        self._hook_generate()

    # -- adapters on the loaded base (protocol 2) ------------------------------------------

    def load_adapter(self, path: str) -> int:
        """Put a LoRA adapter on the loaded weights, unmerged, cast as LlamaFactory casts
        the merged one; its bytes. A failed load (an adapter for another base) leaves the
        model exactly as it was."""
        from peft import PeftModel

        wrapper_serve.check_adapter_path(path)
        engine = self._chat_model.engine
        self._named += 1
        name = f"a{self._named}"
        folder = wrapper_serve.utf8_path(os.path.expanduser(path))  # safetensors: UTF-8 only
        try:
            if self._peft is None:
                base = engine.model
                try:
                    self._peft = PeftModel.from_pretrained(base, folder, adapter_name=name,
                                                           is_trainable=False)
                except BaseException:
                    _strip_adapter_layers(base)  # injected before the weights failed to fit
                    raise
                engine.model = self._peft
                if self._live is not None:  # its base rows must name "__base__" from now on
                    self._live.use_model(self._peft)
            else:
                try:
                    self._peft.load_adapter(folder, adapter_name=name, is_trainable=False)
                except BaseException:
                    if name in self._peft.peft_config:
                        self._peft.delete_adapter(name)
                    raise
        except Exception as exc:
            raise wrapper_serve.unexpected_error(exc, wp.E_LOAD_FAILED) from exc
        self._peft.eval()
        dtype = next(self._peft.get_base_model().parameters()).dtype
        marker = f".{name}."
        own = [p for n, p in self._peft.named_parameters() if marker in n]
        for param in own:
            param.requires_grad_(False)
            if param.dtype != dtype:
                param.data = param.data.to(dtype)
        self._names[path] = name
        return _tensor_bytes(own)

    def unload_adapter(self, path: str) -> None:
        name = self._names.pop(path, None)
        if name is None or self._peft is None:
            return
        self._peft.delete_adapter(name)
        if not self._names:  # no adapter left: back to the plain model, nothing wrapped
            self._chat_model.engine.model = self._peft.unload()
            self._peft = None
        gc.collect()

    def _template(self, name: str) -> tuple[Any, Any]:
        """The tokenizer and template for a template name, on the same weights: built once,
        on a copy of the tokenizer (fixing it for one template must not change another)."""
        if name not in self._templates:
            from llamafactory.data import get_template_and_fix_tokenizer
            from llamafactory.hparams import DataArguments

            base_tokenizer = self._templates[self._model_spec["template"]][0]
            tokenizer = copy.deepcopy(base_tokenizer)
            try:
                template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=name))
            except ValueError as exc:
                raise wp.WrapperError(wp.E_BAD_REQUEST, f"template {name!r}: {exc}") from exc
            if len(tokenizer) != len(base_tokenizer):
                raise wp.WrapperError(
                    wp.E_TEMPLATE_UNUSABLE, f"template {name!r} needs special tokens the "
                    f"loaded base's tokenizer does not have ({len(tokenizer) - len(base_tokenizer)}"
                    " more)")
            self._templates[name] = (tokenizer, template)
        return self._templates[name]

    def _select(self, turn: Turn) -> None:
        """Point the engine at this turn's adapter (or the base) and template."""
        engine = self._chat_model.engine
        if not turn.chosen:
            return
        engine.tokenizer, engine.template = self._template(
            turn.template or self._model_spec["template"])
        if self._peft is None:
            return
        if turn.adapter is None:
            self._peft.base_model.disable_adapter_layers()
        else:
            self._peft.base_model.enable_adapter_layers()
            self._peft.set_adapter(self._names[turn.adapter])

    def _hook_generate(self) -> None:
        """Make `generate` stoppable and observable.

        LlamaFactory runs `model.generate` in a thread feeding a streamer; closing the stream
        does not stop that thread, so a stopping criterion watching our cancel flag does.
        A failure inside that thread would leave the streamer waiting forever, so it is
        recorded and the streamer is ended.
        """
        engine = self._chat_model.engine
        model = getattr(engine, "model", None)
        self._hooked = False
        if self._model_spec.get("infer_backend") != "huggingface" or model is None \
                or not hasattr(model, "generate"):
            # vLLM (whose engine.model is vLLM's AsyncLLMEngine, with a generate of its own) or
            # SGLang: cancel stops streaming; the engine finishes on its own.
            return
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        cancel, original = self._cancel, model.generate

        class _Cancelled(StoppingCriteria):
            """Called once per generation step: counts the step's token, stops on cancel."""

            def __init__(self, record: _GenerationRecord) -> None:
                self.record = record

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                stop = cancel.is_set()
                self.record.step(stop)
                if self.record.step_logits is not None:
                    self.record.step_tokens.append(int(input_ids[0, -1]))
                return stop

        def generate(*args: Any, **kwargs: Any) -> Any:
            record = self._record
            criteria = list(kwargs.get("stopping_criteria") or [])
            kwargs["stopping_criteria"] = StoppingCriteriaList([*criteria, _Cancelled(record)])
            self._add_sampling(kwargs, self._sampling, self._schemas)
            hook = None
            if self._sampling.get("logprobs") is not None:  # the raw logits of each step
                record.step_logits = []
                hook = _innermost(model).register_forward_hook(
                    lambda _module, _args, out: record.step_logits.append(  # type: ignore
                        out.logits[:, -1, :].to(dtype=torch.float32, copy=True)))
            try:
                output = original(*args, **kwargs)
                record.observe(kwargs.get("inputs", kwargs.get("input_ids")), output,
                               kwargs.get("generation_config"))
                return output
            except BaseException as exc:
                record.error = exc
                streamer = kwargs.get("streamer")
                if streamer is not None:
                    streamer.end()
                raise
            finally:
                if hook is not None:
                    hook.remove()
                record.finished.set()

        model.generate = generate
        self._hooked = True

    def chat(self, turn: Turn) -> ChatOutcome:
        if self._chat_model is None:
            raise wp.WrapperError(wp.E_NOT_LOADED, "no model is loaded")
        params = turn.params  # each turn brings all of its own (the load's are no defaults)
        kwargs = {key: params[key] for key in _GEN_KEYS if key in params}
        self._select(turn)
        template = getattr(self._chat_model.engine, "template", None)
        thinking_default = getattr(template, "enable_thinking", None)
        if template is not None and "enable_thinking" in params:
            template.enable_thinking = params["enable_thinking"]
        if "seed" in params:  # the global generators, which the generate thread samples from
            from transformers import set_seed

            set_seed(params["seed"])
        self._cancel.clear()
        self._record = record = _GenerationRecord()
        watcher = threading.Thread(target=self._forward_cancel, args=(turn,), daemon=True)
        watcher.start()
        parts: list[str] = []
        tools = json.dumps(turn.tools, ensure_ascii=False) if turn.tools else None
        if tools is not None and template is not None:
            turn.hold_tool_calls(tool_call_marker(template))
        self._fit_context(turn, params.get("system"), tools, kwargs)
        sampling = {key: params[key] for key in SAMPLING_KEYS if key in params}
        if sampling and not self._hooked:
            raise wp.WrapperError(wp.E_NOT_SUPPORTED, f"{', '.join(sampling)}: only the "
                                  "Hugging Face engine takes them here")
        check_bias_ids(sampling, getattr(self._chat_model.engine, "model", None))
        tokenizer = self._chat_model.engine.tokenizer
        calls = None
        if params.get("force_tool_call") and turn.tools and template is not None:
            ends = [*getattr(template, "stop_words", []), tokenizer.eos_token or ""]
            calls = forced_call_layouts(template, turn.tools, ends)
            if calls is None:
                turn.emit_info("tool_call_not_held", "tool_choice asks for a call, but this "
                               "template's tool format cannot be held to one: the tools are "
                               "offered, and the model may answer in words")
        schemas = self._compiled_schemas(params, [(tokenizer, list(
            template.get_stop_token_ids(tokenizer)) if template is not None else [])], calls)
        if params.get("logprobs") is not None and self._hooked:
            turn.delta_logprobs = _StreamedLogprobs(tokenizer, record, params["logprobs"])
        try:
            if tools is not None:
                kwargs["tools"] = tools
            with self._sampled(sampling, schemas):
                stream = self._chat_model.stream_chat(
                    turn.messages, system=params.get("system"), **kwargs)
                # After a cancel, keep reading: generation stops within one step, and a
                # stream left half-read would keep LlamaFactory's engine semaphore for the
                # next turn.
                for text in stream:
                    if not turn.cancelled.is_set():
                        parts.append(text)
                        turn.emit_text(text)
        except Exception as exc:
            raise wrapper_serve.unexpected_error(record.error or exc,
                                                 wp.E_GENERATION_FAILED) from exc
        finally:
            self._cancel.set()  # also ends the watcher
            if template is not None:
                template.enable_thinking = thinking_default
        if self._hooked:  # else nothing ever sets it: vLLM / SGLang have no such thread
            record.finished.wait(_GENERATE_EXIT_WAIT_S)
        if record.error is not None:
            raise wrapper_serve.unexpected_error(record.error, wp.E_GENERATION_FAILED)
        finish = wp.FINISH_STOP if record.hit_eos or record.completion_tokens is None \
            else wp.FINISH_LENGTH
        tokens = record.completion_tokens
        if turn.cancelled.is_set() and tokens is not None:
            tokens = record.tokens_before_cancel  # what the user got of a stopped reply
        calls = None
        if tools is not None and template is not None and not turn.cancelled.is_set():
            calls = tool_calls_in(template, "".join(parts))
        logprobs = None
        if params.get("logprobs") is not None and record.step_logits is not None:
            logprobs = _chat_logprobs(self._chat_model.engine.tokenizer, record,
                                      params["logprobs"], len("".join(parts)))
        return ChatOutcome("".join(parts), finish, tokens, record.first_token_at,
                           record.last_token_at, record.prompt_tokens, calls, logprobs)

    def _fit_context(self, turn: Turn, system: str | None, tools: str | None,
                     kwargs: dict[str, Any], template: Any = None,
                     tokenizer: Any = None) -> None:
        """The prompt as the engine will build it (the selected template and tokenizer, or
        a batch row's), counted and held against the model's window (fit_context). With
        `fit` drop_oldest (version 6), the fewest earliest turns are left out first
        (drop_to_fit), and `turn.left_out` says how many."""
        engine = self._chat_model.engine
        template = template or getattr(engine, "template", None)
        tokenizer = tokenizer or getattr(engine, "tokenizer", None)
        window = context_window(getattr(engine, "model", None), self._model_spec)
        if template is None or tokenizer is None or window is None:
            return  # vLLM / SGLang check it themselves
        turn.context_window = window
        default = (getattr(engine, "generating_args", None) or {}).get("max_new_tokens")
        wanted = kwargs.get("max_new_tokens") or default or 0
        texts = [m["content"] for m in turn.messages] + [
            system or getattr(template, "default_system", "") or "", tools or ""]
        if most_tokens(texts) + wanted <= window:
            return  # it fits whatever the tokenizer makes of it: no need to count
        if self._counted.most(tokenizer, template, turn.messages, system, tools) + wanted \
                <= window:
            return  # each message's own tokens (counted once a chat) plus the template's

        counted: dict[int, int] = {}

        def tokens(messages: list[dict[str, str]]) -> int:
            """The prompt of a tail of the turn's messages (every call's is one: its length
            names it), counted once: the cut's search and the window check share counts."""
            if len(messages) not in counted:
                prompt, _ = template.encode_oneturn(
                    tokenizer, [*messages, {"role": "assistant", "content": ""}], system, tools)
                counted[len(messages)] = len(prompt)
            return counted[len(messages)]

        if turn.fit == wp.FIT_DROP_OLDEST:
            # Room for the reply: what was asked, else a quarter of the window at most.
            room = kwargs.get("max_new_tokens") or min(default or 0, window // 4)
            turn.left_out = wrapper_serve.drop_to_fit(turn.messages, tokens, window - room)
            turn.messages = turn.messages[turn.left_out:]
        fit_context(window, tokens(turn.messages), kwargs, default)

    # -- raw text (protocol 5: /v1/completions) --------------------------------------------

    def continue_reply(self, turn: Turn) -> ChatOutcome:
        """A conversation that ends with the assistant's words (vLLM's
        continue_final_message; Open WebUI's "continue"): the prompt the template builds
        for it, with the reply's own end left off, continued as raw text until the
        template's stop tokens. The reply is what comes after those words."""
        engine = self._chat_model.engine
        self._select(turn)
        template, tokenizer = engine.template, engine.tokenizer
        system = turn.params.get("system")
        tools = json.dumps(turn.tools, ensure_ascii=False) if turn.tools else None
        prompt, answer = template.encode_oneturn(tokenizer, turn.messages, system, tools)
        _, closing = template.encode_oneturn(
            tokenizer, [*turn.messages[:-1], {"role": "assistant", "content": ""}], system,
            tools)
        if closing and answer[-len(closing):] == closing:
            answer = answer[:-len(closing)]
        turn.completion = {"prompt": prompt + answer, "echo": False, "logprobs": None}
        # A chat's defaults, not a completion's: what the engine would use for the reply.
        defaults = getattr(engine, "generating_args", None) or {}
        turn.params = {
            "max_new_tokens": defaults.get("max_new_tokens"),
            "temperature": defaults.get("temperature") if defaults.get("do_sample") else 0,
            **{key: defaults.get(key) for key in ("top_p", "top_k", "repetition_penalty")},
            **turn.params}
        turn.params = {key: value for key, value in turn.params.items() if value is not None}
        return self.complete(turn, stop_ids=template.get_stop_token_ids(tokenizer))

    def complete(self, turn: Turn, stop_ids: list[int] | None = None) -> ChatOutcome:
        """Continue raw text, no template (OpenAI's legacy completions, as vLLM serves them):
        the prompt's tokens (text tokenized as the tokenizer does by default, or token ids as
        given), with the turn's adapter; up to max_new_tokens more (0: none), streamed;
        with `echo`, the prompt's tokens scored by one forward pass (the first has no
        log probability); with `logprobs`, each token's log probability and its likeliest
        alternatives. Log probabilities are the model's own, before any sampling setting."""
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        if self._chat_model is None:
            raise wp.WrapperError(wp.E_NOT_LOADED, "no model is loaded")
        assert turn.completion is not None
        if "json_schema" in turn.params:  # a schema holds a whole reply, not raw text's rest
            raise wp.WrapperError(wp.E_BAD_REQUEST, "json_schema holds a chat's whole reply: "
                                  "not a completion, nor the rest of the assistant's words")
        prompt, echo, top = (turn.completion["prompt"], turn.completion["echo"],
                             turn.completion["logprobs"])
        params = turn.params
        self._select(turn)
        engine = self._chat_model.engine
        tokenizer, model = engine.tokenizer, engine.model
        ids = list(prompt) if isinstance(prompt, list) else tokenizer(prompt)["input_ids"]
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        if isinstance(vocab, int) and max(ids) >= vocab:
            raise wp.WrapperError(wp.E_BAD_REQUEST, f"prompt: token id {max(ids)} is not in "
                                  f"this model's vocabulary (ids 0 to {vocab - 1})")
        echoed = (prompt if isinstance(prompt, str) else tokenizer.decode(ids)) if echo else ""
        check_bias_ids(params, model)
        new_tokens = int(params.get("max_new_tokens", 16))
        fit_context(context_window(model, self._model_spec), len(ids),
                    {"max_new_tokens": new_tokens}, None)
        if "seed" in params:
            from transformers import set_seed

            set_seed(params["seed"])
        device = next(model.parameters()).device
        inputs = torch.tensor([ids], device=device)
        scored: list[tuple[int, float | None, dict[str, float] | None]] = []
        first_at = last_at = None
        if echo:
            turn.emit_echo(echoed)
            with torch.inference_mode():
                logits = model(input_ids=inputs).logits[0].float()
            scored.append((ids[0], None, None))
            for position, token in enumerate(ids[1:]):
                scored.append(_scored(tokenizer, logits[position], token, top))
        made: list[int] = []
        hit_eos = False
        if new_tokens > 0:
            eos = stop_ids or tokenizer.eos_token_id
            config = GenerationConfig(
                max_new_tokens=new_tokens, do_sample=bool(params.get("temperature")),
                temperature=params.get("temperature") or None, top_p=params.get("top_p"),
                top_k=params.get("top_k"), repetition_penalty=params.get("repetition_penalty"),
                eos_token_id=eos, pad_token_id=tokenizer.pad_token_id
                if tokenizer.pad_token_id is not None else (eos[0] if isinstance(eos, list)
                                                            else eos),
                output_logits=True, return_dict_in_generate=True)
            streamer = _TextStreamer(tokenizer, turn)

            class _Stopped(StoppingCriteria):
                def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
                    return turn.cancelled.is_set()

            self._cancel.clear()
            self._record = _GenerationRecord()
            try:
                with torch.inference_mode(), self._sampled(
                        {key: params[key] for key in SAMPLING_KEYS if key in params}):
                    out = model.generate(input_ids=inputs,
                                         attention_mask=torch.ones_like(inputs),
                                         generation_config=config, streamer=streamer,
                                         stopping_criteria=StoppingCriteriaList([_Stopped()]))
            except Exception as exc:
                raise wrapper_serve.unexpected_error(exc, wp.E_GENERATION_FAILED) from exc
            finally:
                self._cancel.set()
            made = [int(t) for t in out.sequences[0, len(ids):]]
            hit_eos = bool(made) and made[-1] in (eos if isinstance(eos, list) else [eos])
            if hit_eos:
                made = made[:-1]
            for step, token in enumerate(made):
                scored.append(_scored(tokenizer, out.logits[step][0].float(), token, top))
            first_at, last_at = streamer.first_at, streamer.last_at
        text = echoed + tokenizer.decode(made, skip_special_tokens=True)
        logprobs = _legacy_logprobs(tokenizer, scored) if top is not None else None
        finish = wp.FINISH_STOP if hit_eos or new_tokens == 0 else wp.FINISH_LENGTH
        return ChatOutcome(text, finish, len(made) + (1 if hit_eos else 0), first_at,
                           last_at, len(ids), logprobs=logprobs)

    @contextlib.contextmanager
    def _sampled(self, sampling: dict[str, Any],
                 schemas: list[Any] | None = None) -> Iterator[None]:
        """The turn's sampling parameters and compiled schemas, which the hook on `generate`
        adds, for exactly this generate call: a batch's or a chat's must never reach the next
        call (a completion after a batch with a schema would be held to it)."""
        self._sampling, self._schemas = sampling, schemas
        try:
            yield
        finally:
            self._sampling, self._schemas = {}, None

    def _compiled_schemas(self, params: dict[str, Any], rows: list[tuple[Any, list[int]]],
                          calls: list[tuple[str, dict[str, Any], str]] | None = None
                          ) -> list[Any] | None:
        """The turn's json_schema (version 6) compiled for each row's tokenizer, before
        anything is generated (a schema xgrammar cannot use is the request's fault), or None.
        `rows`: each row's (tokenizer, the template's stop tokens, which end the JSON).
        With `calls` (a forced tool call: forced_call_layouts), the reply is one call
        instead: a call has no content for a response_format to hold."""
        schema = params.get("json_schema")
        if schema is None and calls is None:
            return None
        model = self._chat_model.engine.model
        output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") \
            else None
        width = int(output.weight.shape[0]) if output is not None \
            else int(model.config.vocab_size)
        compiled = []
        for tokenizer, stop_ids in rows:
            stops = list(stop_ids)
            if tokenizer.eos_token_id is not None:
                stops.append(int(tokenizer.eos_token_id))
            compiled.append(
                self._grammars.compiled_call(calls, tokenizer, width, stops) if calls is not None
                else self._grammars.compiled(schema, tokenizer, width, stops))
        return compiled

    @staticmethod
    def _add_sampling(kwargs: dict[str, Any], params: dict[str, Any],
                      schemas: list[Any] | None = None) -> None:
        """A generate call's kwargs with the turn's OpenAI sampling parameters (version 5):
        min_p on its generation config, the penalties and logit_bias as logits processors;
        and its JSON schema (version 6), last, so the sampling warpers only ever see tokens
        the schema allows."""
        from transformers import LogitsProcessorList

        if not params:
            return
        if params.get("min_p") is not None and kwargs.get("generation_config") is not None:
            kwargs["generation_config"] = copy.deepcopy(kwargs["generation_config"])
            kwargs["generation_config"].min_p = float(params["min_p"])
        prompt = kwargs.get("inputs", kwargs.get("input_ids"))
        added = sampling_processors(params, int(prompt.shape[-1]) if prompt is not None else 0)
        if schemas:
            added.append(grammar_processor(schemas))
        if added:
            kwargs["logits_processor"] = LogitsProcessorList(
                [*(kwargs.get("logits_processor") or []), *added])

    # -- several chats in one generate call (protocol 4) ----------------------------------

    def chat_batch(self, turns: list[Turn], params: dict[str, Any],
                   on_done: Callable[[Turn, ChatOutcome], None] | None = None
                   ) -> list[ChatOutcome]:
        """Answer every turn with one `generate` call: each row its own prompt (built with
        its own template, left-padded), its own adapter (peft's mixed-adapter batch, the base
        as `__base__`), streamed to its own turn and stoppable alone. transformers'
        TextIteratorStreamer takes one row only, so a streamer of ours splits each step's
        tokens by row."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        if self._chat_model is None:
            raise wp.WrapperError(wp.E_NOT_LOADED, "no model is loaded")
        engine = self._chat_model.engine
        kwargs = {key: params[key] for key in _GEN_KEYS if key in params}
        rows: list[_BatchRow] = []
        for turn in turns:
            tokenizer, template = self._template(turn.template or self._model_spec["template"])
            # Each row's prompt against the window, its earliest turns left out if the batch
            # asks (version 6): a row's own template counts its own tokens. The batch's
            # budget goes to generate; the row's own (`most`) is held by its streamer.
            gen_kwargs, _, fitted = self._prompt(turn, template, tokenizer, None, kwargs,
                                                 capped=False)
            rows.append(_BatchRow(turn, tokenizer, gen_kwargs, params, on_done))
            rows[-1].most = fitted.get("max_new_tokens")
        width = max(row.prompt.shape[-1] for row in rows)
        pad_id = rows[0].tokenizer.pad_token_id
        if pad_id is None:
            pad_id = rows[0].eos_ids[0]
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            length = row.prompt.shape[-1]
            input_ids[index, width - length:] = row.prompt[0].cpu()
            attention[index, width - length:] = 1
        config = copy.deepcopy(rows[0].gen_kwargs["generation_config"])
        config.eos_token_id = sorted({eos for row in rows for eos in row.eos_ids})
        config.pad_token_id = pad_id

        class _RowsDone(StoppingCriteria):
            """Per row: done once it ended, or when its turn is cancelled (the others go
            on); generation ends when every row is done."""

            def __call__(self, ids: Any, scores: Any, **_: Any) -> Any:
                return torch.tensor([row.done or row.turn.cancelled.is_set() for row in rows],
                                    device=ids.device)

        model = engine.model
        call: dict[str, Any] = {}
        if self._peft is not None:
            self._peft.base_model.enable_adapter_layers()
            call["adapter_names"] = [
                "__base__" if row.turn.adapter is None else self._names[row.turn.adapter]
                for row in rows]
        if "seed" in params:
            from transformers import set_seed

            set_seed(params["seed"])
        # The batch's sampling parameters, added by the hook on generate (as for one chat).
        sampling = {key: params[key] for key in SAMPLING_KEYS if key in params}
        check_bias_ids(sampling, model)
        schemas = self._compiled_schemas(params, [(row.tokenizer, row.eos_ids) for row in rows])
        self._cancel.clear()
        self._record = _GenerationRecord()
        with torch.inference_mode(), self._sampled(sampling, schemas):
            model.generate(input_ids=input_ids.to(model.device),
                           attention_mask=attention.to(model.device), generation_config=config,
                           streamer=_BatchStreamer(rows),
                           stopping_criteria=StoppingCriteriaList([_RowsDone()]), **call)
        return [row.outcome(params) for row in rows]

    # -- continuous batching (issue 26): chats that overlap generate together --------------

    def joinable(self, turn: Turn) -> bool:
        """Whether this chat can join the running batch: a conversation (not raw text, not
        the rest of an assistant's words) on the Hugging Face engine, with no setting only
        the solo path honours (SAMPLING_KEYS: logprobs, schemas, penalties OpenAI's way,
        logit bias, min_p), on a model whose cache the step batch can hold."""
        spec = self._model_spec
        if self._chat_model is None or spec.get("infer_backend") != "huggingface" \
                or not self._hooked or turn.completion is not None \
                or turn.messages[-1]["role"] == wp.ROLE_ASSISTANT \
                or any(key in turn.params for key in SAMPLING_KEYS):
            return False
        if self._peft is not None and not turn.chosen:
            return False  # a protocol-1 turn answers with whatever is selected: run it so
        return can_batch(self._chat_model.engine.model)

    @property
    def live(self) -> bool:
        """Rows are generating (the server steps until none is left)."""
        return self._live is not None and bool(self._live.rows)

    @property
    def live_rows(self) -> int:
        return 0 if self._live is None else len(self._live.rows)

    def join(self, turn: Turn, on_done: Callable[[Turn, ChatOutcome], None]) -> None:
        """Build the turn's row as the solo path builds its prompt and generation settings
        (LlamaFactory's own _process_args, the row's template, its window), and join it."""

        engine = self._chat_model.engine
        params = turn.params
        if turn.chosen:
            tokenizer, template = self._template(turn.template or self._model_spec["template"])
        else:
            tokenizer, template = self._templates[self._model_spec["template"]]
        kwargs = {key: params[key] for key in _GEN_KEYS if key in params}
        tools = json.dumps(turn.tools, ensure_ascii=False) if turn.tools else None
        if tools is not None:
            turn.hold_tool_calls(tool_call_marker(template))
        gen_kwargs, prompt_tokens, _ = self._prompt(turn, template, tokenizer, tools, kwargs,
                                                    capped=True)
        config = gen_kwargs["generation_config"]
        prompt = gen_kwargs["inputs"][0].tolist()
        most = config.max_new_tokens or max((config.max_length or 0) - len(prompt), 0)
        eos = config.eos_token_id
        sampled = bool(config.do_sample)
        row = RowSpec(
            prompt_ids=prompt, max_new_tokens=int(most),
            stop_ids=frozenset(eos if isinstance(eos, (list, tuple)) else [eos]),
            adapter=self._names.get(turn.adapter or ""),
            temperature=(config.temperature or 1.0) if sampled else 0.0,
            top_p=config.top_p if sampled else None, top_k=config.top_k if sampled else None,
            repetition_penalty=config.repetition_penalty, seed=params.get("seed"))
        if self._live is None:
            self._live = LiveBatch(engine.model)
        else:
            self._live.use_model(engine.model)
        parse = (lambda text: tool_calls_in(template, text)) if tools is not None else None
        self._live.join(turn, row, IncrementalText(tokenizer, getattr(
            config, "skip_special_tokens", True)), prompt_tokens, on_done, parse)

    def _prompt(self, turn: Turn, template: Any, tokenizer: Any, tools: str | None,
                kwargs: dict[str, Any], *, capped: bool
                ) -> tuple[dict[str, Any], int, dict[str, Any]]:
        """A row's prompt and generation settings as LlamaFactory builds them (its
        _process_args), with the row's template, thinking switch and window (_fit_context):
        generate's kwargs, the prompt's tokens, and the settings as fitted. `capped`: the
        fitted budget goes into the settings (a live row), else the request's."""
        from llamafactory.chat.hf_engine import HuggingfaceEngine

        engine = self._chat_model.engine
        params = turn.params
        thinking = getattr(template, "enable_thinking", None)
        if "enable_thinking" in params:
            template.enable_thinking = params["enable_thinking"]
        try:
            fitted = dict(kwargs)
            self._fit_context(turn, params.get("system"), tools, fitted, template, tokenizer)
            gen_kwargs, prompt_tokens = HuggingfaceEngine._process_args(
                engine.model, tokenizer, engine.processor, template, engine.generating_args,
                turn.messages, params.get("system"), tools, None, None, None,
                dict(fitted if capped else kwargs))
        finally:
            template.enable_thinking = thinking
        return gen_kwargs, prompt_tokens, fitted

    def step(self) -> bool:
        """One token for every live row; whether any is left."""
        assert self._live is not None
        return self._live.step()

    def fail_live(self) -> list[Turn]:
        """After an error in a step: every live row's turn, the batch emptied."""
        return self._live.fail() if self._live is not None else []

    def _forward_cancel(self, turn: Turn) -> None:
        """Stop generation as soon as the turn is cancelled, even before the next chunk."""
        while not self._cancel.is_set():
            if turn.cancelled.wait(0.05):
                self._cancel.set()

    def unload(self) -> None:
        if self._chat_model is None:
            return
        self._cancel.set()
        self._chat_model = None
        self._live = None  # the server runs no unload while rows generate
        self._peft, self._names, self._templates = None, {}, {}
        self._grammars.clear()
        self._counted.clear()
        self._model_spec, self.weight_bytes = {}, None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


if __name__ == "__main__":
    wrapper_serve.run_and_exit(ScriptEngine)
