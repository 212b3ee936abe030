"""The live canary pane: error rate, p95, CPU and memory for canary, stable and baseline,
with threshold lines and a table of the latest values beside their thresholds.

Charts redraw at most once a second, only when their data changed and only when visible.
On a small terminal one chart shows: the metric closest to its threshold.
"""

from __future__ import annotations

import math
from collections import deque

from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.widgets import Label, Static
from textual_plotext import PlotextPlot

from services.events import MetricSample

METRICS = {"error_rate": "errors %", "p95_ms": "p95 ms", "cpu_percent": "CPU %", "memory_percent": "mem %"}
SCALE = {"error_rate": 100.0}  # error rate is a ratio; people read it as a percentage
SERIES_COLOURS = {"canary": "red", "stable": "green", "baseline": "blue"}
WINDOW = 120  # samples kept per series: bounded so a replot stays cheap
WIDE = (120, 40)  # columns, rows from which all four charts show


class MetricChart(PlotextPlot):
    def __init__(self, metric: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.metric = metric
        self.series: dict[str, deque[float]] = {name: deque(maxlen=WINDOW) for name in SERIES_COLOURS}
        self.threshold: float | None = None
        self.dirty = False

    def add(self, sample: MetricSample) -> None:
        if sample.series in self.series:
            self.series[sample.series].append(sample.value)
        if sample.threshold is not None:
            self.threshold = sample.threshold
        self.dirty = True

    def latest(self, series: str) -> float | None:
        values = self.series[series]
        return values[-1] if values else None

    def pressure(self) -> float:
        """How close the canary is to the threshold (1.0 = at it); missing data counts as at it."""
        value = self.latest("canary")
        if self.threshold is None or value is None or math.isnan(value):
            return 1.0 if self.threshold is not None else 0.0
        return value / self.threshold

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title(METRICS[self.metric])
        for name, values in self.series.items():
            if values:
                scaled = [v * SCALE.get(self.metric, 1) for v in values]
                # No legend: it hides the data on a small chart; the values table's coloured
                # headers name the series instead.
                plt.plot(scaled, color=SERIES_COLOURS[name], marker="braille")
        if self.threshold is not None:
            plt.horizontal_line(self.threshold * SCALE.get(self.metric, 1), color="yellow")
        self.dirty = False
        self.refresh()


class CanaryPane(Vertical):
    DEFAULT_CSS = """
    CanaryPane Grid { grid-size: 2 2; height: 1fr; }
    CanaryPane.-small Grid { grid-size: 1 1; }
    CanaryPane.-small MetricChart { display: none; }
    CanaryPane.-small MetricChart.-focus { display: block; }
    CanaryPane MetricChart { height: 1fr; min-height: 5; }
    CanaryPane .title { text-style: bold; }
    CanaryPane #canary-values { height: auto; }
    CanaryPane #canary-verdict { height: auto; max-height: 2; color: $text-muted; }
    CanaryPane.-small #canary-verdict { display: none; }
    """

    def compose(self) -> ComposeResult:
        yield Label("4 Canary: none running; c starts one on the selected environment", classes="title",
                    id="canary-title")
        yield Static(self.values_table(), id="canary-values")
        with Grid():
            for metric in METRICS:
                yield MetricChart(metric, id=f"chart-{metric}")
        yield Static("", id="canary-verdict")

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.fresh = False  # samples arrived since the last redraw

    def on_mount(self) -> None:
        self.set_interval(1.0, self.redraw)

    def on_resize(self, event: events.Resize) -> None:
        small = self.app.size.width < WIDE[0] or self.app.size.height < WIDE[1]
        self.set_class(small, "-small")
        self.fresh = True  # charts that were hidden may show now

    def add(self, sample: MetricSample) -> None:
        self.query_one(f"#chart-{sample.metric}", MetricChart).add(sample)
        self.fresh = True

    def show_title(self, text: str) -> None:
        self.query_one("#canary-title", Label).update(f"4 Canary: {text}")

    def show_verdict(self, text: str) -> None:
        self.query_one("#canary-verdict", Static).update(text)

    def values_table(self) -> Table:
        table = Table(box=None, padding=(0, 1), expand=False, header_style="bold")
        table.add_column("metric")
        for series in SERIES_COLOURS:
            table.add_column(Text(series, style=f"bold {SERIES_COLOURS[series]}"), justify="right")
        table.add_column(Text("limit", style="bold yellow"), justify="right")
        for chart in self.query(MetricChart):
            scale = SCALE.get(chart.metric, 1.0)
            breached = chart.pressure() >= 1.0
            table.add_row(METRICS[chart.metric],
                          Text(_fmt(chart.latest("canary"), scale), style="bold red" if breached else "green"),
                          _fmt(chart.latest("stable"), scale), _fmt(chart.latest("baseline"), scale),
                          _fmt(chart.threshold, scale))
        return table

    def redraw(self) -> None:
        if not self.fresh or not self.display or not self.is_on_screen:
            return  # unchanged or hidden: do not redraw
        self.fresh = False
        charts = list(self.query(MetricChart))
        self.query_one("#canary-values", Static).update(self.values_table())
        focus = max(charts, key=lambda c: c.pressure())
        for chart in charts:
            chart.set_class(chart is focus, "-focus")
            if chart.dirty and (chart is focus or not self.has_class("-small")):
                chart.replot()


def _fmt(value: float | None, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    return f"{value * scale:.3g}"
