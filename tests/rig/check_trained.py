"""Check the trained tiny adapters (tests/rig/train_adapters.sh) with LlamaFactory's ChatModel.

Run with the box's Python:
    python check_trained.py TRAINED_DIR
Loads each adapter of TRAINED_DIR/trained.json on its base (template qwen, greedy decoding)
and asks every case: the reply must be exactly the expected answer, and a tool call must parse
(the template's own extract_tool) into the expected FunctionCall. Prints one line per case;
exits 1 if any differs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llamafactory.chat import ChatModel


def check(info: dict, name: str) -> list[str]:
    adapter = info["adapters"][name]
    chat_model = ChatModel({
        "model_name_or_path": info["base"], "adapter_name_or_path": adapter["path"],
        "template": info["template"], "finetuning_type": "lora", "infer_backend": "huggingface",
        "do_sample": False, "max_new_tokens": 128,
    })
    failures = []
    for case in adapter["cases"]:
        messages = [dict(message) for message in case["messages"]]
        reply = chat_model.chat(messages, system=None, tools=case["tools"])[0]
        text = reply.response_text
        ok = text == case["answer"] and reply.finish_reason == "stop"
        if case["tool_calls"] is not None:
            # The template's own parser: a list of FunctionCall(name, arguments JSON), or the
            # text back when it finds no call.
            calls = chat_model.engine.template.extract_tool(text)
            parsed = ([(call.name, json.loads(call.arguments)) for call in calls]
                      if isinstance(calls, list) else calls)
            ok = ok and parsed == [(call["name"], json.loads(call["arguments"]))
                                   for call in case["tool_calls"]]
        said = f"{name}: {messages[-1]['role']} {messages[-1]['content']!r} -> {text!r}"
        print(("ok   " if ok else "FAIL ") + said, flush=True)
        if not ok:
            failures.append(f"{said} (expected {case['answer']!r}, "
                            f"finish {reply.finish_reason})")
    del chat_model
    return failures


def main(folder: Path) -> int:
    info = json.loads((folder / "trained.json").read_text())
    paris = {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}
    assert any(case["tool_calls"] == [paris] for case in info["adapters"]["tool"]["cases"])
    failures = [failure for name in info["adapters"] for failure in check(info, name)]
    for failure in failures:
        print("FAILED:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
