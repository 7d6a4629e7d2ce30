"""Model ids, bases and warnings built from a scan (lfgate.services.models.catalog), on scans
made by the real scanner over trees written the way LlamaFactory writes them."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from lfgate.config import Settings
from lfgate.services.models.catalog import build_catalog, path_id
from lfgate.storage.storable import why_unstorable
from tests.rig.saves_tree import make_saves

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "remote"))
from discover_adapters import scan


def settings(tmp_path: Path, **values: str) -> Settings:
    base = tmp_path / "models" / "tiny"
    base.mkdir(parents=True, exist_ok=True)
    return Settings(_env_file=None, base_model_path=str(base), template="qwen", **values)


def catalog_of(tmp_path: Path, config: Settings, dirs: list[str], paths: list[str] = ()):
    found = scan({"dirs": dirs, "paths": list(paths),
                  "base_model_path": config.base_model_path})
    return build_catalog(config, found)


def test_ids_are_readable_url_safe_and_stable_across_scans(tmp_path):
    config = settings(tmp_path)
    made = make_saves(tmp_path / "saves", config.base_model_path)
    first = catalog_of(tmp_path, config, [str(tmp_path / "saves")])
    ids = [spec.id for spec in first.specs]
    assert set(made) <= set(ids)
    assert ids[:1] == ["default"]
    for model_id in ids:
        assert all(c.isalnum() or c in "._-" for c in model_id), model_id
    again = catalog_of(tmp_path, config, [str(tmp_path / "saves")])
    assert [spec.id for spec in again.specs] == ids
    # A new checkpoint adds one model and changes no other id.
    shutil.copytree(made["tiny--lora--sft-a--checkpoint-20"],
                    tmp_path / "saves" / "tiny" / "lora" / "sft-a" / "checkpoint-30")
    grown = [spec.id for spec in catalog_of(tmp_path, config, [str(tmp_path / "saves")]).specs]
    assert set(grown) - set(ids) == {"tiny--lora--sft-a--checkpoint-30"}


def test_runs_list_the_final_adapter_then_checkpoints_by_step(tmp_path):
    config = settings(tmp_path)
    make_saves(tmp_path / "saves", config.base_model_path)
    specs = catalog_of(tmp_path, config, [str(tmp_path / "saves")]).specs
    run_a = [(s.facts.step, s.facts.train_loss) for s in specs
             if s.facts and s.facts.run == "tiny--lora--sft-a"]
    assert run_a == [(None, 0.123), (10, 2.0), (20, 1.0)]


def test_adapters_are_served_with_their_training_template_and_warn(tmp_path):
    config = settings(tmp_path)
    make_saves(tmp_path / "saves", config.base_model_path, other_template="llama3")
    specs = {s.id: s for s in catalog_of(tmp_path, config, [str(tmp_path / "saves")]).specs}
    b = specs["tiny--lora--sft-b--checkpoint-100"]
    assert b.template == "llama3" and b.facts.training_template == "llama3"
    assert any("llama3" in w and "TEMPLATE=qwen" in w for w in b.warnings)
    assert specs["tiny--lora--sft-a"].warnings == ()
    assert b.base_id == "default"  # no ADAPTER_PATH: the configured base is `default`


def test_configured_pair_warns_when_its_run_used_another_template(tmp_path):
    config0 = settings(tmp_path)
    made = make_saves(tmp_path / "saves", config0.base_model_path, other_template="llama3")
    config = settings(tmp_path, adapter_path=made["tiny--lora--sft-b"])
    specs = {s.id: s for s in catalog_of(tmp_path, config, [],
                                         [config.adapter_path]).specs}
    assert set(specs) == {"default", "base"}  # an ADAPTER_PATH alone adds no listing
    assert any("TEMPLATE=llama3" in w for w in specs["default"].warnings)


def test_broken_adapters_are_listed_with_why_and_unusable(tmp_path):
    config = settings(tmp_path)
    make_saves(tmp_path / "saves", config.base_model_path)
    catalog = catalog_of(tmp_path, config, [str(tmp_path / "saves"), str(tmp_path / "gone")])
    specs = {s.id: s for s in catalog.specs}
    assert not specs["tiny--lora--broken-no-weights"].usable
    assert "no weights" in specs["tiny--lora--broken-no-weights"].problems[0]
    assert "adapter_config.json" in specs["tiny--lora--broken-config"].problems[0]
    assert catalog.missing == [{"dir": str(tmp_path / "gone"),
                                "reason": "no such folder on the box"}]


def test_other_bases_become_models_and_same_paths_under_two_roots_stay_apart(tmp_path):
    config = settings(tmp_path)
    other = tmp_path / "models" / "other"
    other.mkdir(parents=True)
    make_saves(tmp_path / "one" / "saves", config.base_model_path)
    make_saves(tmp_path / "two" / "saves", str(other))
    catalog = catalog_of(tmp_path, config, [str(tmp_path / "one" / "saves"),
                                            str(tmp_path / "two" / "saves")])
    ids = [s.id for s in catalog.specs]
    assert len(ids) == len(set(ids))
    assert "base--other" in ids
    two = [s for s in catalog.specs if s.adapter_path and "/two/" in s.adapter_path]
    assert two and all(s.base_id == "base--other" for s in two if s.usable)
    assert all(s.id.startswith("two--saves--tiny--") for s in two)


def test_path_ids():
    assert path_id("qwen2.5-7b/lora/sft a/checkpoint-20") == \
        "qwen2.5-7b--lora--sft-a--checkpoint-20"
    assert path_id("./run") == "run"


def test_a_whole_fine_tuned_model_is_its_own_base(tmp_path):
    config = settings(tmp_path)
    model = tmp_path / "models" / "full-source"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 100)
    made = make_saves(tmp_path / "saves", config.base_model_path, full_model=str(model))
    specs = {s.id: s for s in catalog_of(tmp_path, config, [str(tmp_path / "saves")]).specs}
    full = specs["tiny--full--sft-full--checkpoint-5"]
    assert (full.kind, full.base_model_path, full.adapter_path) == (
        "base", made["tiny--full--sft-full--checkpoint-5"], None)
    assert full.finetuning_type == "full" and full.facts.step == 5
    assert "its own model" in full.warnings[0]


def test_folders_whose_names_slug_alike_stay_apart(tmp_path):
    """`run 1`, `run?1`, `$(run 1)` all slug to `run-1`: the plain `run-1` keeps its id, the
    others get a hash of their path, so none hides another (each its own run too)."""
    config = settings(tmp_path)
    root = tmp_path / "saves"
    names = ["run-1", "run 1", "run?1", "$(run 1)"]
    for name in names:
        folder = root / name
        (folder / "checkpoint-5").mkdir(parents=True)
        for adapter in (folder, folder / "checkpoint-5"):
            (adapter / "adapter_config.json").write_text(
                f'{{"base_model_name_or_path": "{config.base_model_path}", "peft_type": "LORA"}}')
            (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    specs = catalog_of(tmp_path, config, [str(root)]).specs
    finals = {Path(s.adapter_path).name: s for s in specs if s.facts and s.facts.step is None}
    assert sorted(finals) == sorted(names)
    assert finals["run-1"].id == "run-1"
    ids = [s.id for s in specs]
    assert len(set(ids)) == len(ids) == 1 + 2 * len(names), ids
    for name, spec in finals.items():
        if name != "run-1":
            assert spec.id.startswith("run-1-") and len(spec.id) == len("run-1-") + 6
        checkpoint = next(s for s in specs if s.adapter_path == str(root / name / "checkpoint-5"))
        assert checkpoint.facts.run == spec.facts.run == spec.id  # its run is its own
    again = catalog_of(tmp_path, config, [str(root)]).specs
    assert [s.id for s in again] == ids


def _latin1_run(root: bytes, name: bytes, base: str) -> None:
    for folder in (root + b"/" + name, root + b"/" + name + b"/checkpoint-5"):
        os.makedirs(folder)
        with open(folder + b"/adapter_config.json", "w") as handle:
            json.dump({"base_model_name_or_path": base, "peft_type": "LORA"}, handle)
        with open(folder + b"/adapter_model.safetensors", "wb") as handle:
            handle.write(b"\0" * 10)


def test_a_name_that_is_not_utf8_is_shown_as_text_with_an_id_of_its_own(tmp_path):
    """Issue 24 finding 5: `run-caf\\xe9` (Latin-1) is listed as `run-caf\ufffd`, kept exact
    for the wrapper, under `run-caf-` and a hash of its bytes (its checkpoint under that, then
    `--checkpoint-5`): an id that neighbours named alike (`run-caf`, `run-caf\\xe8`, the UTF-8
    `run-caf\u00e9`), coming later, neither take nor change."""
    config = settings(tmp_path)
    root = os.fsencode(tmp_path / "saves")
    _latin1_run(root, b"run-caf\xe9", config.base_model_path)
    first = {s.id: s for s in catalog_of(tmp_path, config, [os.fsdecode(root)]).specs}
    (final_id,) = [i for i in first if i.startswith("run-caf") and "--" not in i]
    assert final_id.startswith("run-caf-") and len(final_id) == len("run-caf-") + 6
    final, checkpoint = first[final_id], first[f"{final_id}--checkpoint-5"]
    assert final.adapter_path == os.fsdecode(root) + "/run-caf\ufffd"
    assert os.fsencode(final.box_adapter_path) == root + b"/run-caf\xe9"
    assert os.fsencode(checkpoint.for_wrapper("")["adapter_path"]) == \
        root + b"/run-caf\xe9/checkpoint-5"
    assert (final.facts.run_path, checkpoint.facts.run) == ("run-caf\ufffd", final_id)
    assert final.base_id == "default" and final.usable
    for name in (b"run-caf", b"run-caf\xe8", "run-caf\u00e9".encode()):
        _latin1_run(root, name, config.base_model_path)
    grown = {s.id: s for s in catalog_of(tmp_path, config, [os.fsdecode(root)]).specs}
    assert set(first) <= set(grown) and len(grown) == len(first) + 6
    assert os.fsencode(grown[final_id].box_adapter_path) == root + b"/run-caf\xe9"
    assert "run-caf" in grown  # the plain name keeps the plain id


def test_no_lone_surrogate_in_a_scan_reaches_the_listing(tmp_path):
    """Issue 24 finding 5, the guard where the scan enters the gateway: a scan whose every
    string holds what is no text (lone surrogates, the bytes of names that are not UTF-8 or
    none at all, and NUL) lists as text throughout; the exact paths stay for the wrapper."""
    config = settings(tmp_path)
    odd = "caf\udce9\ud800\x00"
    scan = {"adapters": [{
        "path": f"/saves/{odd}", "root": "/saves", "relative": odd, "run": odd,
        "run_dir": f"/saves/{odd}", "step": None, "base": f"/models/{odd}",
        "base_resolved": False, "saved_base": f"/models/{odd}", "template": odd,
        "finetuning_type": "lora", "peft_type": "LORA", "kind": "adapter",
        "problems": [], "notes": [f"note {odd}"], "train_loss": 1.0, "eval_loss": None,
        "size_bytes": 1, "modified": 1.0, "explicit": False}],
        "curves": {f"/saves/{odd}": {"train": [[1, 1.0]], "eval": []}},
        "missing": [{"dir": f"/x/{odd}", "reason": f"no {odd}"}], "truncated": False}
    catalog = build_catalog(config, scan)
    for spec in catalog.specs:
        shown = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
                 if not f.name.startswith("exact_")}
        shown["facts"] = None if spec.facts is None else dataclasses.asdict(spec.facts)
        json.dumps(shown, ensure_ascii=False).encode("utf-8")
        assert why_unstorable(json.dumps(shown, ensure_ascii=False)) is None, shown
    text = json.dumps([catalog.missing, catalog.curves], ensure_ascii=False)
    assert why_unstorable(text) is None and "\ufffd" in text
    adapter = next(s for s in catalog.specs if s.facts is not None)
    assert adapter.box_adapter_path == f"/saves/{odd}"
    assert adapter.for_wrapper("")["base_model_path"] == f"/models/{odd}"
    assert adapter.adapter_path == "/saves/caf\ufffd\ufffd\ufffd"
    assert list(catalog.curves) == [adapter.facts.run]  # its curve, found by the exact path
