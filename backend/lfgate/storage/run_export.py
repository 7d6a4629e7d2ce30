"""A prompt-set run as files: Markdown a person reads (the models side by side, as the compare
export does), JSONL a script reads (a line a prompt), CSV a spreadsheet reads (a row a cell,
long format). Each carries the replies, their status, timing and scores, and the votes."""

from __future__ import annotations

import json
from typing import Any

from lfgate.storage.csv_export import csv_text
from lfgate.storage.markdown_text import escape_html, html_text

SCORE_KEYS = ("bleu", "chrf", "rouge_l")
WINNERS = {"tie": "tie", "both_bad": "both bad"}


def _winner(vote: dict[str, Any] | None, models: list[str]) -> str:
    if vote is None:
        return ""
    winner = vote["winner"]
    return WINNERS.get(winner) or f"{models[int(winner)]} (column {int(winner) + 1})"


def _scores(cell: dict[str, Any]) -> str:
    scores = cell.get("scores")
    if not scores:
        return ""
    return (f"BLEU {scores['bleu']:.1f} · chrF {scores['chrf']:.1f} · "
            f"ROUGE-L {scores['rouge_l']:.1f}")


def _timing(cell: dict[str, Any]) -> str:
    parts = []
    if cell.get("ttft_ms") is not None:
        parts.append(f"TTFT {cell['ttft_ms']:.0f} ms")
    if cell.get("total_ms") is not None:
        parts.append(f"{cell['total_ms']:.0f} ms total")
    if cell["status"] != "complete":
        parts.append(cell["status"])
    return " · ".join(parts)


def run_markdown(run: dict[str, Any]) -> str:
    models = run["models"]
    lines = [f"# {escape_html(run['set_name'])}: {len(run['rows'])} prompts × {len(models)} "
             "models", "",
             f"Run `{run['id']}` · {run['status']} · {run['progress']['done']}/"
             f"{run['progress']['total']} answered · mode {run['mode']}", "",
             f"Parameters: `{json.dumps(run['params'], ensure_ascii=False)}`", ""]
    if any(a["scored"] for a in run["averages"].values()):
        lines += ["| model | BLEU | chrF | ROUGE-L | scored |", "| --- | --- | --- | --- | --- |"]
        for model, a in run["averages"].items():
            cells = [f"{a[k]:.2f}" if a[k] is not None else "–" for k in SCORE_KEYS]
            lines.append(f"| {escape_html(f'`{model}`')} | {' | '.join(cells)} | "
                         f"{a['scored']} |")
        lines.append("")
    for row in run["rows"]:
        lines += [f"## {row['index'] + 1}. Prompt", ""]
        if row["system"]:
            lines += [f"System: {escape_html(row['system'])}", ""]
        lines += [escape_html(row["prompt"]), ""]
        if row["reference"] is not None:
            lines += ["Reference:", "",
                      f"> {escape_html(row['reference'])}".replace("\n", "\n> "), ""]
        lines += ["<table><tr>" + "".join(f"<th><code>{html_text(c['model'])}</code></th>"
                                          for c in row["cells"]) + "</tr><tr>"]
        for cell in row["cells"]:
            body = cell["content"] or ("(error: " + (cell["error"] or {}).get("message", "")
                                       + ")" if cell["status"] == "error" else "")
            notes = " · ".join(x for x in (_timing(cell), _scores(cell)) if x)
            lines += ["<td>", "", escape_html(body), "", f"<sub>{html_text(notes)}</sub>", "",
                      "</td>"]
        lines += ["</tr></table>", ""]
        if row["vote"] is not None:
            lines += [f"Vote: **{escape_html(_winner(row['vote'], models))}**"
                      + (f" ({escape_html(row['vote']['reason'])})" if row["vote"]["reason"]
                         else ""), ""]
    return "\n".join(lines)


def run_jsonl(run: dict[str, Any]) -> str:
    out = []
    for row in run["rows"]:
        out.append(json.dumps({
            "index": row["index"], "prompt": row["prompt"], "system": row["system"],
            "reference": row["reference"],
            "replies": [{k: cell[k] for k in ("model", "status", "content", "finish_reason",
                                              "ttft_ms", "total_ms", "scores", "error")}
                        for cell in row["cells"]],
            "vote": None if row["vote"] is None else {
                "winner": row["vote"]["winner"], "reason": row["vote"]["reason"],
                "winner_model": (run["models"][int(row["vote"]["winner"])]
                                 if row["vote"]["winner"].isdigit() else None)},
        }, ensure_ascii=False))
    return "\n".join(out) + "\n"


def run_csv(run: dict[str, Any]) -> str:
    """One line per cell, formula-looking text made inert (lfgate.storage.csv_export)."""
    return csv_text(
        ["index", "prompt", "system", "reference", "column", "model", "status", "reply",
         "finish_reason", "ttft_ms", "total_ms", "bleu", "chrf", "rouge_l", "vote"],
        ([row["index"], row["prompt"], row["system"] or "", row["reference"] or "",
          cell["slot"] + 1, cell["model"], cell["status"], cell["content"],
          cell["finish_reason"] or "",
          cell["ttft_ms"] if cell["ttft_ms"] is not None else "",
          cell["total_ms"] if cell["total_ms"] is not None else "",
          *[f"{(cell.get('scores') or {})[k]:.4f}" if k in (cell.get("scores") or {}) else ""
            for k in SCORE_KEYS],
          _winner(row["vote"], run["models"])]
         for row in run["rows"] for cell in row["cells"]))
