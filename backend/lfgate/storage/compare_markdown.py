"""A compare chat as Markdown a person can read: per turn, the question, then the slots'
replies side by side (an HTML table whose cells hold Markdown, as GitHub renders it) with
each reply's model and timing, then the vote.

What an older version stored with a wrong type (a provenance `model` that is a number,
`timing` that is text, a column without its model) reads as absent: the export still
comes out, without that fact."""

from __future__ import annotations

from typing import Any

from lfgate.storage.chat_store import branch_of, facts_of, number_fact, text_fact
from lfgate.storage.markdown_text import escape_html, html_text

LETTERS = "ABCD"
WINNERS = {"tie": "tie", "both_bad": "both bad"}


def _timing(message: dict[str, Any]) -> str:
    p = facts_of(message)
    parts = []
    ttft = number_fact(p.get("timing"), "ttft_ms")
    if ttft is not None:
        parts.append(f"TTFT {ttft:.0f} ms")
    box = p.get("box_timing")
    rate = number_fact(box, "tokens_per_s") or number_fact(box, "chunks_per_s")
    if rate:
        parts.append(f"{rate:.1f} tok/s")
    tokens = number_fact(p.get("usage"), "completion_tokens")
    if tokens is not None:
        parts.append(f"{tokens} tokens")
    if message["status"] != "complete":
        parts.append(str(message["status"]))
    return " · ".join(parts)


def _letter(slot: int) -> str:
    return LETTERS[slot] if slot < len(LETTERS) else str(slot + 1)


def _said(vote: dict[str, Any]) -> str | None:
    """The vote in words, or None for one that does not read (an older version's)."""
    winner, models = vote.get("winner"), vote.get("models")
    if winner in WINNERS:
        return WINNERS[winner]
    if not isinstance(models, list) or winner not in [str(i) for i in range(len(models))]:
        return None
    slot = int(winner)
    return f"{_letter(slot)} ({escape_html(str(models[slot]))})"


def compare_markdown(export: dict[str, Any], votes: list[dict[str, Any]]) -> str:
    chat, by_id = export["chat"], {m["id"]: m for m in export["messages"]}
    compare = chat.get("compare")
    slots = compare.get("slots") if isinstance(compare, dict) else None
    slots = [slot if isinstance(slot, dict) else {} for slot in
             (slots if isinstance(slots, list) else [])]
    columns = [branch_of(by_id, slot.get("leaf_id")) for slot in slots]
    vote_of = {v["compare_id"]: v for v in votes if isinstance(v.get("compare_id"), str)}
    lines = [f"# {escape_html(chat['title'])}", "",
             f"*Exported from LF Gate: a compare of {len(slots)} models. Chat {chat['id']}, "
             f"created {chat['created_at'][:16].replace('T', ' ')} UTC.*", ""]
    if chat.get("system"):
        lines += ["**System:**", "", escape_html(chat["system"]), ""]
    turns = max((len(column) for column in columns), default=0) // 2
    for turn in range(turns):
        pairs = [column[2 * turn:2 * turn + 2] for column in columns]
        question = next(pair[0]["content"] for pair in pairs if pair)
        lines += [f"## Turn {turn + 1}", "", "**User:**", "", escape_html(question), "",
                  "<table>", "<tr>"]
        replies = [pair[1] if len(pair) > 1 else None for pair in pairs]
        for slot, reply in enumerate(replies):
            model = (text_fact(facts_of(reply or {}), "model")
                     or text_fact(slots[slot], "model") or "?")
            lines.append(f"<th>{_letter(slot)} · {html_text(model)}</th>")
        lines += ["</tr>", "<tr>"]
        for reply in replies:
            body = "" if reply is None else reply["content"]
            note = "" if reply is None else _timing(reply)
            lines += ["<td>", "", escape_html(body), "",
                      *([f"*{escape_html(note)}*", ""] if note else []), "</td>"]
        lines += ["</tr>", "</table>", ""]
        compare_id = next((text_fact(facts_of(r), "compare_id") for r in replies if r), None)
        vote = vote_of.get(compare_id) if compare_id is not None else None
        said = None if vote is None else _said(vote)
        if said is not None:
            reason = vote.get("reason")
            reason = f": {escape_html(reason)}" if isinstance(reason, str) and reason else ""
            lines += [f"**Vote:** {said}{reason}", ""]
    return "\n".join(lines)
