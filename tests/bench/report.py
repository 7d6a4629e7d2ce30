"""Turn benchmark results into docs/benchmarks.md and its plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bench.run import Turn, median, percentile, spread


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def _ms_spread(seconds: list[float]) -> str:
    """Median in ms with the min–max."""
    return f"{_ms(median(seconds))} ({spread([v * 1000 for v in seconds])})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _turns(turns: list[Turn]) -> dict[str, list[float]]:
    return {"ttft": [t.ttft_s for t in turns], "total": [t.total_s for t in turns],
            "rate": [t.chunks_per_s for t in turns],
            "gaps": [gap for t in turns for gap in t.gaps_s]}


def write_report(results: dict[str, Any], out: Path) -> None:
    m = results["machine"]
    reps = results["reps"]
    parts = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m tests.bench.run`); CI runs `--smoke` so the "
        "harness cannot rot. Every figure below comes from one run on one machine, over a "
        "real OpenSSH sshd on loopback and the real LlamaFactory with the tiny generated model "
        "(Qwen2 shape, hidden 64, 2 layers, LoRA r=4 on q/v), medians with min–max over "
        f"{reps} repetitions unless said otherwise.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, no GPU; {m['os']}; Python {m['python']}; "
        f"LlamaFactory {m['llamafactory']}, transformers {m['transformers']}, torch "
        f"{m['torch']}, peft {m['peft']}, asyncssh {m['asyncssh']}. Generation settings for "
        f"every contender: {results['params']}.",
        "",
        "The tiny model makes generation almost free, so these figures isolate what the "
        "gateway adds; on a real model generation dominates and the ratios shrink toward 1 "
        "(except the one-shot comparison, where a real model's load makes it far worse). "
        "Here the box, sshd, the gateway and the client share two cores (the box's torch is "
        "held to one thread for every path): a path that spends more CPU on the client side "
        "(the gateway's SSH decryption and SSE, about 1.5 ms per chunk, section 4) slows the "
        "box a little, which a real deployment, box and laptop apart, does not see. Run to "
        "run, medians move by tens of milliseconds; differences smaller than that are noise.",
        "",
        "![Time to first token by path](benchmarks-ttft.png)",
        "",
        *_headlines(results),
    ]
    parts += _persistent(results["persistent"]) + _overhead(results["overhead"])
    parts += _api(results["api"]) + _concurrency(results["concurrency"])
    parts += _profile(results.get("profile")) + _cold(results["cold"])
    out.write_text("\n".join(parts) + "\n")
    _plots(results, out.parent)


def headline_ratios(results: dict[str, Any]) -> dict[str, float]:
    """The figures the README quotes."""
    ratios = {f"one_shot_vs_later_ttft_{row['mode']}":
              median(row["one_shot_s"]) / median(row["ttft_s"]) for row in results["persistent"]}
    direct, gateway = _turns(results["overhead"]["direct"]), _turns(results["overhead"]["gateway"])
    ratios["added_ttft_ms"] = (median(gateway["ttft"]) - median(direct["ttft"])) * 1000
    ratios["throughput_vs_direct"] = median(gateway["rate"]) / median(direct["rate"])
    api, ours = _turns(results["api"]["api"]), _turns(results["api"]["gateway"])
    ratios["api_ttft_over_ours"] = median(api["ttft"]) / median(ours["ttft"])
    ratios["api_rate_over_ours"] = median(api["rate"]) / median(ours["rate"])
    return ratios


def _noise(overhead: dict[str, list[Turn]]) -> str:
    """Say so when the difference is smaller than the run-to-run spread."""
    direct = [t.ttft_s for t in overhead["direct"]]
    gateway = [t.ttft_s for t in overhead["gateway"]]
    overlap = min(gateway) <= max(direct) and min(direct) <= max(gateway)
    return " (within run-to-run noise: the min–max ranges overlap)" if overlap else ""


def _headlines(results: dict[str, Any]) -> list[str]:
    r = headline_ratios(results)
    lines = [
        "## Headlines",
        "",
        f"- A later turn starts streaming **{r['one_shot_vs_later_ttft_script']:.0f}x** "
        f"(script mode) and **{r['one_shot_vs_later_ttft_cli']:.0f}x** (CLI mode) sooner than "
        "a fresh wrapper per message.",
        f"- The whole path adds **{r['added_ttft_ms']:.0f} ms** to the first token over "
        f"calling `ChatModel` in-process on the box{_noise(results['overhead'])}, at "
        f"**{r['throughput_vs_direct']:.2f}x** its streaming rate.",
        f"- Against `llamafactory-cli api` through `ssh -L`: its time to first token is "
        f"**{r['api_ttft_over_ours']:.2f}x** ours, its streaming rate "
        f"**{r['api_rate_over_ours']:.2f}x** ours.",
    ]
    losses = []
    if r["added_ttft_ms"] > 0:
        losses.append(f"to `ChatModel` called in-process (by {r['added_ttft_ms']:.0f} ms of "
                      "first-token latency: HTTP, SSE, SSH and the wrapper's JSON lines)")
    if r["throughput_vs_direct"] < 1:
        losses.append(f"to `ChatModel` called in-process on streaming rate "
                      f"({r['throughput_vs_direct']:.2f}x; compare the wrapper's own timing in "
                      "section 2 to see how much of it is the box rather than the path)")
    if r["api_ttft_over_ours"] < 1:
        losses.append("to LlamaFactory's API server on time to first token")
    if r["api_rate_over_ours"] > 1:
        losses.append("to LlamaFactory's API server on streaming rate")
    if losses:
        lines.append("- **Where LF Gate loses:** " + "; ".join(losses) + ". The profile under "
                     "Concurrency shows where the gateway's own time goes.")
    return [*lines, ""]


def _persistent(rows: list[dict[str, Any]]) -> list[str]:
    table = []
    for row in rows:
        shot, ttft = median(row["one_shot_s"]), median(row["ttft_s"])
        table.append([row["mode"], f"{shot:.2f} ({spread(row['one_shot_s'])})",
                      f"{row['first_ttft_s']:.2f}", _ms_spread(row["ttft_s"]),
                      f"{_ms(median(row['total_s']))}", f"**{shot / ttft:.0f}x**"])
    return [
        "## 1. Persistent session vs a fresh wrapper per message",
        "",
        "Today's common approach: `ssh box python3 wrapper.py '<json>'` for every message, "
        "which starts Python, imports LlamaFactory and loads the model (CLI mode: starts "
        "`llamafactory-cli chat`) each time, and shows nothing until the whole reply is "
        "there. LF Gate: later turns of one conversation through the gateway (HTTP, SSE, SSH, "
        "persistent wrapper).",
        "",
        _table(["mode", "one-shot per message (s)", "gateway 1st turn TTFT, incl. load (s)",
                "gateway later turn TTFT (ms)", "later turn total (ms)",
                "one-shot / later TTFT"], table),
        "",
    ]


def _overhead(data: dict[str, list[Turn]]) -> list[str]:
    direct, gateway = _turns(data["direct"]), _turns(data["gateway"])
    inside = _turns(data["wrapper"])
    added = median(gateway["ttft"]) - median(direct["ttft"])
    ratio = median(gateway["rate"]) / median(direct["rate"]) if median(direct["rate"]) else 0
    return [
        "## 2. Gateway overhead vs the model itself",
        "",
        "`ChatModel.stream_chat` called directly in a warm process on the box, against the "
        "whole path (HTTP → SSE → gateway → SSH → wrapper → the same `ChatModel`), same "
        "prompts. Chunks/s is the streaming rate after the first chunk. The third row is the "
        "wrapper's own timing of the gateway's turns: what the box spent, before SSH, the "
        "gateway and HTTP.",
        "",
        _table(["path", "TTFT (ms)", "total (ms)", "chunks/s", "chunk gap p99 (ms)"], [
            ["ChatModel direct", _ms_spread(direct["ttft"]), _ms(median(direct["total"])),
             f"{median(direct['rate']):.0f}", _ms(percentile(direct["gaps"], 99))],
            ["through LF Gate", _ms_spread(gateway["ttft"]), _ms(median(gateway["total"])),
             f"{median(gateway['rate']):.0f}", _ms(percentile(gateway["gaps"], 99))],
            ["(the same turns, timed by the wrapper on the box)", _ms_spread(inside["ttft"]),
             _ms(median(inside["total"])), f"{median(inside['rate']):.0f}", "–"],
        ]),
        "",
        f"**Added by the gateway: {added * 1000:+.0f} ms to the first token; throughput "
        f"ratio {ratio:.2f}.**",
        "",
    ]


def _api(data: dict[str, list[Turn]]) -> list[str]:
    api, gateway = _turns(data["api"]), _turns(data["gateway"])
    return [
        "## 3. Against LlamaFactory's own API server through an SSH tunnel",
        "",
        "`llamafactory-cli api` on the box, reached with `ssh -L`, streamed with the `openai` "
        "client; LF Gate with the same prompts and settings.",
        "",
        _table(["path", "TTFT (ms)", "chunks/s", "total (ms)", "chunk gap p99 (ms)"], [
            ["llamafactory-cli api + ssh -L + openai", _ms_spread(api["ttft"]),
             f"{median(api['rate']):.0f}", _ms(median(api["total"])),
             _ms(percentile(api["gaps"], 99))],
            ["LF Gate", _ms_spread(gateway["ttft"]), f"{median(gateway['rate']):.0f}",
             _ms(median(gateway["total"])), _ms(percentile(gateway["gaps"], 99))],
        ]),
        "",
        f"**TTFT ratio (API server / LF Gate): "
        f"{median(api['ttft']) / median(gateway['ttft']):.2f}; total ratio: "
        f"{median(api['total']) / median(gateway['total']):.2f}.**",
        "",
    ]


def _concurrency(levels: list[dict[str, Any]]) -> list[str]:
    rows = []
    for level in levels:
        ttfts = [t.ttft_s for t in level["turns"]]
        gaps = [g for t in level["turns"] for g in t.gaps_s]
        rows.append([str(level["users"]), _ms(percentile(ttfts, 50)), _ms(percentile(ttfts, 95)),
                     _ms(percentile(gaps, 99)), str(level["errors"]),
                     f"{level['cpu_s_per_1000_chunks']:.2f}", f"{level['peak_rss_mb']:.0f}"])
    return [
        "## 4. Concurrency",
        "",
        "N chats started at once (each a new conversation), one model. The box serialises "
        "generation (LlamaFactory's HF engine, `MAX_CONCURRENT=1`), so time to first token "
        "grows with the queue; what matters here is that the gateway adds nothing to it: no "
        "errors, small gaps between chunks, little CPU and memory.",
        "",
        _table(["chats", "TTFT p50 (ms)", "TTFT p95 (ms)", "chunk gap p99 at client (ms)",
                "errors", "gateway CPU s / 1000 chunks", "gateway peak RSS (MB)"], rows),
        "",
    ]


def _profile(profile: dict[str, Any] | None) -> list[str]:
    if not profile or not profile["busy"]:
        return ["Profile: py-spy was not available in this run.", ""]
    rows = [[f"`{name}`", str(count), f"{100 * count / profile['busy']:.0f}%"]
            for name, count in profile["top"]]
    return [
        "Where the gateway's CPU went during the concurrency runs (py-spy at 250 Hz over the "
        f"gateway process; {profile['samples']} samples, of which {profile['busy']} "
        f"({100 * profile['busy'] / profile['samples']:.0f}%) were working rather than waiting "
        "in the event loop), by innermost frame:",
        "",
        _table(["innermost frame (working samples)", "samples", "share"], rows),
        "",
    ]


def _cold(rows: list[dict[str, Any]]) -> list[str]:
    table = []
    for row in rows:
        p = row["phases"]
        table.append([row["mode"], f"{row['gateway_start_s']:.2f}", f"{p.get('connect_s', 0):.2f}",
                      f"{p.get('upload_s', 0):.2f}", f"{p.get('start_s', 0):.2f}",
                      f"{p.get('load_s', 0):.2f}", f"{row['first_token_s']:.2f}"])
    return [
        "## 5. Cold start",
        "",
        "From starting `lfgate serve` to the first token of the first message, on a box "
        "without the wrapper (so it is uploaded). One run per mode.",
        "",
        _table(["mode", "gateway up (s)", "SSH connect (s)", "wrapper upload (s)",
                "wrapper start (s)", "model load (s)", "first token (s, from start)"], table),
        "",
    ]


def _plots(results: dict[str, Any], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values = [], []
    for row in results["persistent"]:
        labels += [f"one-shot\n({row['mode']})", f"LF Gate\nlater turn ({row['mode']})"]
        values += [median(row["one_shot_s"]) * 1000, median(row["ttft_s"]) * 1000]
    labels += ["ChatModel\ndirect", "LlamaFactory API\n+ ssh -L"]
    values += [median(_turns(results["overhead"]["direct"])["ttft"]) * 1000,
               median(_turns(results["api"]["api"])["ttft"]) * 1000]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    bars = ax.bar(labels, values, color=["#c44", "#2a7"] * 2 + ["#888", "#57a"])
    ax.set_yscale("log")
    ax.set_ylabel("time to first token (ms, log scale)")
    ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], fontsize=8)
    ax.set_title("Time to first token (median)")
    fig.tight_layout()
    fig.savefig(folder / "benchmarks-ttft.png", dpi=110)
    plt.close(fig)
