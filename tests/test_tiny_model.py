"""The tiny model and demo tree the tests and `make run` serve (tests/rig/tiny_model.sh): every
path a generated file names exists where it was finally put. The generator once wrote into a
temporary folder and renamed it, so each checkpoint's adapter_config.json named a base that was
gone, and the picker, the empty chat and the doctor warned about it on every demo checkpoint."""

from __future__ import annotations

import json
from pathlib import Path


def named_paths(root: Path) -> list[tuple[Path, str]]:
    """(file, path it names) for every base an adapter or a run names under `root`."""
    found = []
    for config in root.rglob("adapter_config.json"):
        base = json.loads(config.read_text()).get("base_model_name_or_path")
        if base:
            found.append((config, base))
    for args in root.rglob("training_args.yaml"):
        for line in args.read_text().splitlines():
            if line.startswith("model_name_or_path:"):
                found.append((args, line.split(":", 1)[1].strip()))
    return found


def test_every_path_the_demo_tree_names_exists(tiny):
    root = Path(tiny["base"]).parent
    named = named_paths(root)
    assert len(named) >= 10  # the adapters, the runs and their checkpoints
    missing = [(str(f.relative_to(root)), p) for f, p in named if not Path(p).is_dir()]
    assert missing == []
    assert all(Path(p).resolve().is_relative_to(root.resolve()) for _, p in named)
