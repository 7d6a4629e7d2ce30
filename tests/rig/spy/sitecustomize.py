"""Test spy, loaded by the box's Python when this folder is on PYTHONPATH.

Records every request LlamaFactory builds a prompt for (its Hugging Face engine's
_process_args: a stream_chat, or a row of the wrapper's batches), to the file named by
LFGATE_TEST_SPY, so tests can prove what reached the model, in script mode and inside the real
`llamafactory-cli chat`.
It only records: the call itself goes on to the real LlamaFactory unchanged, except that
LFGATE_TEST_TOKEN_DELAY_S, when set, paces generation itself, a sleep per generated token in
transformers' `generate` loop and per step of the wrapper's own batch (the tiny model writes
a whole "long" reply in two seconds on an idle machine, and tests that stop, drop or kill a
reply mid-way must not race it). The text is the same; only its pace changes, and a stop
still ends generation within a step.

LFGATE_TEST_MAX_NEW_TOKENS, when set, is the test box's own default reply length, where
LlamaFactory's is 1,024 tokens: as a box whose chat YAML sets `max_new_tokens` would have it,
for every request that names none (one that names a length still gets it). The tiny random
model almost never says end-of-text, so every default reply ran to 1,024 paced tokens, some
4.6 CPU seconds each along the whole path: a third of the test suite's time went to replies
no test read to the end.
"""

import importlib.abc
import importlib.util
import json
import os
import sys
import time

_SPY = os.environ.get("LFGATE_TEST_SPY")
_PACE_S = float(os.environ.get("LFGATE_TEST_TOKEN_DELAY_S") or 0)
_MAX_NEW_TOKENS = int(os.environ.get("LFGATE_TEST_MAX_NEW_TOKENS") or 0)


def _write(record):
    if not _SPY:
        return
    with open(_SPY, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _patch(chat_model_class):
    """Each request's messages as LlamaFactory builds its prompt from them (the Hugging Face
    engine's _process_args, which the solo path's stream_chat and the wrapper's batch rows
    both call), and when a stream_chat really ended."""
    from llamafactory.chat.hf_engine import HuggingfaceEngine

    process_args = HuggingfaceEngine._process_args

    def recorded(model, tokenizer, processor, template, generating_args, messages,
                 system=None, tools=None, *args, **kwargs):
        input_kwargs = kwargs.get("input_kwargs", args[3] if len(args) > 3 else {})
        _write({
            "pid": os.getpid(),
            "messages": messages,
            "system": system,
            "kwargs": {**dict(input_kwargs or {}), **({"tools": tools} if tools else {})},
            "default_system": getattr(template, "default_system", None),
            "enable_thinking": getattr(template, "enable_thinking", None),
        })
        return process_args(model, tokenizer, processor, template, generating_args, messages,
                            system, tools, *args, **kwargs)

    HuggingfaceEngine._process_args = staticmethod(recorded)
    original = chat_model_class.stream_chat

    def stream_chat(self, messages, system=None, *args, **kwargs):
        chunks = 0
        try:
            for chunk in original(self, messages, system, *args, **kwargs):
                chunks += 1
                yield chunk
        finally:
            # When generation really ended, and how far it got (a stop must end it early).
            _write({"pid": os.getpid(), "end": True, "chunks": chunks})

    chat_model_class.stream_chat = stream_chat


def _watch_live_rows(live_batch_class):
    """The wrapper's own batch (remote/live_batch.py): each row that joins is a generation on
    this box (a record beside generate's, `rows` 1), and each row's end is recorded as a
    stream_chat's is (`chunks`: the tokens it made), so tests see both paths alike."""
    join, outcome = live_batch_class.join, live_batch_class._outcome

    def joined(self, turn, *args, **kwargs):
        if _SPY:
            with open(_SPY + ".generate.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"pid": os.getpid(), "rows": 1, "live": True}) + "\n")
        return join(self, turn, *args, **kwargs)

    def ended(self, live):
        _write({"pid": os.getpid(), "end": True, "chunks": len(live.row.made)})
        return outcome(self, live)

    live_batch_class.join = joined
    live_batch_class._outcome = ended


def _pace_steps(step_batch_class):
    """The wrapper's own batch (remote/step_batch.py) paced as generate is: a sleep per
    decode step."""
    original = step_batch_class.step

    def step(self):
        if self.rows:
            time.sleep(_PACE_S)
        return original(self)

    step_batch_class.step = step


def _watch_generation():
    """Record every `generate` call and its batch size (in <spy>.generate.jsonl, apart from
    the chat records), so a test can prove one call served several chats; with a pace, one
    sleep per generated token inside generate's loop (a stopping criterion that never stops),
    so the generation thread itself is slower, not just the reader."""
    from transformers import StoppingCriteria, StoppingCriteriaList
    from transformers.generation.utils import GenerationMixin

    class _Pace(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            time.sleep(_PACE_S)
            return False

    original = GenerationMixin.generate

    def generate(self, *args, **kwargs):
        inputs = kwargs.get("input_ids", kwargs.get("inputs", args[0] if args else None))
        if _SPY:
            with open(_SPY + ".generate.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"pid": os.getpid(), "rows": int(inputs.shape[0])
                                         if hasattr(inputs, "shape") else None}) + "\n")
        if _PACE_S:
            criteria = list(kwargs.get("stopping_criteria") or [])
            kwargs["stopping_criteria"] = StoppingCriteriaList([*criteria, _Pace()])
        return original(self, *args, **kwargs)

    GenerationMixin.generate = generate


def _default_reply_length():
    """LlamaFactory's GeneratingArguments with `max_new_tokens` defaulting to the test box's:
    both where a dict is parsed (script mode: the dataclass's __init__) and where the command
    line is (`llamafactory-cli chat`: the field, which HfArgumentParser reads when it is
    built)."""
    import dataclasses

    from llamafactory.hparams.generating_args import GeneratingArguments

    field = GeneratingArguments.__dataclass_fields__["max_new_tokens"]
    field.default = _MAX_NEW_TOKENS
    with_defaults = [f.name for f in dataclasses.fields(GeneratingArguments)
                     if f.default is not dataclasses.MISSING
                     or f.default_factory is not dataclasses.MISSING]
    defaults = list(GeneratingArguments.__init__.__defaults__)
    defaults[len(defaults) - len(with_defaults) + with_defaults.index("max_new_tokens")] = (
        _MAX_NEW_TOKENS)
    GeneratingArguments.__init__.__defaults__ = tuple(defaults)


class _ChatModelFinder(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.waiting = {"llamafactory.chat.chat_model", "step_batch", "live_batch"}

    def find_spec(self, name, path, target=None):
        if name not in self.waiting:
            return None
        self.waiting.discard(name)
        sys.meta_path.remove(self)  # the real finders find it
        try:
            spec = importlib.util.find_spec(name)
        finally:
            if self.waiting:
                sys.meta_path.insert(0, self)
        if spec is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            if name == "step_batch":
                if _PACE_S:
                    _pace_steps(module.StepBatch)
                return
            if name == "live_batch":
                _watch_live_rows(module.LiveBatch)
                return
            _patch(module.ChatModel)
            _watch_generation()
            if _MAX_NEW_TOKENS:
                _default_reply_length()

        spec.loader.exec_module = exec_and_patch
        return spec


if _SPY or _PACE_S or _MAX_NEW_TOKENS:
    sys.meta_path.insert(0, _ChatModelFinder())
