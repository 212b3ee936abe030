"""A canary's decision trace as an incident timeline: Markdown for the postmortem, JSON for tools.

The trace lives in the journal's entries of the canary operation (every check's verdicts, with
query, value, threshold, mode and action), so it can be exported during the canary or after.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from services.canary.monitor import TraceEntry
from services.core.journal import Journal, OperationRecord
from services.core.masking import mask_text
from services.core.private import private_dir, write_private

CANARY_KINDS = ("canary", "canary-watch", "deploy", "release", "rollback")  # the last: the post-deploy monitor


def latest(journal: Journal) -> OperationRecord | None:
    """The newest canary operation that got as far as a check."""
    return next((r for r in journal.recent(200) if r.kind in CANARY_KINDS and r.entries), None)


def entries(record: OperationRecord) -> list[TraceEntry]:
    return [TraceEntry(**entry) for entry in record.entries]


def as_json(record: OperationRecord) -> str:
    return mask_text(json.dumps({
        "operation": {"id": record.id, "kind": record.kind, "env": record.env, "title": record.title,
                      "status": record.status, "detail": record.detail, "started": record.started,
                      "updated": record.updated},
        "baseline": record.state.get("baseline"),
        "decision": record.state.get("decision"),
        "checks": [entry.to_json() for entry in entries(record)],
    }, indent=2))


def as_markdown(record: OperationRecord) -> str:
    lines = [f"# {record.title}", "",
             f"- operation: `{record.id}` ({record.kind}) in **{record.env}**",
             f"- started: {_when(record.started)}; last update: {_when(record.updated)}",
             f"- outcome: **{record.status}** {record.detail}"]
    decision: dict[str, Any] | None = record.state.get("decision")
    if decision:
        lines.append(f"- decision: **{decision['action']}** at {_when(decision['at'])}: {decision['reason']}")
    baseline = record.state.get("baseline") or {}
    if baseline:
        lines.append("- baseline (stable at the start): "
                     + ", ".join(f"{k} {v:.4g}" for k, v in baseline.items() if v is not None))
    lines += ["", "| check | time | rule | series | value | threshold | verdict | mode | action | query / note |",
              "| ---: | --- | --- | --- | ---: | ---: | --- | --- | --- | --- |"]
    for e in entries(record):
        value = "no data" if e.value is None else f"{e.value:.4g}"
        threshold = "" if e.threshold is None else f"{e.threshold:.4g}"
        detail = f"`{e.query}`" + (f" ({e.note})" if e.note else "")
        lines.append(f"| {e.check} | {time.strftime('%H:%M:%S', time.localtime(e.at))} | {e.rule} | {e.series} |"
                     f" {value} | {threshold} | {e.verdict} | {e.mode} | {e.action} | {_cell(detail)} |")
    return mask_text("\n".join(lines) + "\n")


def export(record: OperationRecord, directory: Path) -> tuple[Path, Path]:
    """Both forms, as <dir>/<op id>.md and .json; returns their paths."""
    private_dir(directory)
    markdown, data = directory / f"{record.id}.md", directory / f"{record.id}.json"
    write_private(markdown, as_markdown(record))
    write_private(data, as_json(record))
    return markdown, data


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(at))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
