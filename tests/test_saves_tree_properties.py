"""The saves tree as an input surface (issue 24, finding 13 and the property guard): whatever
a run's folders and files hold, the scan (remote/discover_adapters.py) finishes, a bad file
costs only its own facts (with a warning on its models), losses are numbers or nothing, and
no two models share an id (`x/y` and `x--y` once did, and one disappeared).

Issue 24, finding 5: whatever bytes the folders' names are (Latin-1 `run-caf\\xe9`, or any
bytes but `/` and NUL), the listing is text, its ids plain and stable, and the path the
wrapper is given is the folder's, byte for byte."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lfgate.config import Settings
from lfgate.remote import wrapper_protocol as wp
from lfgate.services.models.catalog import build_catalog, readable
from lfgate.storage.storable import why_unstorable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "remote"))
from discover_adapters import scan

ADAPTER_CONFIG = json.dumps({"peft_type": "LORA", "base_model_name_or_path": "/nowhere",
                             "r": 4})
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=3), max_leaves=6)
log_lines = st.lists(
    st.one_of(json_values.map(json.dumps),
              st.dictionaries(st.sampled_from(["current_steps", "loss", "eval_loss"]),
                              json_values).map(json.dumps),
              st.text(max_size=20)), max_size=6).map("\n".join)
files = st.fixed_dictionaries({}, optional={
    "trainer_log.jsonl": log_lines,
    "all_results.json": st.one_of(json_values.map(json.dumps), st.text(max_size=20)),
    "trainer_state.json": st.one_of(
        st.dictionaries(st.just("log_history"), json_values).map(json.dumps),
        st.text(max_size=20)),
    "adapter_config.json": st.one_of(st.just(ADAPTER_CONFIG), json_values.map(json.dumps)),
    "training_args.yaml": st.text(max_size=40),
})
names = st.sampled_from(["x", "y", "x--y", "run 1", "run?1", "a-b", "checkpoint-5",
                         "checkpoint-10", "--", "é", "default", "base"])
trees = st.dictionaries(st.lists(names, min_size=1, max_size=3).map("/".join), files,
                        min_size=1, max_size=5)


def build(root: Path, tree: dict[str, dict[str, str]]) -> None:
    for relative, contents in tree.items():
        folder = root / relative
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_config.json").write_text(ADAPTER_CONFIG)  # an adapter here
        (folder / "adapter_model.safetensors").write_bytes(b"\0" * 16)
        for name, text in contents.items():
            (folder / name).write_text(text, encoding="utf-8", errors="surrogatepass")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
@example({"x/y": {}, "x--y": {}})
@example({"run": {"trainer_log.jsonl": "[1, 2]\n\"text\"\n{\"current_steps\": 1, "
                  "\"loss\": \"n/a\"}", "all_results.json": '{"train_loss": "n/a"}'}})
@example({"run": {"all_results.json": "[1]", "trainer_state.json": '{"log_history": 5}'}})
def test_any_saves_tree_scans_and_lists_with_distinct_ids(tree):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "saves"
        build(root, tree)
        base = Path(tmp) / "base"
        base.mkdir()
        config = Settings(_env_file=None, base_model_path=str(base), template="qwen",
                          adapter_dirs=str(root))
        found = scan({"dirs": [str(root)], "paths": [], "base_model_path": str(base)})
        json.dumps(found)  # what the box sends is JSON
        catalog = build_catalog(config, found)
    ids = [spec.id for spec in catalog.specs]
    assert len(ids) == len(set(ids)), ids
    listed = {spec.adapter_path for spec in catalog.specs if spec.adapter_path}
    assert len(listed) == len({a["path"] for a in found["adapters"]})  # none disappeared
    for spec in catalog.specs:
        if spec.facts is not None:
            for loss in (spec.facts.train_loss, spec.facts.eval_loss):
                assert loss is None or (isinstance(loss, float) and math.isfinite(loss))
    for curve in catalog.curves.values():
        for step, loss in [*curve["train"], *curve["eval"]]:
            assert isinstance(step, int) and math.isfinite(loss)


# -- names that are bytes (issue 24, finding 5) ---------------------------------------------

SKIPPED = {"runs", "wandb", "__pycache__", "logs", "tensorboard"}  # as the scanner skips them
byte_names = st.one_of(
    st.sampled_from([b"run-caf\xe9", b"run-caf\xe8", b"run-caf", b"run-caf\xc3\xa9", b"\xff",
                     b"\xed\xa0\x80", b"x--y", b"run 1", b"checkpoint-5", b"checkpoint-\xe9",
                     b"caf\\xe9", b"run-caf\xef\xbf\xbd", b".hid\xe9", b"logs"]),
    st.binary(min_size=1, max_size=10)).filter(
        lambda name: b"/" not in name and b"\0" not in name and name not in (b".", b".."))
# Where each adapter says it was trained: .env's base, a base whose name is Latin-1 (there, or
# gone from the box), or a string that names no bytes at all.
SAVED_BASES = ("configured", "latin-1", "latin-1 gone", "no bytes")
byte_trees = st.dictionaries(st.lists(byte_names, min_size=1, max_size=3).map(tuple),
                             st.sampled_from(SAVED_BASES), min_size=1, max_size=5)


def _strings(value, where=""):
    """Every string in a value (keys too), with where it is."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, f"{where}.key")
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")


def _listing(tmp: bytes, tree: dict[tuple[bytes, ...], str]):
    """Write the tree, scan it as the box does (its JSON, through the wire) and list it."""
    root, base = tmp + b"/saves", tmp + b"/models/tiny"
    latin_base = tmp + b"/models/caf\xe9"
    os.makedirs(base, exist_ok=True)
    os.makedirs(latin_base, exist_ok=True)
    saved = {"configured": os.fsdecode(base), "latin-1": os.fsdecode(latin_base),
             "latin-1 gone": os.fsdecode(tmp + b"/gone/caf\xe9"), "no bytes": "/gone/\ud800"}
    for parts, which in tree.items():
        folder = b"/".join([root, *parts])
        os.makedirs(folder, exist_ok=True)
        with open(folder + b"/adapter_config.json", "w") as handle:  # as PEFT writes it
            json.dump({"peft_type": "LORA", "base_model_name_or_path": saved[which]}, handle)
        with open(folder + b"/adapter_model.safetensors", "wb") as handle:
            handle.write(b"\0" * 16)
    config = Settings(_env_file=None, base_model_path=os.fsdecode(base), template="qwen",
                      adapter_dirs=os.fsdecode(root))
    job = {"dirs": [os.fsdecode(root)], "paths": [], "base_model_path": os.fsdecode(base)}
    line = json.dumps(scan(json.loads(json.dumps(job))), ensure_ascii=True)
    assert line.isascii()  # what the box sends is ASCII JSON, whatever the names
    return build_catalog(config, json.loads(line)), root, saved


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(byte_trees)
@example({(b"run-caf\xe9",): "latin-1", (b"run-caf\xe9", b"checkpoint-5"): "latin-1 gone",
          (b"run-caf\xe8",): "no bytes", (b"run-caf",): "configured"})
@example({(b"run-caf\xc3\xa9",): "configured", (b"run-caf\xef\xbf\xbd",): "configured",
          (b"caf\\xe9",): "configured", (b"\xed\xa0\x80",): "configured"})
def test_any_byte_names_list_as_text_with_plain_stable_ids_and_exact_paths(tree):
    """Issue 24 finding 5: names as arbitrary bytes (but `/` and NUL). Scan and catalog never
    raise; ids are plain ASCII, distinct and the same on a rescan; every string a person, an
    answer or the database gets is text; and the paths the wrapper is given (through the
    protocol's JSON, read back as the box's Python reads it) are the folders' bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        catalog, root, saved = _listing(os.fsencode(tmp), tree)
        again, _, _ = _listing(os.fsencode(tmp), tree)
    ids = [spec.id for spec in catalog.specs]
    assert len(ids) == len(set(ids)), ids
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", model_id) for model_id in ids), ids
    assert [spec.id for spec in again.specs] == ids  # stable across rescans
    for spec in catalog.specs:
        shown = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
                 if not f.name.startswith("exact_")}
        shown["facts"] = None if spec.facts is None else dataclasses.asdict(spec.facts)
        for where, text in _strings(shown, spec.id):
            assert why_unstorable(text) is None, (where, text)
        json.dumps(shown).encode("utf-8")  # an answer can say it
    for where, text in _strings([catalog.missing, list(catalog.curves)]):
        assert why_unstorable(text) is None, (where, text)

    visible = {b"/".join([root, *parts]) for parts in tree
               if not any(p.startswith(b".") or os.fsdecode(p) in SKIPPED for p in parts)}
    adapters = [spec for spec in catalog.specs if spec.facts is not None]
    sent = [json.loads(wp.encode(spec.for_wrapper(""))) for spec in adapters]  # on the box
    assert {os.fsencode(model["adapter_path"]) for model in sent} == visible
    for spec, model in zip(adapters, sent, strict=True):
        assert spec.adapter_path == readable(model["adapter_path"])  # shown, as text
        assert os.fsencode(spec.box_adapter_path) == os.fsencode(model["adapter_path"])
        which = tree[tuple(os.fsencode(model["adapter_path"])[len(root) + 1:].split(b"/"))]
        expected = {"configured": saved["configured"], "latin-1": saved["latin-1"]}.get(
            which, saved["configured"])  # a base not on the box: BASE_MODEL_PATH
        assert model["base_model_path"] == expected
        assert spec.base_model_path == readable(expected)
