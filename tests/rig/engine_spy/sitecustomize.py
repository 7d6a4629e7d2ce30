"""Engine spy (tests/test_engine_plumbing.py), loaded by the box's Python when this folder is
on PYTHONPATH: in the script wrapper, and inside the real `llamafactory-cli chat` too.

Records every `ChatModel(...)` to the file named by LFGATE_TEST_ENGINE_SPY, one JSON line:
`args` as given (the script wrapper's dict; None from the CLI), `parsed`, what LlamaFactory's
own `read_args` makes of them (the dict its HfArgumentParser gets: the CLI's YAML file as
OmegaConf reads it), and the PATH the engine starts its programs with. It only records: the
real ChatModel then runs unchanged, so without vLLM or SGLang (no GPU here) it raises
LlamaFactory's own error. JSON keeps int, float and bool apart, so types are checked exactly.
"""

import importlib.abc
import importlib.util
import json
import os
import sys

_SPY = os.environ.get("LFGATE_TEST_ENGINE_SPY")


def _patch(chat_model_class):
    original = chat_model_class.__init__

    def __init__(self, args=None):
        from llamafactory.hparams.parser import read_args

        with open(_SPY, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"pid": os.getpid(), "args": args,
                                     "parsed": read_args(args),
                                     "path": os.environ.get("PATH", "")}) + "\n")
        original(self, args)

    chat_model_class.__init__ = __init__


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
