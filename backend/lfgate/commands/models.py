"""`lfgate models`: what a running gateway serves (GET /api/models), as a table to read or,
with --json, the gateway's own answer for scripts."""

from __future__ import annotations

import json
from typing import Any, TextIO

from lfgate.commands.gateway_client import GatewayClient

COLUMNS = ("ID", "BOX", "KIND", "BASE", "STATUS", "TEMPLATE", "STEP", "LOSS")
GAP = "  "
NONE = "-"


def _loss(model: dict[str, Any]) -> str:
    train, evaluation = model.get("train_loss"), model.get("eval_loss")
    parts = [f"{train:.4g}"] if train is not None else []
    if evaluation is not None:
        parts.append(f"eval {evaluation:.4g}")
    return ", ".join(parts) or NONE


def row(model: dict[str, Any]) -> tuple[str, ...]:
    """One model's cells, in COLUMNS' order; NONE where nothing is known."""
    status = model["status"] if model.get("usable", True) else "unusable"
    return (model["id"], model["box"], model["kind"],
            (model.get("base_id") or model["base_model_path"]) if model["kind"] == "adapter"
            else NONE,
            status, model["template"],
            NONE if model.get("step") is None else str(model["step"]), _loss(model))


def notes(listing: dict[str, Any]) -> list[str]:
    """What the table cannot hold: each model's error, problems and warnings, and a scan
    of ADAPTER_DIRS that failed or missed folders."""
    lines = []
    for model in listing["models"]:
        for text in [*model.get("problems", []), *filter(None, [model.get("error")])]:
            lines.append(f"✗ {model['id']}: {text}")
        lines.extend(f"! {model['id']}: {text}" for text in model.get("warnings", []))
    scans = listing.get("scans") or [listing.get("scan") or {}]
    for scan in scans:
        where = f"box {scan['box']}: " if len(scans) > 1 and scan.get("box") else ""
        if scan.get("error"):
            lines.append(f"! {where}the last scan of ADAPTER_DIRS failed: {scan['error']}")
        lines.extend(f"! {where}{item.get('dir')}: {item.get('reason')}"
                     for item in scan.get("missing") or [])
    return lines


def table(rows: list[tuple[str, ...]]) -> str:
    """Aligned columns under COLUMNS."""
    widths = [max(len(cells[i]) for cells in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    return "\n".join(GAP.join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
                     .rstrip() for cells in [COLUMNS, *rows])


def list_models(client: GatewayClient, *, as_json: bool, out: TextIO) -> int:
    listing = client.call("GET", "/api/models")
    if as_json:
        json.dump(listing, out, indent=2)
        out.write("\n")
        return 0
    out.write(table([row(model) for model in listing["models"]]) + "\n")
    extra = notes(listing)
    if extra:
        out.write("\n" + "\n".join(extra) + "\n")
    return 0
