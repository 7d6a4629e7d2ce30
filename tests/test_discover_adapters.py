"""The box-side scanner of LlamaFactory's saves/ (remote/discover_adapters.py), on trees made
here the way LlamaFactory writes them, run as the box runs it: a program reading a JSON job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REMOTE = Path(__file__).resolve().parent.parent / "remote"
sys.path.insert(0, str(REMOTE))

from discover_adapters import scan  # noqa: E402


def adapter(folder: Path, base: str, *, weights: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": base, "peft_type": "LORA", "r": 4}))
    if weights:
        (folder / "adapter_model.safetensors").write_bytes(b"\0" * 1000)
    return folder


def saves(tmp_path: Path) -> tuple[Path, Path]:
    """saves/tiny/lora/{sft-a, sft-b}: a, trained with qwen through the CLI (training_args,
    trainer_log), final adapter and two checkpoints; b, from LlamaBoard with llama3, still
    training (checkpoints only, losses in trainer_state.json)."""
    base = tmp_path / "models" / "tiny"
    base.mkdir(parents=True)
    root = tmp_path / "saves"
    run_a = adapter(root / "tiny" / "lora" / "sft-a", str(base))
    (run_a / "training_args.yaml").write_text(
        "finetuning_type: lora\nmodel_name_or_path: /models/tiny\ntemplate: qwen\n"
        "lora_target: all\n")
    (run_a / "trainer_log.jsonl").write_text("".join(
        json.dumps({"current_steps": s, "loss": 3.0 - s / 10, "total_steps": 30}) + "\n"
        for s in range(5, 31, 5)) + json.dumps({"current_steps": 20, "eval_loss": 2.5}) + "\n"
        + '{"current_steps": 31, "lo')  # a line still being written
    (run_a / "all_results.json").write_text(json.dumps({"train_loss": 0.123, "eval_loss": 0.45}))
    for step in (10, 20):
        adapter(run_a / f"checkpoint-{step}", str(base))
    run_b = root / "tiny" / "lora" / "sft-b"
    for step in (100, 200):
        checkpoint = adapter(run_b / f"checkpoint-{step}", "/gone/from/this/box")
        (checkpoint / "trainer_state.json").write_text(json.dumps({"log_history": [
            {"step": s, "loss": 1.0 / s} for s in range(50, step + 1, 50)]}))
    (run_b / "llamaboard_config.yaml").write_text(
        "top.finetuning_type: lora\ntop.model_name: Tiny\ntop.template: llama3\n")
    return root, base


def by_path(result: dict) -> dict[str, dict]:
    return {a["relative"]: a for a in result["adapters"]}


def test_every_run_and_checkpoint_is_found_with_how_it_was_trained(tmp_path):
    root, base = saves(tmp_path)
    found = by_path(scan({"dirs": [str(root)], "base_model_path": "/models/configured"}))
    assert sorted(found) == ["tiny/lora/sft-a", "tiny/lora/sft-a/checkpoint-10",
                             "tiny/lora/sft-a/checkpoint-20", "tiny/lora/sft-b/checkpoint-100",
                             "tiny/lora/sft-b/checkpoint-200"]
    final = found["tiny/lora/sft-a"]
    assert (final["step"], final["run"], final["template"]) == (None, "tiny/lora/sft-a", "qwen")
    assert (final["base"], final["base_resolved"]) == (str(base), False)
    assert (final["train_loss"], final["eval_loss"]) == (0.123, 0.45)  # all_results
    assert final["problems"] == [] and final["size_bytes"] > 1000 and final["modified"] > 0
    ten = found["tiny/lora/sft-a/checkpoint-10"]
    assert ten["step"] == 10 and ten["train_loss"] == 2.0 and ten["eval_loss"] is None
    assert found["tiny/lora/sft-a/checkpoint-20"]["eval_loss"] == 2.5
    b = found["tiny/lora/sft-b/checkpoint-200"]
    assert (b["template"], b["finetuning_type"], b["run"]) == ("llama3", "lora", "tiny/lora/sft-b")
    assert (b["base"], b["base_resolved"]) == ("/models/configured", True)
    assert b["train_loss"] == 1.0 / 200 and b["problems"] == []


def test_loss_curves_come_per_run_thinned(tmp_path):
    root, _ = saves(tmp_path)
    result = scan({"dirs": [str(root)]})
    curve = result["curves"][str(root / "tiny" / "lora" / "sft-a")]
    assert curve["train"] == [[s, 3.0 - s / 10] for s in range(5, 31, 5)]
    assert curve["eval"] == [[20, 2.5]]


def test_broken_adapters_are_listed_with_why_and_missing_dirs_are_reported(tmp_path):
    root, _ = saves(tmp_path)
    bad = adapter(root / "broken" / "bad-config", "/x")
    (bad / "adapter_config.json").write_text("{not json")
    adapter(root / "broken" / "no-weights", "/x", weights=False)
    adapter(root / ".hidden" / "skipped", "/x")
    result = scan({"dirs": [str(root), str(tmp_path / "nope")]})  # no BASE_MODEL_PATH
    found = by_path(result)
    assert "unreadable adapter_config.json" in found["broken/bad-config"]["problems"][0]
    assert any("no weights" in p for p in found["broken/no-weights"]["problems"])
    assert found["tiny/lora/sft-b/checkpoint-100"]["problems"] == [
        "its base '/gone/from/this/box' is not on the box, and BASE_MODEL_PATH is not set"]
    assert not any(path.startswith(".hidden") for path in found)
    assert result["missing"] == [{"dir": str(tmp_path / "nope"),
                                  "reason": "no such folder on the box"}]


def test_the_scan_is_bounded_in_depth_count_and_time(tmp_path):
    root, _ = saves(tmp_path)
    adapter(root / "a" / "b" / "c" / "d" / "e" / "deep", "/x")
    assert "a/b/c/d/e/deep" not in by_path(scan({"dirs": [str(root)], "max_depth": 4}))
    assert "a/b/c/d/e/deep" in by_path(scan({"dirs": [str(root)], "max_depth": 6}))
    few = scan({"dirs": [str(root)], "max_adapters": 2})
    assert len(few["adapters"]) == 2 and few["truncated"] is True


def test_it_runs_as_a_program_with_a_json_job(tmp_path):
    root, _ = saves(tmp_path)
    script = str(REMOTE / "discover_adapters.py")
    out = subprocess.run([sys.executable, script], input=json.dumps({"dirs": [str(root)]}),
                         capture_output=True, text=True, check=True, timeout=60)
    assert len(json.loads(out.stdout)["adapters"]) == 5
    bad = subprocess.run([sys.executable, script], input="[1]", capture_output=True, text=True,
                         timeout=60, check=False)
    assert bad.returncode == 2 and "bad job" in json.loads(bad.stdout)["error"]


def test_names_that_are_not_utf8_are_reported_exactly_as_ascii_json(tmp_path):
    """Issue 24 finding 5: a run folder named in Latin-1 (bytes b"run-caf\\xe9"), its
    checkpoint, a base whose name is Latin-1 too (one there, one gone) and a
    training_args.yaml in Latin-1. The program's answer is ASCII JSON; each path in it, read
    back as the box's Python reads JSON, is the folder's bytes; the messages for people say
    such a name with U+FFFD; a file in Latin-1 costs nothing."""
    root = os.fsencode(tmp_path / "saves")
    base = os.fsencode(tmp_path / "models") + b"/tiny-caf\xe9"
    os.makedirs(base)
    run = root + b"/run-caf\xe9"
    adapter(Path(os.fsdecode(run)), os.fsdecode(base))
    with open(run + b"/training_args.yaml", "wb") as handle:
        handle.write(b"template: qwen\n# r\xe9glages\nfinetuning_type: lora\n")
    adapter(Path(os.fsdecode(run + b"/checkpoint-5")), os.fsdecode(b"/gone/caf\xe9"))
    script = str(REMOTE / "discover_adapters.py")
    job = json.dumps({"dirs": [str(tmp_path)]}).encode()
    out = subprocess.run([sys.executable, script], input=job, capture_output=True, check=True,
                         timeout=60).stdout
    assert out.isascii() and b"\\udce9" in out
    found = {os.fsencode(a["path"]): a for a in json.loads(out)["adapters"]}
    assert set(found) == {run, run + b"/checkpoint-5"}
    final, checkpoint = found[run], found[run + b"/checkpoint-5"]
    assert os.fsencode(final["run_dir"]) == run and os.fsencode(final["base"]) == base
    assert os.fsencode(final["relative"]) == b"saves/run-caf\xe9"
    assert (final["template"], final["problems"]) == ("qwen", [])
    assert os.fsencode(checkpoint["saved_base"]) == b"/gone/caf\xe9"
    assert checkpoint["problems"] == [  # no BASE_MODEL_PATH in the job
        "its base '/gone/caf\ufffd' is not on the box, and BASE_MODEL_PATH is not set"]
    assert list(json.loads(out)["curves"]) == [os.fsdecode(run)]
