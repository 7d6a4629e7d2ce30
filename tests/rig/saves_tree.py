"""A LlamaFactory `saves/` tree for tests, written the way LlamaFactory writes one.

    saves/tiny/lora/sft-a/                 final adapter + checkpoint-10, checkpoint-20;
                                           training_args.yaml (template `qwen`),
                                           trainer_log.jsonl, all_results.json
    saves/tiny/lora/sft-b/                 final adapter + checkpoint-100, checkpoint-200;
                                           llamaboard_config.yaml (template `other`),
                                           trainer_state.json per checkpoint
    saves/tiny/lora/broken-no-weights/     adapter_config.json without weights
    saves/tiny/lora/broken-config/         adapter_config.json that is not JSON

With `full_model` (a model folder), also saves/tiny/full/sft-full/checkpoint-5: a copy of it,
as a full fine-tune leaves one (training_args.yaml: finetuning_type full, template qwen).

`broken=False` leaves out the two broken folders (the demo box's tree).

With `adapters` (paths of real peft adapters, e.g. the tiny model's), each folder is a copy of
one of them, so the tree can be served by the real LlamaFactory; without, the files are
stand-ins (enough for the scanner and the scripted box). Model ids follow from the paths:
`tiny--lora--sft-a`, `tiny--lora--sft-a--checkpoint-10`, ...
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

RUN_A, RUN_B = "tiny/lora/sft-a", "tiny/lora/sft-b"
STEPS_A, STEPS_B = (10, 20), (100, 200)


def _adapter(folder: Path, base: str, source: str | None) -> None:
    if source is not None:
        shutil.copytree(source, folder)
        config = json.loads((folder / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base
        (folder / "adapter_config.json").write_text(json.dumps(config))
        return
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": base, "peft_type": "LORA", "r": 4}))
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 1000)


def make_saves(root: Path, base: str, *, other_template: str = "default",
               adapters: list[str] | None = None, full_model: str | None = None,
               broken: bool = True) -> dict[str, str]:
    """Write the tree under `root` (its `saves/`), on base model `base`; run b is trained
    with `other_template`. Returns model id -> adapter folder for the usable adapters."""
    sources = list(adapters or [])

    def source(index: int) -> str | None:
        return sources[index % len(sources)] if sources else None

    made: dict[str, str] = {}
    run_a = root / RUN_A
    _adapter(run_a, base, source(0))
    (run_a / "training_args.yaml").write_text(
        f"finetuning_type: lora\nmodel_name_or_path: {base}\ntemplate: qwen\n"
        "lora_target: all\n")
    (run_a / "trainer_log.jsonl").write_text("".join(
        json.dumps({"current_steps": s, "loss": round(3.0 - s / 10, 3), "total_steps": 30})
        + "\n" for s in range(2, 31, 2)) + json.dumps({"current_steps": 20, "eval_loss": 2.5})
        + "\n")
    (run_a / "all_results.json").write_text(json.dumps({"train_loss": 0.123, "eval_loss": 0.45}))
    made["tiny--lora--sft-a"] = str(run_a)
    for index, step in enumerate(STEPS_A, start=1):
        _adapter(run_a / f"checkpoint-{step}", base, source(index))
        made[f"tiny--lora--sft-a--checkpoint-{step}"] = str(run_a / f"checkpoint-{step}")

    run_b = root / RUN_B
    _adapter(run_b, base, source(2))
    (run_b / "llamaboard_config.yaml").write_text(
        f"top.finetuning_type: lora\ntop.model_name: Tiny\ntop.template: {other_template}\n")
    made["tiny--lora--sft-b"] = str(run_b)
    for index, step in enumerate(STEPS_B, start=1):
        checkpoint = run_b / f"checkpoint-{step}"
        _adapter(checkpoint, base, source(index))
        (checkpoint / "trainer_state.json").write_text(json.dumps({"log_history": [
            {"step": s, "loss": round(2.0 - s / 200, 3)} for s in range(25, step + 1, 25)]}))
        made[f"tiny--lora--sft-b--checkpoint-{step}"] = str(checkpoint)

    if full_model is not None:
        run = root / "tiny" / "full" / "sft-full"
        shutil.copytree(full_model, run / "checkpoint-5")
        (run / "training_args.yaml").write_text(
            f"finetuning_type: full\nmodel_name_or_path: {base}\ntemplate: qwen\n")
        made["tiny--full--sft-full--checkpoint-5"] = str(run / "checkpoint-5")

    if not broken:
        return made
    no_weights = root / "tiny" / "lora" / "broken-no-weights"
    no_weights.mkdir(parents=True)
    (no_weights / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": base, "peft_type": "LORA"}))
    bad_config = root / "tiny" / "lora" / "broken-config"
    bad_config.mkdir(parents=True)
    (bad_config / "adapter_config.json").write_text("{not json")
    (bad_config / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    return made
