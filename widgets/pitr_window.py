"""The recovery window under the backups pane, for the environment [backup.pitr] covers: from the oldest
time pgBackRest can restore to, to the last archived WAL segment (and its age: what a disaster now
would lose), with a mark on a time line for each migration applied inside it, listed below by time
and name (each a point "before migration X" can restore to).

    PITR 11-07 20:05 .. 12-06 19:59 UTC (28d)
    ├──────────────────────◆───────────────┤
    last WAL 4s ago: 000000010000002A00001234
    ◆ 11-16 19:59 20240618160000_recipe_tags
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from services.backups.pitr import PitrCheck
from services.core.ages import short_age
from widgets.colours import tone

BAR = 40  # fits the pane beside the environments at 80x24
LISTED = 3  # the newest marks listed by name; the bar shows them all
SHORT = "%m-%d %H:%M"


class RecoveryWindow(Static):
    DEFAULT_CSS = """
    RecoveryWindow { dock: bottom; height: auto; margin-top: 1; }  /* the table and detail scroll above it */
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", markup=False, **kwargs)  # type: ignore[arg-type]
        self.display = False
        self.report: PitrCheck | None = None

    def show(self, report: PitrCheck | None) -> None:
        """None: the environment has no point-in-time recovery, and the section is not drawn."""
        self.report, self.display = report, report is not None
        if report is not None:
            self.update(self.describe(report))

    def describe(self, report: PitrCheck) -> Text:
        text = Text()
        start, end = report.window_from, report.window_to
        if start is None:
            text.append("PITR: no restorable window", style=tone(self, "bold $error"))
        else:
            # No years, to fit the pane at 80x24: the window's length says which they are.
            span = short_age((end or start) - start) or "<1m"
            text.append(f"PITR {_when(start, SHORT)} .. {_when(end, SHORT)} UTC ({span})", style="bold")
            text.append("\n" + timeline(start, end or start, [m.started_at for m in report.migrations]))
        archiver = report.archiver
        if archiver is not None and archiver.age_s is not None:
            age = short_age(archiver.age_s) or f"{archiver.age_s:.0f}s"
            text.append(f"\nlast WAL {age} ago: {archiver.last_archived_wal}")
        elif archiver is not None:
            text.append("\nno WAL segment archived since PostgreSQL started", style=tone(self, "$warning"))
        shown = report.migrations[-LISTED:]
        if len(report.migrations) > len(shown):
            text.append(f"\n◆ {len(report.migrations) - len(shown)} earlier migrations in the window")
        for migration in shown:
            text.append(f"\n◆ {_when(migration.started_at, SHORT)} {migration.name}")
        for problem in report.problems:
            text.append(f"\n! {problem}", style=tone(self, "$error"))
        return text


def timeline(start: float, end: float, marks: list[float]) -> str:
    """The window as a bar of BAR cells, a ◆ where each mark falls (clamped to the window's ends)."""
    cells = ["─"] * (BAR - 2)
    span = max(end - start, 1.0)
    for when in marks:
        cells[min(len(cells) - 1, max(0, round((when - start) / span * (len(cells) - 1))))] = "◆"
    return "├" + "".join(cells) + "┤"


def _when(epoch: float | None, shape: str) -> str:
    return "?" if epoch is None else time.strftime(shape, time.gmtime(epoch))
