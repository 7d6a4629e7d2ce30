"""A compare chat as Markdown a person can read: per turn, the question, then the slots'
replies side by side (an HTML table whose cells hold Markdown, as GitHub renders it) with
each reply's model and timing, then the vote."""

from __future__ import annotations

from typing import Any

from lfgate.storage.markdown_text import escape_html, html_text

LETTERS = "ABCD"
WINNERS = {"tie": "tie", "both_bad": "both bad"}


def _column(by_id: dict[str, dict[str, Any]], leaf: str | None) -> list[dict[str, Any]]:
    path = []
    while leaf is not None:
        path.append(by_id[leaf])
        leaf = by_id[leaf]["parent_id"]
    return path[::-1]


def _timing(message: dict[str, Any]) -> str:
    p = message.get("provenance") or {}
    timing = p.get("timing") or {}
    box = p.get("box_timing") or {}
    parts = []
    if timing.get("ttft_ms") is not None:
        parts.append(f"TTFT {timing['ttft_ms']:.0f} ms")
    rate = box.get("tokens_per_s") or box.get("chunks_per_s")
    if rate:
        parts.append(f"{rate:.1f} tok/s")
    if (p.get("usage") or {}).get("completion_tokens") is not None:
        parts.append(f"{p['usage']['completion_tokens']} tokens")
    if message["status"] != "complete":
        parts.append(message["status"])
    return " · ".join(parts)


def compare_markdown(export: dict[str, Any], votes: list[dict[str, Any]]) -> str:
    chat, by_id = export["chat"], {m["id"]: m for m in export["messages"]}
    slots = chat["compare"]["slots"]
    columns = [_column(by_id, slot["leaf_id"]) for slot in slots]
    vote_of = {v["compare_id"]: v for v in votes}
    lines = [f"# {escape_html(chat['title'])}", "",
             f"*Exported from LF Gate: a compare of {len(slots)} models. Chat {chat['id']}, "
             f"created {chat['created_at'][:16].replace('T', ' ')} UTC.*", ""]
    if chat.get("system"):
        lines += ["**System:**", "", escape_html(chat["system"]), ""]
    turns = max(len(column) for column in columns) // 2
    for turn in range(turns):
        pairs = [column[2 * turn:2 * turn + 2] for column in columns]
        question = next(pair[0]["content"] for pair in pairs if pair)
        lines += [f"## Turn {turn + 1}", "", "**User:**", "", escape_html(question), "",
                  "<table>", "<tr>"]
        replies = [pair[1] if len(pair) > 1 else None for pair in pairs]
        for slot, reply in enumerate(replies):
            model = ((reply or {}).get("provenance") or {}).get("model", slots[slot]["model"])
            lines.append(f"<th>{LETTERS[slot]} · {html_text(str(model))}</th>")
        lines += ["</tr>", "<tr>"]
        for reply in replies:
            body = "" if reply is None else reply["content"]
            note = "" if reply is None else _timing(reply)
            lines += ["<td>", "", escape_html(body), "",
                      *([f"*{escape_html(note)}*", ""] if note else []), "</td>"]
        lines += ["</tr>", "</table>", ""]
        compare_id = next(((r.get("provenance") or {}).get("compare_id")
                           for r in replies if r), None)
        vote = vote_of.get(compare_id)
        if vote is not None:
            winner = vote["winner"]
            said = WINNERS.get(winner) or (
                f"{LETTERS[int(winner)]} ({escape_html(str(vote['models'][int(winner)]))})")
            reason = f": {escape_html(vote['reason'])}" if vote.get("reason") else ""
            lines += [f"**Vote:** {said}{reason}", ""]
    return "\n".join(lines)

