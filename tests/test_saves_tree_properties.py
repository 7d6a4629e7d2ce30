"""The saves tree as an input surface (issue 24, finding 13 and the property guard): whatever
a run's folders and files hold, the scan (remote/discover_adapters.py) finishes, a bad file
costs only its own facts (with a warning on its models), losses are numbers or nothing, and
no two models share an id (`x/y` and `x--y` once did, and one disappeared)."""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lfgate.config import Settings
from lfgate.services.models.catalog import build_catalog

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
