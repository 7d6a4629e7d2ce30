"""Train the tiny LoRA adapters that *do something*, with LlamaFactory itself, on the CPU.

Run with the box's Python (llamafactory-cli beside it; tests/rig/train_adapters.sh does, once):
    python train_adapters.py TINY_DIR OUT_DIR
Trains on TINY_DIR/base (tests/rig/make_tiny_model.py), template qwen, from the sharegpt data in
train_adapters_data/ (its dataset_info.json names them):
- OUT_DIR/words: answers a few fixed prompts in plain words (words.json);
- OUT_DIR/tool: given the tool get_weather, answers "What is the weather in Paris?" with a call
  in the qwen template's tool format, and the tool's result (an observation turn) in words;
  given Open WebUI's eight built-in memory tools (as Open WebUI 0.12.4 sends them), answers
  "What do you remember about me?" with a call to list_memories, and its empty result in
  words; without tools it answers plainly (tool.json).
Greedy decoding gives back exactly the training answers. Writes OUT_DIR/trained.json last: the
adapters' paths, the cases (messages, tools, expected answer) and the training seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parent / "train_adapters_data"
TEMPLATE = "qwen"
# One step is the whole data set (a handful of rows); a random tiny base needs a high learning
# rate and many steps to memorise them exactly. The seeds make every run the same.
HYPER = {
    "lora_rank": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "learning_rate": 1.0e-2,
    "num_train_epochs": 60,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "seed": 42,
    "data_seed": 42,
}
ADAPTERS = {"words": "lfgate_words", "tool": "lfgate_tool"}
# The tool data has one long row (Open WebUI's memory tools: some 4,000 tokens) among short
# ones: in batches of 8 every row was padded to it, and training took 12 times as long. Rows
# one at a time, their gradients accumulated over the data set, pad nothing and make the same
# steps (one row per optimiser step, unaccumulated, was too noisy to memorise the calls).
OVERRIDES = {"tool": {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 8}}
# sharegpt's tags (LlamaFactory's defaults) as ChatModel's roles.
ROLES = {"human": "user", "gpt": "assistant", "function_call": "function",
         "observation": "observation"}


def config(base: Path, dataset: str, out: Path, hyper: dict) -> dict:
    return {
        "model_name_or_path": str(base),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "template": TEMPLATE,
        "dataset_dir": str(DATA),
        "dataset": dataset,
        "cutoff_len": 8192,  # the Open WebUI row: its memory tools are some 4,000 tokens
        "overwrite_cache": True,
        "output_dir": str(out),
        "overwrite_output_dir": True,
        "save_strategy": "no",
        "logging_steps": 10,
        "disable_tqdm": True,
        "plot_loss": False,
        "report_to": "none",
        "bf16": False,
        "fp16": False,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
        "disable_gradient_checkpointing": True,  # nothing to save on a tiny model: only slower
        **hyper,
    }


def cases(dataset_file: str) -> list[dict]:
    """Every answering turn of the data as a case: the messages before it (ChatModel's roles),
    the tools offered (a JSON string, or None) and the exact text greedy decoding gives back;
    for a tool call also the calls LlamaFactory's template parses out of that text."""
    out = []
    for row in json.loads((DATA / dataset_file).read_text()):
        tools = row.get("tools") or None
        messages: list[dict] = []
        for turn in row["conversations"]:
            role = ROLES[turn["from"]]
            if role == "function":
                call = json.loads(turn["value"])
                text = ("<tool_call>\n" + json.dumps(call, ensure_ascii=False) + "\n</tool_call>")
                out.append({"messages": list(messages), "tools": tools, "answer": text,
                            "tool_calls": [{"name": call["name"], "arguments": json.dumps(
                                call["arguments"], ensure_ascii=False)}]})
                # How ChatModel (and the wrapper) takes a call back: a JSON list of calls.
                messages.append({"role": role, "content": json.dumps([call], ensure_ascii=False)})
            elif role == "assistant":
                out.append({"messages": list(messages), "tools": tools, "answer": turn["value"],
                            "tool_calls": None})
                messages.append({"role": role, "content": turn["value"]})
            else:
                messages.append({"role": role, "content": turn["value"]})
    return out


def train(cli: Path, conf: Path, env: dict[str, str]) -> float:
    """Seconds `llamafactory-cli train conf` took, start-up and saving included."""
    start = time.monotonic()
    subprocess.run([str(cli), "train", str(conf)], env=env, check=True, cwd=conf.parent)
    return round(time.monotonic() - start, 1)


def main(tiny: Path, out: Path) -> None:
    base = tiny / "base"
    configs = out / "configs"  # the YAML each adapter was trained with, kept for the record
    configs.mkdir(parents=True, exist_ok=True)
    cli = Path(sys.executable).parent / "llamafactory-cli"
    datasets = json.loads((DATA / "dataset_info.json").read_text())
    info: dict = {"base": str(base), "template": TEMPLATE, "hyper": HYPER, "adapters": {}}
    work = Path(tempfile.mkdtemp(prefix="lfgate-train-"))  # the datasets library's cache
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "DISABLE_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(work), "TOKENIZERS_PARALLELISM": "false",
           "WANDB_DISABLED": "true", "PYTHONHASHSEED": "0"}
    try:
        for name, dataset in ADAPTERS.items():
            conf = configs / f"{name}.yaml"
            hyper = {**HYPER, **OVERRIDES.get(name, {})}
            conf.write_text(yaml.safe_dump(config(base, dataset, out / name, hyper),
                                           sort_keys=False))
            seconds = train(cli, conf, env)
            print(f"train_adapters: {name} trained in {seconds} s", flush=True)
            info["adapters"][name] = {"path": str(out / name), "train_seconds": seconds,
                                      "hyper": hyper,
                                      "cases": cases(datasets[dataset]["file_name"])}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["train_seconds"] = round(sum(a["train_seconds"] for a in info["adapters"].values()), 1)
    (out / "trained.json").write_text(json.dumps(info, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
