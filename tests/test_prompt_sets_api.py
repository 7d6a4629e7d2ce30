"""Prompt sets through the API, on the scripted box double (the real wrapper loop and protocol
4, no model): import (every format, bad files refused whole with their line), runs batched
on one base, progress, stop and resume without asking an answered prompt again, scores
against the scorers called directly, votes in the leaderboard, exports. The real
LlamaFactory path, with a gateway restart midway, is tests/test_prompt_sets_gateway.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from lfgate.services.errors import BadPromptSet
from lfgate.services.evals.prompt_set_file import parse_prompt_set
from lfgate.services.evals.reference_scores import CjkTokenizer
from tests.rig.saves_tree import make_saves
from tests.test_models_api import BASE, Client, eventually, gateway

A, B = "tiny--lora--sft-a", "tiny--lora--sft-b--checkpoint-100"
ECHO = {"default": "tiny-base + no adapter", A: "tiny-base + sft-a",
        B: "tiny-base + checkpoint-100"}


@pytest.fixture
def saves(tmp_path: Path) -> Path:
    make_saves(tmp_path / "saves", BASE)
    return tmp_path / "saves"


def jsonl(*records: dict) -> str:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n"


# The file formats ------------------------------------------------------------------------

def test_every_format_parses_and_alpaca_records_map_to_prompt_and_reference():
    parsed = parse_prompt_set(jsonl({"prompt": "a", "reference": "x"}, {"prompt": "b"},
                                    {"instruction": "Translate", "input": "cat",
                                     "output": "chat", "history": []}),
                              filename="eval.jsonl")
    assert parsed.format == "jsonl"
    assert [(p.prompt, p.reference) for p in parsed.prompts] == [
        ("a", "x"), ("b", None), ("Translate\ncat", "chat")]
    assert parsed.warnings == ["ignored fields: history"]
    as_json = parse_prompt_set('[{"prompt": "a", "system": "be brief"}]')
    assert as_json.format == "json" and as_json.prompts[0].system == "be brief"
    as_csv = parse_prompt_set('prompt,reference\n"a, with comma",x\nb,\n', filename="s.csv")
    assert [(p.prompt, p.reference) for p in as_csv.prompts] == [("a, with comma", "x"),
                                                                  ("b", None)]
    lines = parse_prompt_set("\ufefffirst\n\n  second  \n")
    assert lines.format == "lines" and [p.prompt for p in lines.prompts] == ["first", "second"]


@pytest.mark.parametrize(("content", "filename", "line", "says"), [
    ('{"prompt": "a"}\n{"prompt": "b"\n', "s.jsonl", 2, "not JSON"),
    ('{"prompt": "a"}\n\n{"reference": "x"}\n', "s.jsonl", 3, 'no "prompt"'),
    ('{"prompt": "a"}\n{"prompt": 5}\n', "s.jsonl", 2, "must be a string"),
    ('{"prompt": "  "}\n', "s.jsonl", 1, "empty"),
    ("prompt,reference\na,x\nb,y,z\nc,w\n", "s.csv", 3, "3 fields where the header has 2"),
    ('prompt,reference\na,"x\n', "s.csv", 2, "not valid CSV"),
    ("question,answer\na,b\n", "s.csv", 1, 'no "prompt" column'),
])
def test_a_bad_file_names_its_line(content, filename, line, says):
    with pytest.raises(BadPromptSet) as caught:
        parse_prompt_set(content, filename=filename)
    assert caught.value.line == line and says in caught.value.message
    assert f"line {line}" in caught.value.message


def test_an_empty_file_and_a_json_object_are_refused():
    for content in ("\n\n", "[]"):
        with pytest.raises(BadPromptSet, match="no prompts"):
            parse_prompt_set(content)
    with pytest.raises(BadPromptSet, match="an array"):
        parse_prompt_set('{"prompt": "a"}', format="json")


# Through the API ---------------------------------------------------------------------------

async def import_set(http, content: str, **body) -> dict:
    response = await http.post("/api/prompt-sets", json={"content": content, **body})
    assert response.status_code == 201, response.text
    return response.json()


async def finished(http, run_id: str) -> dict:
    async def ended() -> bool:
        return (await http.get(f"/api/runs/{run_id}")).json()["status"] != "running"
    await eventually(ended)
    return (await http.get(f"/api/runs/{run_id}")).json()


async def test_a_bad_file_is_refused_whole_and_nothing_is_stored(tmp_path, monkeypatch):
    app = gateway(tmp_path, monkeypatch)
    async with Client(app) as http:
        bad = await http.post("/api/prompt-sets", json={
            "content": "prompt,reference\na,b\nc,d,e\n", "filename": "set.csv"})
        assert bad.status_code == 400
        assert bad.json()["detail"] == {"code": "bad_prompt_set", "line": 3, "message":
                                        "line 3: 3 fields where the header has 2 (an "
                                        "unquoted comma or quote?)"}
        assert (await http.get("/api/prompt-sets")).json() == {"sets": []}
        typo = await http.post("/api/prompt-sets", json={"content": "a", "fromat": "csv"})
        assert typo.status_code == 422  # unknown fields are refused, not ignored
        missing = await http.get("/api/prompt-sets/nope")
        assert missing.status_code == 404 and missing.json()["detail"]["code"] == \
            "unknown_prompt_set"
        assert (await http.get("/api/runs/nope")).status_code == 404


async def test_a_run_batches_three_models_scores_and_exports(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        prompts = [{"prompt": f"question {n}", "reference": f"Echo #1 from tiny-base + "
                    f"sft-a: question {n}"} for n in range(5)]
        prompts.append({"prompt": "今天天气怎么样", "reference": "今天天气很好"})
        prompts.append({"prompt": "no reference here"})
        made = await import_set(http, jsonl(*prompts), filename="eval.jsonl")
        assert (made["count"], made["references"], made["name"]) == (7, 6, "eval.jsonl")

        models = ["default", A, B]
        response = await http.post(f"/api/prompt-sets/{made['id']}/runs", json={
            "models": models, "params": {"max_new_tokens": 64}})
        assert response.status_code == 201, response.text
        assert response.json()["mode"] == "batch"
        run = await finished(http, response.json()["id"])
        assert run["status"] == "complete"
        assert run["progress"] | {"elapsed_s": 0} == {"done": 21, "total": 21, "errors": 0,
                                                      "elapsed_s": 0, "eta_s": None}
        for row in run["rows"]:
            assert [c["model"] for c in row["cells"]] == models
            for cell in row["cells"]:
                assert cell["status"] == "complete" and cell["attempts"] == 1
                assert cell["content"] == f"Echo #1 from {ECHO[cell['model']]}: {row['prompt']}"
                assert cell["provenance"]["prompt_index"] == row["index"]
                assert cell["provenance"]["batch"]["rows"] > 1  # asked in a batch
                assert cell["ttft_ms"] is not None
                # Scores: the named scorers called directly on the same texts.
                if row["reference"] is None:
                    assert cell["scores"] is None
                    continue
                cjk = row["index"] == 5
                bleu = sacrebleu.sentence_bleu(cell["content"], [row["reference"]],
                                               tokenize="zh" if cjk else "13a").score
                chrf = sacrebleu.sentence_chrf(cell["content"], [row["reference"]]).score
                scorer = rouge_scorer.RougeScorer(
                    ["rougeL"], **({"tokenizer": CjkTokenizer()} if cjk else {}))
                rouge = scorer.score(row["reference"], cell["content"])["rougeL"].fmeasure
                assert cell["scores"] == pytest.approx(
                    {"bleu": bleu, "chrf": chrf, "rouge_l": rouge * 100}, abs=1e-4)
        # sft-a's replies equal the references (but the CJK one): its scores are the best.
        averages = run["averages"]
        assert averages[A]["scored"] == 6 and averages[A]["bleu"] > averages[B]["bleu"]
        assert averages[A]["rouge_l"] == pytest.approx(
            sum(r["cells"][1]["scores"]["rouge_l"] for r in run["rows"] if r["reference"])
            / 6, abs=1e-3)

        vote = await http.post(f"/api/runs/{run['id']}/votes", json={"index": 0,
                                                                    "winner": "1"})
        assert vote.status_code == 200, vote.text
        board = (await http.get("/api/leaderboard")).json()
        assert board["votes"] == 1 and board["standings"][0]["model"] == A
        bad_vote = await http.post(f"/api/runs/{run['id']}/votes", json={"index": 0,
                                                                        "winner": "3"})
        assert bad_vote.status_code == 422 and "0, 1, 2, tie, both_bad" in bad_vote.text

        md = await http.get(f"/api/runs/{run['id']}/export", params={"format": "markdown"})
        assert md.headers["content-type"].startswith("text/markdown")
        assert "attachment" in md.headers["content-disposition"]
        assert "Echo #1 from tiny-base + sft-a: question 3" in md.text
        assert f"Vote: **{A} (column 2)**" in md.text and "ROUGE-L" in md.text
        lines = (await http.get(f"/api/runs/{run['id']}/export",
                                params={"format": "jsonl"})).text.splitlines()
        first = json.loads(lines[0])
        assert len(lines) == 7 and first["vote"]["winner_model"] == A
        assert first["replies"][1]["scores"]["bleu"] == pytest.approx(100)
        rows = list(csv.DictReader(io.StringIO((await http.get(
            f"/api/runs/{run['id']}/export", params={"format": "csv"})).text)))
        assert len(rows) == 21 and rows[15]["prompt"] == "今天天气怎么样"
        assert {r["model"] for r in rows} == set(models) and rows[1]["bleu"] == "100.0000"


async def test_stop_and_resume_ask_only_what_is_not_answered(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    monkeypatch.setenv("LFGATE_SCRIPTED_DELAY_S", "0.02")  # a "long" reply: 2 s (100 chunks)
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        # Short prompts answer at once; "long" ones stream for seconds: a stop lands there.
        texts = [f"short {n}" for n in range(4)] + [f"long {n}" for n in range(4)]
        made = await import_set(http, "\n".join(texts))
        run = (await http.post(f"/api/prompt-sets/{made['id']}/runs", json={
            "models": [A, B], "params": {"max_new_tokens": 100}})).json()

        async def some_done() -> bool:
            got = (await http.get(f"/api/runs/{run['id']}")).json()
            return got["progress"]["done"] >= 8 and got["status"] == "running"
        await eventually(some_done)
        stopped = await http.post(f"/api/runs/{run['id']}/stop")
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        before = (await http.get(f"/api/runs/{run['id']}")).json()
        answered = {(r["index"], c["slot"]): c["content"] for r in before["rows"]
                    for c in r["cells"] if c["status"] == "complete"}
        assert len(answered) == 8  # the short prompts; the long ones were cut
        assert {c["status"] for r in before["rows"] for c in r["cells"]} <= {
            "complete", "stopped", "pending"}
        again = await http.post(f"/api/runs/{run['id']}/stop")
        assert again.status_code == 409 and again.json()["detail"]["code"] == "run_busy"

        resumed = await http.post(f"/api/runs/{run['id']}/resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "running"
        busy = await http.post(f"/api/runs/{run['id']}/resume")
        assert busy.status_code == 409
        for path in (f"/api/prompt-sets/{made['id']}", f"/api/runs/{run['id']}"):
            refused = await http.delete(path)  # not while the run is going
            assert refused.status_code == 409 and "stop it first" in refused.text
        after = await finished(http, run["id"])
        assert after["status"] == "complete"
        for row in after["rows"]:
            for cell in row["cells"]:
                key = (row["index"], cell["slot"])
                assert cell["status"] == "complete"
                if key in answered:  # answered before the stop: never asked again
                    assert cell["attempts"] == 1 and cell["content"] == answered[key]
        nothing = await http.post(f"/api/runs/{run['id']}/resume")
        assert nothing.status_code == 422 and "nothing left" in nothing.text


async def test_the_event_stream_follows_a_run_to_its_end(tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, adapter_dirs=str(saves))
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        made = await import_set(http, "one\ntwo\nthree\n")
        run = (await http.post(f"/api/prompt-sets/{made['id']}/runs", json={
            "models": ["default", A]})).json()
        names, cells = [], []
        async with http.stream("GET", f"/api/runs/{run['id']}/events") as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    names.append(line[7:])
                elif line.startswith("data: ") and names[-1] == "cell":
                    cells.append(json.loads(line[6:]))
        assert names[0] == "progress" and names[-1] == "end"
        ended = [c for c in cells if c["cell"]["status"] == "complete"]
        assert sorted((c["index"], c["slot"]) for c in ended) == [
            (i, s) for i in range(3) for s in range(2)]
        # A finished run's stream says so at once.
        async with http.stream("GET", f"/api/runs/{run['id']}/events") as response:
            text = "".join([chunk async for chunk in response.aiter_text()])
        assert text.count("event: ") == 2 and "event: end" in text


async def test_cli_mode_runs_side_by_side_and_each_prompt_keeps_its_system(
        tmp_path, monkeypatch, saves):
    app = gateway(tmp_path, monkeypatch, mode="cli", adapter_dirs=str(saves))
    async with Client(app) as http:
        await http.post("/api/models/refresh")
        made = await import_set(http, jsonl({"prompt": "one", "system": "Be brief."},
                                            {"prompt": "two"},
                                            {"prompt": "three", "system": "Be brief."}))
        started = await http.post(f"/api/prompt-sets/{made['id']}/runs", json={
            "models": [A, B], "params": {"system": "Run-wide."}})
        assert started.status_code == 201 and started.json()["mode"] == "parallel"
        run = await finished(http, started.json()["id"])
        assert run["status"] == "complete"
        systems = [[c["provenance"]["params"]["system"] for c in r["cells"]]
                   for r in run["rows"]]
        assert systems == [["Be brief."] * 2, ["Run-wide."] * 2, ["Be brief."] * 2]
        assert {c["provenance"]["mode"] for r in run["rows"] for c in r["cells"]} == {"cli"}
        assert (await http.delete(f"/api/prompt-sets/{made['id']}")).status_code == 204
        assert (await http.get(f"/api/runs/{run['id']}")).status_code == 404
