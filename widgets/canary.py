"""The live canary pane: error rate, p95, CPU and memory for canary, stable and baseline,
with threshold lines and a table of the latest values beside their thresholds. The post-deploy
monitor shows here too, under its own heading: the new version where the canary would be, the
previous version's baseline beside it.

Charts redraw at most once a second, only when their data changed and only when visible.
On a small terminal one chart shows: the metric closest to its threshold.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Label, Static

from services.core.events import CanaryStepChanged, CheckScheduled, MetricSample
from widgets.braille_chart import RGB, Line, Strips, chart_segments
from widgets.colours import rgb, tone
from widgets.steady import update_steady

METRICS = {"error_rate": "errors %", "p95_ms": "p95 ms", "cpu_percent": "CPU %", "memory_percent": "mem %"}
SCALE = {"error_rate": 100.0}  # error rate is a ratio; people read it as a percentage
SERIES_COLOURS = {"canary": "$error", "stable": "$success", "baseline": "$primary"}  # theme variables
LIMIT_COLOUR = "$warning"
WINDOW = 60  # samples charted per series: the strategy's 30 min of 30 s checks; bounded so a replot stays cheap
WIDE = (120, 40)  # columns, rows from which all four charts show
POST_DEPLOY = {"canary": "new", "baseline": "before"}  # the series as the post-deploy monitor names them


class MetricChart(Widget):
    """One metric's chart: braille lines drawn as plotext drew them (widgets/braille_chart.py)."""

    DEFAULT_CSS = """
    MetricChart { width: 1fr; height: 1fr; }
    """

    def __init__(self, metric: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.metric = metric
        self.series: dict[str, deque[float]] = {name: deque(maxlen=WINDOW) for name in SERIES_COLOURS}
        self.threshold: float | None = None
        self.dirty = False  # samples arrived since the last replot
        self.lines: list[Line] = []  # what the last replot drew: the series as lines, ...
        self.hlines: list[tuple[float, RGB]] = []  # ... and the baseline and the threshold across
        self.drawn: tuple[object, Strips] | None = None  # (size and colours, the chart drawn for them)

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refresh())

    def add(self, sample: MetricSample) -> None:
        if sample.series in self.series:
            self.series[sample.series].append(sample.value)
        if sample.threshold is not None:
            self.threshold = sample.threshold
        self.dirty = True

    def latest(self, series: str) -> float | None:
        values = self.series[series]
        return values[-1] if values else None

    def last_known(self, series: str) -> tuple[float | None, bool]:
        """The newest real value, and whether newer samples were missing (so it is stale)."""
        values = self.series[series]
        for age, value in enumerate(reversed(values)):
            if not math.isnan(value):
                return value, age > 0
        return None, bool(values)

    def pressure(self) -> float:
        """How close the canary is to the threshold (1.0 = at it); missing data counts as at it."""
        value = self.latest("canary")
        if self.threshold is None or value is None or math.isnan(value):
            return 1.0 if self.threshold is not None else 0.0
        return value / self.threshold

    def replot(self) -> None:
        scale = SCALE.get(self.metric, 1)
        self.lines, self.hlines = [], []
        for name, values in self.series.items():
            if name == "baseline" and values:  # one number, taken before the canary: a line across
                self.hlines.append((values[-1] * scale, rgb(self, SERIES_COLOURS[name])))
            elif values:
                # At most a point per column: a column cannot show more, and a spike is kept (the
                # worst of each run). No legend: the values table's coloured headers name the series.
                xs, ys = worst_per_column([v * scale for v in values], max(2, self.size.width))
                self.lines.append((xs, ys, rgb(self, SERIES_COLOURS[name])))
        if self.threshold is not None:
            self.hlines.append((self.threshold * scale, rgb(self, LIMIT_COLOUR)))
        self.dirty = False
        self.drawn = None
        self.refresh()

    def render(self) -> Strips:
        """The chart as strips, built once per replot, resize or theme rather than on every repaint."""
        width, height = self.size
        # The theme's colours, as textual-plotext's "auto" theme took them: the canvas and the axes'
        # background the surface, the ticks the foreground.
        surface, ticks = rgb(self, "$surface"), rgb(self, "$foreground")
        key = (width, height, surface, ticks)
        if self.drawn is None or self.drawn[0] != key:
            rows = chart_segments(width, height, METRICS[self.metric], self.lines, self.hlines, surface, surface, ticks)
            self.drawn = (key, Strips([Strip(row).adjust_cell_length(width) for row in rows]))
        return self.drawn[1]


def worst_per_column(values: list[float], columns: int) -> tuple[list[int], list[float]]:
    """Samples 1..n thinned to at most ``columns`` points: each run of samples becomes its worst
    (largest) value at the run's last sample number, so a spike is never averaged away. A run of
    NaN only stays NaN: missing data is drawn as a gap, never as a value."""
    size = max(1, math.ceil(len(values) / columns))
    xs, ys = [], []
    for start in range(0, len(values), size):
        known = [v for v in values[start:start + size] if not math.isnan(v)]
        xs.append(min(start + size, len(values)))
        ys.append(max(known) if known else math.nan)
    return xs, ys


class CanaryPane(Vertical):
    DEFAULT_CSS = """
    CanaryPane Grid { grid-size: 2 2; height: 1fr; }
    CanaryPane.-small Grid { grid-size: 1 1; }
    CanaryPane.-small MetricChart { display: none; }
    CanaryPane.-small MetricChart.-focus { display: block; }
    CanaryPane MetricChart { height: 1fr; min-height: 5; }
    CanaryPane .title { text-style: bold; }
    CanaryPane #canary-title { width: 1fr; }
    CanaryPane #canary-values { height: auto; }
    CanaryPane #canary-ladder { height: auto; display: none; }
    CanaryPane #canary-ladder.-shown { display: block; }
    CanaryPane #canary-verdict { height: auto; max-height: 3; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Label("4 Canary: none running; c starts one on the selected environment", classes="title",
                    id="canary-title")
        yield Static("", id="canary-ladder")
        yield Static(self.values_table(), id="canary-values")
        with Grid():
            for metric in METRICS:
                yield MetricChart(metric, id=f"chart-{metric}")
        yield Static("", id="canary-verdict")

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.fresh = False  # samples arrived since the last redraw
        self.title = "none running; c starts one on the selected environment"
        self.next_check: CheckScheduled | None = None
        self.verdicts: dict[str, dict[str, Any]] = {}  # rule -> the latest check's TraceEntry (JSON)
        self.heading = "Canary"  # or "Post-deploy monitor"
        self.labels: dict[str, str] = {}  # series -> the name its column shows, where not its own
        self.ladder: CanaryStepChanged | None = None  # a progressive canary's steps and where it is
        self.outcome = ""  # how its operation ended: succeeded, failed, cancelled ("" while it runs)

    def on_mount(self) -> None:
        self.set_interval(1.0, self.tick)
        # The layout for the app's size from the start: a Resize comes only when the pane's own size
        # changes, and under load one was seen not to come before the pane was first shown.
        self.fit_layout()

    def tick(self) -> None:
        """Once a second: the countdown to the next check, and a redraw if there is new data."""
        if self.next_check is not None and self.display and self.is_on_screen:
            self.title_line(f"{self.title} · {self.countdown()}")
        self.redraw()

    def title_line(self, text: str) -> None:
        # Across the pane (CSS), wrapping on a narrow one so that the countdown stays in view; its
        # once-a-second update re-lays-out the screen only when that changes its height.
        update_steady(self.query_one("#canary-title", Label), f"4 {self.heading}: {text}")

    def countdown(self) -> str:
        assert self.next_check is not None
        left = max(0, round(self.next_check.due - time.time()))
        return f"check {self.next_check.check}/{self.next_check.checks} in {left}s"

    def schedule(self, event: CheckScheduled) -> None:
        self.next_check = event

    def finish(self, outcome: str = "") -> None:
        self.next_check = None
        self.title_line(self.title)
        if self.ladder is not None:
            self.outcome = outcome
            self.show_ladder()

    def step(self, event: CanaryStepChanged) -> None:
        """A progressive canary moved on its ladder (or stopped on it)."""
        self.ladder, self.outcome = event, ""
        self.show_ladder()

    def show_ladder(self) -> None:
        ladder = self.query_one("#canary-ladder", Static)
        ladder.set_class(self.ladder is not None, "-shown")
        update_steady(ladder, self.ladder_text())

    def ladder_text(self) -> Text:
        """`steps 10% ✓ → 25% ● → 50% · → 100% ·` and where the canary is: done ✓, here ●, rolled back
        ✗, to come ·; 100% is the promotion after the last step."""
        event = self.ladder
        if event is None:
            return Text("")
        marks = {"passed": ("✓", "$success"), "running": ("●", "bold $warning"), "rolled back": ("✗", "bold $error")}
        text = Text("steps ", style="bold")
        last = len(event.weights) - 1
        promoted = self.outcome == "succeeded" and event.index == last and event.status == "passed"
        for i, weight in enumerate((*event.weights, 100)):
            if i:
                text.append(" → ", style="dim")
            if i < event.index or (i == len(event.weights) and promoted):
                mark, style = "✓", "$success"
            elif i == event.index:
                mark, style = marks.get(event.status, ("●", "$warning"))
            else:
                mark, style = "·", "dim"
            text.append(f"{weight}% ")
            text.append(mark, style=tone(self, style))
        where = f"step {event.index + 1}/{len(event.weights)} at {event.weights[event.index]}%"
        if promoted:
            said = "promoted: 100%"
        elif event.status == "rolled back":
            said = f"rolled back at {where}"
        elif self.outcome == "cancelled":
            said = f"paused at {where}: r resumes it, o promotes, A aborts"
        elif self.outcome:
            said = f"stopped at {where} ({self.outcome})"
        elif event.status == "passed":
            said = f"{where} passed" + ("; promoting" if event.index == last else "")
        else:
            said = f"{where}: checking"
        text.append(f"\n{said}", style="dim")
        return text

    def add_verdict(self, entry: dict[str, Any]) -> None:
        if entry["check"] != next(iter(self.verdicts.values()), entry)["check"]:
            self.verdicts.clear()  # a new check: its verdicts replace the last one's
        self.verdicts[entry["rule"]] = entry
        self.fresh = True

    def on_resize(self, event: events.Resize) -> None:
        self.fit_layout()

    def fit_layout(self) -> None:
        """One chart below 120x40, all four from there."""
        small = self.app.size.width < WIDE[0] or self.app.size.height < WIDE[1]
        self.set_class(small, "-small")
        self.fresh = True  # charts that were hidden may show now

    def add(self, sample: MetricSample) -> None:
        self.query_one(f"#chart-{sample.metric}", MetricChart).add(sample)
        self.fresh = True

    def show_title(self, text: str, post_deploy: bool = False) -> None:
        """A new operation's title; `post_deploy`: a deploy's monitor (the new version against the
        previous one's baseline) rather than a canary."""
        self.heading = "Post-deploy monitor" if post_deploy else "Canary"
        self.labels = dict(POST_DEPLOY) if post_deploy else {}
        # An image reference becomes its tag: the pane is narrow, and the tag is what people say.
        text = " ".join(word.rsplit(":", 1)[-1] if "/" in word and ":" in word else word for word in text.split())
        self.title, self.next_check = text, None
        self.verdicts.clear()
        self.ladder, self.outcome = None, ""
        self.show_ladder()
        self.title_line(text)

    def verdict_text(self) -> Text:
        """The judge, then whatever needs attention in the latest check (breaches, missing data)."""
        text = Text()
        judge = self.verdicts.get("judge")
        if judge:
            text.append(f"judge: {judge['note']}", style=tone(self, "bold $error") if judge["action"] != "none" else "")
        for entry in self.verdicts.values():
            if entry["rule"] != "judge" and (entry["action"] != "none" or entry["value"] is None):
                shown = "no data" if entry["value"] is None else entry["verdict"].upper()
                mode = "observe only" if entry["mode"] == "observe" else entry["mode"]
                call = f" -> {entry['action']} ({mode})" if entry["action"] != "none" else ""
                style = "bold $error" if call else "$warning"
                text.append(f"\n{entry['rule']}: {shown}{call}", style=tone(self, style))
        return text

    def values_table(self) -> Text:
        header = [Text("metric", style="bold")]
        header += [Text(self.labels.get(series, series), style=tone(self, f"bold {colour}"))
                   for series, colour in SERIES_COLOURS.items()]
        rows = [[*header, Text("limit", style=tone(self, f"bold {LIMIT_COLOUR}"))]]
        for chart in self.query(MetricChart):
            scale = SCALE.get(chart.metric, 1.0)
            breached = chart.pressure() >= 1.0
            rows.append([Text(METRICS[chart.metric]),
                         _known(chart, "canary", scale, tone(self, "bold $error" if breached else "$success")),
                         _known(chart, "stable", scale), Text(_fmt(chart.latest("baseline"), scale)),
                         Text(_fmt(chart.threshold, scale))])
        share = self.verdicts.get("traffic_share")
        if share:  # the canary's observed share of requests beside the configured weight
            off = share["verdict"] == "off"
            shown = Text(_fmt(share["value"]), style=tone(self, "bold $error" if off else "$success"))
            rows.append([Text("share %"), shown, Text(""), Text(""), Text(_fmt(share["threshold"]))])
        return _columns(rows)

    def redraw(self) -> None:
        if not self.fresh or not self.display or not self.is_on_screen:
            return  # unchanged or hidden: do not redraw
        self.fresh = False
        charts = list(self.query(MetricChart))
        update_steady(self.query_one("#canary-values", Static), self.values_table())
        update_steady(self.query_one("#canary-verdict", Static), self.verdict_text())
        focus = max(charts, key=lambda c: c.pressure())
        for chart in charts:
            chart.set_class(chart is focus, "-focus")
            if chart.dirty and (chart is focus or not self.has_class("-small")):
                chart.replot()


def _columns(rows: list[list[Text]]) -> Text:
    """A table as plain lines: the first column left-aligned, the others right-aligned.
    Rich's Table measures every cell on each render, which a once-a-second update cannot afford."""
    widths = [max(cell.cell_len for cell in column) for column in zip(*rows, strict=True)]
    lines = []
    for row in rows:
        line = row[0].copy()
        line.pad_right(widths[0] - line.cell_len)
        for cell, width in zip(row[1:], widths[1:], strict=True):
            line.append(" " * (2 + width - cell.cell_len))
            line.append_text(cell)
        lines.append(line)
    return Text("\n").join(lines)


def _known(chart: MetricChart, series: str, scale: float, style: str = "") -> Text:
    """The latest value; when the newest samples are missing, the last real one marked stale."""
    value, stale = chart.last_known(series)
    if stale:
        return Text(f"{_fmt(value, scale)} stale", style=tone(chart, "$warning"))
    return Text(_fmt(value, scale), style=style)


def _fmt(value: float | None, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    return f"{value * scale:.3g}"
