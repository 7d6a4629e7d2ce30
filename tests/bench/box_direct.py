"""Box side of the benchmark: `ChatModel.stream_chat` called directly, no gateway, no SSH.

    BOX_PYTHON box_direct.py '<json: {"model": {...}, "prompts": [...], "params": {...}}>'

Prints one JSON object: load seconds and, per prompt, time to first chunk, total, chunks.
This is the floor the whole path (HTTP -> gateway -> SSH -> wrapper) is compared against.
"""

import json
import os
import sys
import time

from llamafactory.chat import ChatModel


def main() -> None:
    job = json.loads(sys.argv[1] if sys.argv[1] != "-" else sys.stdin.read())
    model = job["model"]
    args = {"model_name_or_path": model["base_model_path"], "template": model["template"],
            "finetuning_type": "lora", "infer_backend": "huggingface"}
    if model.get("adapter_path"):
        args["adapter_name_or_path"] = model["adapter_path"]
    started = time.monotonic()
    chat_model = ChatModel(args)
    load_s = time.monotonic() - started
    for _ in chat_model.stream_chat([{"role": "user", "content": "warm up"}], **job["params"]):
        pass
    turns = []
    for prompt in job["prompts"]:
        started = time.monotonic()
        first, last, chunks, gaps = None, None, 0, []
        for text in chat_model.stream_chat([{"role": "user", "content": prompt}],
                                           **job["params"]):
            if not text:  # the streamer also yields "" while it holds back a partial word
                continue
            now = time.monotonic()
            chunks += 1
            if last is not None:
                gaps.append(now - last)
            first = first if first is not None else now - started
            last = now
        turns.append({"ttft_s": first, "total_s": time.monotonic() - started, "chunks": chunks,
                      "gaps_s": gaps})
    print(json.dumps({"load_s": load_s, "turns": turns}), flush=True)


if __name__ == "__main__":
    main()
    # Out at once: the answer is printed, and a normal interpreter exit with LlamaFactory's
    # background loop and torch's threads still up sometimes aborts ("terminate called
    # without an active exception"), failing a run that had measured everything.
    os._exit(0)
