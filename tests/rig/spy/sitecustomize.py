"""Test spy, loaded by the box's Python when this folder is on PYTHONPATH.

Records every `ChatModel.stream_chat` call (to the file named by LFGATE_TEST_SPY) so tests can
prove what reached the model, in script mode and inside the real `llamafactory-cli chat`.
It only records: the call itself goes on to the real LlamaFactory unchanged.
"""

import importlib.abc
import importlib.util
import json
import os
import sys

_SPY = os.environ.get("LFGATE_TEST_SPY")


def _write(record):
    with open(_SPY, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _patch(chat_model_class):
    original = chat_model_class.stream_chat

    def stream_chat(self, messages, system=None, *args, **kwargs):
        template = getattr(self.engine, "template", None)
        record = {
            "pid": os.getpid(),
            "messages": messages,
            "system": system,
            "kwargs": kwargs,
            "default_system": getattr(template, "default_system", None),
            "enable_thinking": getattr(template, "enable_thinking", None),
        }
        _write(record)
        chunks = 0
        try:
            for chunk in original(self, messages, system, *args, **kwargs):
                chunks += 1
                yield chunk
        finally:
            # When generation really ended, and how far it got (a stop must end it early).
            _write({"pid": os.getpid(), "end": True, "chunks": chunks})

    chat_model_class.stream_chat = stream_chat


class _ChatModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "llamafactory.chat.chat_model":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module.ChatModel)

        spec.loader.exec_module = exec_and_patch
        return spec


if _SPY:
    sys.meta_path.insert(0, _ChatModelFinder())
