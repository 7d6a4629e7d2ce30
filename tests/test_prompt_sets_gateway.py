"""Issue 15 end to end: `lfgate serve` over the real sshd on the real LlamaFactory box. A
20-prompt set (JSONL with references, one of them Chinese) runs over the base and two
adapters, batched on the one loaded base; the gateway is killed (SIGKILL) midway and started
again; the run resumes and no prompt answered before the kill is asked again (the cells'
attempts, and the rows of every `generate` call the spy saw on the box, say so); the scores
equal sacrebleu and rouge-score called directly on the same texts; the exports carry it all.
A CSV with one malformed line is refused whole, naming the line."""

from __future__ import annotations

import csv
import io
import json

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from lfgate.services.evals.reference_scores import CjkTokenizer
from tests.gateway_process import GatewayProcess, sse_events
from tests.rig.saves_tree import make_saves
from tests.ui_rig import start_real_gateway

pytestmark = pytest.mark.box

MODELS = ["base", "tiny--lora--sft-a", "tiny--lora--sft-a--checkpoint-10"]
GREEDY = {"temperature": 0, "max_new_tokens": 24}
TOPICS = ["LoRA rank", "learning rates", "tokenizers", "attention heads", "quantization",
          "gradient clipping", "warm-up steps", "chat templates", "evaluation sets",
          "checkpoints", "adapters", "batch sizes", "dropout", "weight decay", "mixed precision",
          "early stopping", "beam search", "temperature", "top-p sampling"]
PROMPTS = [{"prompt": f"In one sentence, what are {topic}?",
            "reference": f"{topic.capitalize()} are a setting that shapes how a model learns "
                         "or answers."} for topic in TOPICS]
PROMPTS.insert(7, {"prompt": "用一句话介绍你自己。", "reference": "我是一个有用的助手。"})
CJK_INDEX = 7


def generate_rows(sshd) -> list[int]:
    """The batch size of every `generate` call on the box so far (the spy's record)."""
    path = sshd.spy.with_name(sshd.spy.name + ".generate.jsonl")
    if not path.exists():
        return []
    return [json.loads(line)["rows"] for line in path.read_text().splitlines()]


def follow(gateway: GatewayProcess, run_id: str, until_done: int | None = None
           ) -> list[tuple[str, dict]]:
    """The run's events until it ends, or until `until_done` cells have ended."""
    events = []
    with gateway.http.stream("GET", f"/api/runs/{run_id}/events", timeout=300) as response:
        assert response.status_code == 200
        for name, data, _ in sse_events(response):
            events.append((name, data))
            if until_done is not None and name == "progress" \
                    and data["progress"]["done"] >= until_done:
                break
            if name == "end":
                break
    return events


def test_a_run_survives_a_gateway_kill_without_asking_a_prompt_twice(
        sshd, box_python, tiny, tmp_path):
    root = tmp_path / "saves"
    make_saves(root, tiny["base"], adapters=[tiny["adapter"], tiny["adapter2"]])
    folder = tmp_path / "gw"
    gateway = start_real_gateway(sshd, box_python, tiny, folder,
                                 env={"ADAPTER_DIRS": str(root), "RESCAN_INTERVAL": "0"})
    try:
        gateway.http.post("/api/models/refresh", timeout=120)
        bad = gateway.http.post("/api/prompt-sets", json={
            "filename": "eval.csv",
            "content": "prompt,reference\nfirst,one\nsecond,two,three\nthird,four\n"})
        assert bad.status_code == 400 and bad.json()["detail"]["line"] == 3
        assert "line 3" in bad.json()["detail"]["message"]
        assert gateway.http.get("/api/prompt-sets").json()["sets"] == []

        made = gateway.http.post("/api/prompt-sets", json={
            "filename": "eval.jsonl",
            "content": "\n".join(json.dumps(p, ensure_ascii=False) for p in PROMPTS)})
        assert made.status_code == 201, made.text
        assert (made.json()["count"], made.json()["references"]) == (20, 20)

        before = len(generate_rows(sshd))
        started = gateway.http.post(f"/api/prompt-sets/{made.json()['id']}/runs", json={
            "models": MODELS, "params": GREEDY}, timeout=60)
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        assert started.json()["mode"] == "batch"
        # Progress moves; the gateway dies once a few prompts are answered.
        events = follow(gateway, run_id, until_done=12)
        dones = [d["progress"]["done"] for n, d in events if n == "progress"]
        assert dones == sorted(dones) and dones[-1] >= 12
        assert {d["progress"]["total"] for n, d in events if n == "progress"} == {60}
    finally:
        gateway.proc.kill()  # SIGKILL: no shutdown code runs
        gateway.proc.wait()
        gateway.http.close()

    again = GatewayProcess({}, folder)  # the same .env and database
    try:
        cut = again.http.get(f"/api/runs/{run_id}").json()
        assert cut["status"] == "interrupted" and cut["error"]["code"] == "gateway_restarted"
        answered = {(r["index"], c["slot"]): c["content"] for r in cut["rows"]
                    for c in r["cells"] if c["status"] == "complete"}
        assert 12 <= len(answered) < 60
        assert {c["status"] for r in cut["rows"] for c in r["cells"]} <= {"complete",
                                                                           "pending"}
        again.http.post("/api/models/refresh", timeout=120)
        resumed = again.http.post(f"/api/runs/{run_id}/resume", timeout=60)
        assert resumed.status_code == 200, resumed.text
        assert follow(again, run_id)[-1] == ("end", {"status": "complete", "error": None})
        run = again.http.get(f"/api/runs/{run_id}").json()
        assert run["progress"]["done"] == run["progress"]["total"] == 60

        cells = [(r, c) for r in run["rows"] for c in r["cells"]]
        for row, cell in cells:
            assert cell["status"] == "complete" and cell["content"], cell
            if (row["index"], cell["slot"]) in answered:  # never asked again
                assert cell["attempts"] == 1
                assert cell["content"] == answered[row["index"], cell["slot"]]
            assert 1 <= cell["attempts"] <= 2
        # The box agrees: the rows of its generate calls (a batch holds up to two prompts for
        # three models; loading generates nothing) add up to the cells' attempts, so no
        # other ask went unseen; except at most the one batch the kill cut between its cells
        # being marked as asked and the box starting to generate it (a fresh-clone run saw
        # that once: 6 attempts more than rows).
        batches = generate_rows(sshd)[before:]
        unseen = sum(c["attempts"] for _, c in cells) - sum(batches)
        assert 0 <= unseen <= 2 * len(MODELS), (unseen, batches)
        assert max(batches) == 6

        # Scores: the named scorers, called here directly on the same texts.
        for row, cell in cells:
            cjk = row["index"] == CJK_INDEX
            expected = {
                "bleu": sacrebleu.sentence_bleu(cell["content"], [row["reference"]],
                                                tokenize="zh" if cjk else "13a").score,
                "chrf": sacrebleu.sentence_chrf(cell["content"], [row["reference"]]).score,
                "rouge_l": 100 * rouge_scorer.RougeScorer(
                    ["rougeL"], **({"tokenizer": CjkTokenizer()} if cjk else {})).score(
                        row["reference"], cell["content"])["rougeL"].fmeasure}
            assert cell["scores"] == pytest.approx(expected, abs=1e-4)
        for slot, model in enumerate(MODELS):
            mine = [c["scores"]["chrf"] for _, c in cells if c["slot"] == slot]
            assert run["averages"][model]["chrf"] == pytest.approx(sum(mine) / 20, abs=1e-3)
            assert run["averages"][model]["scored"] == 20

        exports = {fmt: again.http.get(f"/api/runs/{run_id}/export", params={"format": fmt})
                   for fmt in ("markdown", "jsonl", "csv")}
        for response in exports.values():
            assert response.status_code == 200
            assert "attachment" in response.headers["content-disposition"]
        assert PROMPTS[CJK_INDEX]["prompt"] in exports["markdown"].text
        lines = [json.loads(line) for line in exports["jsonl"].text.splitlines()]
        assert [line["prompt"] for line in lines] == [p["prompt"] for p in PROMPTS]
        assert lines[3]["replies"][2]["content"] == run["rows"][3]["cells"][2]["content"]
        table = list(csv.DictReader(io.StringIO(exports["csv"].text)))
        assert len(table) == 60
        assert float(table[5]["chrf"]) == pytest.approx(
            run["rows"][1]["cells"][2]["scores"]["chrf"], abs=1e-3)
    finally:
        assert again.stop()
