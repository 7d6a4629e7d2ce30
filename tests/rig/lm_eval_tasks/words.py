"""The rows of words.jsonl (beside this file) as the test split of lm-eval's tasks here
(`custom_dataset: !function words.load`): read from this folder, wherever lm-eval runs, and
offline (no dataset hub, no datasets cache)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

ROWS = Path(__file__).with_name("words.jsonl")


def rows() -> list[dict]:
    return [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]


def load(**_metadata) -> datasets.DatasetDict:
    """lm-eval calls it with the task's metadata (and --metadata) as keywords: none used."""
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows())})
